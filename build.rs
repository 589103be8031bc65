//! Records the git commit the binary is built from (`URS_REVISION`), for the `build_info`
//! metric. `GIT_REVISION` in the build environment wins (container builds have no .git);
//! without either the revision is `unknown`.
//!
//! On Linux with glibc it also links the binaries with packed relative relocations when the
//! build machine supports them (see [`packed_relocations`]).

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
