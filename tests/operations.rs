//! Operating the service: the Prometheus exposition (checked with `promtool`), the alert rules
//! and dashboard in deploy/, JSON logs, the `healthcheck` subcommand, the systemd notification
//! protocol, secrets from files and the HTTP ingest answers. Real nats-server and the service
//! binary; Unleash is an address where nothing listens (remediations then fail, which is what
//! most of these checks need).

#[path = "common/mod.rs"]
mod common;

use common::{Fixture, Service, problem_open};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

const REMEDIATION: &str = r#"apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata:
  name: remediation
spec:
  remediations:
    - problemType: Failure rate increase
      actionsOnOpen:
        - action: toggle-feature
          name: Toggle feature flag
          value:
            EnableStaticContent: "on"
"#;

fn promtool() -> &'static str {
    let path = "/usr/bin/promtool";
    assert!(
        std::path::Path::new(path).exists() || which("promtool"),
        "promtool is missing: apt-get install -y prometheus"
    );
    if std::path::Path::new(path).exists() {
        path
    } else {
        "promtool"
    }
}

fn which(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `promtool check metrics` on a scrape; panics with promtool's complaints.
fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n--- scrape ---\n{text}"
    );
}

/// Names of metric families (`# TYPE` lines) and the sample lines of a scrape.
fn families(text: &str) -> (BTreeSet<String>, BTreeSet<String>, Vec<String>) {
    let mut typed = BTreeSet::new();
    let mut helped = BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split_whitespace().next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split_whitespace().next().unwrap().to_owned());
        } else if !line.trim().is_empty() && !line.starts_with('#') {
            samples.push(line.to_owned());
        }
    }
    (typed, helped, samples)
}

/// The series (name and labels, without the value) of a scrape.
fn series(text: &str) -> BTreeSet<String> {
    families(text)
        .2
        .iter()
        .map(|l| l.rsplit_once(' ').map_or(l.as_str(), |(s, _)| s).to_owned())
        .collect()
}

fn check_exposition(text: &str) {
    promtool_check_metrics(text);
    let (typed, helped, samples) = families(text);
    assert!(!samples.is_empty(), "empty scrape");
    for name in &typed {
        assert!(
            name.starts_with("unleash_remediation_") || name.starts_with("process_"),
            "{name} has no application prefix"
        );
        assert!(helped.contains(name), "{name} has no HELP");
    }
    for sample in &samples {
        assert!(
            sample.starts_with("unleash_remediation_") || sample.starts_with("process_"),
            "sample without prefix: {sample}"
        );
    }
}

async fn scrape(svc: &Service) -> String {
    let (status, text) = svc.get("/metrics").await;
    assert_eq!(status, 200, "{text}");
    text
}

fn sample_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.rsplit_once(' ').is_some_and(|(s, _)| s == series))
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
}

/// Runs one remediation to its end (it fails: Unleash is not there).
async fn run_failing_remediation(fx: &Fixture) -> Value {
    let open = problem_open("Failure rate increase", "ops-1");
    fx.bus.publish(&open).await;
    fx.bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(30),
        )
        .await
        .remove(0)
}

const FAST_FAIL: [(&str, &str); 2] = [("UNLEASH_RETRIES", "0"), ("UNLEASH_TIMEOUT", "2s")];

