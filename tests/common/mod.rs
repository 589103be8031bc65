//! The helpers of the test binaries that include it: the service binary as a real process, the
//! service in the test's own process, a NATS listener that records every Keptn event, resource
//! directories and events, a stand-in for another Keptn provider, the shared real Unleash
//! servers and stub HTTP servers.
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
        get(&self.http, path).await
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

/// The service in this test's own process: [`Service::build`] on port 0 with `flags` (the
/// command line of `serve`) after the defaults below, run until [`InProcess::stop`] or drop.
/// For tests that need only HTTP and NATS; those that read the log, kill the process or count
/// metrics (one registry per process) use [`Service`].
///
/// [`Service::build`]: unleash_remediation_service::service::Service::build
pub struct InProcess {
    pub http: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    pub async fn start(flags: &[String]) -> InProcess {
        use unleash_remediation_service::config::{Cli, Command};
        let defaults = [
            "--http-addr=127.0.0.1:0",
            "--shutdown-grace=5s",
            // Tests that switch flags pass their own Unleash; the others never reach this one.
            "--unleash-server-url=http://127.0.0.1:9/api",
            "--unleash-token=not-used-by-this-test",
        ];
        let line = ["unleash-remediation-service", "serve"]
            .into_iter()
            .map(str::to_owned)
            .chain(defaults.iter().map(|f| (*f).to_owned()))
            .chain(flags.iter().cloned());
        let args = match Cli::parse_args(line) {
            Ok(Cli {
                command: Command::Serve(args),
            }) => *args,
            Ok(other) => panic!("not serve: {other:?}"),
            Err(e) => panic!("settings: {e}"),
        };
        let service = unleash_remediation_service::service::Service::build(args)
            .await
            .unwrap_or_else(|e| panic!("building the service: {e:#}"));
        let http = format!("http://{}", service.http_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(service.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        InProcess {
            http,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// GET a path; (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        get(&self.http, path).await
    }

    /// Waits until /ready answers 200; panics if the service ended or 20 s passed.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.get("/ready").await.0 == 200 {
                return;
            }
            if self.task.as_ref().is_some_and(|t| t.is_finished()) {
                let ended = self.task.take().expect("task").await;
                panic!("the service ended before it was ready: {ended:?}");
            }
            assert!(Instant::now() < deadline, "not ready within 20 s");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops it as SIGTERM would and waits for the end of the shutdown; its result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("the service task"),
            None => Ok(()),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
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

impl Fixture {
    /// The command line of a service on this fixture, `extra` added last (so it wins).
    pub fn flags(&self, extra: &[&str]) -> Vec<String> {
        let mut flags = vec![
            format!("--nats-url={}", self.nats.url()),
            format!("--resource-dir={}", self.dir.path().display()),
        ];
        flags.extend(extra.iter().map(|f| (*f).to_owned()));
        flags
    }

    /// A service in this test's process on this fixture, with `extra` flags, ready.
    pub async fn in_process(&self, extra: &[&str]) -> InProcess {
        let mut svc = InProcess::start(&self.flags(extra)).await;
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

/// GET `base` + `path`; (status, body), or (0, the error) without an answer.
async fn get(base: &str, path: &str) -> (u16, String) {
    match reqwest::get(format!("{base}{path}")).await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}
