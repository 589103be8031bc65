//! The Unleash transport: one request, authenticated as asked, retried when worth it
//! (connection errors, timeouts, 429 and 5xx; a toggle is idempotent, so a retried POST is
//! safe), measured, and whatever comes back from the server scrubbed of the token.

use super::UnleashError;
use super::config::UnleashConfig;
use crate::http_client::{Backoff, Retry, Verdict, retry_after, root_cause, sensitive};
use crate::secret::Secret;
use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Longest backoff between two attempts, whatever the attempt number or a `Retry-After` says:
/// a remediation should fail in bounded time rather than wait on a server that is down.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How a request authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Auth {
    None,
    Token,
    Basic,
}

/// One answer after retries.
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub attempts: u32,
}

pub(super) struct Transport {
    http: reqwest::Client,
    /// API base without a trailing slash, e.g. `http://host:4242/api`.
    pub base: String,
    /// Path part of `base`, for messages (`/api`).
    base_path: String,
    pub token: Secret,
    /// `Basic base64(user:token)`, prepared once.
    basic: Secret,
    timeout: Duration,
    retry: Retry,
}

impl Transport {
    /// Checks the token and the timeout, and builds the HTTP client. `base` and `base_path`
    /// come from [`super::config::normalize_base`].
    pub fn new(
        config: &UnleashConfig,
        base: String,
        base_path: String,
    ) -> Result<Self, UnleashError> {
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
        let http = crate::http_client::client_builder(config.timeout)
            .user_agent(concat!(
                env!("CARGO_PKG_NAME"),
                "/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| UnleashError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Transport {
            http,
            base,
            base_path,
            token: config.token.clone(),
            basic: Secret::new(basic),
            timeout: config.timeout,
            retry: Retry {
                retries: config.max_retries,
                backoff: Backoff {
                    start: config.backoff,
                    max: MAX_BACKOFF,
                },
            },
        })
    }

    /// `POST /api/admin/…`: a request as messages name it, without host or credentials.
    pub fn request_text(&self, method: &Method, path: &str) -> String {
        format!("{method} {}{path}", self.base_path)
    }

    /// Sends one request, retrying connection errors, timeouts, 429 and 5xx. Returns the final
    /// answer, whatever its status; fails only when no answer came.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Auth,
        body: Option<Value>,
    ) -> Result<Answer, UnleashError> {
        let url = format!("{}{path}", self.base);
        let request = self.request_text(&method, path);
        let mut n = 0;
        let attempt = || {
            n += 1;
            self.attempt(&method, &url, &request, auth, body.as_ref(), n)
        };
        let verdict =
            |outcome: &Result<(StatusCode, Bytes, Option<Duration>), reqwest::Error>| match outcome
            {
                Ok((status, _, retry_after)) if is_retryable(*status) => Verdict::Retry {
                    at_least: *retry_after,
                },
                Err(e) if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() => {
                    Verdict::Retry { at_least: None }
                }
                _ => Verdict::Done,
            };
        let before_retry = |outcome: &Result<_, reqwest::Error>, attempt: u32, wait: Duration| {
            let retry_in_ms = wait.as_millis() as u64;
            match outcome {
                Ok((status, _, _)) => {
                    let status: &StatusCode = status;
                    tracing::warn!(%request, status = status.as_u16(), attempt, retry_in_ms, "Unleash answered with a retryable status; retrying");
                }
                Err(e) => {
                    let reason = self.scrub(&root_cause(e));
                    tracing::warn!(%request, attempt, error = %reason, retry_in_ms, "Unleash request failed; retrying");
                }
            }
        };
        let (outcome, attempts) = self.retry.run(attempt, verdict, before_retry).await;
        match outcome {
            Ok((status, body, _)) => Ok(Answer {
                status,
                body,
                attempts,
            }),
            Err(e) if e.is_timeout() => Err(UnleashError::Timeout {
                request,
                timeout: self.timeout,
                attempts,
            }),
            Err(e) => Err(UnleashError::Connect {
                base: self.base.clone(),
                request,
                attempts,
                reason: self.scrub(&root_cause(&e)),
            }),
        }
    }

    /// One attempt: the status, the whole body and the `Retry-After`, counted and timed.
    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        request: &str,
        auth: Auth,
        body: Option<&Value>,
        attempt: u32,
    ) -> Result<(StatusCode, Bytes, Option<Duration>), reqwest::Error> {
        let mut builder = self
            .http
            .request(method.clone(), url)
            .header(ACCEPT, "application/json");
        let header =
            |secret: &Secret| sensitive(secret.expose()).expect("checked in Transport::new");
        builder = match auth {
            Auth::None => builder,
            Auth::Token => builder.header(AUTHORIZATION, header(&self.token)),
            Auth::Basic => builder.header(AUTHORIZATION, header(&self.basic)),
        };
        if let Some(body) = body {
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
        if let Ok((status, _, _)) = &outcome {
            tracing::debug!(%request, status = status.as_u16(), attempt, elapsed_ms = elapsed.as_millis() as u64, "Unleash answered");
        }
        outcome
    }

    /// Unleash's own explanation from an error body (`message`, `details[0].message` or
    /// `error`), else a short plain-text excerpt; scrubbed of the token.
    pub fn detail(&self, body: &[u8]) -> Option<String> {
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
        let basic = self.basic.expose();
        let encoded = basic.strip_prefix("Basic ").unwrap_or(basic);
        for secret in [self.token.expose(), encoded] {
            if secret.len() >= 4 {
                out = out.replace(secret, "***");
            }
        }
        out
    }
}

/// 429 and 5xx: the server may answer differently in a moment.
pub(super) fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}
