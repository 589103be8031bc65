//! A real Prometheus and a real Alertmanager (Debian's `prometheus` and
//! `prometheus-alertmanager`, or the upstream binaries on `PATH`), each on a free loopback port
//! with a generated configuration in its own temporary directory, and [`ErrorRateTarget`]: an
//! application whose `http_requests_total` a test drives.
//!
//! Both run under the supervisor of [`super::postgres`], so they stop when the handle is dropped
//! and also when the test process dies. Everything is tuned for tests that take seconds: scrapes
//! and rule evaluations every second, Alertmanager groups sent after one second.
//!
//! The configurations are written as JSON, which both programs read as YAML: no quoting rules
//! to get wrong for paths and URLs.

use super::http_get;
use super::postgres::{Supervised, SupervisedSpec, fresh_temp_dir};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use unleash_remediation_service::config::Secret;

const INSTALL_HINT: &str = "install them with `apt-get install -y prometheus prometheus-alertmanager` (scripts/test does this when it runs as root), or point PROMETHEUS_BIN / ALERTMANAGER_BIN at the binaries";

/// Scrape and rule-evaluation interval of [`Prometheus`].
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One `scrape_configs` entry: a job name and `host:port` targets (scraped at `/metrics`).
#[derive(Debug, Clone)]
pub struct ScrapeJob {
    pub name: String,
    pub targets: Vec<String>,
}

impl ScrapeJob {
    pub fn new(name: &str, targets: &[String]) -> ScrapeJob {
        ScrapeJob {
            name: name.to_owned(),
            targets: targets.to_vec(),
        }
    }
}

/// A running Prometheus. Stopped (and its directory removed) on drop.
#[derive(Debug)]
pub struct Prometheus {
    port: u16,
    server: Supervised,
}