/// Every series named in the expressions of the deploy/ rules and dashboard.
fn names_in_deploy_files() -> BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut exprs = Vec::new();
    let rules = std::fs::read_to_string(
        root.join("deploy/prometheus/unleash-remediation-service.rules.yml"),
    )
    .expect("the rules file");
    for line in rules.lines() {
        if let Some(e) = line.trim().strip_prefix("expr:") {
            exprs.push(e.to_owned());
        }
    }
    // Multi-line expressions: the whole file is scanned below as well.
    exprs.push(rules);
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            root.join("deploy/grafana/unleash-remediation-service.dashboard.json"),
        )
        .expect("the dashboard file"),
    )
    .expect("the dashboard is JSON");
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k == "expr" || k == "query" {
                        if let Some(s) = v.as_str() {
                            out.push(s.to_owned());
                        }
                    } else {
                        walk(v, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut dash = Vec::new();
    walk(&dashboard, &mut dash);
    assert!(
        dash.len() >= 8,
        "the dashboard has too few queries: {dash:?}"
    );
    exprs.extend(dash);
    let mut names = BTreeSet::new();
    for e in exprs {
        let bytes = e.as_bytes();
        for (i, _) in e.match_indices("unleash_remediation_") {
            let end = bytes[i..]
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                .map_or(e.len(), |p| i + p);
            names.insert(e[i..end].to_owned());
        }
    }
    names
}

#[tokio::test]
async fn metrics_are_prefixed_described_bounded_and_cover_rules_and_dashboard() {
    let fx = Fixture::new(Some(REMEDIATION), None).await;
    let svc = fx.service(&FAST_FAIL).await;

    // Right after the start: every known series at zero, promtool clean.
    let first = scrape(&svc).await;
    check_exposition(&first);
    assert!(
        first.contains("unleash_remediation_build_info{version=\""),
        "{first}"
    );
    assert!(first.contains("revision=\""), "{first}");
    assert_eq!(sample_value(&first, "unleash_remediation_ready"), Some(1.0));
    assert_eq!(
        sample_value(&first, "unleash_remediation_nats_connected"),
        Some(1.0)
    );
    for name in [
        "unleash_remediation_remediations_total{result=\"fail\"}",
        "unleash_remediation_events_given_up_total",
        "unleash_remediation_action_timeouts_total",
        "unleash_remediation_http_unauthorized_total",
        "unleash_remediation_events_in_flight",
        "unleash_remediation_remediations_waiting",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(
            sample_value(&first, name).is_some(),
            "{name} missing:\n{first}"
        );
    }

    // Bounded labels: 100 events with invented types add no series.
    let before = series(&scrape(&svc).await);
    let http = reqwest::Client::new();
    for i in 0..100 {
        let ty = if i % 2 == 0 {
            format!(
                "sh.keptn.event.invented{}.triggered",
                uuid::Uuid::new_v4().simple()
            )
        } else {
            format!("evil.type.{i}.{}", uuid::Uuid::new_v4().simple())
        };
        let event = json!({
            "specversion": "1.0", "id": format!("r{i}"), "source": "test", "type": ty,
            "shkeptncontext": uuid::Uuid::new_v4().to_string(), "data": {}
        });
        let answer = http
            .post(format!("{}/events", svc.http))
            .header("content-type", "application/cloudevents+json")
            .body(event.to_string())
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_client_error() || answer.status().is_success());
        // The same through NATS.
        fx.bus
            .publish_raw(
                "sh.keptn.event.problem.open",
                event.to_string().into_bytes(),
            )
            .await;
    }
    let wait = std::time::Instant::now();
    let after = loop {
        let text = scrape(&svc).await;
        let rejected = text
            .lines()
            .filter(|l| l.starts_with("unleash_remediation_events_rejected_total"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>();
        if rejected >= 200.0 || wait.elapsed() > Duration::from_secs(20) {
            assert!(
                rejected >= 200.0,
                "only {rejected} rejections counted:\n{text}"
            );
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after_series = series(&after);
    let grown: Vec<&String> = after_series.difference(&before).collect();
    assert!(
        grown.is_empty(),
        "new series from invented types: {grown:?}"
    );
    check_exposition(&after);

    // After a remediation: still clean, and the remediation counted.
    let finished = run_failing_remediation(&fx).await;
    assert_eq!(finished["data"]["result"], "fail", "{finished}");
    let wait = std::time::Instant::now();
    let last = loop {
        let text = scrape(&svc).await;
        if sample_value(
            &text,
            "unleash_remediation_remediations_total{result=\"fail\"}",
        ) == Some(1.0)
            || wait.elapsed() > Duration::from_secs(10)
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    check_exposition(&last);
    assert_eq!(
        sample_value(
            &last,
            "unleash_remediation_remediations_total{result=\"fail\"}"
        ),
        Some(1.0),
        "{last}"
    );
    assert!(
        last.lines().any(|l| l.starts_with(
            "unleash_remediation_flag_switches_total{flag=\"EnableStaticContent\",environment=\"production\",state=\"on\",result=\"failed\"} 1"
        )),
        "{last}"
    );
    assert_eq!(
        sample_value(&last, "unleash_remediation_events_in_flight"),
        Some(0.0)
    );

    // The alert rules pass promtool, and the rules and the dashboard name only series that
    // this scrape has.
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/prometheus/unleash-remediation-service.rules.yml");
    let out = Command::new(promtool())
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let present: HashSet<String> = families(&last)
        .2
        .iter()
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect();
    let named = names_in_deploy_files();
    assert!(named.len() >= 10, "too few series named: {named:?}");
    for name in &named {
        assert!(
            present.contains(name),
            "{name} is named in deploy/ but not exposed by the service"
        );
    }
}

/// A JSON parser that refuses an object with a key twice (serde_json keeps the last one).
mod strict {
    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};
    use std::collections::HashSet;

    pub struct Strict(pub Value);

    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(StrictVisitor).map(Strict)
        }
    }

    struct StrictVisitor;

    impl<'de> Visitor<'de> for StrictVisitor {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(Strict(v)) = seq.next_element()? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut seen = HashSet::new();
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(de::Error::custom(format!("duplicate key {key:?}")));
                }
                let Strict(v) = map.next_value()?;
                out.insert(key, v);
            }
            Ok(Value::Object(out))
        }
    }
}

