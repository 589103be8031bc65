//! Records the git commit the binary is built from (`URS_REVISION`), for the `build_info`
//! metric. `GIT_REVISION` in the build environment wins (container builds have no .git);
//! without either the revision is `unknown`.
//!
//! On Linux with glibc it also links the binaries with packed relative relocations when the
//! build machine supports them (see [`packed_relocations`]), and a release build places the
//! functions the service runs first in its code (see [`hot_code_first`]).

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=GIT_REVISION");
    let revision = std::env::var("GIT_REVISION")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    // Rebuild when HEAD moves, not on every source change.
    for path in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r])),
    ]
    .into_iter()
    .flatten()
    {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rustc-env=URS_REVISION={revision}");
    if packed_relocations() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    if let Some(order) = hot_code_first() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    // A map of the link, for `scripts/hot-code` (which function is at which address).
    println!("cargo:rerun-if-env-changed=URS_LINK_MAP");
    if let Some(map) = std::env::var_os("URS_LINK_MAP").filter(|m| !m.is_empty()) {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,-Map={}",
            map.to_string_lossy()
        );
    }
}

/// The functions to place first in a release binary's code: `link/hot-functions.txt`, those
/// that start-up, an idle service and its remediations run, written by `scripts/hot-code`.
/// Linux maps a program's code in blocks of up to 64 KiB around each page it runs, so about
/// 3.7 MB of functions spread over 11 MB of code make most of the code resident; side by side
/// they make 2.6 MiB resident (BENCHMARKS.md). The names are those of a release build with
/// this compiler, these dependencies and this code: a name the binary does not have (another
/// version, the `profiling` build, whose names differ) is passed over, so a stale list saves
/// less, and soon much less: each missing function that runs costs a block of resident code
/// elsewhere. `scripts/hot-code --check` says whether the list is current.
/// The list is passed when the linker takes it (rustc links with LLD on x86_64 Linux by
/// default), which a probe linked with the same flags shows; `URS_NO_CODE_ORDER=1` turns it
/// off.
fn hot_code_first() -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=URS_NO_CODE_ORDER");
    let order =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?).join("link/hot-functions.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    if std::env::var("PROFILE").ok()? != "release"
        || std::env::var_os("URS_NO_CODE_ORDER").is_some_and(|v| !v.is_empty())
        || !order.is_file()
    {
        return None;
    }
    let dir = PathBuf::from(std::env::var_os("OUT_DIR")?);
    let source = dir.join("order-probe.rs");
    std::fs::write(&source, "fn main() {}\n").ok()?;
    let target = std::env::var("TARGET").ok()?;
    let mut rustc = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
    rustc.args([
        "--crate-name",
        "order_probe",
        "--edition",
        "2021",
        "--target",
        &target,
    ]);
    // The flags cargo passes every crate (RUSTFLAGS, `build.rustflags`), so the probe links
    // with the linker the binaries will, and the linker set for the target, if any.
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    rustc.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace(['-', '.'], "_")
    );
    println!("cargo:rerun-if-env-changed={linker_var}");
    if let Some(linker) = std::env::var_os(&linker_var) {
        rustc
            .arg("-C")
            .arg(format!("linker={}", linker.to_string_lossy()));
    }
    let linked = rustc
        .arg("-C")
        .arg(format!(
            "link-arg=-Wl,--symbol-ordering-file={}",
            order.display()
        ))
        .args(["-C", "link-arg=-Wl,--no-warn-symbol-ordering", "-o"])
        .arg(dir.join("order-probe"))
        .arg(&source)
        .output()
        .is_ok_and(|o| o.status.success());
    linked.then_some(order)
}

/// Whether to link with `-z pack-relative-relocs` (DT_RELR). The binary is position
/// independent, so the loader relocates about 35,000 pointers at start-up; as a RELA table
/// that is 0.8 MiB of the file, read once and then resident for the process's life. Packed,
/// it is a few KiB, and the address randomisation stays. A binary linked so needs glibc 2.36
/// or newer, so it is done only when a probe program linked the same way runs here (and never
/// when cross-compiling); `URS_NO_PACKED_RELOCS=1` turns it off, for a binary that must run
/// on an older glibc than the build machine's.
fn packed_relocations() -> bool {
    println!("cargo:rerun-if-env-changed=URS_NO_PACKED_RELOCS");
    println!("cargo:rerun-if-env-changed=CC");
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    if !env("URS_NO_PACKED_RELOCS").is_empty()
        || env("CARGO_CFG_TARGET_OS") != "linux"
        || env("CARGO_CFG_TARGET_ENV") != "gnu"
        || env("TARGET") != env("HOST")
    {
        return false;
    }
    let Some(dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let source = dir.join("relr-probe.c");
    let probe = dir.join("relr-probe");
    // One pointer to relocate, so the probe carries a packed relocation and glibc's check.
    let program = "static int x = 7;\nint *p = &x;\nint main(void) { return *p == 7 ? 0 : 1; }\n";
    if std::fs::write(&source, program).is_err() {
        return false;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let linked = Command::new(cc)
        .args(["-fPIE", "-pie", "-Wl,-z,pack-relative-relocs", "-o"])
        .arg(&probe)
        .arg(&source)
        .output()
        .is_ok_and(|o| o.status.success());
    linked
        && Command::new(&probe)
            .output()
            .is_ok_and(|o| o.status.success())
}
