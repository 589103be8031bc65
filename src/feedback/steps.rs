//! From remediation events to the steps people are told about.
//!
//! `action.finished` and `remediation.finished` carry only the Keptn context, so the
//! [`Tracker`] remembers, per context, the problem (from `remediation.triggered` or
//! `action.triggered`) and the actions triggered. It holds at most a fixed number of
//! remediations (the oldest are forgotten first) and forgets one when it finishes.

use crate::keptn::{ActionInfo, ProblemDetails, Scope, types};
use crate::roles::action::{FlagChange, parse_value};
use chrono::{DateTime, Utc};
use cloudevents::{AttributesReader, Data, Event};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Remediations remembered at once.
pub(super) const TRACKED: usize = 10_000;

/// One event as the notifier needs it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub ty: String,
    pub id: String,
    pub keptn_context: String,
    pub triggered_id: Option<String>,
    pub time: DateTime<Utc>,
    pub data: Value,
}

impl Seen {
    pub(crate) fn from_event(event: &Event) -> Seen {
        let ext = |name: &str| event.extension(name).map(|v| v.to_string());
        let data = match event.data() {
            Some(Data::Json(v)) => v.clone(),
            Some(Data::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
            Some(Data::Binary(b)) => serde_json::from_slice(b).unwrap_or(Value::Null),
            None => Value::Null,
        };
        Seen {
            ty: event.ty().to_owned(),
            id: event.id().to_owned(),
            keptn_context: ext("shkeptncontext").unwrap_or_default(),
            triggered_id: ext("triggeredid"),
            time: event.time().copied().unwrap_or_else(Utc::now),
            data,
        }
    }
}

/// What the feedback says about the problem.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Problem {
    pub scope: Scope,
    pub title: String,
    /// `ProblemID`, else `PID`.
    pub id: String,
    pub dynatrace_id: Option<String>,
    /// `ProblemDetails.source` (alertmanager, grafana, dynatrace), when the problem says.
    pub source: Option<String>,
    pub url: Option<String>,
    pub dashboard_uid: Option<String>,
    pub panel_id: Option<i64>,
    /// The problem was CLOSED or RESOLVED: its actions are close actions.
    pub closed: bool,
}

fn details_object(problem: &Map<String, Value>) -> Option<Map<String, Value>> {
    let details = problem
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("ProblemDetails"))
        .map(|(_, v)| v)?;
    match details {
        Value::Object(m) => Some(m.clone()),
        // Some Dynatrace templates send the details as JSON text.
        Value::String(s) => serde_json::from_str::<Map<String, Value>>(s).ok(),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The Dynatrace problem id of a problem: the text after `;pid=` in `ProblemURL`, else
/// `ProblemDetails.id`, else `PID`. Problems from Alertmanager or Grafana have none.
pub fn problem_dynatrace_id(problem: &Map<String, Value>) -> Option<String> {
    let details = details_object(problem).unwrap_or_default();
    if let Some(source) = text(details.get("source"))
        && !source.eq_ignore_ascii_case("dynatrace")
    {
        return None;
    }
    let p = ProblemDetails(problem.clone());
    if let Some(url) = p.url() {
        let lower = url.to_ascii_lowercase();
        if let Some(at) = lower.find(";pid=") {
            let rest = &url[at + 5..];
            let end = rest.find([';', '&', '?', '#', '/']).unwrap_or(rest.len());
            let id = rest[..end].trim();
            if !id.is_empty() {
                return Some(id.to_owned());
            }
        }
    }
    text(details.get("id")).or_else(|| p.pid().map(str::to_owned))
}

impl Problem {
    fn from_data(data: &Value) -> Problem {
        let empty = Map::new();
        let object = data.as_object().unwrap_or(&empty);
        let scope = Scope {
            project: str_of(object, "project"),
            stage: str_of(object, "stage"),
            service: str_of(object, "service"),
        };
        let raw = object
            .get("problem")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let p = ProblemDetails(raw.clone());
        let details = details_object(raw).unwrap_or_default();
        let state = p.state().unwrap_or_default();
        Problem {
            scope,
            title: p.title().unwrap_or_default().to_owned(),
            id: p
                .problem_id()
                .or_else(|| p.pid())
                .unwrap_or_default()
                .to_owned(),
            dynatrace_id: problem_dynatrace_id(raw),
            source: text(details.get("source")).map(|s| s.to_ascii_lowercase()),
            url: p.url().map(str::to_owned),
            dashboard_uid: text(details.get("dashboardUID")),
            panel_id: details.get("panelId").and_then(|v| match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }),
            closed: state.eq_ignore_ascii_case("CLOSED") || state.eq_ignore_ascii_case("RESOLVED"),
        }
    }
}

