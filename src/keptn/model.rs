//! Typed Keptn events, as the logic sees them.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Envelope attributes of an incoming event that replies need.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    /// CloudEvent `id`; a generated UUID when the sender left it out.
    pub id: String,
    pub source: String,
    pub ty: String,
    /// `shkeptncontext`, when the sender set one.
    pub keptn_context: Option<String>,
    pub triggered_id: Option<String>,
    pub git_commit_id: Option<String>,
}

/// Project, stage and service an event is about. `service` may be empty for stage-wide problems.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Scope {
    pub project: String,
    pub stage: String,
    pub service: String,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.project, self.stage, self.service)
    }
}

/// One decoded incoming event.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub meta: Meta,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// `sh.keptn.event.problem.open` or `sh.keptn.events.problem`.
    Problem(ProblemEvent),
    GetActionTriggered(GetActionTriggered),
    ActionTriggered(ActionTriggered),
    ActionFinished(ActionFinished),
}

impl Incoming {
    /// The scope of the event, when it has one.
    pub fn scope(&self) -> Option<&Scope> {
        match &self.kind {
            Kind::Problem(p) => Some(&p.scope),
            Kind::GetActionTriggered(g) => Some(&g.scope),
            Kind::ActionTriggered(a) => Some(&a.scope),
            Kind::ActionFinished(a) => Some(&a.scope),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemState {
    Open,
    Resolved,
    Closed,
}

/// The members of a problem, in both spellings (`ProblemTitle` / `problemTitle`, ...).
///
/// The object is kept as received so that it can be passed on unchanged (consumers such as
/// dynatrace-service look for `PID` and `ProblemURL` in it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProblemDetails(pub Map<String, Value>);

impl ProblemDetails {
    /// The first non-empty string member whose name equals one of `names`: the exact spelling
    /// first, then any other ASCII case (`problemTitle` for `ProblemTitle`). A member that is
    /// empty or not a string does not hide another spelling.
    fn get_str(&self, names: &[&str]) -> Option<&str> {
        fn usable(v: &Value) -> Option<&str> {
            v.as_str().filter(|s| !s.is_empty())
        }
        names.iter().find_map(|name| {
            self.0.get(*name).and_then(usable).or_else(|| {
                self.0
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .find_map(|(_, v)| usable(v))
            })
        })
    }

    pub fn title(&self) -> Option<&str> {
        self.get_str(&["ProblemTitle"])
    }
    pub fn root_cause(&self) -> Option<&str> {
        self.get_str(&["rootCause"])
    }
    pub fn problem_id(&self) -> Option<&str> {
        self.get_str(&["ProblemID"])
    }
    pub fn pid(&self) -> Option<&str> {
        self.get_str(&["PID"])
    }
    pub fn state(&self) -> Option<&str> {
        self.get_str(&["State"])
    }
    pub fn tags(&self) -> Option<&str> {
        self.get_str(&["Tags"])
    }
    pub fn url(&self) -> Option<&str> {
        self.get_str(&["ProblemURL"])
    }

    /// An id member as text: a non-empty string, or a number (`"ProblemID": 381` and
    /// `"ProblemID": "381"` are the same problem).
    fn get_id(&self, name: &str) -> Option<String> {
        if let Some(s) = self.get_str(&[name]) {
            return Some(s.to_owned());
        }
        let number = |v: &Value| v.as_number().map(|n| n.to_string());
        self.0.get(name).and_then(number).or_else(|| {
            self.0
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .find_map(|(_, v)| number(v))
        })
    }

    pub fn as_value(&self) -> Value {
        Value::Object(self.0.clone())
    }
}

/// A problem notification.
#[derive(Debug, Clone)]
pub struct ProblemEvent {
    pub scope: Scope,
    pub state: ProblemState,
    pub labels: BTreeMap<String, String>,
    /// The event's `data` object, every member as received.
    pub problem: ProblemDetails,
}

impl ProblemEvent {
    /// What identifies one problem across repeated notifications: `ProblemID`, else `PID`, else
    /// the title.
    pub fn identity(&self) -> String {
        self.problem
            .get_id("ProblemID")
            .or_else(|| self.problem.get_id("PID"))
            .or_else(|| self.problem.title().map(str::to_owned))
            .or_else(|| self.problem.root_cause().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// `action` member of `action.triggered` and `get-action.finished`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ActionInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub action: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub value: Value,
}

/// `get-action.triggered` (Keptn 0.8.3 – 1.x). When the data cannot be used, `data` holds the
/// reason; Keptn answers such an event with an errored `get-action.finished`, and so do we.
#[derive(Debug, Clone)]
pub struct GetActionTriggered {
    pub scope: Scope,
    pub labels: BTreeMap<String, String>,
    pub data: Result<GetActionRequest, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GetActionRequest {
    pub problem: ProblemDetails,
    pub action_index: usize,
}

#[derive(Debug, Clone)]
pub struct ActionTriggered {
    pub scope: Scope,
    pub labels: BTreeMap<String, String>,
    pub action: ActionInfo,
    /// The whole `data` object, so that replies can carry what the provider does not know.
    pub data: Map<String, Value>,
}

#[derive(Debug, Clone)]
pub struct ActionFinished {
    pub scope: Scope,
    pub status: String,
    pub result: String,
    pub message: String,
}

impl ActionFinished {
    /// Keptn's rule: the task failed when the status is errored or the result is neither pass
    /// nor warning.
    pub fn succeeded(&self) -> bool {
        self.status != "errored"
            && self.status != "aborted"
            && matches!(self.result.as_str(), "pass" | "warning" | "")
    }
}
