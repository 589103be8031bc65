//! [`UnleashError`]: everything that can go wrong talking to Unleash, in words for operators.

use super::names::on_off;
use reqwest::StatusCode;
use std::time::Duration;

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
