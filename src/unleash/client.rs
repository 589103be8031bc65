//! The Unleash admin client: switches one flag on or off in one environment and confirms it.
//!
//! Two API generations exist (see docs/design.md §6):
//! - v4+ (`/admin/projects/{project}/features/{flag}/environments/{env}/on|off`) with
//!   `Authorization: <token>`: the only toggle API of Unleash 5 and later.
//! - v3 (`/admin/features/{flag}/toggle/on|off`) with HTTP Basic `user:token`: what Keptn 0.6
//!   and keptn-contrib/unleash-service spoke. It needs exactly `Content-Type: application/json`
//!   (3.12+ answers 415 to anything else, even `application/json; charset=utf-8`).
//!
//! Every request has a timeout; connection errors, timeouts, 429 and 5xx are retried a bounded
//! number of times with exponential backoff (a toggle is idempotent, so a retried POST is safe);
//! every other answer is final. Errors say in plain words what is wrong, and never contain the
//! token: it only ever goes into a request header, and any text taken from a server answer is
//! scrubbed of it before it becomes part of an error.

use crate::config::Secret;
use base64::Engine as _;
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest flag name accepted. Unleash itself allows 100 characters.
pub const MAX_FLAG_NAME_LEN: usize = 100;

/// Longest backoff between two attempts, whatever the attempt number or a `Retry-After` says:
/// a remediation should fail in bounded time rather than wait on a server that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Characters left as they are in a path segment: RFC 3986 "unreserved". Everything else is
/// percent-encoded, so a name can never add a path segment or a query.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Which Unleash API to speak, as configured (`UNLEASH_API`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiMode {
    /// Ask the server once, then remember the answer.
    #[default]
    Auto,
    V4,
    V3,
}

impl FromStr for ApiMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ApiMode::Auto),
            "v4" | "v5" | "v6" | "v7" => Ok(ApiMode::V4),
            "v3" => Ok(ApiMode::V3),
            other => Err(format!(
                "unknown Unleash API {other:?}: use auto, v4 (Unleash 4 and later) or v3"
            )),
        }
    }
}

/// The API generation actually used against a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Projects and environments (Unleash 4.3 and later).
    V4,
    /// Global on/off per flag (Unleash 3.x).
    V3,
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Api::V4 => "v4+",
            Api::V3 => "v3",
        })
    }
}

/// Settings of an [`UnleashClient`].
#[derive(Debug, Clone)]
pub struct UnleashConfig {
    /// The API base, Keptn style `http://host:4242/api`; `/api` is appended when missing.
    pub base_url: String,
    /// Admin token or personal access token (v4+), or the Basic-auth password (v3).
    pub token: Secret,
    /// Basic-auth user for v3 (Keptn's `UNLEASH_USER`); unused by v4+.
    pub user: String,
    pub api: ApiMode,
    /// Project of the flags (v4+).
    pub project: String,
    /// Limit for one request, connection and answer included.
    pub timeout: Duration,
    /// Retries after the first attempt; `0` means one attempt only.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for every further retry.
    pub backoff: Duration,
}