#[tokio::test]
async fn json_log_lines_have_each_key_once_with_context_at_the_top() {
    let fx = Fixture::new(Some(REMEDIATION), None).await;
    let mut svc = fx
        .service(&[
            ("LOG_FORMAT", "json"),
            ("UNLEASH_RETRIES", "0"),
            ("UNLEASH_TIMEOUT", "2s"),
        ])
        .await;
    let finished = run_failing_remediation(&fx).await;
    let context = finished["shkeptncontext"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(svc.terminate().success());
    let log = svc.log();
    let mut lines = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: strict::Strict = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not strict JSON ({e}): {line}"));
        let Value::Object(map) = parsed.0 else {
            panic!("log line is not an object: {line}")
        };
        for key in ["timestamp", "level", "message", "target"] {
            assert!(map.contains_key(key), "{key} missing: {line}");
        }
        assert_eq!(map["service"], "unleash-remediation-service", "{line}");
        assert_eq!(map["version"], env!("CARGO_PKG_VERSION"), "{line}");
        for nested in ["span", "spans", "fields", "keptn_context"] {
            assert!(!map.contains_key(nested), "{nested} in {line}");
        }
        assert!(
            map.values().all(|v| !v.is_object()),
            "nested object in {line}"
        );
        lines.push(map);
    }
    let about: Vec<_> = lines
        .iter()
        .filter(|m| m.get("shkeptncontext").and_then(Value::as_str) == Some(context.as_str()))
        .collect();
    let messages: Vec<&str> = about.iter().filter_map(|m| m["message"].as_str()).collect();
    for wanted in ["toggle-feature done", "remediation finished"] {
        assert!(
            messages.contains(&wanted),
            "no {wanted:?} line with shkeptncontext {context}: {messages:?}\n{log}"
        );
    }
    let done = about
        .iter()
        .find(|m| m["message"] == "toggle-feature done")
        .unwrap();
    assert!(
        done["detail"]
            .as_str()
            .is_some_and(|d| d.contains("EnableStaticContent")),
        "{done:?}"
    );
    for key in ["event_id", "scope", "event_type"] {
        assert!(done.contains_key(key), "{key} missing in {done:?}");
    }
    // No colour escapes: stderr is a file here.
    assert!(!log.contains('\u{1b}'), "escape codes in the log");
}

#[tokio::test]
async fn text_logs_have_no_colour_and_a_refused_nats_connect_is_logged_once_with_its_cause() {
    let dead = testkit::free_port();
    let mut svc = Service::spawn(&[
        ("NATS_URL", format!("nats://127.0.0.1:{dead}")),
        ("RUST_LOG", String::new()),
        // As under systemd: each line starts with its syslog priority.
        ("JOURNAL_STREAM", "8:12345".to_owned()),
    ]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = svc.terminate();
    let log = svc.log();
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log}");
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("NATS connect failed"))
        .collect();
    assert_eq!(failures.len(), 1, "{log}");
    assert!(
        failures[0]
            .to_ascii_lowercase()
            .contains("connection refused"),
        "{log}"
    );
    assert!(failures[0].starts_with("<4>"), "{log}");
    for line in log.lines().filter(|l| !l.is_empty()) {
        assert!(
            ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|p| line.starts_with(p)),
            "no priority: {line}"
        );
    }
    assert!(
        !log.contains("async_nats"),
        "third-party INFO lines:\n{log}"
    );
}

fn healthcheck(http: &str, extra: &[&str]) -> std::process::Output {
    Command::new(common::BIN)
        .arg("healthcheck")
        .arg("--http-addr")
        .arg(http.trim_start_matches("http://"))
        .args(extra)
        .env_remove("HTTP_ADDR")
        .output()
        .unwrap()
}

