"""Names the functions a release service ran, from callgrind's records of it.

Usage: hot_functions.py LINK_MAP BINARY CALLGRIND_FILE...
       hot_functions.py --check LINK_MAP LIST

`--check` says how many of the names in LIST (link/hot-functions.txt) the link of LINK_MAP
does not have, and fails when there is one: the list no longer matches the code, and each such
function that runs costs the idle service a block of resident code elsewhere.

LINK_MAP is LLD's map of the binary's link (`-Wl,-Map`): which function (input section
`.text.<symbol>`) is at which address. Each CALLGRIND_FILE was written with
`--dump-instr=yes --compress-pos=no --compress-strings=no` and is named
`callgrind.<scenario>.<pid>`: every cost line starts with the address of an instruction that
ran, relative to the binary as linked, and ends with the instructions it ran there.

Prints, for the linker's `--symbol-ordering-file`, the symbols of the functions those addresses
fall in, each once, in three groups: first the functions that take at least 0.1 % of the
instructions of one scenario other than `startup` (an alert storm's per-event path, a
remediation's), hottest first, so that they sit side by side in a few hundred KiB; then the other
functions that start-up runs (what an idle service has resident); then the rest.
"""

import bisect
import os
import re
import sys

SECTION = re.compile(
    r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s+\S.*:\((\.text\.[^)]+)\)\s*$"
)
# The share of one scenario's instructions that makes a function one of the hottest.
HOT_SHARE = 0.001
# Sections GCC names by what it knows of a C function, before the function's own name.
C_PREFIXES = ("unlikely.", "startup.", "hot.", "exit.")


def functions(link_map):
    """(start, end, symbol) of every function in its own section, by address."""
    out = []
    with open(link_map, errors="replace") as f:
        for line in f:
            m = SECTION.match(line)
            if not m:
                continue
            start, size = int(m.group(1), 16), int(m.group(2), 16)
            name = m.group(3)[len(".text.") :]
            for prefix in C_PREFIXES:
                if name.startswith(prefix) and len(name) > len(prefix):
                    name = name[len(prefix) :]
            if size:
                out.append((start, start + size, name))
    out.sort()
    return out


def check(link_map, listed):
    """Exit status 1 when a name of the list `listed` is not a function of the link."""
    have = {name for _, _, name in functions(link_map)}
    with open(listed) as f:
        names = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    missing = [name for name in names if name not in have]
    if missing:
        print(
            f"{listed}: {len(missing)} of its {len(names)} functions are not in this build "
            f"(the code or the compiler changed; first: {missing[0]}); "
            "run scripts/hot-code, then build again",
            file=sys.stderr,
        )
        sys.exit(1)
    print(f"{listed}: all {len(names)} functions are in this build", file=sys.stderr)


def main():
    if sys.argv[1] == "--check":
        return check(sys.argv[2], sys.argv[3])
    link_map, binary, records = sys.argv[1], sys.argv[2], sys.argv[3:]
    table = functions(link_map)
    if not table:
        sys.exit(f"{link_map} names no function sections: is it an LLD map of the link?")
    starts = [t[0] for t in table]
    # scenario -> function -> instructions the function ran itself
    cost = {}
    ran = 0
    for path in sorted(records, key=os.path.getmtime):
        scenario = os.path.basename(path).split(".")[1]
        own = cost.setdefault(scenario, {})
        ours = False
        after_call = False
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("ob="):
                    ours = line[3:].strip() == binary
                elif line.startswith("calls="):
                    after_call = True
                    continue
                elif ours and line.startswith("0x"):
                    fields = line.split()
                    address = int(fields[0], 16)
                    i = bisect.bisect_right(starts, address) - 1
                    if i >= 0 and address < table[i][1]:
                        ran += 1
                        name = table[i][2]
                        # The line after `calls=` is the cost of the call, not the caller's own.
                        own[name] = own.get(name, 0) + (0 if after_call else int(fields[-1]))
                after_call = False
    def shares(scenarios):
        out = {}
        for own in scenarios:
            total = sum(own.values()) or 1
            for name, n in own.items():
                out[name] = max(out.get(name, 0.0), n / total)
        return out

    startup = shares([cost.get("startup", {})])
    others = shares([own for scenario, own in cost.items() if scenario != "startup"])
    hot = {name: h for name, h in others.items() if h >= HOT_SHARE}
    # (group, -share, name) sorts the three groups apart, hottest first in each.
    seen = {}
    for name in set(startup) | set(others):
        if name in hot:
            seen[name] = (0, -hot[name], name)
        elif name in startup:
            seen[name] = (1, -startup[name], name)
        else:
            seen[name] = (2, -others[name], name)
    if not seen:
        sys.exit(f"no instruction of {binary} found in the callgrind records")
    total = sum(end - start for start, end, _ in table)
    ran_bytes = sum(end - start for start, end, name in table if name in seen)
    hot_bytes = sum(end - start for start, end, name in table if name in hot)
    print(
        f"{len(seen)} functions, {ran_bytes / 1e6:.2f} MB of {total / 1e6:.2f} MB of code, "
        f"the {len(hot)} hottest {hot_bytes / 1e3:.0f} KB; scenarios {sorted(cost)} "
        f"({ran} instruction records)",
        file=sys.stderr,
    )
    for name in sorted(seen, key=seen.get):
        print(name)


if __name__ == "__main__":
    main()
