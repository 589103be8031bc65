//! The tutorial scenario, end to end, on this machine (what `./scripts/demo` runs).
//!
//! 1. Starts nats-server (JetStream) and Unleash 7.5.1 on free loopback ports.
//! 2. Creates the flag `EnableStaticContent` (off) and shows its state as an SDK sees it
//!    (Unleash's client API, environment `production`).
//! 3. Starts the service binary (`target/release/unleash-remediation-service serve`) with the
//!    repository's `remediation.yaml` and `shipyard.yaml`, and waits until it is ready.
//! 4. Prints every Keptn event on `sh.keptn.>` as it arrives.
//! 5. Publishes the tutorial's "Failure rate increase" problem with the service's own `send`.
//! 6. Waits for `remediation.finished` and shows the flag again: `off → on`.
//! 7. Stops the service (SIGTERM), Unleash, PostgreSQL and nats-server.
//!
//! Exits non-zero when the flag did not turn on.
//!
//! Build the service first: `cargo build --release`, then
//! `cargo run --release --example tutorial`.

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use unleash_remediation_service::keptn::types;
use unleash_remediation_service::testkit::{
    self,
    nats::NatsServer,
    unleash::{UnleashServer, UnleashVersion},
};
use unleash_remediation_service::unleash::UnleashClient;

const FLAG: &str = "EnableStaticContent";
/// The problem's stage; the service switches the flag in the Unleash environment of that name.
const ENVIRONMENT: &str = "production";
const PROBLEM: &str = "tests/vectors/tutorial/problemopen.json";
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
    let root = testkit::repo_root();
    let binary = service_binary()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;

    step("starting nats-server (JetStream) and Unleash 7.5.1 on loopback");
    let nats = NatsServer::start()?;
    println!("  nats-server  {}", nats.url());
    let unleash = UnleashServer::start(UnleashVersion::V7)?;
    println!("  Unleash      {}", unleash.base_url());

    // Everything that needs the servers runs inside; they are stopped when they go out of
    // scope at the end of this function, after the service.
    let outcome = runtime.block_on(scenario(&root, &binary, &nats, &unleash));

    step("stopping Unleash, PostgreSQL and nats-server");
    drop(runtime);
    drop(unleash);
    drop(nats);
    println!("  stopped");
    outcome
}

async fn scenario(
    root: &Path,
    binary: &Path,
    nats: &NatsServer,
    unleash: &UnleashServer,
) -> Result<()> {
    step(&format!("creating the flag {FLAG} (off)"));
    let admin = UnleashClient::new(unleash.admin_config()).context("Unleash admin client")?;
    admin
        .create_flag(FLAG)
        .await
        .with_context(|| format!("creating {FLAG}"))?;
    let before = unleash
        .client_flag_enabled(FLAG, ENVIRONMENT)
        .await
        .context("reading the flag from the client API")?;
    println!(
        "  {FLAG} in {ENVIRONMENT}, as an SDK sees it (client API): {}",
        on_off(before)
    );
    if before {
        bail!("{FLAG} is already on before the problem; the scenario needs it off");
    }

    step("starting the service");
    let mut service = Service::start(binary, root, nats, unleash)?;
    service.wait_ready(Duration::from_secs(60)).await?;
    println!(
        "  {} serve: ready on http://{}/ready (resources from {})",
        BINARY,
        service.http_addr,
        root.display()
    );

    // Subscribe before the problem is sent, so that the whole conversation is seen.
    let watcher = async_nats::connect(nats.url())
        .await
        .context("connecting to NATS to watch the events")?;
    let mut events = watcher
        .subscribe("sh.keptn.>")
        .await
        .context("subscribing to sh.keptn.>")?;
    watcher.flush().await.context("flushing the subscription")?;

    step(&format!("sending the tutorial problem ({PROBLEM})"));
    let sent = Command::new(binary)
        .arg("send")
        .arg(root.join(PROBLEM))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NATS_URL", nats.url())
        .env("RUST_LOG", "warn")
        .output()
        .with_context(|| format!("running {} send", binary.display()))?;
    if !sent.status.success() {
        bail!(
            "{BINARY} send failed ({}): {}",
            sent.status,
            String::from_utf8_lossy(&sent.stderr).trim()
        );
    }
    println!("  {}", String::from_utf8_lossy(&sent.stdout).trim());

    step("Keptn events on sh.keptn.> (NATS)");
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let finished: Value = loop {
        let message = tokio::select! {
            m = events.next() => m.context("the NATS subscription ended")?,
            _ = tokio::time::sleep_until(deadline) => {
                bail!(
                    "no sh.keptn.event.remediation.finished within 90 s; the service log ends with:\n{}",
                    service.log_tail(30)
                );
            }
        };
        let event: Value = match serde_json::from_slice(&message.payload) {
            Ok(v) => v,
            Err(_) => {
                println!("  {}  {} (not JSON)", clock(), message.subject);
                continue;
            }
        };
        print_event(&event);
        if event["type"] == types::REMEDIATION_FINISHED {
            break event;
        }
    };
    let took = started.elapsed();
    let result = finished["data"]["result"].as_str().unwrap_or("");
    let status = finished["data"]["status"].as_str().unwrap_or("");
    if (status, result) != ("succeeded", "pass") {
        bail!(
            "the remediation finished {status}/{result}: {}",
            finished["data"]["message"]
                .as_str()
                .unwrap_or("(no message)")
        );
    }
    println!("  remediation finished {status}/{result} in {took:.1?}");

    step(&format!("{FLAG} after the remediation"));
    // The service has confirmed the change through the admin API; an SDK reads the client
    // API, which is polled here for a few seconds in case it lags behind.
    let waited = unleash
        .wait_client_flag(FLAG, ENVIRONMENT, true, Duration::from_secs(10))
        .await;
    let after = unleash
        .client_flag_enabled(FLAG, ENVIRONMENT)
        .await
        .context("reading the flag from the client API")?;
    println!("  {FLAG}: {} → {}", on_off(before), on_off(after));

    step("stopping the service (SIGTERM)");
    let exit = service.stop().await?;
    println!("  {BINARY} exited: {exit}");

    waited.with_context(|| format!("{FLAG} did not turn on"))?;
    println!("\ntutorial OK: the problem switched {FLAG} on in Unleash.");
    Ok(())
}

