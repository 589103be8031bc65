//! How to reach Unleash: the base URL, the token, the API generation, the project, timeouts and
//! retries.

use crate::secret::Secret;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::UnleashError;

/// Which Unleash API to speak, as configured (`UNLEASH_API`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ApiMode {
    /// Ask the server once, then remember the answer.
    #[default]
    Auto,
    /// Unleash 4 and later: projects and environments, `Authorization: <token>`.
    V4,
    /// Unleash 3.x: one global state per flag, HTTP Basic auth.
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

/// Settings of an [`super::UnleashClient`].
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
            backoff: DEFAULT_BACKOFF,
        }
    }
}

/// The wait before the first retry unless configured otherwise.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(200);

/// Validates the configured base URL and appends `/api` when it is missing. Returns the base
/// without a trailing slash and its path part (for messages).
pub(super) fn normalize_base(raw: &str) -> Result<(String, String), UnleashError> {
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
    fn api_mode_parses() {
        assert_eq!("AUTO".parse::<ApiMode>().unwrap(), ApiMode::Auto);
        assert_eq!("v4".parse::<ApiMode>().unwrap(), ApiMode::V4);
        assert_eq!("v3".parse::<ApiMode>().unwrap(), ApiMode::V3);
        assert!("v2".parse::<ApiMode>().is_err());
    }
}
