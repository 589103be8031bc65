//! Builders for every event this service sends (docs/design.md §8).
//!
//! Every event is CloudEvents 1.0 with a new UUID `id`, `source` from configuration, RFC 3339
//! UTC `time`, `datacontenttype: application/json`, `shkeptncontext`, `shkeptnspecversion`,
//! `triggeredid` on replies and `gitcommitid` copied from the trigger. `data` is inline JSON.

use super::model::{ActionInfo, Meta, Scope};
use super::types;
use cloudevents::{Event, EventBuilder, EventBuilderV10};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Where a new event sits in a Keptn context.
#[derive(Debug, Clone, Default)]
pub struct Link {
    pub keptn_context: String,
    pub triggered_id: Option<String>,
    pub git_commit_id: Option<String>,
}

impl Link {
    /// A reply to `parent`: same context (a new one when the parent had none), `triggeredid` =
    /// the parent's id.
    pub fn reply_to(parent: &Meta) -> Link {
        Link {
            keptn_context: parent
                .keptn_context
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            triggered_id: Some(parent.id.clone()),
            git_commit_id: parent.git_commit_id.clone(),
        }
    }
}

/// Task status and result in Keptn 0.2.x vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// succeeded / pass
    Pass,
    /// succeeded / fail: the work could be done, its answer is negative.
    SucceededFail,
    /// errored / fail
    Errored,
}

impl Outcome {
    pub fn status(self) -> &'static str {
        match self {
            Outcome::Pass | Outcome::SucceededFail => "succeeded",
            Outcome::Errored => "errored",
        }
    }
    pub fn result(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::SucceededFail | Outcome::Errored => "fail",
        }
    }
}

/// Makes outgoing events; holds the `source` every event carries.
#[derive(Debug, Clone)]
pub struct EventFactory {
    source: String,
    /// Takes the configured secrets out of every event's data.
    scrubber: Option<std::sync::Arc<crate::redact::Scrubber>>,
    dry_run: bool,
}

/// What starts the message of every event made during a dry run.
pub const DRY_RUN_PREFIX: &str = "dry run: ";

impl EventFactory {
    pub fn new(source: impl Into<String>) -> Self {
        EventFactory {
            source: source.into(),
            scrubber: None,
            dry_run: false,
        }
    }

    /// Events whose data is scrubbed of every secret `scrubber` knows.
    pub fn with_scrubber(mut self, scrubber: std::sync::Arc<crate::redact::Scrubber>) -> Self {
        self.scrubber = Some(scrubber);
        self
    }

    /// Events that say they report a dry run: `dryRun: true` in the data, messages starting
    /// with [`DRY_RUN_PREFIX`].
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// The `source` of every event made here.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Any event: the envelope of docs/design.md §8 around `data`.
    pub fn event(&self, ty: &str, link: &Link, mut data: Value) -> Event {
        if let Value::Object(map) = &mut data
            && self.dry_run
        {
            map.insert("dryRun".into(), Value::Bool(true));
            if let Some(Value::String(m)) = map.get_mut("message")
                && !m.starts_with(DRY_RUN_PREFIX)
            {
                m.insert_str(0, DRY_RUN_PREFIX);
            }
        }
        if let Some(s) = &self.scrubber {
            s.scrub_value(&mut data);
        }
        let mut builder = EventBuilderV10::new()
            .id(uuid::Uuid::new_v4().to_string())
            .source(self.source.clone())
            .ty(ty)
            .time(chrono::Utc::now())
            .extension("shkeptncontext", link.keptn_context.clone())
            .extension("shkeptnspecversion", types::KEPTN_SPEC_VERSION)
            .data("application/json", data);
        if let Some(t) = &link.triggered_id {
            builder = builder.extension("triggeredid", t.clone());
        }
        if let Some(g) = &link.git_commit_id {
            builder = builder.extension("gitcommitid", g.clone());
        }
        builder.build().expect("id, source and type are always set")
    }

    pub fn remediation_triggered(
        &self,
        link: &Link,
        scope: &Scope,
        labels: &BTreeMap<String, String>,
        problem: &Value,
    ) -> Event {
        let mut data = base(scope, labels);
        data.insert("problem".into(), problem.clone());
        self.event(types::REMEDIATION_TRIGGERED, link, Value::Object(data))
    }

    pub fn remediation_status_changed(
        &self,
        link: &Link,
        scope: &Scope,
        labels: &BTreeMap<String, String>,
        action_index: usize,
        action_name: &str,
    ) -> Event {
        let mut data = with_outcome(scope, labels, Outcome::Pass, "");
        data.insert(
            "remediation".into(),
            json!({"actionIndex": action_index, "actionName": action_name}),
        );
        self.event(types::REMEDIATION_STATUS_CHANGED, link, Value::Object(data))
    }

    pub fn remediation_finished(
        &self,
        link: &Link,
        scope: &Scope,
        labels: &BTreeMap<String, String>,
        outcome: Outcome,
        message: &str,
    ) -> Event {
        let data = with_outcome(scope, labels, outcome, message);
        self.event(types::REMEDIATION_FINISHED, link, Value::Object(data))
    }