/// The service binary next to this example: `target/<profile>/examples/tutorial` →
/// `target/<profile>/unleash-remediation-service`.
fn service_binary() -> Result<PathBuf> {
    let me = std::env::current_exe().context("locating this executable")?;
    let dir = me
        .parent()
        .and_then(Path::parent)
        .context("this executable has no parent directory")?;
    let binary = dir.join(BINARY);
    if !binary.is_file() {
        bail!(
            "{} does not exist: build the service first with `cargo build --release` (./scripts/demo does)",
            binary.display()
        );
    }
    Ok(binary)
}

/// The service process; sent SIGTERM (then killed) when dropped on an error path.
struct Service {
    child: Option<Child>,
    http_addr: String,
    log: PathBuf,
}

impl Service {
    fn start(
        binary: &Path,
        root: &Path,
        nats: &NatsServer,
        unleash: &UnleashServer,
    ) -> Result<Service> {
        let http_addr = format!("127.0.0.1:{}", testkit::free_port());
        let log = std::env::temp_dir().join(format!("urs-tutorial-{}.log", std::process::id()));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        // A clean environment: only what the scenario sets, so that settings of the caller's
        // shell (ROLES, KEPTN_API_ENDPOINT, UNLEASH_ENVIRONMENT, ...) cannot change it.
        let child = Command::new(binary)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NATS_URL", nats.url())
            .env("HTTP_ADDR", &http_addr)
            .env("RESOURCE_DIR", root)
            .env("UNLEASH_SERVER_URL", unleash.base_url())
            .env("UNLEASH_TOKEN", unleash.admin_token())
            .env("LOG_FORMAT", "text")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("duplicating the log file")?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {} serve", binary.display()))?;
        Ok(Service {
            child: Some(child),
            http_addr,
            log,
        })
    }

    /// Polls `GET /ready` until it answers 200.
    async fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let url = format!("http://{}/ready", self.http_addr);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("HTTP client")?;
        let deadline = Instant::now() + within;
        loop {
            let last = match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => e.to_string(),
            };
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().context("checking the service")?
            {
                bail!(
                    "the service exited ({status}) before it was ready; its log ends with:\n{}",
                    self.log_tail(30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the service was not ready within {within:?} ({url}: {last}); its log ends with:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then up to 20 s for a clean exit; killed after that.
    async fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self
            .child
            .take()
            .context("the service was already stopped")?;
        terminate(&child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().context("waiting for the service")? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait().context("waiting for the killed service")?;
                bail!("the service did not stop within 20 s of SIGTERM; killed ({status})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Sends SIGTERM to one process, by its id.
fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn step(text: &str) {
    println!("\n== {text}");
}

fn clock() -> String {
    chrono::Local::now().format("%H:%M:%S%.3f").to_string()
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// One line per event: when it arrived, its type, its source, and what it says.
fn print_event(event: &Value) {
    let ty = event["type"].as_str().unwrap_or("?");
    let data = &event["data"];
    let mut parts = vec![format!("from {}", event["source"].as_str().unwrap_or("?"))];
    // The problem is the event's data (problem.open) or nested in it (remediation.triggered).
    let problem = if data["problem"].is_object() {
        &data["problem"]
    } else {
        data
    };
    let shows_problem = [
        types::PROBLEM_OPEN,
        types::PROBLEM,
        types::REMEDIATION_TRIGGERED,
    ];
    if let Some(title) = ["ProblemTitle", "problemTitle"]
        .iter()
        .find_map(|k| problem[*k].as_str())
        .filter(|_| shows_problem.contains(&ty))
    {
        let id = problem["ProblemID"].as_str().unwrap_or("-");
        let state = problem["State"].as_str().unwrap_or("");
        parts.push(format!("problem {title:?} {state} (ProblemID {id})"));
    }
    if let Some(remediation) = data.get("remediation").filter(|r| r.is_object()) {
        parts.push(format!(
            "action #{} {}",
            remediation["actionIndex"],
            remediation["actionName"].as_str().unwrap_or("?")
        ));
    }
    if ty == types::ACTION_TRIGGERED {
        let action = &data["action"];
        parts.push(format!(
            "{} {}",
            action["action"].as_str().unwrap_or("?"),
            action["value"]
        ));
    }
    if let (Some(status), Some(result)) = (data["status"].as_str(), data["result"].as_str()) {
        parts.push(format!("{status}/{result}"));
    }
    if let Some(message) = data["message"].as_str().filter(|m| !m.is_empty()) {
        parts.push(format!("— {message}"));
    }
    println!(
        "  {}  {:<28} {}",
        clock(),
        types::short(ty),
        parts.join("  ")
    );
}
