//! The tutorial's web application (`examples/sample-app`, Node with Unleash's official
//! `unleash-client` SDK) on a free loopback port, for the demo and its test.
//!
//! It reads `EnableStaticContent` with a backend token: off → its own page, on → the static
//! page `examples/sample-app/static/index.html`. The answer's `X-Page` header says which
//! (`own` or `static`). `POST /admin/errors?on=1` makes its own page answer 500; `/metrics` has
//! `http_requests_total{route,code}`; `/flag` is what the SDK currently sees.

use super::postgres::{Supervised, SupervisedSpec, fresh_temp_dir};
use super::unleash::node_binary;
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

const HINT: &str =
    "install it with: npm ci --prefix examples/sample-app (scripts/lib/prereqs.sh does)";

/// Which page an answer of `/` was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The application's own page (flag off), 200.
    Own,
    /// The application failing (flag off, errors switched on), 500.
    Error,
    /// The static fallback page (flag on), 200.
    Static,
}

/// A running sample application. Stopped when dropped.
#[derive(Debug)]
pub struct SampleApp {
    port: u16,
    refresh: Duration,
    server: Supervised,
    http: reqwest::Client,
}

impl SampleApp {
    /// Starts the application against Unleash at `unleash_api` (`http://…/api`) with the
    /// backend token `token`, the SDK fetching flags every `refresh`; waits until the SDK has
    /// fetched them once.
    pub fn start(unleash_api: &str, token: &str, refresh: Duration) -> Result<SampleApp> {
        let dir = super::repo_root().join("examples/sample-app");
        if !dir
            .join("node_modules/unleash-client/package.json")
            .is_file()
        {
            bail!("the sample application's Unleash SDK is not installed: {HINT}");
        }
        let node = node_binary(20).context("the sample application")?;
        let port = super::free_port();
        let run_dir = fresh_temp_dir("urs-sample-app")?;
        let server = Supervised::spawn(SupervisedSpec {
            name: "sample app",
            command: vec![node, dir.join("app.js").display().to_string()],
            env: vec![
                ("PORT".to_owned(), port.to_string()),
                ("UNLEASH_URL".to_owned(), unleash_api.to_owned()),
                ("UNLEASH_TOKEN".to_owned(), token.to_owned()),
                (
                    "UNLEASH_REFRESH_MS".to_owned(),
                    refresh.as_millis().to_string(),
                ),
            ],
            cwd: &dir,
            log: run_dir.join("app.log"),
            pid_file: run_dir.join("app.pid"),
            stop_signal: "TERM",
            extra_pid_file: None,
            cleanup_dir: Some(run_dir),
        })?;
        let app = SampleApp {
            port,
            refresh,
            server,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .context("HTTP client")?,
        };
        app.wait_healthy(Duration::from_secs(30))?;
        Ok(app)
    }

    fn wait_healthy(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let ok = std::net::TcpStream::connect(("127.0.0.1", self.port))
                .ok()
                .and_then(|mut s| {
                    use std::io::{Read, Write};
                    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                    write!(s, "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
                    let mut text = String::new();
                    s.read_to_string(&mut text).ok()?;
                    Some(text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200"))
                })
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if !self.server.is_running() {
                bail!(
                    "the sample application exited while starting; its log ends with:\n{}",
                    self.server.log_tail(20)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the sample application's SDK did not fetch the flags from Unleash within {within:?}; its log ends with:\n{}",
                    self.server.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>`, for a Prometheus scrape target.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The SDK's refresh interval.
    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    /// `GET /`: which page came back.
    pub async fn page(&self) -> Result<Page> {
        let answer = self
            .http
            .get(format!("{}/", self.url()))
            .send()
            .await
            .context("GET / of the sample application")?;
        let status = answer.status().as_u16();
        let page = answer
            .headers()
            .get("x-page")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = answer.text().await.unwrap_or_default();
        match (status, page.as_str()) {
            (200, "own") if body.contains("data-page=\"own\"") => Ok(Page::Own),
            (500, "own") => Ok(Page::Error),
            (200, "static") if body.contains("data-page=\"static\"") => Ok(Page::Static),
            _ => bail!("unexpected answer of the sample application: {status} X-Page {page:?}"),
        }
    }

    /// Switches its own page's 500s on or off.
    pub async fn set_errors(&self, on: bool) -> Result<()> {
        let url = format!("{}/admin/errors?on={}", self.url(), u8::from(on));
        let answer = self
            .http
            .post(&url)
            .send()
            .await
            .context("POST /admin/errors")?;
        if !answer.status().is_success() {
            bail!("POST /admin/errors answered {}", answer.status());
        }
        Ok(())
    }

    /// Whether the application's SDK currently sees `EnableStaticContent` on (`/flag`).
    pub async fn sdk_sees_flag_on(&self) -> Result<bool> {
        let value: serde_json::Value = self
            .http
            .get(format!("{}/flag", self.url()))
            .send()
            .await
            .context("GET /flag")?
            .json()
            .await
            .context("GET /flag: not JSON")?;
        value["enabled"]
            .as_bool()
            .context("GET /flag without boolean `enabled`")
    }

    /// Its `/metrics` text.
    pub async fn metrics(&self) -> Result<String> {
        self.http
            .get(format!("{}/metrics", self.url()))
            .send()
            .await
            .context("GET /metrics")?
            .text()
            .await
            .context("GET /metrics body")
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.server.log_tail(lines)
    }
}