#[tokio::test]
async fn healthcheck_exits_0_when_ready_and_1_otherwise() {
    let fx = Fixture::new(None, None).await;
    let svc = fx.service(&[]).await;
    let ok = healthcheck(&svc.http, &[]);
    assert!(ok.status.success(), "{ok:?}");

    // A service that cannot reach NATS runs (health) but is not ready.
    let dead = testkit::free_port();
    let waiting = Service::spawn(&[("NATS_URL", format!("nats://127.0.0.1:{dead}"))]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while waiting.get("/health").await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "{}", waiting.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let not_ready = healthcheck(&waiting.http, &[]);
    assert_eq!(not_ready.status.code(), Some(1), "{not_ready:?}");
    assert!(
        String::from_utf8_lossy(&not_ready.stderr).contains("503"),
        "{not_ready:?}"
    );
    let alive = healthcheck(&waiting.http, &["--path", "/health"]);
    assert!(alive.status.success(), "{alive:?}");

    // Nothing listening.
    let none = healthcheck(
        &format!("127.0.0.1:{}", testkit::free_port()),
        &["--timeout", "1s"],
    );
    assert_eq!(none.status.code(), Some(1), "{none:?}");
}

#[tokio::test]
async fn systemd_notify_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let fx = Fixture::new(None, None).await;
    let mut svc = Service::spawn(&fx.env(&[
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "200000"),
    ]));
    let mut buf = [0u8; 512];
    let mut received = Vec::new();
    let recv = |buf: &mut [u8]| -> String {
        let n = socket.recv(buf).expect("a notification within 20 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    // READY=1 (keep-alives may come first), then more keep-alives.
    loop {
        let got = recv(&mut buf);
        let ready = got.lines().any(|l| l == "READY=1");
        received.push(got);
        if ready {
            break;
        }
    }
    // Ready is sent once the service takes events, so /ready already answers 200.
    assert_eq!(svc.get("/ready").await.0, 200, "{}", svc.log());
    let next = recv(&mut buf);
    assert_eq!(next, "WATCHDOG=1", "after {received:?}");
    assert!(svc.terminate().success());
    let mut stopping = false;
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    while let Ok(n) = socket.recv(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        stopping |= text == "STOPPING=1";
        received.push(text);
    }
    assert!(stopping, "no STOPPING=1 in {received:?}");
}

#[tokio::test]
async fn http_token_from_a_file_and_from_the_credentials_directory() {
    let fx = Fixture::new(None, None).await;
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("token");
    std::fs::write(&file, "from-a-file\n").unwrap();
    let creds = secrets.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("HTTP_TOKEN"), "from-systemd").unwrap();
    let event = problem_open("Failure rate increase", "file-1");
    let http = reqwest::Client::new();
    for (env, token) in [
        (("HTTP_TOKEN_FILE", file.to_str().unwrap()), "from-a-file"),
        (
            ("CREDENTIALS_DIRECTORY", creds.to_str().unwrap()),
            "from-systemd",
        ),
    ] {
        let mut svc = fx.service(&[env]).await;
        let post = |token: Option<&str>| {
            let mut req = http
                .post(format!("{}/events", svc.http))
                .header("content-type", "application/cloudevents+json")
                .body(event.to_string());
            if let Some(t) = token {
                req = req.header("x-token", t);
            }
            req.send()
        };
        assert_eq!(post(None).await.unwrap().status(), 401, "{env:?}");
        assert_eq!(post(Some("wrong")).await.unwrap().status(), 401);
        assert_eq!(post(Some(token)).await.unwrap().status(), 202, "{env:?}");
        assert!(!svc.log().contains(token), "the token reached the log");
        let _ = svc.terminate();
    }
}

#[tokio::test]
async fn ingest_says_when_no_role_handles_an_event_and_refuses_batches() {
    let fx = Fixture::new(None, None).await;
    let svc = fx.service(&[("ROLES", "action")]).await;
    let http = reqwest::Client::new();
    let event = problem_open("Failure rate increase", "ignored-1");
    let answer = http
        .post(format!("{}/events", svc.http))
        .header("content-type", "application/cloudevents+json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["ignored"], event["id"], "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("no enabled role handles sh.keptn.event.problem.open"),
        "{body}"
    );

    let batch = http
        .post(format!("{}/events", svc.http))
        .header("content-type", "application/cloudevents-batch+json")
        .body(json!([event]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 415);
    let body: Value = batch.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("batch mode is not supported"),
        "{body}"
    );
}

#[tokio::test]
async fn metrics_addr_serves_metrics_health_and_readiness_without_ingest() {
    let fx = Fixture::new(None, None).await;
    let port = testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    let _svc = fx.service(&[("METRICS_ADDR", &addr)]).await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("http://{addr}{path}")).send();
    assert_eq!(get("/ready").await.unwrap().status(), 200);
    assert_eq!(get("/health").await.unwrap().status(), 200);
    let text = get("/metrics").await.unwrap().text().await.unwrap();
    check_exposition(&text);
    let ok = healthcheck(&format!("http://{addr}"), &[]);
    assert!(ok.status.success(), "{ok:?}");
    let ingest = http
        .post(format!("http://{addr}/events"))
        .header("content-type", "application/cloudevents+json")
        .body(problem_open("x", "metrics-addr").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ingest.status(), 404, "no ingest on METRICS_ADDR");
}
