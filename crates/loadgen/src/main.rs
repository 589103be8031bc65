//! Load generator for the whole service: the release binary against a real `nats-server` (and,
//! for the end-to-end scenario, a real Unleash 7.5.1), all on 127.0.0.1, started through the
//! test kit and stopped at the end.
//!
//! ```text
//! cargo build --release -p unleash-remediation-service -p loadgen --bins
//! target/release/loadgen all            # every scenario, Markdown table on stdout
//! target/release/loadgen e2e|overhead|storm|get-action|startup [--n N]
//! target/release/loadgen problems [--n 50000]   # RSS after N distinct problems
//! target/release/loadgen post-cadence [--n N]
//! ```
//!
//! Scenarios (see BENCHMARKS.md):
//! - `e2e`: problem.open → remediation.finished, one problem at a time, each with its own
//!   ProblemID (so each one toggles the flag in Unleash), plus the floor in the same run: a
//!   NATS request/reply round trip and the same Unleash POST + confirming GET with plain reqwest;
//!   then the time to flag switched, and both again with `READ_BEFORE_SWITCH=false`. The
//!   service's samples and the floors' are taken in interleaved rounds, as Unleash's speed drifts.
//! - `overhead`: the same with an instant local HTTP responder instead of Unleash, beside two
//!   floors of what the service promises, sent by a plain client (the OPEN's hop, the claim with
//!   the read beside it, the switch, the read-back, the outcome's write in core mode, the hop
//!   back; then the same with the events and key-value writes the service sends beside them),
//!   and the service's CPU time and context switches per remediation.
//! - `storm`: 100,000 problem.open over 1,000 problems, core and JetStream mode, instant responder.
//! - `get-action`: get-action.triggered → get-action.finished (ROLES=get-action).
//! - `startup`: process start → `/ready` 200, idle RSS.
//! - `post-cadence` (not in `all`): Unleash's answer to the same switch by what precedes it
//!   (idle time, a busy client, a GET, the service's headers).
//!
//! The service binary is `target/release/unleash-remediation-service` (override with
//! `SERVICE_BIN`). Every loop is bounded in count and time.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use testkit::nats::NatsServer;
use testkit::unleash::{UnleashServer, UnleashVersion};
use testkit::{ServiceProcess, repo_root};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use unleash_remediation_service::telemetry::METRIC_PREFIX;
use unleash_remediation_service::unleash::UnleashClient;

const STAGE: &str = "production";
const TITLE: &str = "Failure rate increase";
const WARM_UP: usize = 20;

// ---------------------------------------------------------------------------------------------
// Results

/// One row of the output table.
struct Row {
    scenario: String,
    metric: String,
    value: String,
    note: String,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn add(&mut self, scenario: &str, metric: &str, value: String, note: impl Into<String>) {
        let row = Row {
            scenario: scenario.into(),
            metric: metric.into(),
            value,
            note: note.into(),
        };
        eprintln!(
            "  {} | {} | {} | {}",
            row.scenario, row.metric, row.value, row.note
        );
        self.rows.push(row);
    }

    fn latencies(&mut self, scenario: &str, what: &str, samples: &[Duration], note: &str) {
        let s = Stats::of(samples);
        self.add(
            scenario,
            &format!("{what} p50 / p90 / p99 / max (n={})", samples.len()),
            format!(
                "{} / {} / {} / {}",
                ms(s.p50),
                ms(s.p90),
                ms(s.p99),
                ms(s.max)
            ),
            note,
        );
    }

    fn print(&self) {
        println!("| scenario | metric | value | note |");
        println!("|---|---|---|---|");
        for r in &self.rows {
            println!(
                "| {} | {} | {} | {} |",
                r.scenario, r.metric, r.value, r.note
            );
        }
    }
}

#[derive(Clone, Copy)]
struct Stats {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    fn of(samples: &[Duration]) -> Stats {
        let mut v = samples.to_vec();
        v.sort();
        let pick = |q: f64| {
            if v.is_empty() {
                return Duration::ZERO;
            }
            // Nearest rank.
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1]
        };
        Stats {
            p50: pick(0.50),
            p90: pick(0.90),
            p99: pick(0.99),
            max: v.last().copied().unwrap_or_default(),
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------------------------------------
// The service as a process

struct ServiceOpts<'a> {
    nats_url: &'a str,
    unleash_url: &'a str,
    unleash_token: &'a str,
    unleash_api: &'a str,
    mode: &'a str,
    roles: &'a str,
    resource_dir: &'a std::path::Path,
}

fn service_bin() -> PathBuf {
    std::env::var_os("SERVICE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release/unleash-remediation-service"))
}

fn spawn_service(o: &ServiceOpts) -> Result<ServiceProcess> {
    spawn_service_with(o, &[])
}

/// [`spawn_service`] with more settings.
fn spawn_service_with(o: &ServiceOpts, more: &[(&str, &str)]) -> Result<ServiceProcess> {
    let bin = service_bin();
    if !bin.is_file() {
        bail!(
            "{} is missing: run `cargo build --release --bins` first",
            bin.display()
        );
    }
    let mut env: Vec<(&str, std::ffi::OsString)> = vec![
        ("NATS_URL", o.nats_url.into()),
        ("NATS_MODE", o.mode.into()),
        ("ROLES", o.roles.into()),
        ("RESOURCE_DIR", o.resource_dir.into()),
        ("UNLEASH_SERVER_URL", o.unleash_url.into()),
        ("UNLEASH_TOKEN", o.unleash_token.into()),
        ("UNLEASH_API", o.unleash_api.into()),
        // A fresh consumer/stream/bucket name per process, so runs do not see each other.
        (
            "PUBSUB_GROUP",
            format!(
                "loadgen-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            )
            .into(),
        ),
        ("SHUTDOWN_GRACE", "2s".into()),
    ];
    env.extend(more.iter().map(|(k, v)| (*k, (*v).into())));
    // Stopped with SIGTERM, as a service manager would: a profiler it runs under
    // (`scripts/hot-code`) writes its record when the process exits.
    let mut svc = ServiceProcess::spawn(bin, env)?;
    svc.terminate_on_drop();
    Ok(svc)
}

/// Polls `/ready` every 2 ms (20 s at most); the time since spawn when it answered 200.
async fn wait_ready(svc: &mut ServiceProcess) -> Result<Duration> {
    svc.wait_ready(Duration::from_secs(20), Duration::from_millis(2))
        .await
}

/// A counter from `/metrics`: the sum of every series of `name` (without the service's
/// `unleash_remediation_` prefix) whose labels contain `label`.
async fn metric(
    svc: &ServiceProcess,
    http: &reqwest::Client,
    name: &str,
    label: &str,
) -> Result<f64> {
    let name = format!("{METRIC_PREFIX}_{name}");
    let text = http
        .get(format!("{}/metrics", svc.http()))
        .send()
        .await?
        .text()
        .await?;
    let mut sum = 0.0;
    for line in text.lines() {
        let series =
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "));
        if series
            && line.contains(label)
            && let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok())
        {
            sum += v;
        }
    }
    Ok(sum)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Events

fn remediation_yaml(flag: &str) -> String {
    format!(
        r#"apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata:
  name: loadgen
spec:
  remediations:
    - problemType: default
      actionsOnOpen:
        - name: toggle
          action: toggle-feature
          value:
            {flag}: "on"
"#
    )
}

fn resource_dir(flag: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("remediation.yaml"), remediation_yaml(flag))?;
    Ok(dir)
}

