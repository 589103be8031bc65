//! The helpers of the test binaries that include it: the service binary as a real process, a
//! NATS listener that records every Keptn event, resource directories and events, a stand-in for
//! another Keptn provider, the shared real Unleash servers and stub HTTP servers.
#![allow(dead_code)]

use serde_json::Value;
use serde_json::json;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::ServiceProcess;
use testkit::unleash::{UnleashServer, UnleashVersion};
use unleash_remediation_service::unleash::UnleashClient;
use wiremock::{MockServer, Request};

pub const BIN: &str = env!("CARGO_BIN_EXE_unleash-remediation-service");

/// A test vector committed under tests/vectors.
pub fn vector(rel: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("vector is JSON")
}

/// The service binary ([`testkit::ServiceProcess`]), running with `env` after the defaults
/// below, killed on drop. Every failure panics with its log.
pub struct Service {
    process: ServiceProcess,
    pub http: String,
}

impl Service {
    pub fn spawn(env: &[(&str, String)]) -> Service {
        let defaults = [
            ("RUST_LOG", "info,unleash_remediation_service=debug"),
            ("SHUTDOWN_GRACE", "5s"),
            // Tests that switch flags pass their own Unleash; the others never reach this one.
            ("UNLEASH_SERVER_URL", "http://127.0.0.1:9/api"),
            ("UNLEASH_TOKEN", "not-used-by-this-test"),
        ];
        let env = defaults
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .chain(env.iter().map(|(k, v)| (*k, v.clone())));
        let process = ServiceProcess::spawn(BIN, env).expect("spawning the service binary");
        Service {
            http: process.http().to_owned(),
            process,
        }
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn pid(&self) -> u32 {
        assert_ne!(self.process.pid(), 0, "running");
        self.process.pid()
    }

    /// GET a path; (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        match reqwest::get(format!("{}{path}", self.http)).await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        }
    }

    /// Waits until /ready answers 200.
    pub async fn wait_ready(&mut self) {
        if let Err(e) = self
            .process
            .wait_ready(Duration::from_secs(20), Duration::from_millis(25))
            .await
        {
            panic!("{e:#}");
        }
    }

