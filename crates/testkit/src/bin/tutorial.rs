//! The tutorial, for real, in one command (what `./scripts/demo` runs): a web application
//! reading `EnableStaticContent` through Unleash's SDK starts failing, Prometheus's "Failure
//! rate increase" alert fires, Alertmanager tells the service, the service switches the flag on
//! in Unleash 8.2.0, the application serves its static page, the errors stop, the alert
//! resolves and the flag goes back off. See `testkit::tutorial` for the parts.
//!
//! Exits 0 only when every step happened. Everything it started is stopped at the end, also
//! on Ctrl-C.
//!
//! Build: `cargo build --workspace --bin unleash-remediation-service --bin tutorial`.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use testkit::tutorial;

const BINARY: &str = "unleash-remediation-service";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\ntutorial FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let options = tutorial::Options {
        service_binary: service_binary()?,
        root: testkit::repo_root(),
        verbose: true,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let report = runtime.block_on(async {
        tokio::select! {
            r = tutorial::run(&options) => r,
            _ = tokio::signal::ctrl_c() => {
                // Dropping the story stops everything it started.
                bail!("interrupted (Ctrl-C); everything started was stopped")
            }
        }
    })?;
    println!("\n== measured");
    for line in tutorial::summary(&report) {
        println!("  {line}");
    }
    println!(
        "\ntutorial OK: errors → alert → {} on → static page → errors gone → alert resolved → {} off.",
        tutorial::FLAG,
        tutorial::FLAG
    );
    Ok(())
}

/// The service binary next to this one (`target/<profile>/`).
fn service_binary() -> Result<PathBuf> {
    let me = std::env::current_exe().context("locating this executable")?;
    let binary = me
        .parent()
        .map(Path::to_path_buf)
        .context("this executable has no parent directory")?
        .join(BINARY);
    if !binary.is_file() {
        bail!(
            "{} does not exist: build it with `cargo build --workspace --bin {BINARY} --bin tutorial` (./scripts/demo does)",
            binary.display()
        );
    }
    Ok(binary)
}
