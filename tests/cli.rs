//! The `validate` and `resolve` subcommands, run as a user runs them.

use assert_cmd::Command;
use serde_json::{Value, json};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cli() -> Command {
    let mut cmd = Command::cargo_bin("unleash-remediation-service").expect("the binary is built");
    cmd.current_dir(root());
    cmd
}

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn validate_accepts_the_repository_files() {
    let output = cli()
        .args(["validate", "remediation.yaml", "shipyard.yaml"])
        .output()
        .unwrap();
    let out = stdout_of(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("OK remediation.yaml ("), "{out}");
    assert!(out.contains("OK shipyard.yaml ("), "{out}");
}

#[test]
fn validate_accepts_every_vector() {
    let mut files: Vec<String> = Vec::new();
    for dir in [
        "tutorial",
        "keptn-0.7",
        "keptn-0.8",
        "keptn-1.x",
        "unleash-service",
        "prometheus-service",
    ] {
        for entry in std::fs::read_dir(root().join("tests/vectors").join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path.strip_prefix(root()).unwrap().display().to_string());
            }
        }
    }
    let output = cli().arg("validate").args(&files).output().unwrap();
    let out = stdout_of(&output);
    assert!(output.status.success(), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK ")).count(),
        files.len(),
        "{out}"
    );
}

#[test]
fn validate_names_line_and_column_of_a_broken_file() {
    let broken = "tests/fixtures/invalid/wrong-api-version.yaml";
    let output = cli()
        .args(["validate", "remediation.yaml", broken])
        .output()
        .unwrap();
    let out = stdout_of(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("OK remediation.yaml"), "{out}");
    assert!(
        out.contains(&format!(
            "{broken}:1:13: apiVersion is \"spec.keptn.sh/0.2.0\""
        )),
        "{out}"
    );

    let output = cli()
        .args([
            "validate",
            "tests/fixtures/invalid/shipyard-sequences-not-a-list.yaml",
        ])
        .output()
        .unwrap();
    let out = stdout_of(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("shipyard-sequences-not-a-list.yaml:6:18: `sequences` should be a list"),
        "{out}"
    );
}

#[test]
fn resolve_prints_the_action_as_json() {
    let output = cli()
        .args([
            "resolve",
            "--remediation",
            "remediation.yaml",
            "--problem-title",
            "Failure rate increase",
        ])
        .output()
        .unwrap();
    let out = stdout_of(&output);
    assert!(output.status.success(), "{out}");
    let action: Value = serde_json::from_str(&out).expect("stdout is JSON");
    assert_eq!(action["action"], "toggle-feature");
    assert_eq!(action["value"], json!({"EnableStaticContent": "on"}));
}

#[test]
fn resolve_takes_root_cause_and_index() {
    let output = cli()
        .args([
            "resolve",
            "--remediation",
            "tests/vectors/keptn-1.x/remediation.yaml",
            "--problem-title",
            "problemType1",
            "--root-cause",
            "problemType2",
            "--index",
            "1",
        ])
        .output()
        .unwrap();
    let out = stdout_of(&output);
    assert!(output.status.success(), "{out}");
    let action: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(action["name"], "actionName22");
}

#[test]
fn resolve_without_an_action_fails_with_the_reason() {
    let output = cli()
        .args([
            "resolve",
            "--remediation",
            "tests/vectors/keptn-1.x/remediation-without-default.yaml",
            "--problem-title",
            "Memory leak",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("unable to find action for problem title Memory leak"),
        "{err}"
    );
}

#[test]
fn help_never_shows_secret_values() {
    let secrets = [
        ("UNLEASH_TOKEN", "unleash-s3cret"),
        ("NATS_TOKEN", "nats-s3cret"),
        ("NATS_PASSWORD", "password-s3cret"),
        ("NATS_NKEY", "nkey-s3cret"),
        ("KEPTN_API_TOKEN", "keptn-s3cret"),
        ("HTTP_TOKEN", "http-s3cret"),
        ("DYNATRACE_API_TOKEN", "dynatrace-s3cret"),
        (
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/s3cret",
        ),
        ("NOTIFY_WEBHOOK_URL", "https://hook.example/s3cret"),
        ("GRAFANA_API_TOKEN", "grafana-s3cret"),
    ];
    for args in [
        &["serve", "--help"][..],
        &["send", "--help"][..],
        &["--help"][..],
    ] {
        let mut cmd = cli();
        cmd.args(args);
        for (k, v) in secrets {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("s3cret"),
            "{args:?} printed a secret:\n{text}"
        );
    }
    let out = cli().args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for (k, _) in secrets {
        assert!(text.contains(k), "--help should name {k}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let out = cli().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("unleash-remediation-service {}", env!("CARGO_PKG_VERSION"))
    );
}
