//! Settings as people type them: durations, booleans, flag-over-environment precedence, Keptn's
//! NATS URL names, secrets from files, quiet pipes and a single start-up error. The binary is
//! run as a user runs it; where a setting is accepted, `serve` goes on to fail at binding an
//! impossible HTTP address (exit 1), and a refused setting stops it at parsing (exit 2).

use std::process::{Command, Output, Stdio};
use testkit::nats::NatsServer;

const BIN: &str = env!("CARGO_BIN_EXE_unleash-remediation-service");

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running the binary")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `serve` with `env`, stopped by an HTTP address that cannot be bound.
fn serve_until_bind(env: &[(&str, &str)]) -> Output {
    let mut all = vec![
        ("HTTP_ADDR", "localhost:99999"),
        ("UNLEASH_TOKEN", "t"),
        ("NATS_URL", "nats://127.0.0.1:9"),
    ];
    all.extend_from_slice(env);
    run(&["serve"], &all)
}

fn accepted(env: &[(&str, &str)]) {
    let out = serve_until_bind(env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{env:?} was refused:\n{err}");
    assert!(
        err.contains("cannot listen on localhost:99999"),
        "{env:?}:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

fn refused(env: &[(&str, &str)], says: &str) {
    let out = serve_until_bind(env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{env:?} was accepted:\n{err}");
    assert!(err.contains(says), "{env:?} should say {says:?}:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn durations_take_compound_units_and_refuse_overflow_without_panic() {
    for ok in [
        "1h30m", "2d", "1w", "90s", "500ms", "1.5h", "3600", "1h 30m",
    ] {
        accepted(&[("STATE_TTL", ok)]);
    }
    refused(
        &[("STATE_TTL", "99999999999999999999h")],
        "not a usable duration",
    );
    refused(&[("ACTION_TIMEOUT", "-5")], "not a usable duration");
    refused(
        &[("ACK_WAIT", "10 parsecs")],
        "unknown duration unit \"parsecs\"",
    );
    refused(&[("SHUTDOWN_GRACE", "soon")], "is not a duration");
    refused(&[("SHUTDOWN_GRACE", "1h30")], "is not a duration");
}

#[test]
fn booleans_take_yes_no_one_zero_in_any_case() {
    for ok in ["1", "0", "yes", "NO", "True", "false", "on", "OFF"] {
        accepted(&[("ACCEPT_REMEDIATION_SEQUENCES", ok)]);
        accepted(&[("HTTP_ALLOW_ANONYMOUS", ok)]);
        accepted(&[("READ_BEFORE_SWITCH", ok)]);
    }
    refused(&[("READ_BEFORE_SWITCH", "later")], "invalid value 'later'");
    refused(
        &[("ACCEPT_REMEDIATION_SEQUENCES", "maybe")],
        "invalid value 'maybe'",
    );
    // The flag alone still means true.
    let out = run(
        &["serve", "--accept-remediation-sequences"],
        &[
            ("HTTP_ADDR", "localhost:99999"),
            ("UNLEASH_TOKEN", "t"),
            ("NATS_URL", "nats://127.0.0.1:9"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn the_start_up_error_is_printed_once() {
    let out = serve_until_bind(&[]);
    let err = stderr(&out);
    assert_eq!(
        err.matches("cannot listen on localhost:99999").count(),
        1,
        "{err}"
    );
}

fn event_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("event.json");
    std::fs::write(
        &path,
        serde_json::json!({
            "specversion": "1.0", "id": "settings-1", "source": "test",
            "type": "sh.keptn.event.problem.open", "shkeptncontext": "c-1",
            "data": {"State": "OPEN", "ProblemTitle": "x", "ProblemID": "1",
                     "project": "p", "stage": "s", "service": "v"}
        })
        .to_string(),
    )
    .unwrap();
    path
}

#[test]
fn a_flag_wins_over_environment_and_keptn_names_are_understood() {
    let nats = NatsServer::start().expect("nats-server (apt-get install -y nats-server)");
    let live = nats.url();
    let dead = format!("nats://127.0.0.1:{}", testkit::free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = event_file(dir.path());
    let file = file.to_str().unwrap();
    let sent_to = |out: &Output| String::from_utf8_lossy(&out.stdout).trim().to_owned();

    // --nats-url beats PUBSUB_URL, EVENTBROKER and NATS_URL.
    for env in ["PUBSUB_URL", "EVENTBROKER", "NATS_URL"] {
        let out = run(&["send", "--nats-url", &live, file], &[(env, &dead)]);
        assert!(out.status.success(), "{env}: {}", stderr(&out));
        assert!(
            sent_to(&out).ends_with(&format!("to {live}")),
            "{env}: {out:?}"
        );
    }
    // Keptn's names are used when nothing else is set.
    for env in ["PUBSUB_URL", "EVENTBROKER"] {
        let out = run(&["send", file], &[(env, &live)]);
        assert!(out.status.success(), "{env}: {}", stderr(&out));
        assert!(
            sent_to(&out).ends_with(&format!("to {live}")),
            "{env}: {out:?}"
        );
    }
    // NATS_URL beats the Keptn names.
    let out = run(
        &["send", file],
        &[("NATS_URL", &live), ("PUBSUB_URL", &dead)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn secrets_come_from_files_and_the_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-file");
    let missing = missing.to_str().unwrap();
    refused(
        &[("UNLEASH_TOKEN", ""), ("UNLEASH_TOKEN_FILE", missing)],
        &format!("UNLEASH_TOKEN_FILE: cannot read {missing}"),
    );
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    refused(
        &[("NATS_PASSWORD_FILE", empty.to_str().unwrap())],
        "NATS_PASSWORD_FILE:",
    );

    // Without a token the start fails on the Unleash configuration; with one from a file or
    // from the credentials directory it gets as far as binding.
    let out = run(
        &["serve"],
        &[
            ("HTTP_ADDR", "localhost:99999"),
            ("NATS_URL", "nats://127.0.0.1:9"),
        ],
    );
    assert!(
        stderr(&out).contains("UNLEASH_TOKEN is empty"),
        "{}",
        stderr(&out)
    );
    let token = dir.path().join("token");
    std::fs::write(&token, "file-s3cret\n").unwrap();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("UNLEASH_TOKEN"), "cred-s3cret").unwrap();
    for env in [
        ("UNLEASH_TOKEN_FILE", token.to_str().unwrap()),
        ("CREDENTIALS_DIRECTORY", creds.to_str().unwrap()),
    ] {
        let out = run(
            &["serve"],
            &[
                ("HTTP_ADDR", "localhost:99999"),
                ("NATS_URL", "nats://127.0.0.1:9"),
                env,
            ],
        );
        let err = stderr(&out);
        assert!(
            err.contains("cannot listen on localhost:99999"),
            "{env:?}: {err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }
}

#[test]
fn help_warns_that_secret_flags_show_in_ps() {
    let out = run(&["serve", "--help"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "UNLEASH_TOKEN",
        "HTTP_TOKEN",
        "NATS_PASSWORD",
        "KEPTN_API_TOKEN",
    ] {
        assert!(
            text.contains(&format!("visible in `ps`: prefer {name}, {name}_FILE")),
            "{name}:\n{text}"
        );
    }
}

#[test]
fn resolve_into_a_closed_pipe_ends_quietly() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new(BIN)
        .current_dir(root)
        .args([
            "resolve",
            "--remediation",
            "remediation.yaml",
            "--problem-title",
            "Failure rate increase",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before anything is read, as `| head -0` does.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked") && err.is_empty(), "{err}");
}