fn str_of(object: &Map<String, Value>, name: &str) -> String {
    object
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// What happened to one flag, as far as `action.finished` tells.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FlagState {
    /// The wanted state, not yet reported.
    Wanted,
    Confirmed,
    Failed(String),
    NotSwitched(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlagLine {
    pub flag: String,
    pub on: bool,
    /// The state before the switch; `None` when unknown (the read failed, or the event does
    /// not say).
    pub was_on: Option<bool>,
    pub state: FlagState,
}

/// One action of a remediation.
#[derive(Debug, Clone, Default)]
pub(crate) struct ActionSeen {
    /// 1 for the first action of the remediation, 2 for the next (escalation), …
    pub number: usize,
    pub info: ActionInfo,
    pub flags: Vec<FlagChange>,
}

impl ActionSeen {
    /// `"Serve the static page" (toggle-feature)`.
    pub fn label(&self) -> String {
        let name = self.info.name.trim();
        let action = self.info.action.trim();
        if name.is_empty() || name == action {
            format!("{action:?}")
        } else {
            format!("{name:?} ({action})")
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StepKind {
    RemediationTriggered,
    StatusChanged,
    ActionTriggered,
    ActionStarted,
    ActionFinished {
        status: String,
        result: String,
        message: String,
        flags: Vec<FlagLine>,
    },
    RemediationFinished {
        status: String,
        result: String,
        message: String,
        /// From remediation.triggered to remediation.finished, when both were seen here.
        duration_ms: Option<i64>,
        /// The flags of the last action that finished here.
        flags: Vec<FlagLine>,
    },
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::RemediationTriggered => "remediation.triggered",
            StepKind::StatusChanged => "remediation.status.changed",
            StepKind::ActionTriggered => "action.triggered",
            StepKind::ActionStarted => "action.started",
            StepKind::ActionFinished { .. } => "action.finished",
            StepKind::RemediationFinished { .. } => "remediation.finished",
        }
    }
}

/// One step of one remediation, with what is known about its problem and action.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub kind: StepKind,
    pub problem: Problem,
    pub keptn_context: String,
    pub time: DateTime<Utc>,
    pub action: Option<ActionSeen>,
}

#[derive(Debug, Default)]
struct Tracked {
    problem: Problem,
    started: Option<DateTime<Utc>>,
    /// By action.triggered id.
    actions: HashMap<String, ActionSeen>,
    finished_actions: HashSet<String>,
    started_actions: HashSet<String>,
    last_flags: Vec<FlagLine>,
}

/// Per-context memory, bounded.
pub(crate) struct Tracker {
    capacity: usize,
    next: u64,
    entries: HashMap<String, (u64, Tracked)>,
    order: BTreeMap<u64, String>,
}

impl Tracker {
    pub fn new(capacity: usize) -> Tracker {
        Tracker {
            capacity: capacity.max(1),
            next: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn entry(&mut self, context: &str) -> &mut Tracked {
        if !self.entries.contains_key(context) {
            while self.entries.len() >= self.capacity {
                let Some((_, oldest)) = self.order.pop_first() else {
                    break;
                };
                self.entries.remove(&oldest);
            }
            self.next += 1;
            self.order.insert(self.next, context.to_owned());
            self.entries
                .insert(context.to_owned(), (self.next, Tracked::default()));
        }
        &mut self.entries.get_mut(context).expect("just inserted").1
    }

    fn forget(&mut self, context: &str) {
        if let Some((seq, _)) = self.entries.remove(context) {
            self.order.remove(&seq);
        }
    }

    /// The steps one event makes (none for a repeat).
    pub fn observe(&mut self, seen: Seen) -> Vec<Step> {
        let context = seen.keptn_context.clone();
        let step = |kind: StepKind, t: &Tracked, action: Option<ActionSeen>| Step {
            kind,
            problem: t.problem.clone(),
            keptn_context: context.clone(),
            time: seen.time,
            action,
        };
        match seen.ty.as_str() {
            types::REMEDIATION_TRIGGERED => {
                let t = self.entry(&context);
                t.problem = Problem::from_data(&seen.data);
                t.started.get_or_insert(seen.time);
                vec![step(StepKind::RemediationTriggered, t, None)]
            }
            types::REMEDIATION_STATUS_CHANGED => {
                let t = self.entry(&context);
                vec![step(StepKind::StatusChanged, t, None)]
            }
            types::ACTION_TRIGGERED => {
                let t = self.entry(&context);
                if t.actions.contains_key(&seen.id) {
                    return Vec::new(); // the one this process published, received back
                }
                let problem = Problem::from_data(&seen.data);
                if t.problem == Problem::default() || problem.closed {
                    t.problem = problem;
                }
                let info: ActionInfo = seen
                    .data
                    .get("action")
                    .cloned()
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default();
                let flags = parse_value(&info.value).unwrap_or_default();
                let action = ActionSeen {
                    number: t.actions.len() + 1,
                    info,
                    flags,
                };
                t.actions.insert(seen.id.clone(), action.clone());
                vec![step(StepKind::ActionTriggered, t, Some(action))]
            }
            types::ACTION_STARTED => {
                let t = self.entry(&context);
                let key = seen.triggered_id.clone().unwrap_or_default();
                if !t.started_actions.insert(key.clone()) {
                    return Vec::new();
                }
                let action = t.actions.get(&key).cloned();
                vec![step(StepKind::ActionStarted, t, action)]
            }
            types::ACTION_FINISHED => {
                let t = self.entry(&context);
                let key = seen.triggered_id.clone().unwrap_or_default();
                if !t.finished_actions.insert(key.clone()) {
                    return Vec::new();
                }
                let action = t.actions.get(&key).cloned();
                let (status, result, message) = outcome(&seen.data);
                let flags = match structured_flags(&seen.data) {
                    Some(flags) => flags,
                    None => action
                        .as_ref()
                        .map(|a| flag_lines(&a.flags, &message))
                        .unwrap_or_default(),
                };
                t.last_flags = flags.clone();
                let kind = StepKind::ActionFinished {
                    status,
                    result,
                    message,
                    flags,
                };
                vec![step(kind, t, action)]
            }
            types::REMEDIATION_FINISHED => {
                let t = self.entry(&context);
                let (status, result, message) = outcome(&seen.data);
                let duration_ms = t.started.map(|s| (seen.time - s).num_milliseconds().max(0));
                let last = t.actions.values().max_by_key(|a| a.number).cloned();
                let kind = StepKind::RemediationFinished {
                    status,
                    result,
                    message,
                    duration_ms,
                    flags: t.last_flags.clone(),
                };
                let out = vec![step(kind, t, last)];
                self.forget(&context);
                out
            }
            _ => Vec::new(),
        }
    }
}

fn outcome(data: &Value) -> (String, String, String) {
    let s = |name: &str| {
        data.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (s("status"), s("result"), s("message"))
}

/// Each flag's outcome from `data.flags` of an `action.finished` (this service's action role);
/// `None` when the event has no such list (another provider, an older version).
pub(crate) fn structured_flags(data: &Value) -> Option<Vec<FlagLine>> {
    let list = data.get("flags")?.as_array()?;
    let on_off = |v: Option<&Value>| match v.and_then(Value::as_str) {
        Some("on") => Some(true),
        Some("off") => Some(false),
        _ => None,
    };
    let lines = list
        .iter()
        .filter_map(|f| {
            let flag = f.get("flag")?.as_str()?.to_owned();
            let on = on_off(f.get("to"))?;
            let reason = f
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let state = match f.get("result").and_then(Value::as_str) {
                Some("confirmed") => FlagState::Confirmed,
                Some("failed") => FlagState::Failed(reason),
                Some("skipped" | "refused") => FlagState::NotSwitched(reason),
                Some("dry_run") => FlagState::NotSwitched("dry run".into()),
                _ => FlagState::Wanted,
            };
            Some(FlagLine {
                flag,
                on,
                was_on: on_off(f.get("from")),
                state,
            })
        })
        .collect();
    Some(lines)
}

/// Each flag's outcome, read from the action role's message
/// (`Flag: on (confirmed); Other: failed to switch off: …`). A flag the message does not name
/// keeps [`FlagState::Wanted`].
pub(crate) fn flag_lines(flags: &[FlagChange], message: &str) -> Vec<FlagLine> {
    // Where each flag's part starts: at the beginning or after "; ".
    let starts: Vec<Option<usize>> = {
        let mut from = 0;
        flags
            .iter()
            .map(|f| {
                let pattern = format!("{}: ", f.flag);
                let found = message[from..]
                    .match_indices(&pattern)
                    .map(|(i, _)| from + i)
                    .find(|&i| i == 0 || message[..i].ends_with("; "));
                if let Some(i) = found {
                    from = i + pattern.len();
                }
                found
            })
            .collect()
    };
    flags
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let state = match starts[i] {
                None => FlagState::Wanted,
                Some(start) => {
                    let body_start = start + f.flag.len() + 2;
                    let end = starts[i + 1..]
                        .iter()
                        .flatten()
                        .next()
                        .map(|next| next - 2)
                        .unwrap_or(message.len())
                        .max(body_start);
                    let body = &message[body_start..end];
                    let word = crate::unleash::on_off(f.on);
                    if body == format!("{word} (confirmed)") {
                        FlagState::Confirmed
                    } else if let Some(why) =
                        body.strip_prefix(&format!("failed to switch {word}: "))
                    {
                        FlagState::Failed(why.to_owned())
                    } else if let Some(why) = body.strip_prefix(&format!("not switched {word} (")) {
                        FlagState::NotSwitched(why.trim_end_matches(')').to_owned())
                    } else {
                        FlagState::Failed(body.to_owned())
                    }
                }
            };
            FlagLine {
                flag: f.flag.to_string(),
                on: f.on,
                was_on: None,
                state,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(flag: &str, on: bool) -> FlagChange {
        FlagChange {
            flag: flag.parse().unwrap(),
            on,
        }
    }

    #[test]
    fn flag_outcomes_come_from_the_action_message() {
        let flags = [change("A", true), change("B", false), change("C", true)];
        let lines = flag_lines(
            &flags,
            "A: on (confirmed); B: failed to switch off: flag \"B\" not found; x: y; C: not switched on (B failed the same way)",
        );
        assert_eq!(lines[0].state, FlagState::Confirmed);
        assert_eq!(
            lines[1].state,
            FlagState::Failed("flag \"B\" not found; x: y".into())
        );
        assert_eq!(
            lines[2].state,
            FlagState::NotSwitched("B failed the same way".into())
        );
        let lines = flag_lines(&flags, "invalid toggle-feature value: nope");
        assert!(lines.iter().all(|l| l.state == FlagState::Wanted));
    }

    #[test]
    fn flag_outcomes_come_from_structured_data_when_present() {
        let data = json!({"message": "ignored", "flags": [
            {"flag": "A", "from": "off", "to": "on", "result": "confirmed", "reason": null},
            {"flag": "B", "from": null, "to": "off", "result": "failed", "reason": "HTTP 500"},
            {"flag": "C", "from": "on", "to": "on", "result": "refused", "reason": "not allowed"},
        ]});
        let lines = structured_flags(&data).unwrap();
        assert_eq!(
            (lines[0].was_on, lines[0].on, &lines[0].state),
            (Some(false), true, &FlagState::Confirmed)
        );
        assert_eq!(lines[1].was_on, None);
        assert_eq!(lines[1].state, FlagState::Failed("HTTP 500".into()));
        assert_eq!(lines[2].state, FlagState::NotSwitched("not allowed".into()));
        assert!(structured_flags(&json!({"message": "A: on (confirmed)"})).is_none());
    }

    #[test]
    fn dynatrace_id_prefers_the_problem_url() {
        let p = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            problem_dynatrace_id(&p(json!({
                "ProblemURL": "https://t.live.dynatrace.com/#problems/problemdetails;PID=-1_2V2;gf=all",
                "ProblemDetails": {"id": "-3_4V2"}, "PID": "-5"
            }))),
            Some("-1_2V2".into())
        );
        assert_eq!(
            problem_dynatrace_id(&p(json!({"ProblemDetails": {"id": "-3_4V2"}, "PID": "-5"}))),
            Some("-3_4V2".into())
        );
        assert_eq!(
            problem_dynatrace_id(&p(json!({"PID": "-5"}))),
            Some("-5".into())
        );
        assert_eq!(
            problem_dynatrace_id(&p(json!({"ProblemTitle": "x", "ProblemID": "abc"}))),
            None
        );
        assert_eq!(
            problem_dynatrace_id(&p(json!({
                "ProblemURL": "http://prom/graph", "PID": "x",
                "ProblemDetails": {"source": "grafana"}
            }))),
            None
        );
    }

    #[test]
    fn the_map_is_bounded_and_forgets_finished_remediations() {
        let mut tracker = Tracker::new(3);
        let seen = |ty: &str, ctx: &str| Seen {
            ty: ty.into(),
            id: uuid::Uuid::new_v4().to_string(),
            keptn_context: ctx.into(),
            triggered_id: None,
            time: Utc::now(),
            data: json!({"project": "p", "stage": "s", "service": "v", "problem": {"ProblemTitle": ctx}}),
        };
        for ctx in ["a", "b", "c", "d", "e"] {
            tracker.observe(seen(types::REMEDIATION_TRIGGERED, ctx));
        }
        assert_eq!(tracker.len(), 3);
        let steps = tracker.observe(seen(types::REMEDIATION_FINISHED, "e"));
        assert_eq!(steps[0].problem.title, "e");
        assert_eq!(tracker.len(), 2);
        // "a" was forgotten: its finish still reports, without the problem.
        let steps = tracker.observe(seen(types::REMEDIATION_FINISHED, "a"));
        assert_eq!(steps[0].problem.title, "");
        assert_eq!(tracker.len(), 2);
    }
}