impl UnleashConfig {
    /// A configuration with the defaults: API detected, project `default`, user `keptn`,
    /// 5 s timeout, 3 retries starting at 200 ms.
    pub fn new(base_url: impl Into<String>, token: Secret) -> Self {
        UnleashConfig {
            base_url: base_url.into(),
            token,
            user: "keptn".into(),
            api: ApiMode::Auto,
            project: "default".into(),
            timeout: Duration::from_secs(5),
            max_retries: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// Whether [`UnleashClient::create_flag`] made the flag or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagCreated {
    New,
    AlreadyExisted,
}

/// Everything that can go wrong talking to Unleash. The texts are meant for operators: they
/// appear in `action.finished` messages and logs.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum UnleashError {
    #[error("invalid Unleash configuration: {0}")]
    Config(String),
    #[error("invalid flag name {name:?}: {reason}")]
    InvalidFlagName { name: String, reason: String },
    #[error("invalid Unleash {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("Unleash rejected the token (401): wrong or expired token{}", hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default())]
    Unauthorized {
        /// Set when the answer shows that the configured API generation does not fit the
        /// server, the likelier cause of the 401.
        hint: Option<String>,
    },
    #[error(
        "token lacks permission (403): an admin token or personal access token is needed, not a client token"
    )]
    Forbidden,
    /// Unleash Enterprise with change requests on for the environment: a direct switch needs
    /// the `SKIP_CHANGE_REQUEST` permission.
    #[error(
        "Unleash requires a change request to switch flags{}{} (403): the token's user may not skip change requests (permission SKIP_CHANGE_REQUEST); approve the change in Unleash, or use a token of a user who may skip them",
        environment.as_ref().map(|e| format!(" in environment {e:?}")).unwrap_or_default(),
        in_project(project)
    )]
    ChangeRequestRequired {
        environment: Option<String>,
        project: Option<String>,
    },
    #[error(
        "Unleash has no flag {flag:?}{} (404){}",
        in_project(project),
        suffix(hint)
    )]
    NoSuchFlag {
        flag: String,
        project: Option<String>,
        /// Unleash's own words when they add something (e.g. "… but there's a feature with
        /// that name in project …").
        hint: Option<String>,
    },
    #[error(
        "Unleash has no environment {environment:?}{} (404): set UNLEASH_ENVIRONMENT, or name the Keptn stage like an Unleash environment{}",
        in_project(project),
        suffix(hint)
    )]
    NoSuchEnvironment {
        environment: String,
        project: Option<String>,
        hint: Option<String>,
    },
    #[error(
        "Unleash has no such endpoint: {request} answered 404{}; check that UNLEASH_SERVER_URL is the API base (…/api) and UNLEASH_API fits the server",
        suffix(detail)
    )]
    NotFound {
        request: String,
        detail: Option<String>,
    },
    #[error(
        "Unleash refused the request's Content-Type (415) for {request}: it accepts exactly `application/json`{}",
        suffix(detail)
    )]
    UnsupportedMediaType {
        request: String,
        detail: Option<String>,
    },
    #[error("Unleash answered {status} to {request}{}", suffix(detail))]
    Rejected {
        request: String,
        status: StatusCode,
        detail: Option<String>,
    },
    #[error(
        "Unleash answered {status} to {request} ({attempts} attempts, giving up){}",
        suffix(detail)
    )]
    ServerError {
        request: String,
        status: StatusCode,
        attempts: u32,
        detail: Option<String>,
    },
    #[error("Unleash did not answer {request} within {timeout:?} ({attempts} attempts, giving up)")]
    Timeout {
        request: String,
        timeout: Duration,
        attempts: u32,
    },
    #[error(
        "could not reach Unleash at {base} for {request} ({attempts} attempts, giving up): {reason}"
    )]
    Connect {
        base: String,
        request: String,
        attempts: u32,
        reason: String,
    },
    #[error("unexpected answer from Unleash to {request}: {reason}")]
    UnexpectedAnswer { request: String, reason: String },
    #[error(
        "Unleash still reports flag {flag:?} as {} in environment {environment:?} after switching it {}",
        on_off(*actual),
        on_off(*wanted)
    )]
    NotConfirmed {
        flag: String,
        environment: String,
        wanted: bool,
        actual: bool,
    },
}

impl UnleashError {
    /// True when the error concerns the server, the token or the environment rather than one
    /// flag: switching further flags would fail the same way.
    pub fn affects_every_flag(&self) -> bool {
        !matches!(
            self,
            UnleashError::InvalidFlagName { .. }
                | UnleashError::NoSuchFlag { .. }
                | UnleashError::NotConfirmed { .. }
                | UnleashError::Rejected { .. }
                | UnleashError::UnexpectedAnswer { .. }
        )
    }
}

fn in_project(project: &Option<String>) -> String {
    project
        .as_ref()
        .map(|p| format!(" in project {p:?}"))
        .unwrap_or_default()
}

