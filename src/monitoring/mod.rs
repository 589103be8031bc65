//! Monitoring webhooks: Alertmanager, Grafana and Dynatrace notifications translated into the
//! same problem events the NATS path produces. Pure translation, no I/O: the HTTP layer reads
//! the body and hands every resulting problem to the pipeline.
//!
//! One notification carries 1..N alerts; each becomes its own [`AlertOutcome`], so a bad alert
//! is rejected with a reason while the others still go through.

pub mod alertmanager;
pub mod dynatrace;
pub mod grafana;

pub(crate) use crate::keptn::decode::kind_of;
use crate::keptn::{DecodeError, Incoming, Kind, Meta, ProblemDetails, ProblemEvent, ProblemState};
use crate::keptn::{Scope, types};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Largest accepted alert (its JSON), so that one alert cannot fill the state store.
pub const MAX_ALERT_BYTES: usize = 64 * 1024;

/// The monitoring tool a notification came from; also the events' `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Alertmanager,
    Grafana,
    Dynatrace,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Alertmanager => "alertmanager",
            Source::Grafana => "grafana",
            Source::Dynatrace => "dynatrace",
        }
    }

    /// The pseudo event type rejections are logged and counted under.
    pub fn event_type(self) -> &'static str {
        match self {
            Source::Alertmanager => "webhook.alertmanager",
            Source::Grafana => "webhook.grafana",
            Source::Dynatrace => "webhook.dynatrace",
        }
    }
}

/// What became of one alert of a notification.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// A problem to hand to the pipeline.
    Problem(Box<Incoming>),
    /// Deliberately not acted upon (e.g. Dynatrace's test notification), with why.
    Ignored(String),
    /// Unusable, with why; reported like any other bad input.
    Rejected(DecodeError),
}

#[derive(Debug, Clone)]
pub struct AlertOutcome {
    /// Position of the alert in the notification.
    pub index: usize,
    /// The derived problem id, when one could be derived.
    pub problem_id: Option<String>,
    pub verdict: Verdict,
}

impl AlertOutcome {
    /// The problem, when the alert became one.
    pub fn problem(&self) -> Option<&ProblemEvent> {
        match &self.verdict {
            Verdict::Problem(incoming) => match &incoming.kind {
                Kind::Problem(p) => Some(p),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Scope given as query parameters of the webhook URL (`?project=&stage=&service=`).
pub fn query_scope(query: &str) -> Scope {
    let mut scope = Scope::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "project" => scope.project = v.into_owned(),
            "stage" => scope.stage = v.into_owned(),
            "service" => scope.service = v.into_owned(),
            _ => {}
        }
    }
    scope
}

/// First non-empty value per field, in the order given.
fn first_scope(candidates: &[Scope]) -> Scope {
    let pick = |f: fn(&Scope) -> &String| {
        candidates
            .iter()
            .map(f)
            .find(|v| !v.is_empty())
            .cloned()
            .unwrap_or_default()
    };
    Scope {
        project: pick(|s| &s.project),
        stage: pick(|s| &s.stage),
        service: pick(|s| &s.service),
    }
}

/// Hex of the first 8 bytes of SHA-256 over the parts (NUL-separated).
fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A UUID (version 4 layout) that depends only on `seed`: the same problem always lands in
/// the same Keptn context, the same notification always has the same event id.
pub fn deterministic_uuid(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The Keptn API's rule for a `shkeptncontext` that is not a UUID (Dynatrace sends its PID):
/// up to 16 bytes are padded with spaces and used as the UUID's bytes, a longer one is hashed.
/// A UUID is kept as it is.
pub fn keptn_context_from(value: &str) -> String {
    if let Ok(u) = uuid::Uuid::parse_str(value) {
        return u.to_string();
    }
    let raw = value.as_bytes();
    let mut bytes = [b' '; 16];
    if raw.len() <= 16 {
        bytes[..raw.len()].copy_from_slice(raw);
    } else {
        bytes.copy_from_slice(&Sha256::digest(raw)[..16]);
    }
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Builds the incoming problem event of one alert. `data` holds the problem members; the
/// scope is added to it, as in a Keptn problem event.
fn incoming(
    source: Source,
    problem_id: &str,
    scope: Scope,
    state: ProblemState,
    mut data: Map<String, Value>,
    labels: BTreeMap<String, String>,
) -> Incoming {
    let state_text = match state {
        ProblemState::Open => "OPEN",
        ProblemState::Resolved | ProblemState::Closed => "CLOSED",
    };
    let seed = format!("{}\0{problem_id}", source.name());
    let meta = Meta {
        id: deterministic_uuid(&format!("{seed}\0{state_text}")),
        source: source.name().to_owned(),
        ty: types::PROBLEM.to_owned(),
        keptn_context: Some(deterministic_uuid(&seed)),
        triggered_id: None,
        git_commit_id: None,
    };
    data.insert("State".into(), Value::String(state_text.into()));
    data.insert("ProblemID".into(), Value::String(problem_id.into()));
    data.insert("project".into(), Value::String(scope.project.clone()));
    data.insert("stage".into(), Value::String(scope.stage.clone()));
    data.insert("service".into(), Value::String(scope.service.clone()));
    Incoming {
        meta,
        kind: Kind::Problem(ProblemEvent {
            scope,
            state,
            labels,
            problem: ProblemDetails(data),
        }),
    }
}

/// The whole body is unusable: answered 400, nothing is handled.
fn body_error(source: Source, reason: &'static str, message: impl Into<String>) -> DecodeError {
    DecodeError {
        reason,
        message: format!("{} notification: {}", source.name(), message.into()),
        id: None,
        ty: Some(source.event_type().to_owned()),
        keptn_context: None,
    }
}

/// One alert is unusable; the others still go through.
fn alert_error(
    source: Source,
    index: usize,
    problem_id: Option<&str>,
    reason: &'static str,
    message: impl Into<String>,
) -> DecodeError {
    let seed = problem_id.map(|id| format!("{}\0{id}", source.name()));
    DecodeError {
        reason,
        message: format!(
            "alert {index} of the {} notification: {}",
            source.name(),
            message.into()
        ),
        id: seed
            .as_ref()
            .map(|s| deterministic_uuid(&format!("{s}\0rejected"))),
        ty: Some(source.event_type().to_owned()),
        keptn_context: seed.as_deref().map(deterministic_uuid),
    }
}

/// Parses a body as a JSON object.
fn json_object(source: Source, body: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    match serde_json::from_slice::<Value>(body) {
        Err(e) => Err(body_error(
            source,
            "not_json",
            format!("body is not JSON: {e}"),
        )),
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(body_error(
            source,
            "invalid_body",
            format!("body must be a JSON object, not {}", kind_of(&other)),
        )),
    }
}

/// Scope members missing for a remediation, in words; `None` when project and stage are set.
fn missing_scope(scope: &Scope) -> Option<String> {
    let missing: Vec<&str> = [("project", &scope.project), ("stage", &scope.stage)]
        .into_iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(n, _)| n)
        .collect();
    (!missing.is_empty()).then(|| missing.join(" and "))
}