fn problem_open(problem_id: &str, context: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "source": "loadgen",
        "type": "sh.keptn.event.problem.open",
        "shkeptncontext": context,
        "datacontenttype": "application/json",
        "data": {
            "State": "OPEN",
            "ProblemID": problem_id,
            "PID": format!("pid-{problem_id}"),
            "ProblemTitle": TITLE,
            "project": "website",
            "stage": STAGE,
            "service": "front-end"
        }
    })
}

fn get_action_triggered(context: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "source": "loadgen",
        "type": "sh.keptn.event.get-action.triggered",
        "shkeptncontext": context,
        "datacontenttype": "application/json",
        "data": {
            "project": "website",
            "stage": STAGE,
            "service": "front-end",
            "problem": {"problemTitle": TITLE, "ProblemID": context},
            "get-action": {"actionIndex": 0}
        }
    })
}

/// Publishes `event` and waits (up to `within`) for an event of `reply_type` in the same
/// `shkeptncontext` on `sub`; the time from publish to arrival.
async fn round_trip(
    nats: &async_nats::Client,
    sub: &mut async_nats::Subscriber,
    event: &Value,
    reply_type: &str,
    within: Duration,
) -> Result<(Duration, Value)> {
    let context = event["shkeptncontext"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let subject = event["type"].as_str().unwrap_or_default().to_owned();
    let payload = Bytes::from(serde_json::to_vec(event)?);
    let t0 = Instant::now();
    nats.publish(subject, payload).await?;
    nats.flush().await?;
    let deadline = t0 + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, sub.next())
            .await
            .with_context(|| format!("no {reply_type} for {context} within {within:?}"))?
            .context("subscription closed")?;
        let elapsed = t0.elapsed();
        let v: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
        if v["type"] == reply_type && v["shkeptncontext"] == context.as_str() {
            return Ok((elapsed, v));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Instant Unleash stand-in

/// A minimal HTTP/1.1 server with keep-alive: 200 to every request; the read of the flag's
/// environment answers it on. Counts requests.
async fn instant_responder() -> Result<(String, Arc<AtomicU64>)> {
    let (url, count, _) = responder(None).await?;
    Ok((url, count))
}

/// When the last toggle request (a POST) reached the responder, and when it was answered.
type Switched = Arc<std::sync::Mutex<Option<Post>>>;

#[derive(Clone, Copy)]
struct Post {
    arrived: Instant,
    answered: Instant,
}

impl Post {
    /// The last POST `switched` noted, if any.
    fn last(switched: Option<&Switched>) -> Option<Post> {
        switched.and_then(|s| *s.lock().unwrap())
    }

    /// Its own time, from its arrival at the responder to its answer.
    fn took(&self) -> Duration {
        self.answered.saturating_duration_since(self.arrived)
    }
}

/// A local HTTP/1.1 server on 127.0.0.1: with `upstream` (an Unleash base URL ending in `/api`)
/// it forwards every request there and returns Unleash's answer; without, it answers at once
/// (a GET with the flag on, anything else `{}`). It counts requests and notes when each POST
/// arrived and was answered (for "time to flag switched", and the POST's own time as it saw
/// it). Returns its base URL (`…/api`).
async fn responder(upstream: Option<String>) -> Result<(String, Arc<AtomicU64>, Switched)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let count = Arc::new(AtomicU64::new(0));
    let switched: Switched = Default::default();
    let counter = count.clone();
    let switched_at = switched.clone();
    let forward = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let upstream = upstream.map(|u| u.trim_end_matches("/api").to_owned());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let _ = sock.set_nodelay(true);
            let (counter, switched_at) = (counter.clone(), switched_at.clone());
            let (forward, upstream) = (forward.clone(), upstream.clone());
            tokio::spawn(async move {
                let mut buf: Vec<u8> = Vec::with_capacity(4096);
                let mut chunk = [0u8; 4096];
                loop {
                    // One request: headers up to CRLFCRLF, then Content-Length bytes of body.
                    let head_end = loop {
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p + 4;
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let header = |name: &str| {
                        head.lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                        })
                    };
                    let body_len = header("content-length")
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + body_len {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let arrived = Instant::now();
                    let body = buf[head_end..head_end + body_len].to_vec();
                    buf.drain(..head_end + body_len);
                    counter.fetch_add(1, Ordering::Relaxed);
                    let is_post = head.starts_with("POST ");
                    let (status, answer) = match &upstream {
                        None if head.starts_with("GET ") => (
                            200,
                            br#"{"name":"flag","environment":"production","enabled":true,"strategies":[]}"#.to_vec(),
                        ),
                        None => (200, b"{}".to_vec()),
                        Some(base) => {
                            let mut parts = head.split_whitespace();
                            let (method, target) = (parts.next().unwrap_or("GET"), parts.next().unwrap_or("/"));
                            let method = reqwest::Method::from_bytes(method.as_bytes())
                                .unwrap_or(reqwest::Method::GET);
                            let mut req = forward.request(method, format!("{base}{target}")).body(body);
                            for name in ["authorization", "content-type", "accept"] {
                                if let Some(v) = header(name) {
                                    req = req.header(name, v);
                                }
                            }
                            match req.send().await {
                                Ok(r) => {
                                    let status = r.status().as_u16();
                                    (status, r.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
                                }
                                Err(_) => (502, b"{}".to_vec()),
                            }
                        }
                    };
                    if is_post {
                        let answered = Instant::now();
                        *switched_at.lock().unwrap() = Some(Post { arrived, answered });
                    }
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        answer.len()
                    );
                    let mut out = response.into_bytes();
                    out.extend_from_slice(&answer);
                    if sock.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((format!("http://{addr}/api"), count, switched))
}

// ---------------------------------------------------------------------------------------------
// Floors

/// NATS request/reply round trips between two separate connections (n, after a warm-up).
async fn nats_floor(url: &str, n: usize) -> Result<Vec<Duration>> {
    let responder = async_nats::connect(url).await?;
    let requester = async_nats::connect(url).await?;
    let mut sub = responder.subscribe("loadgen.floor").await?;
    responder.flush().await?;
    let r = responder.clone();
    let task = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                let _ = r.publish(reply, msg.payload).await;
            }
        }
    });
    // A payload the size of a problem.open.
    let payload = Bytes::from(serde_json::to_vec(&problem_open("floor", "ctx"))?);
    let mut out = Vec::with_capacity(n);
    let mut retried = 0;
    for i in 0..n + WARM_UP {
        // "No responders" (the server did not see the responder's interest yet) is asked again,
        // a bounded number of times; a sample times the request that was answered.
        let mut tries = 0;
        let t0 = loop {
            let t0 = Instant::now();
            let answer = tokio::time::timeout(
                Duration::from_secs(5),
                requester.request("loadgen.floor", payload.clone()),
            )
            .await
            .context("NATS floor request timed out")?;
            match answer {
                Ok(_) => break t0,
                Err(e)
                    if e.kind() == async_nats::client::RequestErrorKind::NoResponders
                        && tries < 100 =>
                {
                    tries += 1;
                    retried += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => return Err(e).context("NATS floor request"),
            }
        };
        if i >= WARM_UP {
            out.push(t0.elapsed());
        }
    }
    if retried > 0 {
        eprintln!("NATS floor: {retried} request(s) found no responder and were asked again");
    }
    task.abort();
    Ok(out)
}

/// What the service's promises cost at least, each step sent by a plain client as soon as the
/// one it depends on is answered: the OPEN's hop; the claim (a key-value create in a bucket
/// made like the service's) with the read before the switch beside it; the switch; its
/// read-back; in core mode the outcome's write (with JetStream the service writes it after
/// remediation.finished); and the hop of remediation.finished. Both hops are plain NATS hops
/// (a NATS request answered after the steps), less than a stream's delivery and
/// confirmation, so in JetStream mode this floor is lower than what the service could reach.
///
/// `with_messages` adds what the protocol and the state send beside those steps, as the service
/// sends them, each as soon as it can go: remediation.triggered, status.changed and
/// action.triggered after the claim, action.started and action.finished after the read-back,
/// every one also received by a subscriber of the same client (as the service's own
/// subscriptions receive its events); after the end, in JetStream mode the finished mark, then
/// the handled event id written and the record deleted; and a watch of the bucket receiving
/// every write. The events are plain publishes to subjects of their own (no service sees them,
/// no stream keeps them), again less than JetStream mode's stored and confirmed events.
async fn durable_floor(
    url: &str,
    responder: &str,
    n: usize,
    mode: &str,
    with_messages: bool,
) -> Result<Vec<Duration>> {
    let worker = async_nats::connect(url).await?;
    let requester = async_nats::connect(url).await?;
    let js = async_nats::jetstream::new(worker.clone());
    let bucket = if with_messages { "floor_m" } else { "floor" };
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        storage: async_nats::jetstream::stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await?;
    let kv = js.get_key_value(bucket).await?;
    let http = plain_http()?;
    let environment = environment_url(responder, "LoadFlag");
    let switch = format!("{environment}/on");
    let outcome_on_path = mode == "core";
    let subject = format!("loadgen.durable.{bucket}");
    let mut sub = worker.subscribe(subject.clone()).await?;
    let mut beside = vec![];
    if with_messages {
        let mut own = worker.subscribe(format!("loadgen.{bucket}.>")).await?;
        beside.push(tokio::spawn(
            async move { while own.next().await.is_some() {} },
        ));
        let mut watch = kv.watch(">").await?;
        beside.push(tokio::spawn(async move {
            while watch.next().await.is_some() {}
        }));
    }
    worker.flush().await?;
    let w = worker.clone();
    let events = move |types: &'static [&'static str], payload: Bytes| {
        let w = w.clone();
        async move {
            if with_messages {
                for t in types {
                    let _ = w
                        .publish(format!("loadgen.{bucket}.{t}"), payload.clone())
                        .await;
                }
            }
        }
    };
    let w = worker.clone();
    let task = tokio::spawn(async move {
        let mut i = 0u64;
        while let Some(msg) = sub.next().await {
            i += 1;
            let key = format!("p.{i}");
            let read = async { http.get(&environment).send().await?.bytes().await };
            let (claim, read) = tokio::join!(kv.create(&key, msg.payload.clone()), read);
            let (Ok(rev), Ok(_)) = (claim, read) else {
                continue;
            };
            events(&["triggered", "status", "action"], msg.payload.clone()).await;
            let step = async {
                http.post(&switch)
                    .json(&json!({}))
                    .send()
                    .await?
                    .bytes()
                    .await?;
                http.get(&environment).send().await?.bytes().await
            };
            if step.await.is_err() {
                continue;
            }
            events(&["started", "finished"], msg.payload.clone()).await;
            if outcome_on_path && kv.update(&key, msg.payload.clone(), rev).await.is_err() {
                continue;
            }
            if let Some(reply) = msg.reply {
                let _ = w.publish(reply, msg.payload.clone()).await;
            }
            if with_messages {
                if !outcome_on_path {
                    // The finished mark, which JetStream mode writes after the end.
                    let _ = kv.update(&key, msg.payload.clone(), rev).await;
                }
                let _ = kv.put(format!("e.{i}"), msg.payload.clone()).await;
                let _ = kv.delete(&key).await;
            }
        }
    });
    let payload = Bytes::from(serde_json::to_vec(&problem_open("floor", "ctx"))?);
    let mut out = Vec::with_capacity(n);
    for i in 0..n + WARM_UP {
        let t0 = Instant::now();
        tokio::time::timeout(
            Duration::from_secs(5),
            requester.request(subject.clone(), payload.clone()),
        )
        .await
        .context("durable floor request timed out")?
        .context("durable floor request")?;
        if i >= WARM_UP {
            out.push(t0.elapsed());
        }
    }
    task.abort();
    for t in beside {
        t.abort();
    }
    Ok(out)
}