    pub fn action_triggered(
        &self,
        link: &Link,
        scope: &Scope,
        labels: &BTreeMap<String, String>,
        action: &ActionInfo,
        problem: &Value,
    ) -> Event {
        let mut data = base(scope, labels);
        data.insert("action".into(), to_value(action));
        data.insert("problem".into(), problem.clone());
        self.event(types::ACTION_TRIGGERED, link, Value::Object(data))
    }

    pub fn action_started(
        &self,
        link: &Link,
        scope: &Scope,
        labels: &BTreeMap<String, String>,
    ) -> Event {
        self.event(
            types::ACTION_STARTED,
            link,
            Value::Object(base(scope, labels)),
        )
    }

    pub fn action_finished(
        &self,
        link: &Link,
        scope: &Scope,
        labels: &BTreeMap<String, String>,
        outcome: Outcome,
        message: &str,
    ) -> Event {
        let data = with_outcome(scope, labels, outcome, message);
        self.event(types::ACTION_FINISHED, link, Value::Object(data))
    }

    /// `action.finished` of a toggle action: also `flags`, each flag's old and new state and
    /// outcome (at most 50; `flagsNotListed` counts the rest when there are more).
    #[allow(clippy::too_many_arguments)]
    pub fn action_finished_with_flags(
        &self,
        link: &Link,
        scope: &Scope,
        labels: &BTreeMap<String, String>,
        outcome: Outcome,
        message: &str,
        flags: Vec<Value>,
        not_listed: usize,
    ) -> Event {
        let mut data = with_outcome(scope, labels, outcome, message);
        data.insert("flags".into(), Value::Array(flags));
        if not_listed > 0 {
            data.insert("flagsNotListed".into(), json!(not_listed));
        }
        self.event(types::ACTION_FINISHED, link, Value::Object(data))
    }

    pub fn get_action_started(
        &self,
        link: &Link,
        scope: &Scope,
        labels: &BTreeMap<String, String>,
    ) -> Event {
        self.event(
            types::GET_ACTION_STARTED,
            link,
            Value::Object(base(scope, labels)),
        )
    }

    /// `get-action.finished` with the chosen action and the next index, written both ways:
    /// nested `get-action.actionIndex` (Keptn 0.12 – 1.x) and top-level `ActionIndex`
    /// (0.8.3 – 0.11).
    pub fn get_action_finished(
        &self,
        link: &Link,
        scope: &Scope,
        labels: &BTreeMap<String, String>,
        action: &ActionInfo,
        next_index: usize,
    ) -> Event {
        let mut data = with_outcome(scope, labels, Outcome::Pass, "");
        data.insert("action".into(), to_value(action));
        data.insert("get-action".into(), json!({"actionIndex": next_index}));
        data.insert("ActionIndex".into(), json!(next_index));
        self.event(types::GET_ACTION_FINISHED, link, Value::Object(data))
    }

    pub fn get_action_failed(
        &self,
        link: &Link,
        scope: &Scope,
        labels: &BTreeMap<String, String>,
        outcome: Outcome,
        message: &str,
    ) -> Event {
        let data = with_outcome(scope, labels, outcome, message);
        self.event(types::GET_ACTION_FINISHED, link, Value::Object(data))
    }

    /// `sh.keptn.log.error` for an event that could not be used.
    pub fn log_error(
        &self,
        link: &Link,
        scope: Option<&Scope>,
        task: &str,
        message: &str,
    ) -> Event {
        let mut data = Map::new();
        if let Some(scope) = scope {
            data = base(scope, &BTreeMap::new());
            data.remove("labels");
        }
        data.insert("message".into(), Value::String(message.to_owned()));
        data.insert("task".into(), Value::String(task.to_owned()));
        data.insert("integrationid".into(), Value::String(self.source.clone()));
        self.event(types::LOG_ERROR, link, Value::Object(data))
    }
}

fn to_value(action: &ActionInfo) -> Value {
    serde_json::to_value(action).expect("ActionInfo serializes")
}

fn base(scope: &Scope, labels: &BTreeMap<String, String>) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("project".into(), Value::String(scope.project.clone()));
    data.insert("stage".into(), Value::String(scope.stage.clone()));
    data.insert("service".into(), Value::String(scope.service.clone()));
    data.insert(
        "labels".into(),
        serde_json::to_value(labels).expect("labels serialize"),
    );
    data
}

fn with_outcome(
    scope: &Scope,
    labels: &BTreeMap<String, String>,
    outcome: Outcome,
    message: &str,
) -> Map<String, Value> {
    let mut data = base(scope, labels);
    data.insert("status".into(), Value::String(outcome.status().into()));
    data.insert("result".into(), Value::String(outcome.result().into()));
    if !message.is_empty() {
        data.insert("message".into(), Value::String(message.into()));
    }
    data
}
