//! A real Unleash server (from npm) on a private PostgreSQL cluster, for tests, the demo and
//! benchmarks.
//!
//! Two versions are pinned in `tests/unleash-server/package.json`:
//! - [`UnleashVersion::V7`]: `unleash-server@7.5.1`, the newest that runs on Node 20; speaks
//!   only the v4+ project/environment API. Started with `dist/server.js` and environment
//!   variables, with a seeded admin token and backend (client) tokens for `development` and
//!   `production`.
//! - [`UnleashVersion::V3`]: `unleash-server@3.17.6` (npm alias `unleash-server-v3`), the API
//!   Keptn 0.6 spoke. Started by `tests/unleash-server/start-v3.js`, which puts the admin API
//!   behind HTTP Basic auth with one user/password pair, so a wrong token is refused.
//!
//! Nothing is skipped: when node, the npm packages or PostgreSQL are missing, starting fails
//! with the commands that install them. Processes run under the supervisor of
//! [`super::postgres`], so they stop when the handle is dropped and also when the test binary
//! exits without dropping it (a server kept in a `static` by [`UnleashServer::shared`]).

use super::postgres::{Postgres, Supervised, SupervisedSpec, fresh_temp_dir};
use crate::config::Secret;
use crate::unleash::{ApiMode, UnleashConfig};
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const NODE_HINT: &str = "install Node.js 20 or later and npm (apt-get install -y nodejs npm), then the pinned servers with: npm ci --prefix tests/unleash-server";

/// Which Unleash to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnleashVersion {
    /// 7.5.1: projects, environments, API tokens.
    V7,
    /// 3.17.6: global flags, admin API behind Basic auth.
    V3,
}

impl UnleashVersion {
    /// The exact npm version.
    pub fn npm_version(self) -> &'static str {
        match self {
            UnleashVersion::V7 => "7.5.1",
            UnleashVersion::V3 => "3.17.6",
        }
    }

    /// Directory of the package under `node_modules`.
    fn package_dir(self) -> &'static str {
        match self {
            UnleashVersion::V7 => "unleash-server",
            UnleashVersion::V3 => "unleash-server-v3",
        }
    }
}

/// Environments with a seeded client token on [`UnleashVersion::V7`] (a fresh 7.x has exactly
/// these two).
pub const ENVIRONMENTS: [&str; 2] = ["development", "production"];

/// A running Unleash server. Stopped (with its PostgreSQL) when dropped.
#[derive(Debug)]
pub struct UnleashServer {
    version: UnleashVersion,
    port: u16,
    admin_token: String,
    /// v3 Basic-auth user; for v7 only a label.
    user: String,
    /// (environment, backend token) pairs for the client API (v7).
    client_tokens: Vec<(String, String)>,
    // Field order = drop order: Unleash stops before its database.
    server: Supervised,
    postgres: Postgres,
}