impl Prometheus {
    /// Starts Prometheus scraping `jobs` every [`INTERVAL`], evaluating `rule_files` (copied into
    /// its directory, so the caller's files may go away) every [`INTERVAL`], and sending alerts
    /// to the Alertmanager at `alertmanager` (`http://host:port`), if any. Waits for `/-/ready`.
    pub fn start(
        jobs: &[ScrapeJob],
        rule_files: &[PathBuf],
        alertmanager: Option<&str>,
    ) -> Result<Prometheus> {
        let binary = find_binary("PROMETHEUS_BIN", &["prometheus"])
            .with_context(|| format!("Prometheus is not installed: {INSTALL_HINT}"))?;
        let dir = fresh_temp_dir("urs-prometheus")?;
        let mut rules = Vec::new();
        for (i, file) in rule_files.iter().enumerate() {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "rules.yml".to_owned());
            let copy = dir.join(format!("{i}-{name}"));
            std::fs::copy(file, &copy)
                .with_context(|| format!("copying the rule file {}", file.display()))?;
            rules.push(copy.display().to_string());
        }
        let interval = format!("{}s", INTERVAL.as_secs());
        let mut config = json!({
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "rule_files": rules,
            "scrape_configs": jobs.iter().map(|job| json!({
                "job_name": job.name,
                "static_configs": [{"targets": job.targets}],
            })).collect::<Vec<_>>(),
        });
        if let Some(url) = alertmanager {
            let url = url::Url::parse(url)
                .with_context(|| format!("the Alertmanager address {url:?} is not a URL"))?;
            let host = url.host_str().context("the Alertmanager URL has no host")?;
            let port = url
                .port_or_known_default()
                .context("the Alertmanager URL has no port")?;
            let mut target = json!({
                "scheme": url.scheme(),
                "static_configs": [{"targets": [format!("{host}:{port}")]}],
            });
            if url.path() != "/" {
                target["path_prefix"] = json!(url.path());
            }
            config["alerting"] = json!({"alertmanagers": [target]});
        }
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, serde_json::to_string_pretty(&config)?)
            .context("writing prometheus.yml")?;
        let port = super::free_port();
        let command = vec![
            binary.display().to_string(),
            format!("--config.file={}", config_file.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            // Links in alerts (generatorURL) point here, not at the host name.
            format!("--web.external-url=http://127.0.0.1:{port}"),
            // Debian's defaults point into /etc/prometheus; nothing here needs consoles.
            format!("--web.console.templates={}", dir.display()),
            format!("--web.console.libraries={}", dir.display()),
        ];
        let server = Supervised::spawn(SupervisedSpec {
            name: "Prometheus",
            command,
            env: vec![],
            cwd: &dir,
            log: dir.join("prometheus.log"),
            pid_file: dir.join("prometheus.pid"),
            stop_signal: "TERM",
            extra_pid_file: None,
            cleanup_dir: Some(dir.clone()),
        })?;
        let prometheus = Prometheus { port, server };
        wait_ready(
            "Prometheus",
            port,
            &prometheus.server,
            Duration::from_secs(30),
        )?;
        Ok(prometheus)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The alerts Prometheus holds (`/api/v1/alerts`): pending and firing, with `labels`,
    /// `annotations`, `state` and `activeAt`.
    pub async fn alerts(&self) -> Result<Vec<Value>> {
        let body = get_json(&format!("{}/api/v1/alerts", self.url())).await?;
        Ok(body["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The scrape targets and their health (`/api/v1/targets`, active targets).
    pub async fn targets(&self) -> Result<Vec<Value>> {
        let body = get_json(&format!("{}/api/v1/targets", self.url())).await?;
        Ok(body["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// An instant query; the `data.result` array.
    pub async fn query(&self, promql: &str) -> Result<Vec<Value>> {
        let url = url::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url()),
            [("query", promql)],
        )?;
        let body = get_json(url.as_str()).await?;
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.server.log_tail(lines)
    }
}

/// A running Alertmanager with one receiver, a webhook. Stopped on drop.
#[derive(Debug)]
pub struct Alertmanager {
    port: u16,
    server: Supervised,
}

impl Alertmanager {
    /// Starts Alertmanager with one route to one webhook receiver, `unleash-remediation`, that
    /// posts to `webhook_url` with `send_resolved: true` and, when given, `Authorization: Bearer
    /// <token>` (from a `credentials_file`, so the token is in neither the command line nor the
    /// configuration). Groups by `alertname` and the Keptn scope labels; `group_wait` and
    /// `group_interval` 1 s, `repeat_interval` 1 h (a test sees each change once). Gossip is
    /// off. Waits for `/-/ready`.
    pub fn start(webhook_url: &str, bearer: Option<&Secret>) -> Result<Alertmanager> {
        let binary = find_binary(
            "ALERTMANAGER_BIN",
            &["prometheus-alertmanager", "alertmanager"],
        )
        .with_context(|| format!("Alertmanager is not installed: {INSTALL_HINT}"))?;
        let dir = fresh_temp_dir("urs-alertmanager")?;
        let mut webhook = json!({"url": webhook_url, "send_resolved": true});
        if let Some(token) = bearer {
            let file = dir.join("webhook-token");
            std::fs::write(&file, token.expose()).context("writing the webhook token file")?;
            webhook["http_config"] = json!({
                "authorization": {"type": "Bearer", "credentials_file": file.display().to_string()}
            });
        }
        let config = json!({
            "route": {
                "receiver": "unleash-remediation",
                "group_by": ["alertname", "keptn_project", "keptn_stage", "keptn_service"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [{"name": "unleash-remediation", "webhook_configs": [webhook]}],
        });
        let config_file = dir.join("alertmanager.yml");
        std::fs::write(&config_file, serde_json::to_string_pretty(&config)?)
            .context("writing alertmanager.yml")?;
        let port = super::free_port();
        let command = vec![
            binary.display().to_string(),
            format!("--config.file={}", config_file.display()),
            format!("--storage.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            format!("--web.external-url=http://127.0.0.1:{port}"),
            // Empty: no cluster gossip (it would bind 0.0.0.0:9094).
            "--cluster.listen-address=".to_owned(),
            // Logs every notification ("Notify success"), which failure messages show.
            "--log.level=debug".to_owned(),
        ];
        let server = Supervised::spawn(SupervisedSpec {
            name: "Alertmanager",
            command,
            env: vec![],
            cwd: &dir,
            log: dir.join("alertmanager.log"),
            pid_file: dir.join("alertmanager.pid"),
            stop_signal: "TERM",
            extra_pid_file: None,
            cleanup_dir: Some(dir.clone()),
        })?;
        let alertmanager = Alertmanager { port, server };
        wait_ready(
            "Alertmanager",
            port,
            &alertmanager.server,
            Duration::from_secs(30),
        )?;
        Ok(alertmanager)
    }

    /// `http://127.0.0.1:<port>`: what [`Prometheus::start`] takes.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The alerts Alertmanager holds (`/api/v2/alerts`).
    pub async fn alerts(&self) -> Result<Vec<Value>> {
        let body = get_json(&format!("{}/api/v2/alerts", self.url())).await?;
        Ok(body.as_array().cloned().unwrap_or_default())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.server.log_tail(lines)
    }
}

/// An application's `/metrics` with a counter pair a test drives:
/// `http_requests_total{code="200"}` and `http_requests_total{code="500"}`. A background task
/// serves [`ErrorRateTarget::REQUESTS_PER_SECOND`] simulated requests, the set share of them
/// failing, so the counters climb the way a real service's do. Stopped on drop.
pub struct ErrorRateTarget {
    addr: std::net::SocketAddr,
    counters: Arc<Counters>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    error_percent: AtomicU32,
}

impl ErrorRateTarget {
    /// Simulated traffic.
    pub const REQUESTS_PER_SECOND: u64 = 200;
    const TICK: Duration = Duration::from_millis(50);

    /// Binds 127.0.0.1 on a free port and starts serving (inside the current tokio runtime),
    /// with no failing requests.
    pub async fn start() -> Result<ErrorRateTarget> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the metrics target")?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let serving = counters.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counters = serving.clone();
                tokio::spawn(async move {
                    let _ = serve_metrics(stream, &counters).await;
                });
            }
        });
        let traffic = counters.clone();
        let generator = tokio::spawn(async move {
            let per_tick = Self::REQUESTS_PER_SECOND * Self::TICK.as_millis() as u64 / 1000;
            let mut tick = tokio::time::interval(Self::TICK);
            loop {
                tick.tick().await;
                let percent = u64::from(traffic.error_percent.load(Ordering::SeqCst));
                let failed = per_tick * percent / 100;
                traffic.failed.fetch_add(failed, Ordering::SeqCst);
                traffic.ok.fetch_add(per_tick - failed, Ordering::SeqCst);
            }
        });
        Ok(ErrorRateTarget {
            addr,
            counters,
            tasks: vec![server, generator],
        })
    }

    /// `127.0.0.1:<port>`, for a [`ScrapeJob`].
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// From now on `percent` (0..=100) of the simulated requests answer 500.
    pub fn set_error_percent(&self, percent: u32) {
        self.counters
            .error_percent
            .store(percent.min(100), Ordering::SeqCst);
    }

    /// (200s, 500s) served so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counters.ok.load(Ordering::SeqCst),
            self.counters.failed.load(Ordering::SeqCst),
        )
    }
}

impl Drop for ErrorRateTarget {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Answers one HTTP request (whatever it asks for) with the exposition text, then closes.
async fn serve_metrics(mut stream: tokio::net::TcpStream, counters: &Counters) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let body = format!(
        "# HELP http_requests_total Requests served, by status code.\n\
         # TYPE http_requests_total counter\n\
         http_requests_total{{code=\"200\"}} {}\n\
         http_requests_total{{code=\"500\"}} {}\n",
        counters.ok.load(Ordering::SeqCst),
        counters.failed.load(Ordering::SeqCst),
    );
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

/// Polls `GET /-/ready` until it answers 200, the process ends, or `within` passes.
fn wait_ready(name: &str, port: u16, server: &Supervised, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Some((200, _)) = http_get(port, "/-/ready") {
            return Ok(());
        }
        if !server.is_running() {
            bail!(
                "{name} exited while starting; its log ends with:\n{}",
                server.log_tail(30)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{name} did not answer 200 on http://127.0.0.1:{port}/-/ready within {within:?}; its log ends with:\n{}",
                server.log_tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `$env_var`, else the first of `names` on `PATH` or in the usual binary directories; `None`
/// when that is not a file, so the caller says how to install it.
fn find_binary(env_var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        return Path::new(&path).is_file().then(|| PathBuf::from(path));
    }
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    names.iter().find_map(|name| {
        dirs.iter()
            .cloned()
            .chain([
                "/usr/bin".into(),
                "/usr/local/bin".into(),
                "/usr/sbin".into(),
            ])
            .map(|dir| dir.join(name))
            .find(|p| Path::new(p).is_file())
    })
}

async fn get_json(url: &str) -> Result<Value> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("GET {url} answered {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON: {body}"))
}

/// `promtool check rules <file>`: `Ok` with promtool's output, or an error carrying it.
pub fn promtool_check_rules(file: &Path) -> Result<String> {
    let promtool = find_binary("PROMTOOL_BIN", &["promtool"])
        .with_context(|| format!("promtool is not installed: {INSTALL_HINT}"))?;
    run_checker(
        std::process::Command::new(promtool)
            .arg("check")
            .arg("rules")
            .arg(file),
    )
}

/// `amtool check-config <file>`: `Ok` with amtool's output, or an error carrying it.
pub fn amtool_check_config(file: &Path) -> Result<String> {
    let amtool = find_binary("AMTOOL_BIN", &["amtool"])
        .with_context(|| format!("amtool is not installed: {INSTALL_HINT}"))?;
    run_checker(
        std::process::Command::new(amtool)
            .arg("check-config")
            .arg(file),
    )
}

fn run_checker(command: &mut std::process::Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!("{command:?} failed ({}):\n{text}", output.status);
    }
    Ok(text)
}