/// The plain HTTP client of the floors: reqwest's defaults and a 5 s timeout.
fn plain_http() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?)
}

/// The flag's one environment (`STAGE`) in Unleash's admin API under `base`: what the service
/// reads before and after a switch; `…/on` switches it.
fn environment_url(base: &str, flag: &str) -> String {
    format!("{base}/admin/projects/default/features/{flag}/environments/{STAGE}")
}

/// The Unleash requests of one toggle as the service sends them (POST …/on, then GET the
/// feature), with a plain reqwest client. Returns durations and the status codes seen.
async fn unleash_floor(
    base: &str,
    token: &str,
    flag: &str,
    n: usize,
    switched: Option<&Switched>,
) -> Result<(Vec<Duration>, Vec<Duration>, Vec<(u16, u16)>)> {
    let http = plain_http()?;
    // The read-back the service sends: the flag's one environment.
    let get = environment_url(base, flag);
    let post = format!("{get}/on");
    let (mut out, mut seen) = (Vec::with_capacity(n), vec![]);
    let mut statuses = Vec::new();
    for i in 0..n + WARM_UP {
        let t0 = Instant::now();
        let a = http
            .post(&post)
            .header("Authorization", token)
            .json(&json!({}))
            .send()
            .await?;
        let sa = a.status().as_u16();
        let _ = a.bytes().await?;
        let b = http.get(&get).header("Authorization", token).send().await?;
        let sb = b.status().as_u16();
        let _ = b.bytes().await?;
        if i >= WARM_UP {
            out.push(t0.elapsed());
            seen.extend(Post::last(switched).map(|at| at.took()));
        }
        if i < 3 || !statuses.contains(&(sa, sb)) {
            statuses.push((sa, sb));
        }
    }
    Ok((out, seen, statuses))
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// problem.open → remediation.finished, one at a time, distinct ProblemIDs.
async fn sequential_remediations(
    svc_nats: &str,
    n: usize,
    label: &str,
) -> Result<(Vec<Duration>, usize)> {
    let r = sequential_remediations_switched(svc_nats, n, label, None).await?;
    Ok((r.e2e, r.not_pass))
}

/// What [`sequential_remediations_switched`] measured, one sample per remediation.
struct Remediations {
    /// problem.open published → remediation.finished received.
    e2e: Vec<Duration>,
    /// problem.open published → the toggle (POST) answered.
    to_switch: Vec<Duration>,
    /// problem.open published → the POST reached the responder: the service's part.
    to_post: Vec<Duration>,
    /// The POST's own time, from its arrival at the responder to its answer.
    post: Vec<Duration>,
    not_pass: usize,
}

/// [`sequential_remediations`], also noting for each one when its toggle reached the responder
/// and when it was answered (`switched`, set by [`responder`]).
async fn sequential_remediations_switched(
    svc_nats: &str,
    n: usize,
    label: &str,
    switched: Option<&Switched>,
) -> Result<Remediations> {
    let (mut to_switch, mut to_post, mut post) = (vec![], vec![], vec![]);
    let nats = async_nats::connect(svc_nats).await?;
    let mut sub = nats
        .subscribe("sh.keptn.event.remediation.finished")
        .await?;
    nats.flush().await?;
    let mut out = Vec::with_capacity(n);
    let mut not_pass = 0;
    for i in 0..n + WARM_UP {
        let context = uuid::Uuid::new_v4().to_string();
        let event = problem_open(&format!("{label}-{i}-{}", &context[..8]), &context);
        if let Some(s) = switched {
            *s.lock().unwrap() = None;
        }
        let t0 = Instant::now();
        let (d, finished) = round_trip(
            &nats,
            &mut sub,
            &event,
            "sh.keptn.event.remediation.finished",
            Duration::from_secs(30),
        )
        .await?;
        if finished["data"]["result"] != "pass" {
            not_pass += 1;
            if not_pass == 1 {
                eprintln!(
                    "  first non-pass remediation.finished: {}",
                    finished["data"]
                );
            }
        }
        if i >= WARM_UP {
            out.push(d);
            if let Some(at) = Post::last(switched) {
                to_switch.push(at.answered.saturating_duration_since(t0));
                to_post.push(at.arrived.saturating_duration_since(t0));
                post.push(at.took());
            }
        }
    }
    Ok(Remediations {
        e2e: out,
        to_switch,
        to_post,
        post,
        not_pass,
    })
}

/// The setting that leaves out the read before each switch.
const NO_READ_BEFORE: (&str, &str) = ("READ_BEFORE_SWITCH", "false");

async fn scenario_e2e(report: &mut Report, n: usize, mode: &str) -> Result<()> {
    eprintln!("e2e: starting Unleash 7.5.1 (and PostgreSQL) through the test kit…");
    let t = Instant::now();
    let unleash = UnleashServer::start(UnleashVersion::V7)?;
    eprintln!(
        "  Unleash up in {:.1?} at {}",
        t.elapsed(),
        unleash.base_url()
    );
    // Two services at once, each on a nats-server of its own (both would answer every event on
    // one): the default and one with READ_BEFORE_SWITCH=false.
    let (nats_a, nats_b) = (NatsServer::start()?, NatsServer::start()?);
    let flag = format!(
        "LoadFlag-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let client = UnleashClient::new(unleash.admin_config())?;
    client.create_flag(&flag).await?;
    let dir = resource_dir(&flag)?;
    let (url_a, url_b) = (nats_a.url(), nats_b.url());
    let opts = |nats_url, unleash_url, unleash_api| ServiceOpts {
        nats_url,
        unleash_url,
        unleash_token: unleash.admin_token(),
        unleash_api,
        mode,
        roles: "remediator,get-action,action",
        resource_dir: dir.path(),
    };
    let base = unleash.base_url();
    let mut svc = spawn_service(&opts(&url_a, &base, "auto"))?;
    let mut svc_no_read = spawn_service_with(&opts(&url_b, &base, "auto"), &[NO_READ_BEFORE])?;
    wait_ready(&mut svc).await?;
    wait_ready(&mut svc_no_read).await?;

    // Unleash's own speed drifts over minutes, so every measure is taken in the same ROUNDS
    // rounds, one after another within each: a ratio compares samples of the same minutes.
    let chunk = n.div_ceil(E2E_ROUNDS).max(1);
    let (mut e2e, mut e2e_no_read, mut nats, mut toggle, mut read) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut not_pass, mut not_pass_no_read, mut statuses) = (0, 0, vec![]);
    for round in 0..E2E_ROUNDS {
        for (url, out, failed, label) in [
            (&url_a, &mut e2e, &mut not_pass, "e2e"),
            (&url_b, &mut e2e_no_read, &mut not_pass_no_read, "e2e-nr"),
        ] {
            let (d, np) = sequential_remediations(url, chunk, &format!("{label}-{round}")).await?;
            out.extend(d);
            *failed += np;
        }
        nats.extend(nats_floor(&url_a, chunk).await?);
        let (t, _, s) = unleash_floor(&base, unleash.admin_token(), &flag, chunk, None).await?;
        toggle.extend(t);
        // Every status any round saw, not only the last round's.
        for st in s {
            if !statuses.contains(&st) {
                statuses.push(st);
            }
        }
        read.extend(
            unleash_timed(&base, unleash.admin_token(), &flag, chunk, false, None)
                .await?
                .0,
        );
    }
    drop((svc, svc_no_read));
    let floor: Vec<Duration> = nats.iter().zip(&toggle).map(|(a, b)| *a + *b).collect();
    let with_read: Vec<Duration> = floor.iter().zip(&read).map(|(a, b)| *a + *b).collect();

    let sc = format!("1. end-to-end, real Unleash 7.5.1 ({mode})");
    let rounds = format!("{E2E_ROUNDS} interleaved rounds");
    report.latencies(
        &sc,
        "problem.open → remediation.finished",
        &e2e,
        &format!("{not_pass} not pass; flag {flag} on in `{STAGE}`; {rounds}"),
    );
    report.latencies(&sc, "floor: NATS request/reply", &nats, "2 connections");
    report.latencies(
        &sc,
        "floor: Unleash POST on + GET (reqwest)",
        &toggle,
        &format!("status (POST, GET) seen: {statuses:?}"),
    );
    report.latencies(&sc, "floor: NATS + Unleash (per-sample sum)", &floor, "");
    // The service also reads the flag before switching it (for `from` in action.finished):
    // one more GET than the floor above.
    report.latencies(
        &sc,
        "floor + the read before the switch (GET)",
        &with_read,
        "what the service's requests cost at least",
    );
    ratio_row(
        report,
        &sc,
        "ratio e2e p50 / floor p50",
        &e2e,
        &floor,
        Some(1.15),
    );
    ratio_row(
        report,
        &sc,
        "ratio e2e p50 / (floor + read) p50",
        &e2e,
        &with_read,
        None,
    );
    report.latencies(
        &sc,
        "READ_BEFORE_SWITCH=false: problem.open → remediation.finished",
        &e2e_no_read,
        &format!("{not_pass_no_read} not pass; same rounds"),
    );
    ratio_row(
        report,
        &sc,
        "READ_BEFORE_SWITCH=false: ratio e2e p50 / floor p50",
        &e2e_no_read,
        &floor,
        Some(1.15),
    );

    // Time to flag switched: the same two services behind a forwarding responder that notes
    // when Unleash answered each POST; its floor is a NATS hop plus one POST through the same
    // responder. Again in interleaved rounds.
    let (proxy, _, switched) = responder(Some(base.clone())).await?;
    let mut svc = spawn_service(&opts(&url_a, &proxy, "v4"))?;
    let mut svc_no_read = spawn_service_with(&opts(&url_b, &proxy, "v4"), &[NO_READ_BEFORE])?;
    wait_ready(&mut svc).await?;
    wait_ready(&mut svc_no_read).await?;
    let (mut to_switch, mut to_switch_no_read, mut switch_floor) = (vec![], vec![], vec![]);
    // Where the time to flag switched goes: until the POST reaches the responder (the service),
    // and the POST itself as the responder timed it, against the floor's POST timed the same way.
    let (mut to_post, mut to_post_no_read) = (vec![], vec![]);
    let (mut post, mut post_no_read, mut post_floor) = (vec![], vec![], vec![]);
    let mut post_floor_read_back = vec![];
    for round in 0..E2E_ROUNDS {
        for (url, out, before, took, label) in [
            (&url_a, &mut to_switch, &mut to_post, &mut post, "sw"),
            (
                &url_b,
                &mut to_switch_no_read,
                &mut to_post_no_read,
                &mut post_no_read,
                "sw-nr",
            ),
        ] {
            let label = format!("{label}-{round}");
            let r = sequential_remediations_switched(url, chunk, &label, Some(&switched)).await?;
            out.extend(r.to_switch);
            before.extend(r.to_post);
            took.extend(r.post);
        }
        let hops = nats_floor(&url_a, chunk).await?;
        let (d, seen, _) = unleash_timed(
            &proxy,
            unleash.admin_token(),
            &flag,
            chunk,
            true,
            Some(&switched),
        )
        .await?;
        switch_floor.extend(hops.iter().zip(&d).map(|(a, b)| *a + *b));
        post_floor.extend(seen);
        // The same POSTs, each followed by the read-back as the service sends it: whether
        // Unleash answers a POST that follows a GET more slowly.
        let (_, seen, _) =
            unleash_floor(&proxy, unleash.admin_token(), &flag, chunk, Some(&switched)).await?;
        post_floor_read_back.extend(seen);
    }
    drop((svc, svc_no_read));
    report.latencies(
        &sc,
        "problem.open → Unleash answered the toggle (through the forwarding responder)",
        &to_switch,
        &rounds,
    );
    report.latencies(
        &sc,
        "floor: NATS hop + one POST (same responder)",
        &switch_floor,
        "",
    );
    ratio_row(
        report,
        &sc,
        "ratio time to flag switched p50 / floor p50",
        &to_switch,
        &switch_floor,
        Some(1.1),
    );
    report.latencies(
        &sc,
        "READ_BEFORE_SWITCH=false: problem.open → Unleash answered the toggle",
        &to_switch_no_read,
        "same rounds",
    );
    ratio_row(
        report,
        &sc,
        "READ_BEFORE_SWITCH=false: ratio time to flag switched p50 / floor p50",
        &to_switch_no_read,
        &switch_floor,
        Some(1.1),
    );
    report.latencies(
        &sc,
        "problem.open → the POST reached the responder (the service's part)",
        &to_post,
        "",
    );
    report.latencies(
        &sc,
        "READ_BEFORE_SWITCH=false: problem.open → the POST reached the responder",
        &to_post_no_read,
        "",
    );
    report.latencies(
        &sc,
        "the POST as the responder timed it (arrival → Unleash's answer), the service's",
        &post,
        "",
    );
    report.latencies(
        &sc,
        "READ_BEFORE_SWITCH=false: the POST as the responder timed it",
        &post_no_read,
        "",
    );
    report.latencies(
        &sc,
        "the floor's POST as the responder timed it",
        &post_floor,
        "",
    );
    report.latencies(
        &sc,
        "the floor's POST as the responder timed it, each followed by the read-back GET",
        &post_floor_read_back,
        "",
    );
    drop(unleash);
    Ok(())
}

/// Rounds of scenario 1: each measure takes n / E2E_ROUNDS samples per round.
const E2E_ROUNDS: usize = 10;

/// A report row: the p50 of `measured` over the p50 of `floor`, against `target` when given.
fn ratio_row(
    report: &mut Report,
    sc: &str,
    name: &str,
    measured: &[Duration],
    floor: &[Duration],
    target: Option<f64>,
) {
    let ratio = Stats::of(measured).p50.as_secs_f64() / Stats::of(floor).p50.as_secs_f64();
    let note = target.map_or_else(String::new, |t| {
        format!(
            "target ≤ {t}× — {}",
            if ratio <= t { "met" } else { "NOT met" }
        )
    });
    report.add(sc, name, format!("{ratio:.2}×"), note);
}

/// One Unleash request, timed n times after a warm-up: the read of a flag (`post` false: the
/// service's read before a switch) or the switch on alone (`post` true). Durations, the POST's
/// own times as the forwarding responder behind `switched` saw them, and the last status.
async fn unleash_timed(
    base: &str,
    token: &str,
    flag: &str,
    n: usize,
    post: bool,
    switched: Option<&Switched>,
) -> Result<(Vec<Duration>, Vec<Duration>, u16)> {
    let http = plain_http()?;
    let environment = environment_url(base, flag);
    let switch = format!("{environment}/on");
    let (mut out, mut seen) = (Vec::with_capacity(n), vec![]);
    let mut status = 0;
    for i in 0..n + WARM_UP {
        let request = if post {
            http.post(&switch).json(&json!({}))
        } else {
            http.get(&environment)
        };
        let t0 = Instant::now();
        let r = request.header("Authorization", token).send().await?;
        status = r.status().as_u16();
        let _ = r.bytes().await?;
        if i >= WARM_UP {
            out.push(t0.elapsed());
            seen.extend(Post::last(switched).map(|at| at.took()));
        }
    }
    Ok((out, seen, status))
}

/// What a process has used so far, all its threads together: CPU time (user and system, from
/// `/proc/<pid>/stat`) and context switches (voluntary and not, from each thread's `status`;
/// a thread that ended in between takes its own switches with it). Zero where `/proc` cannot be
/// read.
struct Usage {
    cpu: Duration,
    switches: u64,
}

impl Usage {
    fn of(pid: u32) -> Usage {
        // utime and stime, the 14th and 15th fields, counted after the command's closing ')'.
        let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let rest = &stat[stat.rfind(')')? + 1..];
                let fields: Vec<&str> = rest.split_whitespace().collect();
                Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let switches = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
            .flat_map(|status| {
                status
                    .lines()
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .sum();
        Usage {
            cpu: Duration::from_millis(ticks * 1000 / per_second),
            switches,
        }
    }

    fn since(&self, before: &Usage) -> Usage {
        Usage {
            cpu: self.cpu.saturating_sub(before.cpu),
            switches: self.switches.saturating_sub(before.switches),
        }
    }
}

/// Returns p50 and p99 of problem.open → remediation.finished.
async fn scenario_overhead(
    report: &mut Report,
    n: usize,
    mode: &str,
) -> Result<(Duration, Duration)> {
    let nats_server = NatsServer::start()?;
    let (responder, requests, switched) = responder(None).await?;
    let dir = resource_dir("LoadFlag")?;
    let mut svc = spawn_service(&ServiceOpts {
        nats_url: &nats_server.url(),
        unleash_url: &responder,
        unleash_token: "instant",
        unleash_api: "v4",
        mode,
        roles: "remediator,get-action,action",
        resource_dir: dir.path(),
    })?;
    wait_ready(&mut svc).await?;
    let sc = format!("2. service overhead, instant responder ({mode})");
    let before = Usage::of(svc.pid());
    let Remediations {
        e2e,
        to_switch,
        not_pass,
        ..
    } = sequential_remediations_switched(&nats_server.url(), n, "ovh", Some(&switched)).await?;
    let used = Usage::of(svc.pid()).since(&before);
    let answered = requests.load(Ordering::Relaxed);
    let nats = nats_floor(&nats_server.url(), n).await?;
    let durable = durable_floor(&nats_server.url(), &responder, n, mode, false).await?;
    let durable_m = durable_floor(&nats_server.url(), &responder, n, mode, true).await?;
    report.latencies(
        &sc,
        "problem.open → remediation.finished",
        &e2e,
        format!("{not_pass} not pass; {answered} HTTP requests answered").as_str(),
    );
    report.latencies(
        &sc,
        "problem.open → toggle answered (time to flag switched)",
        &to_switch,
        "",
    );
    let runs = n + WARM_UP;
    report.add(
        &sc,
        "per remediation: CPU time / context switches of the service (/proc)",
        format!(
            "{:.3} ms / {:.1}",
            used.cpu.as_secs_f64() * 1e3 / runs as f64,
            used.switches as f64 / runs as f64
        ),
        format!(
            "all its threads, over the {runs} remediations one after another (with the warm-up)"
        ),
    );
    report.latencies(&sc, "floor: NATS request/reply", &nats, "");
    report.latencies(
        &sc,
        "floor of the promises: hop, claim ∥ read, switch, read-back, outcome write (core only), hop",
        &durable,
        "a plain client, each step after the one it depends on",
    );
    report.latencies(
        &sc,
        "the same floor with the protocol's and the state's messages beside it",
        &durable_m,
        "five events received back, the handled id, the delete, a watch of the bucket",
    );
    ratio_row(
        report,
        &sc,
        "ratio p50 / floor of the promises p50",
        &e2e,
        &durable,
        None,
    );
    ratio_row(
        report,
        &sc,
        "ratio p50 / floor of the promises with the messages p50",
        &e2e,
        &durable_m,
        None,
    );
    let stats = Stats::of(&e2e);
    let p99 = stats.p99;
    report.add(
        &sc,
        "target: overhead p99 < 1 ms",
        ms(p99),
        if p99 < Duration::from_millis(1) {
            "met"
        } else {
            "NOT met (end-to-end p99 incl. ≥ 3 sequential NATS hops)"
        },
    );
    Ok((stats.p50, stats.p99))
}

/// The bus alone under the storm's load: the same payloads published the same way to a fresh
/// nats-server, taken by a plain subscriber that only counts them (core), or by a durable pull
/// consumer on a stream like the service's that acknowledges each one (JetStream: file
/// storage on `sh.keptn.>`, explicit acks, the service's default `max_ack_pending`). Returns
/// the rate from first publish to the last message taken; what the service can reach at most
/// on this machine.
async fn storm_floor(mode: &str, payloads: &[Bytes]) -> Result<f64> {
    let nats_server = NatsServer::start()?;
    let url = nats_server.url();
    let subject = "sh.keptn.event.problem.open";
    let total = payloads.len() as u64;
    let taken = Arc::new(AtomicU64::new(0));
    let consumer_client = async_nats::ConnectOptions::new()
        .subscription_capacity(262_144)
        .connect(&url)
        .await?;
    let done = Arc::new(tokio::sync::Notify::new());
    let task = if mode == "core" {
        let mut sub = consumer_client.subscribe(subject).await?;
        consumer_client.flush().await?;
        let (taken, done) = (taken.clone(), done.clone());
        tokio::spawn(async move {
            while sub.next().await.is_some() {
                if taken.fetch_add(1, Ordering::Relaxed) + 1 == total {
                    done.notify_one();
                }
            }
        })
    } else {
        let js = async_nats::jetstream::new(consumer_client.clone());
        let stream = js
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: "floor".into(),
                subjects: vec!["sh.keptn.>".into()],
                storage: async_nats::jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await?;
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("floor".into()),
                filter_subject: subject.into(),
                ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::New,
                max_ack_pending: 1024,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let (taken, done) = (taken.clone(), done.clone());
        tokio::spawn(async move {
            while let Some(Ok(msg)) = messages.next().await {
                let _ = msg.ack().await;
                if taken.fetch_add(1, Ordering::Relaxed) + 1 == total {
                    done.notify_one();
                }
            }
        })
    };
    let publisher = async_nats::connect(&url).await?;
    let t0 = Instant::now();
    for p in payloads {
        publisher.publish(subject, p.clone()).await?;
    }
    publisher.flush().await?;
    let all = tokio::time::timeout(Duration::from_secs(60), done.notified()).await;
    let elapsed = t0.elapsed();
    task.abort();
    all.with_context(|| {
        format!(
            "the {mode} floor took {} of {total} messages within 60 s",
            taken.load(Ordering::Relaxed)
        )
    })?;
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// The storm's consumption target (BENCHMARKS.md): 100,000 events/s in core mode, 60,000 with
/// JetStream.
fn storm_rate_target(mode: &str) -> f64 {
    if mode == "core" { 100_000.0 } else { 60_000.0 }
}

/// A target's verdict, as the report writes it.
fn met(yes: bool) -> &'static str {
    if yes { "met" } else { "NOT met" }
}

async fn scenario_storm(
    report: &mut Report,
    mode: &str,
    total: usize,
    problems: usize,
) -> Result<()> {
    let nats_server = NatsServer::start()?;
    let (responder, _requests) = instant_responder().await?;
    let dir = resource_dir("LoadFlag")?;
    let http = reqwest::Client::new();
    let mut svc = spawn_service(&ServiceOpts {
        nats_url: &nats_server.url(),
        unleash_url: &responder,
        unleash_token: "instant",
        unleash_api: "v4",
        mode,
        roles: "remediator,get-action,action",
        resource_dir: dir.path(),
    })?;
    wait_ready(&mut svc).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle_rss, _) = svc.memory();

    // Count remediation.triggered / .finished on NATS.
    let watcher = async_nats::connect(&nats_server.url()).await?;
    let triggered = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU64::new(0));
    let mut sub = watcher.subscribe("sh.keptn.event.remediation.>").await?;
    watcher.flush().await?;
    {
        let (t, f) = (triggered.clone(), finished.clone());
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                match m.subject.as_str() {
                    "sh.keptn.event.remediation.triggered" => t.fetch_add(1, Ordering::Relaxed),
                    "sh.keptn.event.remediation.finished" => f.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
        });
    }

    // Payloads built before the clock starts: event i is problem i % problems.
    let contexts: Vec<String> = (0..problems)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let payloads: Vec<Bytes> = (0..total)
        .map(|i| {
            let c = &contexts[i % problems];
            Bytes::from(
                serde_json::to_vec(&problem_open(&format!("storm-{}", i % problems), c)).unwrap(),
            )
        })
        .collect();
    let floor = storm_floor(mode, &payloads).await;
    let publisher = async_nats::connect(&nats_server.url()).await?;
    let subject = "sh.keptn.event.problem.open";
    let before = metric(&svc, &http, "events_received_total", "problem.open").await?;
    let t0 = Instant::now();
    for p in payloads {
        publisher.publish(subject, p).await?;
    }
    publisher.flush().await?;
    let published = t0.elapsed();

    // Poll the service's counter until it has consumed every event (bounded: 120 s).
    let deadline = t0 + Duration::from_secs(120);
    let mut received = 0.0;
    let mut consumed_at = None;
    // When events were lost (core NATS is at-most-once), the counter stops short of `total`:
    // stop after 5 s without change and report what arrived and when the last one did.
    let mut last_change = t0.elapsed();
    while Instant::now() < deadline {
        let now = metric(&svc, &http, "events_received_total", "problem.open").await? - before;
        if now != received {
            received = now;
            last_change = t0.elapsed();
        }
        if received >= total as f64 {
            consumed_at = Some(t0.elapsed());
            break;
        }
        if t0.elapsed() > last_change + Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let remediations finish (bounded: 30 s, more for many problems), then settle and count.
    let settle = Instant::now() + Duration::from_secs(30.max(problems as u64 / 100));
    while finished.load(Ordering::Relaxed) < problems as u64 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What stays resident once the burst is over: the service hands freed memory back after
    // a few quiet seconds.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (after, peak) = svc.memory();
    let duplicates = metric(&svc, &http, "duplicates_total", "")
        .await
        .unwrap_or(0.0);
    let sc =
        format!("3. storm {total} problem.open / {problems} problems ({mode}, instant responder)");
    report.add(
        &sc,
        "publish time (core publish + flush)",
        ms(published),
        format!("{:.0} msg/s", total as f64 / published.as_secs_f64()),
    );
    match consumed_at {
        Some(t) => {
            let rate = total as f64 / t.as_secs_f64();
            report.add(
                &sc,
                "events/s consumed (first publish → counter = total)",
                format!("{rate:.0}/s"),
                format!("in {}", ms(t)),
            );
            report.add(
                &sc,
                "drain after last publish",
                ms(t.saturating_sub(published)),
                "",
            );
            let target = storm_rate_target(mode);
            report.add(
                &sc,
                &format!("target ≥ {target:.0} events/s ({mode})"),
                format!("{rate:.0}/s"),
                met(rate >= target),
            );
        }
        None => {
            let rate = received / last_change.as_secs_f64();
            report.add(
                &sc,
                "events consumed (the rest never arrived)",
                format!("{received:.0} of {total}"),
                format!(
                    "last one {} after first publish: {rate:.0}/s over those; NATS dropped {:.0}",
                    ms(last_change),
                    total as f64 - received
                ),
            );
            report.add(
                &sc,
                &format!("target ≥ {:.0} events/s ({mode})", storm_rate_target(mode)),
                format!("{rate:.0}/s of those received"),
                "NOT met: not every event was consumed",
            );
        }
    }
    match &floor {
        Ok(rate) => report.add(
            &sc,
            "floor: the bus alone (plain client, no service)",
            format!("{rate:.0}/s"),
            if mode == "core" {
                "core subscriber that only counts"
            } else {
                "pull consumer acking each message, same stream settings"
            },
        ),
        Err(e) => report.add(&sc, "floor: the bus alone", format!("error: {e:#}"), ""),
    }
    let t = triggered.load(Ordering::Relaxed);
    let f = finished.load(Ordering::Relaxed);
    report.add(
        &sc,
        "remediation.triggered / .finished seen",
        format!("{t} / {f}"),
        if t == problems as u64 {
            format!("exactly {problems}: OK")
        } else {
            format!("expected exactly {problems}: WRONG")
        },
    );
    report.add(
        &sc,
        "duplicates_total (metrics)",
        format!("{duplicates:.0}"),
        format!("expected {}", total - problems),
    );
    report.add(
        &sc,
        "RSS idle before / peak (VmHWM) after",
        format!("{} / {}", mib(idle_rss), mib(peak)),
        format!(
            "target idle ≤ 10 MiB: {}; peak ≤ 48 MiB: {}",
            met(idle_rss <= 10 * 1024),
            met(peak <= 48 * 1024)
        ),
    );
    report.add(
        &sc,
        "RSS (VmRSS) after, remediations remembered",
        mib(after),
        if problems >= 50_000 {
            if after <= 64 * 1024 {
                "target ≤ 64 MiB: met"
            } else {
                "target ≤ 64 MiB: NOT met"
            }
        } else {
            ""
        },
    );
    Ok(())
}

async fn scenario_get_action(report: &mut Report, n: usize) -> Result<()> {
    let nats_server = NatsServer::start()?;
    let dir = resource_dir("LoadFlag")?;
    let mut svc = spawn_service(&ServiceOpts {
        nats_url: &nats_server.url(),
        unleash_url: "http://127.0.0.1:9/api",
        unleash_token: "unused",
        unleash_api: "v4",
        mode: "core",
        roles: "get-action",
        resource_dir: dir.path(),
    })?;
    wait_ready(&mut svc).await?;
    let nats = async_nats::connect(&nats_server.url()).await?;
    let sc = "4. get-action (core, no Unleash)";

    // Sequential latency.
    let mut sub = nats.subscribe("sh.keptn.event.get-action.finished").await?;
    nats.flush().await?;
    let seq_n = n.min(2000);
    let mut seq = Vec::with_capacity(seq_n);
    for i in 0..seq_n + WARM_UP {
        let ev = get_action_triggered(&uuid::Uuid::new_v4().to_string());
        let (d, _) = round_trip(
            &nats,
            &mut sub,
            &ev,
            "sh.keptn.event.get-action.finished",
            Duration::from_secs(10),
        )
        .await?;
        if i >= WARM_UP {
            seq.push(d);
        }
    }
    report.latencies(sc, "one at a time: publish → get-action.finished", &seq, "");
    drop(sub);

    // Burst: n published as fast as possible, each matched by context.
    let mut sub = nats.subscribe("sh.keptn.event.get-action.finished").await?;
    nats.flush().await?;
    let events: Vec<(String, Bytes)> = (0..n)
        .map(|_| {
            let c = uuid::Uuid::new_v4().to_string();
            let b = Bytes::from(serde_json::to_vec(&get_action_triggered(&c)).unwrap());
            (c, b)
        })
        .collect();
    let mut sent_at = std::collections::HashMap::with_capacity(n);
    let collector = tokio::spawn(async move {
        let mut got: Vec<(String, Instant)> = Vec::with_capacity(n);
        let deadline = Instant::now() + Duration::from_secs(120);
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, sub.next()).await {
                Ok(Some(m)) => {
                    let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                    if let Some(c) = v["shkeptncontext"].as_str() {
                        got.push((c.to_owned(), Instant::now()));
                    }
                }
                _ => break,
            }
        }
        got
    });
    let t0 = Instant::now();
    for (c, b) in events {
        sent_at.insert(c, Instant::now());
        nats.publish("sh.keptn.event.get-action.triggered", b)
            .await?;
    }
    nats.flush().await?;
    let got = collector.await?;
    let last = got
        .last()
        .map(|(_, t)| t.duration_since(t0))
        .unwrap_or_default();
    let lat: Vec<Duration> = got
        .iter()
        .filter_map(|(c, t)| sent_at.get(c).map(|s| t.duration_since(*s)))
        .collect();
    report.add(
        sc,
        &format!("burst of {n}: events/s (first publish → last finished)"),
        format!("{:.0}/s", got.len() as f64 / last.as_secs_f64()),
        format!("{} of {n} answered in {}", got.len(), ms(last)),
    );
    report.latencies(
        sc,
        "burst: publish → get-action.finished",
        &lat,
        "includes queueing behind the burst",
    );
    Ok(())
}