fn secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl UnleashServer {
    /// Starts PostgreSQL and Unleash `version`, and waits until `/health` answers (a few
    /// seconds; the first start runs the database migrations).
    pub fn start(version: UnleashVersion) -> Result<UnleashServer> {
        let dir = super::repo_root().join("tests/unleash-server");
        let package = dir.join("node_modules").join(version.package_dir());
        let node = check_node(version)?;
        let installed = std::fs::read_to_string(package.join("package.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("version")?.as_str().map(str::to_owned));
        match installed {
            None => bail!(
                "Unleash {} is not installed ({} is missing): {NODE_HINT}",
                version.npm_version(),
                package.display()
            ),
            Some(v) if v != version.npm_version() => bail!(
                "{} holds Unleash {v}, not {}: run npm ci --prefix tests/unleash-server",
                package.display(),
                version.npm_version()
            ),
            Some(_) => {}
        }

        let postgres = Postgres::start()?;
        let database_url = postgres.create_database("unleash")?;
        let port = super::free_port();
        let admin_token;
        let user;
        let mut client_tokens = Vec::new();
        let mut env = vec![
            ("DATABASE_URL".to_owned(), database_url),
            ("DATABASE_SSL".to_owned(), "false".to_owned()),
            ("HTTP_HOST".to_owned(), "127.0.0.1".to_owned()),
            ("HTTP_PORT".to_owned(), port.to_string()),
            ("CHECK_VERSION".to_owned(), "false".to_owned()),
        ];
        let command = match version {
            UnleashVersion::V7 => {
                admin_token = format!("*:*.{}", secret());
                user = "admin".to_owned();
                for environment in ENVIRONMENTS {
                    client_tokens.push((
                        environment.to_owned(),
                        format!("default:{environment}.{}", secret()),
                    ));
                }
                let backend = client_tokens
                    .iter()
                    .map(|(_, t)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(",");
                env.extend([
                    ("SEND_TELEMETRY".to_owned(), "false".to_owned()),
                    ("LOG_LEVEL".to_owned(), "warn".to_owned()),
                    ("INIT_ADMIN_API_TOKENS".to_owned(), admin_token.clone()),
                    ("INIT_BACKEND_API_TOKENS".to_owned(), backend),
                    (
                        "UNLEASH_DEFAULT_ADMIN_PASSWORD".to_owned(),
                        format!("A1-{}", secret()),
                    ),
                ]);
                vec![node, package.join("dist/server.js").display().to_string()]
            }
            UnleashVersion::V3 => {
                admin_token = secret();
                user = "keptn".to_owned();
                env.extend([
                    ("NODE_ENV".to_owned(), "production".to_owned()),
                    ("UNLEASH_BASIC_USER".to_owned(), user.clone()),
                    ("UNLEASH_BASIC_PASSWORD".to_owned(), admin_token.clone()),
                ]);
                vec![node, dir.join("start-v3.js").display().to_string()]
            }
        };
        let run_dir = fresh_temp_dir("urs-unleash")?;
        let server = Supervised::spawn(SupervisedSpec {
            name: "Unleash",
            command,
            env,
            cwd: &dir,
            log: run_dir.join("unleash.log"),
            pid_file: run_dir.join("unleash.pid"),
            stop_signal: "TERM",
            extra_pid_file: None,
            cleanup_dir: Some(run_dir),
        })?;
        let unleash = UnleashServer {
            version,
            port,
            admin_token,
            user,
            client_tokens,
            server,
            postgres,
        };
        unleash.wait_healthy(Duration::from_secs(90))?;
        tracing::info!(version = version.npm_version(), port, "Unleash started");
        Ok(unleash)
    }

    /// One server per version for the whole test binary, started on first use. Tests in the
    /// binary share it (use a unique flag name per test). It lives in a `static`, which is
    /// never dropped; the supervisor stops it when the binary exits.
    pub fn shared(version: UnleashVersion) -> Result<&'static UnleashServer> {
        static V7: OnceLock<std::result::Result<UnleashServer, String>> = OnceLock::new();
        static V3: OnceLock<std::result::Result<UnleashServer, String>> = OnceLock::new();
        let cell = match version {
            UnleashVersion::V7 => &V7,
            UnleashVersion::V3 => &V3,
        };
        cell.get_or_init(|| UnleashServer::start(version).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("starting Unleash {} failed: {e}", version.npm_version()))
    }

    fn wait_healthy(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((200, body)) = http_get(self.port, "/health")
                && body.contains("GOOD")
            {
                return Ok(());
            }
            if !self.server.is_running() {
                bail!(
                    "Unleash {} exited while starting; its log ends with:\n{}",
                    self.version.npm_version(),
                    self.server.log_tail(40)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "Unleash {} did not report /health GOOD on 127.0.0.1:{} within {within:?}; its log ends with:\n{}\nPostgreSQL log:\n{}",
                    self.version.npm_version(),
                    self.port,
                    self.server.log_tail(40),
                    self.postgres.log_tail(10)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn version(&self) -> UnleashVersion {
        self.version
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The API base, Keptn style: `http://127.0.0.1:<port>/api`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.port)
    }

    /// Admin token (v7: `*:*.<secret>`), or the Basic-auth password (v3).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The v3 Basic-auth user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Backend (client API) token for `development`. On v3 the client API needs none; this is
    /// then an empty string.
    pub fn client_token(&self) -> &str {
        self.client_token_for("development").unwrap_or("")
    }

    /// Backend token for `environment` (v7: `development` or `production`).
    pub fn client_token_for(&self, environment: &str) -> Option<&str> {
        self.client_tokens
            .iter()
            .find(|(e, _)| e == environment)
            .map(|(_, t)| t.as_str())
    }

    /// A client configuration with admin rights on this server: token (and user for v3),
    /// API detection, short timeout and backoff suited to tests.
    pub fn admin_config(&self) -> UnleashConfig {
        let mut config = UnleashConfig::new(self.base_url(), Secret::new(self.admin_token.clone()));
        config.user = self.user.clone();
        config.api = ApiMode::Auto;
        config.timeout = Duration::from_secs(10);
        config.backoff = Duration::from_millis(100);
        config
    }

    /// What an SDK in `environment` sees: `enabled` of `flag` from the client API
    /// (`/api/client/features/{flag}`, which is not cached; the list endpoint lags ~1 s).
    /// On v3 the environment is ignored (flags are global there).
    pub async fn client_flag_enabled(&self, flag: &str, environment: &str) -> Result<bool> {
        let url = format!(
            "{}/client/features/{}",
            self.base_url(),
            percent_encoding::utf8_percent_encode(flag, percent_encoding::NON_ALPHANUMERIC)
        );
        let mut request = reqwest::Client::new()
            .get(&url)
            .header("UNLEASH-APPNAME", "unleash-remediation-service-tests");
        if self.version == UnleashVersion::V7 {
            let token = self.client_token_for(environment).with_context(|| {
                format!("no client token for environment {environment:?} (have: {ENVIRONMENTS:?})")
            })?;
            request = request.header("Authorization", token);
        }
        let response = request.send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("client API GET {url} answered {status}: {body}");
        }
        let value: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("client API body: {body}"))?;
        value
            .get("enabled")
            .and_then(serde_json::Value::as_bool)
            .with_context(|| format!("client API answer without boolean `enabled`: {body}"))
    }

    /// Polls [`UnleashServer::client_flag_enabled`] until it reports `want` or `within` has
    /// passed; the error carries the last answer.
    pub async fn wait_client_flag(
        &self,
        flag: &str,
        environment: &str,
        want: bool,
        within: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let last = self.client_flag_enabled(flag, environment).await;
            if matches!(last, Ok(v) if v == want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the client API did not report {flag:?} as {} in {environment:?} within {within:?}; last answer: {last:?}",
                    if want { "enabled" } else { "disabled" }
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of the Unleash log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.server.log_tail(lines)
    }

    /// PIDs of the Unleash process (under the supervisor), for leak checks.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }
}

/// Finds `node` and checks its major version against what the Unleash version needs.
fn check_node(version: UnleashVersion) -> Result<String> {
    let output = Command::new("node").arg("--version").output();
    let text = match output {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => bail!("node is not installed or does not run: {NODE_HINT}"),
    };
    let major: u32 = text
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("cannot read the node version {text:?}"))?;
    let needed = match version {
        UnleashVersion::V7 => 20,
        UnleashVersion::V3 => 12,
    };
    if major < needed {
        bail!(
            "Unleash {} needs Node.js {needed} or later, found {text}: {NODE_HINT}",
            version.npm_version()
        );
    }
    Ok("node".to_owned())
}

/// A minimal blocking HTTP/1.0 GET on 127.0.0.1 (no async runtime needed while starting).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let timeout = Duration::from_secs(2);
    let mut stream =
        TcpStream::connect_timeout(&std::net::SocketAddr::from(([127, 0, 0, 1], port)), timeout)
            .ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// The npm project with the pinned servers.
pub fn npm_project_dir() -> PathBuf {
    super::repo_root().join("tests/unleash-server")
}