fn suffix(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

/// Whether a 403 body is Unleash's "change requests are on" refusal: a `PermissionError` that
/// names `SKIP_CHANGE_REQUEST` in `permissions` (or, failing that, in its message).
fn needs_change_request(body: &[u8]) -> bool {
    const PERMISSION: &str = "SKIP_CHANGE_REQUEST";
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            v.get("permissions")
                .and_then(Value::as_array)
                .is_some_and(|p| p.iter().any(|p| p.as_str() == Some(PERMISSION)))
                || v.get("message")
                    .and_then(Value::as_str)
                    .is_some_and(|m| m.contains(PERMISSION))
        }
        Err(_) => false,
    }
}

/// `on` or `off`.
pub fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// Checks a flag name before it goes into a URL: Unleash names are URL-friendly (letters,
/// digits, `-`, `_`, `.`, `~`), at most [`MAX_FLAG_NAME_LEN`] long.
pub fn validate_flag_name(name: &str) -> Result<(), UnleashError> {
    let fail = |reason: String| {
        Err(UnleashError::InvalidFlagName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("the name is empty".into());
    }
    let len = name.chars().count();
    if len > MAX_FLAG_NAME_LEN {
        return fail(format!(
            "it is {len} characters long; Unleash allows at most {MAX_FLAG_NAME_LEN}"
        ));
    }
    if name == "." || name == ".." {
        return fail("\".\" and \"..\" cannot be used as a path segment".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~')))
    {
        return fail(format!(
            "character {c:?} is not allowed; use letters, digits, '-', '_', '.' and '~'"
        ));
    }
    Ok(())
}

/// Checks an environment or project name: anything printable goes (it is percent-encoded),
/// except what would change the URL's path structure.
fn validate_name(what: &'static str, value: &str) -> Result<(), UnleashError> {
    let reason = if value.is_empty() {
        Some("it is empty")
    } else if value.chars().count() > MAX_FLAG_NAME_LEN {
        Some("it is longer than 100 characters")
    } else if value == "." || value == ".." {
        Some("\".\" and \"..\" cannot be used as a path segment")
    } else if value.chars().any(char::is_control) {
        Some("it contains control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(UnleashError::InvalidName {
            what,
            value: value.to_owned(),
            reason: reason.into(),
        }),
        None => Ok(()),
    }
}

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// The Unleash admin client. Cheap to clone; clones share the connection pool and the
/// detected API generation.
#[derive(Clone)]
pub struct UnleashClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// API base without a trailing slash, e.g. `http://host:4242/api`.
    base: String,
    /// Path part of `base`, for messages (`/api`).
    base_path: String,
    token: Secret,
    /// `Basic base64(user:token)`, prepared once.
    basic: Secret,
    mode: ApiMode,
    project: String,
    timeout: Duration,
    max_retries: u32,
    backoff: Duration,
    detected: tokio::sync::OnceCell<Api>,
}

impl fmt::Debug for UnleashClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnleashClient")
            .field("base", &self.inner.base)
            .field("api", &self.inner.mode)
            .field("project", &self.inner.project)
            .field("token", &self.inner.token)
            .finish()
    }
}

/// How a request authenticates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    Token,
    Basic,
}

/// What a flag operation is about, to turn a 404 into the right words.
struct Subject<'a> {
    flag: &'a str,
    environment: Option<&'a str>,
}

/// One answer after retries.
struct Answer {
    status: StatusCode,
    body: Bytes,
    attempts: u32,
}