    /// Waits (up to `within`) for the process to end by itself; its exit status.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.process.exited() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM, then the exit status (killed after 15 s).
    pub fn terminate(&mut self) -> ExitStatus {
        self.process
            .terminate(Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// Records every event on `sh.keptn.>` and publishes test events.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Bus {
    pub async fn connect(url: &str) -> Bus {
        let client = async_nats::connect(url).await.expect("test NATS client");
        let mut sub = client.subscribe("sh.keptn.>").await.expect("subscribe");
        client.flush().await.expect("flush");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(msg) = sub.next().await {
                let v = serde_json::from_slice(&msg.payload).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&msg.payload).into())
                });
                sink.lock().unwrap().push(v);
            }
        });
        Bus { client, events }
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// Events of one type (full type string), in arrival order.
    pub fn of_type(&self, ty: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["type"] == ty)
            .collect()
    }

    pub async fn publish(&self, event: &Value) {
        let subject = event["type"].as_str().expect("event has a type").to_owned();
        self.publish_raw(&subject, serde_json::to_vec(event).unwrap())
            .await;
    }

    pub async fn publish_raw(&self, subject: &str, payload: Vec<u8>) {
        self.client
            .publish(subject.to_owned(), payload.into())
            .await
            .expect("publish");
        self.client.flush().await.expect("flush");
    }

    /// Waits until `count` events of `ty` arrived; returns them. Panics with every event seen.
    pub async fn wait_for(&self, ty: &str, count: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let found = self.of_type(ty);
            if found.len() >= count {
                return found;
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = self
                    .events()
                    .iter()
                    .map(|e| format!("{} {}", e["type"], e["data"]["message"]))
                    .collect();
                panic!(
                    "expected {count} × {ty} within {within:?}, got {}; events seen:\n{}",
                    found.len(),
                    seen.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A resource directory with a top-level remediation.yaml (and optionally shipyard.yaml).
pub fn resource_dir(remediation: Option<&str>, shipyard: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    if let Some(text) = remediation {
        std::fs::write(dir.path().join("remediation.yaml"), text).unwrap();
    }
    if let Some(text) = shipyard {
        std::fs::write(dir.path().join("shipyard.yaml"), text).unwrap();
    }
    dir
}

/// A problem.open for a project/stage/service with the given title and problem id.
pub fn problem_open(title: &str, problem_id: &str) -> Value {
    serde_json::json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "source": "test",
        "type": "sh.keptn.event.problem.open",
        "shkeptncontext": uuid::Uuid::new_v4().to_string(),
        "datacontenttype": "application/json",
        "data": {
            "State": "OPEN",
            "ProblemID": problem_id,
            "PID": format!("pid-{problem_id}"),
            "ProblemTitle": title,
            "project": "website",
            "stage": "production",
            "service": "front-end"
        }
    })
}

/// What most service tests start from: a nats-server, a resource directory and a bus that
/// records every event.
pub struct Fixture {
    pub nats: testkit::nats::NatsServer,
    pub dir: tempfile::TempDir,
    pub bus: Bus,
}

impl Fixture {
    pub async fn new(remediation: Option<&str>, shipyard: Option<&str>) -> Fixture {
        let nats = testkit::nats::NatsServer::start()
            .expect("nats-server (apt-get install -y nats-server)");
        let bus = Bus::connect(&nats.url()).await;
        Fixture {
            dir: resource_dir(remediation, shipyard),
            nats,
            bus,
        }
    }

    /// The environment of a service on this fixture, `extra` added last (so it wins).
    pub fn env(&self, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("NATS_URL", self.nats.url()),
            ("RESOURCE_DIR", self.dir.path().display().to_string()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    }

    /// A service on this fixture with `extra` settings, ready.
    pub async fn service(&self, extra: &[(&'static str, &str)]) -> Service {
        let mut svc = Service::spawn(&self.env(extra));
        svc.wait_ready().await;
        svc
    }
}

/// The same event again, as a new notification (a new id).
pub fn renotified(event: &Value) -> Value {
    let mut again = event.clone();
    again["id"] = serde_json::json!(uuid::Uuid::new_v4().to_string());
    again
}

/// The `sh.keptn.events.problem` that closes the problem `open` reported, with `state`
/// (CLOSED or RESOLVED).
pub fn closing(open: &Value, state: &str) -> Value {
    let mut closed = renotified(open);
    closed["type"] = serde_json::json!("sh.keptn.events.problem");
    closed["data"]["State"] = serde_json::json!(state);
    closed
}

// Other Keptn providers on the bus

/// A remediation file whose actions (`escalate`) no one in the service handles: the test answers
/// them itself with [`spawn_responder`].
pub const FOREIGN: &str = r#"apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata:
  name: outcomes
spec:
  remediations:
    - problemType: Pass me
      actionsOnOpen:
        - name: call the on-call
          action: escalate
          value: {answer: pass}
    - problemType: Fail me
      actionsOnOpen:
        - name: first try
          action: escalate
          value: {answer: fail}
        - name: second try
          action: escalate
          value: {answer: fail}
    - problemType: Fail then pass
      actionsOnOpen:
        - name: first try
          action: escalate
          value: {answer: fail}
        - name: second try
          action: escalate
          value: {answer: pass}
    - problemType: Nobody answers
      actionsOnOpen:
        - name: lonely
          action: nobody-handles-this
"#;

/// Answers every `escalate` action.triggered with started + finished as `value.answer` says.
pub fn spawn_responder(bus: &Bus) {
    let client = bus.client.clone();
    tokio::spawn(async move {
        use futures::StreamExt;
        let mut sub = client
            .subscribe("sh.keptn.event.action.triggered")
            .await
            .unwrap();
        while let Some(msg) = sub.next().await {
            let Ok(ev) = serde_json::from_slice::<Value>(&msg.payload) else {
                continue;
            };
            if ev["data"]["action"]["action"] != "escalate" {
                continue;
            }
            let pass = ev["data"]["action"]["value"]["answer"] == "pass";
            for (ty, data) in [
                ("sh.keptn.event.action.started", json!({})),
                (
                    "sh.keptn.event.action.finished",
                    json!({"status": if pass {"succeeded"} else {"errored"},
                           "result": if pass {"pass"} else {"fail"},
                           "message": if pass {"paged"} else {"pager is down"}}),
                ),
            ] {
                let mut data = data;
                for k in ["project", "stage", "service"] {
                    data[k] = ev["data"][k].clone();
                }
                let reply = json!({
                    "specversion": "1.0", "id": uuid::Uuid::new_v4().to_string(),
                    "source": "test-responder", "type": ty,
                    "shkeptncontext": ev["shkeptncontext"], "triggeredid": ev["id"],
                    "datacontenttype": "application/json", "data": data
                });
                client
                    .publish(ty, serde_json::to_vec(&reply).unwrap().into())
                    .await
                    .unwrap();
            }
        }
    });
}

/// An `action.triggered` for the toggle-feature provider with `value` and `labels`.
pub fn toggle_triggered(value: Value, labels: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "source": "test",
        "type": "sh.keptn.event.action.triggered",
        "shkeptncontext": uuid::Uuid::new_v4().to_string(),
        "datacontenttype": "application/json",
        "data": {
            "project": "website", "stage": "production", "service": "front-end",
            "labels": labels,
            "action": {"name": "switch", "action": "toggle-feature", "value": value},
            "problem": {"ProblemTitle": "t"}
        }
    })
}

/// The sum of the series of metric `name` whose line contains `filter` (pre-registered series
/// are there with 0 from the start).
pub fn metric_sum(metrics: &str, name: &str, filter: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// The shared real Unleash servers

/// The Unleash 7.5.1 this test binary shares (started on first use).
pub fn unleash() -> &'static UnleashServer {
    unleash_of(UnleashVersion::V7)
}

/// The Unleash of `version` this test binary shares (started on first use).
pub fn unleash_of(version: UnleashVersion) -> &'static UnleashServer {
    UnleashServer::shared(version).unwrap_or_else(|e| {
        panic!(
            "real Unleash {} (see the error for how to install it): {e:#}",
            version.npm_version()
        )
    })
}

/// A new flag in the shared Unleash 7.5.1.
pub async fn create_flag(name: &str) {
    create_flag_in(unleash(), name).await;
}

pub async fn create_flag_in(u: &UnleashServer, name: &str) {
    let client = UnleashClient::new(u.admin_config()).unwrap();
    client.create_flag(name).await.unwrap();
}

/// The service's settings for Unleash `u`.
pub fn unleash_env(u: &UnleashServer) -> Vec<(&'static str, String)> {
    vec![
        ("UNLEASH_SERVER_URL", u.base_url()),
        ("UNLEASH_TOKEN", u.admin_token().to_owned()),
    ]
}

// Stub HTTP servers (wiremock)

/// Waits until the stub `server` received `count` requests; returns them. Panics with what it
/// received after `within`.
pub async fn wait_requests(server: &MockServer, count: usize, within: Duration) -> Vec<Request> {
    let deadline = Instant::now() + within;
    loop {
        let got = server.received_requests().await.unwrap_or_default();
        if got.len() >= count {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "expected {count} requests within {within:?}, got {}: {:#?}",
            got.len(),
            got.iter()
                .map(|r| (
                    r.url.path().to_owned(),
                    String::from_utf8_lossy(&r.body).into_owned()
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request's JSON body.
pub fn body(r: &Request) -> Value {
    serde_json::from_slice(&r.body).expect("JSON body")
}