async fn scenario_startup(report: &mut Report, starts: usize) -> Result<()> {
    let nats_server = NatsServer::start()?;
    let dir = resource_dir("LoadFlag")?;
    for mode in ["core", "jetstream"] {
        let mut ready = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..starts {
            let mut svc = spawn_service(&ServiceOpts {
                nats_url: &nats_server.url(),
                unleash_url: "http://127.0.0.1:9/api",
                unleash_token: "unused",
                unleash_api: "v4",
                mode,
                roles: "remediator,get-action,action",
                resource_dir: dir.path(),
            })?;
            ready.push(wait_ready(&mut svc).await?);
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let [r, h, anon, file] = svc.status_kib(["VmRSS:", "VmHWM:", "RssAnon:", "RssFile:"]);
            rss.push([r, h, anon, file, svc.code_resident_kib()]);
        }
        let sc = format!("5. start-up and idle memory ({mode}, {starts} starts)");
        let s = Stats::of(&ready);
        report.add(
            &sc,
            "spawn → /ready 200 median / max",
            format!("{} / {}", ms(s.p50), ms(s.max)),
            format!(
                "target < 200 ms: {}",
                met(s.p50 < Duration::from_millis(200))
            ),
        );
        rss.sort();
        let [r, h, anon, file, code] = rss[rss.len() / 2];
        report.add(
            &sc,
            "idle VmRSS / VmHWM (median start, 1 s after ready)",
            format!("{} / {}", mib(r), mib(h)),
            format!("target ≤ 10 MiB: {}", met(r <= 10 * 1024)),
        );
        report.add(
            &sc,
            "of which RssAnon / RssFile (same start)",
            format!("{} / {}", mib(anon), mib(file)),
            "RssFile: pages of the binary and its libraries",
        );
        report.add(
            &sc,
            "of which the binary's own code (same start)",
            mib(code),
            "resident pages of its executable mapping (/proc/<pid>/smaps)",
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().cloned().unwrap_or_else(|| "all".into());
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let n: usize = flag("--n")
        .map(|v| v.parse::<usize>())
        .transpose()?
        .unwrap_or(1000);
    let mode = flag("--mode").unwrap_or_else(|| "core".into());
    let storm_total: usize = flag("--storm")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut report = Report::default();
    let started = Instant::now();
    let result = runtime.block_on(async {
        let all = scenario == "all";
        let mut ran = false;
        if all || scenario == "startup" {
            scenario_startup(&mut report, 10).await?;
            ran = true;
        }
        // Both modes side by side when all run (or no mode was asked for).
        let modes: Vec<&str> = if all || flag("--mode").is_none() {
            vec!["core", "jetstream"]
        } else {
            vec![mode.as_str()]
        };
        if all || scenario == "overhead" {
            let mut seen = Vec::new();
            for m in &modes {
                seen.push((*m, scenario_overhead(&mut report, n, m).await?));
            }
            if let [("core", (c50, c99)), ("jetstream", (j50, j99))] = seen.as_slice() {
                report.add(
                    "2. service overhead, JetStream against core (same run)",
                    "ratio p50 / p99",
                    format!(
                        "{:.2}× / {:.2}×",
                        j50.as_secs_f64() / c50.as_secs_f64(),
                        j99.as_secs_f64() / c99.as_secs_f64()
                    ),
                    "target ≤ 1.2×, JetStream p99 ≤ 2 ms",
                );
            }
            ran = true;
        }
        if all || scenario == "get-action" {
            scenario_get_action(&mut report, n.max(10_000)).await?;
            ran = true;
        }
        if all || scenario == "storm" {
            for m in ["core", "jetstream"] {
                if let Err(e) = scenario_storm(&mut report, m, storm_total, 1000).await {
                    report.add(&format!("3. storm ({m})"), "error", format!("{e:#}"), "");
                }
            }
            ran = true;
        }
        if scenario == "problems" {
            // Memory per distinct problem: every event a new problem, all remembered.
            let count = flag("--n").map(|v| v.parse()).transpose()?.unwrap_or(50_000);
            for m in ["core", "jetstream"] {
                if let Err(e) = scenario_storm(&mut report, m, count, count).await {
                    report.add(&format!("6. problems ({m})"), "error", format!("{e:#}"), "");
                }
            }
            ran = true;
        }
        if scenario == "post-cadence" {
            scenario_post_cadence(&mut report, n).await?;
            ran = true;
        }
        if all || scenario == "e2e" {
            for m in &modes {
                if let Err(e) = scenario_e2e(&mut report, n, m).await {
                    report.add(&format!("1. end-to-end ({m})"), "error", format!("{e:#}"), "");
                }
            }
            ran = true;
        }
        if !ran {
            bail!("unknown scenario {scenario:?}: use all, e2e, overhead, storm, get-action, startup, problems or post-cadence");
        }
        Ok::<(), anyhow::Error>(())
    });
    println!();
    println!(
        "loadgen `{scenario}` (n={n}, mode={mode}) finished in {:.1?}",
        started.elapsed()
    );
    println!();
    report.print();
    result
}

/// What precedes one POST of [`scenario_post_cadence`].
#[derive(Clone, Copy)]
enum Before {
    Nothing,
    Idle(Duration),
    Busy(Duration),
    Get,
    /// Nothing, but the POST carries the service's headers.
    ServiceHeaders,
}

/// Whether Unleash answers a switch more slowly by what comes before it: the same POST (the
/// flag already on) back to back, after 0.5, 1 and 2 ms idle, after 1 ms of this client's CPU
/// kept busy, after a GET, and with the headers the service sends (`Accept`, and a `User-Agent`
/// of its form). Interleaved in rounds like scenario 1, against Unleash 7.5.1 directly.
async fn scenario_post_cadence(report: &mut Report, n: usize) -> Result<()> {
    let unleash = UnleashServer::start(UnleashVersion::V7)?;
    let flag = format!(
        "Cadence-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    UnleashClient::new(unleash.admin_config())?
        .create_flag(&flag)
        .await?;
    let (base, token) = (unleash.base_url(), unleash.admin_token());
    let http = plain_http()?;
    let get = environment_url(&base, &flag);
    let post = format!("{get}/on");
    let ms = Duration::from_millis;
    let variants = [
        ("back to back", Before::Nothing),
        (
            "after 0.5 ms idle",
            Before::Idle(Duration::from_micros(500)),
        ),
        ("after 1 ms idle", Before::Idle(ms(1))),
        ("after 2 ms idle", Before::Idle(ms(2))),
        ("after 1 ms busy", Before::Busy(ms(1))),
        ("after a GET", Before::Get),
        ("with the service's headers", Before::ServiceHeaders),
    ];
    let mut out: Vec<Vec<Duration>> = vec![vec![]; variants.len()];
    let per_round = n.div_ceil(E2E_ROUNDS).max(1);
    for _ in 0..E2E_ROUNDS {
        for ((_, before), samples) in variants.iter().zip(out.iter_mut()) {
            for i in 0..per_round + WARM_UP {
                match *before {
                    Before::Idle(idle) => tokio::time::sleep(idle).await,
                    Before::Busy(busy) => {
                        let t = Instant::now();
                        while t.elapsed() < busy {
                            std::hint::spin_loop();
                        }
                    }
                    Before::Get => {
                        let r = http.get(&get).header("Authorization", token).send().await?;
                        let _ = r.bytes().await?;
                    }
                    Before::Nothing | Before::ServiceHeaders => {}
                }
                let request = http.post(&post).header("Authorization", token);
                let request = match before {
                    Before::ServiceHeaders => request
                        .header("Accept", "application/json")
                        .header(
                            "User-Agent",
                            concat!("unleash-remediation-service/", env!("CARGO_PKG_VERSION")),
                        )
                        .header("Content-Type", "application/json")
                        .body("{}"),
                    _ => request.json(&json!({})),
                };
                let t0 = Instant::now();
                let r = request.send().await?;
                let status = r.status();
                let _ = r.bytes().await?;
                if !status.is_success() {
                    bail!("the switch answered {status}");
                }
                if i >= WARM_UP {
                    samples.push(t0.elapsed());
                }
            }
        }
    }
    let sc = "7. the switch by what comes before it, Unleash 7.5.1";
    for ((name, _), samples) in variants.iter().zip(&out) {
        report.latencies(sc, &format!("POST …/on {name}"), samples, "");
    }
    Ok(())
}