impl UnleashClient {
    pub fn new(config: UnleashConfig) -> Result<Self, UnleashError> {
        let (base, base_path) = normalize_base(&config.base_url)?;
        validate_name("project", &config.project)?;
        if config.token.is_empty() {
            return Err(UnleashError::Config(
                "UNLEASH_TOKEN is empty: an admin token or personal access token (v4+), or the Basic-auth password (v3), is needed".into(),
            ));
        }
        if config.timeout.is_zero() {
            return Err(UnleashError::Config("the request timeout is zero".into()));
        }
        if HeaderValue::from_str(config.token.expose()).is_err() {
            return Err(UnleashError::Config(
                "UNLEASH_TOKEN contains characters that cannot be sent in an HTTP header".into(),
            ));
        }
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                config.user,
                config.token.expose()
            ))
        );
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!(
                env!("CARGO_PKG_NAME"),
                "/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| UnleashError::Config(format!("cannot build the HTTP client: {e}")))?;
        let detected = tokio::sync::OnceCell::new();
        Ok(UnleashClient {
            inner: Arc::new(Inner {
                http,
                base,
                base_path,
                token: config.token,
                basic: Secret::new(basic),
                mode: config.api,
                project: config.project,
                timeout: config.timeout,
                max_retries: config.max_retries,
                backoff: config.backoff,
                detected,
            }),
        })
    }

    /// The API base in use, `/api` included.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    pub fn project(&self) -> &str {
        &self.inner.project
    }

    /// The API generation: the configured one, or the one detected on first use (then
    /// remembered; a failed detection is retried on the next call).
    pub async fn api(&self) -> Result<Api, UnleashError> {
        match self.inner.mode {
            ApiMode::V4 => Ok(Api::V4),
            ApiMode::V3 => Ok(Api::V3),
            ApiMode::Auto => self
                .inner
                .detected
                .get_or_try_init(|| self.detect())
                .await
                .copied(),
        }
    }

    /// Detection: the v3 API index (`GET {base}`) is public and names the server version;
    /// v4+ requires a token there. When that does not settle it, `GET {base}/admin/projects`
    /// exists only on v4+ (3.x answers 404).
    async fn detect(&self) -> Result<Api, UnleashError> {
        let index = self.call(Method::GET, "", Auth::None, None).await?;
        if index.status.is_success()
            && let Some(major) = serde_json::from_slice::<Value>(&index.body)
                .ok()
                .and_then(|v| v.get("version")?.as_str().map(str::to_owned))
                .and_then(|v| v.split('.').next()?.trim().parse::<u32>().ok())
        {
            let api = if major <= 3 { Api::V3 } else { Api::V4 };
            tracing::debug!(base = %self.inner.base, major, api = %api, "Unleash API detected from the server version");
            return Ok(api);
        }
        let projects = self
            .call(Method::GET, "/admin/projects", Auth::Token, None)
            .await?;
        let api = if projects.status == StatusCode::NOT_FOUND {
            Api::V3
        } else {
            Api::V4
        };
        tracing::debug!(base = %self.inner.base, probe_status = projects.status.as_u16(), api = %api, "Unleash API detected");
        Ok(api)
    }

    /// Switches `flag` on or off in `environment` (ignored by v3, which has none) and reads it
    /// back to confirm the new state.
    pub async fn set_flag(
        &self,
        flag: &str,
        environment: &str,
        on: bool,
    ) -> Result<(), UnleashError> {
        self.switch_flag(flag, environment, on).await?;
        let actual = self.flag_enabled(flag, environment).await?;
        if actual != on {
            return Err(UnleashError::NotConfirmed {
                flag: flag.to_owned(),
                environment: environment.to_owned(),
                wanted: on,
                actual,
            });
        }
        Ok(())
    }

    /// Switches `flag` without reading it back. [`UnleashClient::set_flag`] is what the action
    /// uses; this exists to measure what the confirmation costs.
    pub async fn switch_flag(
        &self,
        flag: &str,
        environment: &str,
        on: bool,
    ) -> Result<(), UnleashError> {
        validate_flag_name(flag)?;
        let api = self.api().await?;
        let (path, auth) = match api {
            Api::V4 => {
                validate_name("environment", environment)?;
                (
                    format!(
                        "/admin/projects/{}/features/{}/environments/{}/{}",
                        seg(&self.inner.project),
                        seg(flag),
                        seg(environment),
                        on_off(on)
                    ),
                    Auth::Token,
                )
            }
            Api::V3 => (
                format!("/admin/features/{}/toggle/{}", seg(flag), on_off(on)),
                Auth::Basic,
            ),
        };
        let answer = self
            .call(Method::POST, &path, auth, Some(json!({})))
            .await?;
        if answer.status.is_success() {
            tracing::debug!(flag, environment, state = on_off(on), api = %api, "Unleash flag switched");
            return Ok(());
        }
        let subject = Subject {
            flag,
            environment: Some(environment),
        };
        Err(self.failure(api, Method::POST, &path, &answer, Some(&subject)))
    }

    /// Whether `flag` is on in `environment` (v3: globally), read from the admin API.
    pub async fn flag_enabled(&self, flag: &str, environment: &str) -> Result<bool, UnleashError> {
        validate_flag_name(flag)?;
        let api = self.api().await?;
        let (path, auth) = match api {
            Api::V4 => {
                validate_name("environment", environment)?;
                (
                    format!(
                        "/admin/projects/{}/features/{}",
                        seg(&self.inner.project),
                        seg(flag)
                    ),
                    Auth::Token,
                )
            }
            Api::V3 => (format!("/admin/features/{}", seg(flag)), Auth::Basic),
        };
        let answer = self.call(Method::GET, &path, auth, None).await?;
        let subject = Subject {
            flag,
            environment: Some(environment),
        };
        if !answer.status.is_success() {
            return Err(self.failure(api, Method::GET, &path, &answer, Some(&subject)));
        }
        let unexpected = |reason: String| UnleashError::UnexpectedAnswer {
            request: self.request_text(&Method::GET, &path),
            reason,
        };
        let body: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| unexpected(format!("the body is not JSON ({e})")))?;
        match api {
            Api::V3 => body
                .get("enabled")
                .and_then(Value::as_bool)
                .ok_or_else(|| unexpected("no boolean `enabled` member".into())),
            Api::V4 => {
                let envs = body
                    .get("environments")
                    .and_then(Value::as_array)
                    .ok_or_else(|| unexpected("no `environments` list".into()))?;
                let env = envs
                    .iter()
                    .find(|e| e.get("name").and_then(Value::as_str) == Some(environment))
                    .ok_or_else(|| UnleashError::NoSuchEnvironment {
                        environment: environment.to_owned(),
                        project: Some(self.inner.project.clone()),
                        hint: Some(format!("flag {flag:?} has no such environment")),
                    })?;
                env.get("enabled").and_then(Value::as_bool).ok_or_else(|| {
                    unexpected(format!(
                        "environment {environment:?} has no boolean `enabled`"
                    ))
                })
            }
        }
    }

    /// Creates a flag (switched off): a `kill-switch` in the configured project on v4+, a flag
    /// with the default strategy on v3. A flag that already exists is fine.
    pub async fn create_flag(&self, flag: &str) -> Result<FlagCreated, UnleashError> {
        validate_flag_name(flag)?;
        let api = self.api().await?;
        let (path, auth, body) = match api {
            Api::V4 => (
                format!("/admin/projects/{}/features", seg(&self.inner.project)),
                Auth::Token,
                json!({"name": flag, "type": "kill-switch"}),
            ),
            Api::V3 => (
                "/admin/features".to_owned(),
                Auth::Basic,
                json!({"name": flag, "enabled": false, "strategies": [{"name": "default"}]}),
            ),
        };
        let answer = self.call(Method::POST, &path, auth, Some(body)).await?;
        if answer.status.is_success() {
            Ok(FlagCreated::New)
        } else if answer.status == StatusCode::CONFLICT {
            Ok(FlagCreated::AlreadyExisted)
        } else {
            // A 404 here is about the project or the endpoint, not the flag being created.
            Err(self.failure(api, Method::POST, &path, &answer, None))
        }
    }

    fn request_text(&self, method: &Method, path: &str) -> String {
        format!("{method} {}{path}", self.inner.base_path)
    }

    /// Turns a final non-success answer into an error in plain words.
    fn failure(
        &self,
        api: Api,
        method: Method,
        path: &str,
        answer: &Answer,
        subject: Option<&Subject<'_>>,
    ) -> UnleashError {
        let request = self.request_text(&method, path);
        let detail = self.detail(&answer.body);
        let project = match api {
            Api::V4 => Some(self.inner.project.clone()),
            Api::V3 => None,
        };
        match answer.status {
            StatusCode::UNAUTHORIZED => UnleashError::Unauthorized {
                hint: wrong_generation_hint(api, &answer.body),
            },
            StatusCode::FORBIDDEN if needs_change_request(&answer.body) => {
                UnleashError::ChangeRequestRequired {
                    environment: subject.and_then(|s| s.environment).map(str::to_owned),
                    project,
                }
            }
            StatusCode::FORBIDDEN => UnleashError::Forbidden,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                UnleashError::UnsupportedMediaType { request, detail }
            }
            StatusCode::NOT_FOUND => {
                let text = detail.clone().unwrap_or_default().to_ascii_lowercase();
                let route_missing = text.contains("path you were looking for")
                    || text.starts_with("cannot ")
                    || text.contains("<html");
                match subject {
                    Some(s) if !route_missing && text.contains("environment") => {
                        UnleashError::NoSuchEnvironment {
                            environment: s.environment.unwrap_or_default().to_owned(),
                            project,
                            hint: detail,
                        }
                    }
                    // v3 answers a toggle of an unknown flag with an empty 404, a read with
                    // {"error":"Could not find feature"}; v4+ says "There's no feature named …".
                    Some(s)
                        if !route_missing
                            && (text.is_empty()
                                || text.contains("feature")
                                || text.contains("flag")
                                || text.contains("toggle")) =>
                    {
                        UnleashError::NoSuchFlag {
                            flag: s.flag.to_owned(),
                            project,
                            hint: detail.filter(|d| d.contains("but there")),
                        }
                    }
                    _ => UnleashError::NotFound { request, detail },
                }
            }
            s if is_retryable(s) => UnleashError::ServerError {
                request,
                status: s,
                attempts: answer.attempts,
                detail,
            },
            status => UnleashError::Rejected {
                request,
                status,
                detail,
            },
        }
    }

    /// Unleash's own explanation from an error body (`message`, `details[0].message` or
    /// `error`), else a short plain-text excerpt; scrubbed of the token.
    fn detail(&self, body: &[u8]) -> Option<String> {
        let text = match serde_json::from_slice::<Value>(body) {
            Ok(v) => ["message", "error"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_owned))
                .or_else(|| {
                    v.pointer("/details/0/message")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })?,
            Err(_) => {
                let raw = String::from_utf8_lossy(body);
                // Express error pages carry the useful line in <pre>.
                match (raw.find("<pre>"), raw.find("</pre>")) {
                    (Some(a), Some(b)) if b > a + 5 => raw[a + 5..b].to_owned(),
                    _ => raw.trim().to_owned(),
                }
            }
        };
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            return None;
        }
        let mut text = self.scrub(&text);
        if text.chars().count() > 300 {
            text = text.chars().take(300).collect::<String>() + "…";
        }
        Some(text)
    }

    /// Removes the token (and the Basic credentials) from text that came from a server.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        let basic = self.inner.basic.expose();
        let encoded = basic.strip_prefix("Basic ").unwrap_or(basic);
        for secret in [self.inner.token.expose(), encoded] {
            if secret.len() >= 4 {
                out = out.replace(secret, "***");
            }
        }
        out
    }

    /// Sends one request, retrying connection errors, timeouts, 429 and 5xx. Returns the final
    /// answer, whatever its status; fails only when no answer came.
    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Auth,
        body: Option<Value>,
    ) -> Result<Answer, UnleashError> {
        let url = format!("{}{path}", self.inner.base);
        let request = self.request_text(&method, path);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let mut builder = self
                .inner
                .http
                .request(method.clone(), &url)
                .header(ACCEPT, "application/json");
            builder = match auth {
                Auth::None => builder,
                Auth::Token => builder.header(AUTHORIZATION, sensitive(self.inner.token.expose())),
                Auth::Basic => builder.header(AUTHORIZATION, sensitive(self.inner.basic.expose())),
            };
            if let Some(body) = &body {
                // Exactly this string: Unleash 3.x compares the header verbatim.
                builder = builder
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            }
            let started = Instant::now();
            let outcome = match builder.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers().get(RETRY_AFTER));
                    response
                        .bytes()
                        .await
                        .map(|body| (status, body, retry_after))
                }
                Err(e) => Err(e),
            };
            let elapsed = started.elapsed();
            metrics::histogram!("unleash_request_duration_seconds").record(elapsed.as_secs_f64());
            let status_label = match &outcome {
                Ok((status, _, _)) => status.as_u16().to_string(),
                Err(_) => "error".to_owned(),
            };
            metrics::counter!("unleash_requests_total", "method" => method.to_string(), "status" => status_label)
                .increment(1);
            let may_retry = attempt <= self.inner.max_retries;
            match outcome {
                Ok((status, body, retry_after)) => {
                    tracing::debug!(%request, status = status.as_u16(), attempt, elapsed_ms = elapsed.as_millis() as u64, "Unleash answered");
                    if is_retryable(status) && may_retry {
                        let wait = self.backoff(attempt, retry_after);
                        tracing::warn!(%request, status = status.as_u16(), attempt, retry_in_ms = wait.as_millis() as u64, "Unleash answered with a retryable status; retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Ok(Answer {
                        status,
                        body,
                        attempts: attempt,
                    });
                }
                Err(e) => {
                    let retryable =
                        e.is_timeout() || e.is_connect() || e.is_request() || e.is_body();
                    let reason = self.scrub(&root_cause(&e));
                    if retryable && may_retry {
                        let wait = self.backoff(attempt, None);
                        tracing::warn!(%request, attempt, error = %reason, retry_in_ms = wait.as_millis() as u64, "Unleash request failed; retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(if e.is_timeout() {
                        UnleashError::Timeout {
                            request,
                            timeout: self.inner.timeout,
                            attempts: attempt,
                        }
                    } else {
                        UnleashError::Connect {
                            base: self.inner.base.clone(),
                            request,
                            attempts: attempt,
                            reason,
                        }
                    });
                }
            }
        }
    }

    /// Exponential backoff from the configured start, never below what a `Retry-After` asked
    /// for, never above [`MAX_BACKOFF`].
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        let exponential = self.inner.backoff.saturating_mul(factor);
        exponential
            .max(retry_after.unwrap_or_default())
            .min(MAX_BACKOFF)
    }
}

/// A header value marked sensitive, so that no layer (hyper, reqwest's Debug) prints it.
fn sensitive(value: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(value).expect("checked in UnleashClient::new");
    v.set_sensitive(true);
    v
}

/// Unleash 4+ names its errors (`"name": "UnauthorizedError"`), 3.x does not; its built-in
/// "unsecure" mode points at `/api/admin/login`. A 401 in the other generation's style means
/// `UNLEASH_API` is wrong rather than the token.
fn wrong_generation_hint(api: Api, body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let named = matches!(
        v.get("name").and_then(Value::as_str),
        Some("UnauthorizedError" | "AuthenticationRequired")
    );
    let v3_style = v.get("path").and_then(Value::as_str) == Some("/api/admin/login")
        || v.get("type").and_then(Value::as_str) == Some("unsecure");
    match api {
        Api::V3 if named => Some(
            "the server answers like Unleash 4 or later, which has no v3 API: set UNLEASH_API=v4 or auto".into(),
        ),
        Api::V4 if v3_style => Some(
            "the server answers like Unleash 3, whose admin API takes Basic auth: set UNLEASH_API=v3 or auto".into(),
        ),
        _ => None,
    }
}

fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Retry-After` in seconds (the HTTP-date form is rare for APIs and ignored).
fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    value?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The innermost cause of a transport error ("Connection refused (os error 111)"), which is
/// what an operator needs; reqwest's outer layers only say "error sending request".
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.is_empty() { e.to_string() } else { text }
}

/// Validates the configured base URL and appends `/api` when it is missing.
fn normalize_base(raw: &str) -> Result<(String, String), UnleashError> {
    let trimmed = raw.trim();
    let url = url::Url::parse(trimmed).map_err(|e| {
        UnleashError::Config(format!(
            "UNLEASH_SERVER_URL {trimmed:?} is not a URL ({e}); expected e.g. http://unleash:4242/api"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UnleashError::Config(format!(
            "UNLEASH_SERVER_URL must be http or https, not {:?}",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in the URL would end up in error messages and logs.
        return Err(UnleashError::Config(
            "UNLEASH_SERVER_URL must not contain credentials; put the token in UNLEASH_TOKEN"
                .into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UnleashError::Config(
            "UNLEASH_SERVER_URL must not have a query or fragment".into(),
        ));
    }
    let mut path = url.path().trim_end_matches('/').to_owned();
    if !path.ends_with("/api") {
        path.push_str("/api");
    }
    let mut base = url.clone();
    base.set_path(&path);
    let base = base.as_str().trim_end_matches('/').to_owned();
    Ok((base, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_gets_api_appended_once() {
        for (raw, want) in [
            ("http://h:4242/api", "http://h:4242/api"),
            ("http://h:4242/api/", "http://h:4242/api"),
            ("http://h:4242", "http://h:4242/api"),
            ("http://h:4242/", "http://h:4242/api"),
            ("http://h/unleash/api", "http://h/unleash/api"),
            ("http://h/unleash", "http://h/unleash/api"),
        ] {
            assert_eq!(normalize_base(raw).unwrap().0, want, "{raw}");
        }
        assert!(normalize_base("http://u:p@h/api").is_err());
        assert!(normalize_base("ftp://h/api").is_err());
        assert!(normalize_base("h:4242").is_err());
    }

    #[test]
    fn flag_names() {
        for ok in ["EnableStaticContent", "a", "a-b_c.d~e", &"x".repeat(100)] {
            validate_flag_name(ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            (".", "path segment"),
            ("..", "path segment"),
            ("a/b", "'/'"),
            ("a b", "' '"),
            ("a?b", "'?'"),
            ("Flag:on", "':'"),
            ("é", "'é'"),
        ] {
            let e = validate_flag_name(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = validate_flag_name(&"x".repeat(101))
            .unwrap_err()
            .to_string();
        assert!(e.contains("101 characters"), "{e}");
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("dev env/1?x"), "dev%20env%2F1%3Fx");
        assert_eq!(seg("a-b_c.d~e"), "a-b_c.d~e");
    }

    #[test]
    fn api_mode_parses() {
        assert_eq!("AUTO".parse::<ApiMode>().unwrap(), ApiMode::Auto);
        assert_eq!("v4".parse::<ApiMode>().unwrap(), ApiMode::V4);
        assert_eq!("v3".parse::<ApiMode>().unwrap(), ApiMode::V3);
        assert!("v2".parse::<ApiMode>().is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let mut config = UnleashConfig::new("http://h/api", Secret::new("*:*.very-secret"));
        config.user = "me".into();
        let client = UnleashClient::new(config.clone()).unwrap();
        for text in [format!("{client:?}"), format!("{config:?}")] {
            assert!(!text.contains("very-secret"), "{text}");
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let mut config = UnleashConfig::new("http://h/api", Secret::new("token"));
        config.backoff = Duration::from_millis(100);
        let c = UnleashClient::new(config).unwrap();
        assert_eq!(c.backoff(1, None), Duration::from_millis(100));
        assert_eq!(c.backoff(2, None), Duration::from_millis(200));
        assert_eq!(c.backoff(3, None), Duration::from_millis(400));
        assert_eq!(
            c.backoff(3, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(c.backoff(40, None), MAX_BACKOFF);
        assert_eq!(c.backoff(1, Some(Duration::from_secs(3600))), MAX_BACKOFF);
    }
}
