//! The remediator role (SPEC section 4): an open problem becomes
//! `remediation.triggered` → `remediation.status.changed` → `action.triggered` → (the action
//! runs, here or in another provider) → `remediation.finished`.
//!
//! The flow is driven by events, not by a task waiting in memory: the state of each remediation
//! is a [`Record`] in the [`Store`], and whichever replica receives the `action.finished` (or
//! sees the deadline pass) moves it on with a compare-and-set. A failed or timed-out action
//! escalates to the next action of the same remediation.

use crate::bus::Publish;
use crate::keptn::outgoing::{Link, Outcome};
use crate::keptn::{ActionFinished, ActionInfo, EventFactory, Meta, ProblemEvent, ProblemState};
use crate::resources::{Plan, RemediationFile, ResourceSource, load_plan};
use crate::state::{Claim, Phase, Record, Store, problem_key};
use cloudevents::event::AttributesWriter;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

pub struct Remediator {
    source: ResourceSource,
    events: EventFactory,
    store: Store,
    action_timeout: Duration,
    out: Arc<dyn Publish>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Remediator {
    pub fn new(
        source: ResourceSource,
        events: EventFactory,
        store: Store,
        action_timeout: Duration,
        out: Arc<dyn Publish>,
    ) -> Arc<Remediator> {
        Arc::new(Remediator {
            source,
            events,
            store,
            action_timeout,
            out,
        })
    }

    /// Re-arms the timeouts of remediations that were waiting when a process stopped.
    pub async fn resume(self: &Arc<Self>) -> anyhow::Result<usize> {
        let waiting = self.store.waiting().await?;
        for (key, record) in &waiting {
            if let Some(id) = &record.action_triggered_id {
                self.arm_timer(key.clone(), id.clone(), record.deadline_ms);
            }
        }
        Ok(waiting.len())
    }

    pub async fn on_problem(
        self: &Arc<Self>,
        meta: &Meta,
        ev: &ProblemEvent,
    ) -> anyhow::Result<()> {
        match ev.state {
            ProblemState::Open => self.open(meta, ev).await,
            ProblemState::Closed | ProblemState::Resolved => self.close(meta, ev).await,
        }
    }

    async fn open(self: &Arc<Self>, meta: &Meta, ev: &ProblemEvent) -> anyhow::Result<()> {
        let key = problem_key(&ev.scope, &ev.identity());
        let fresh = Record {
            phase: Phase::Starting,
            opened_by: meta.id.clone(),
            scope: ev.scope.clone(),
            labels: ev.labels.clone(),
            problem: ev.problem.as_value(),
            keptn_context: meta
                .keptn_context
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            git_commit_id: meta.git_commit_id.clone(),
            remediation_triggered_id: uuid::Uuid::new_v4().to_string(),
            action_index: 0,
            action_triggered_id: None,
            action_label: String::new(),
            deadline_ms: 0,
            last_error: String::new(),
            started_ms: now_ms(),
        };
        let (record, rev) = match self.store.create(&key, &fresh).await? {
            Claim::Created(rev) => (fresh, rev),
            Claim::Exists(existing, rev) if existing.opened_by == meta.id => {
                // The same event again: a redelivery after a crash or a failed ack.
                match existing.phase {
                    Phase::Starting => (*existing, rev),
                    Phase::Waiting => return self.resend_action(&existing).await,
                    Phase::Finished => return Ok(()),
                }
            }
            Claim::Exists(..) | Claim::Taken => {
                metrics::counter!("duplicates_total").increment(1);
                // Debug, not info: an alert storm repeats one problem thousands of times.
                debug!(
                    problem = %ev.identity(), scope = %ev.scope,
                    "problem already being or already remediated; duplicate OPEN ignored"
                );
                return Ok(());
            }
        };
        let plan = load_plan(&self.source, &record.scope, record.git_commit_id.as_deref()).await;
        let file = match plan {
            Ok(Plan::Disabled { shipyard }) => {
                self.store.delete(&key).await?;
                info!(scope = %record.scope, %shipyard, "remediation is not enabled for this stage by the shipyard; nothing sent");
                return Ok(());
            }
            Ok(Plan::Missing) => {
                self.publish_triggered(meta, &record).await?;
                let msg = format!(
                    "no remediation.yaml found for project {} stage {} service {}",
                    record.scope.project, record.scope.stage, record.scope.service
                );
                return self.finish(&key, record, rev, Outcome::Errored, &msg).await;
            }
            Ok(Plan::Invalid(err)) => {
                self.publish_triggered(meta, &record).await?;
                let msg = format!("remediation cannot run: {err}");
                return self.finish(&key, record, rev, Outcome::Errored, &msg).await;
            }
            Err(err) => {
                self.publish_triggered(meta, &record).await?;
                let msg = format!("remediation.yaml could not be read: {err}");
                return self.finish(&key, record, rev, Outcome::Errored, &msg).await;
            }
            Ok(Plan::Ready(file)) => file,
        };
        self.publish_triggered(meta, &record).await?;
        match action_at_index(&file, &ev.problem, 0) {
            Some(action) => self.start_action(&key, record, rev, 0, action).await,
            None => {
                let msg = format!(
                    "no remediation action for problem {:?} in remediation.yaml (no problemType matches and no default)",
                    title_of(&record)
                );
                self.finish(&key, record, rev, Outcome::SucceededFail, &msg)
                    .await
            }
        }
    }

    async fn close(&self, meta: &Meta, ev: &ProblemEvent) -> anyhow::Result<()> {
        let key = problem_key(&ev.scope, &ev.identity());
        let previous = self.store.get(&key).await?;
        self.store.delete(&key).await?;
        info!(problem = %ev.identity(), scope = %ev.scope, "problem closed; it will be remediated again if it reopens");
        let Ok(Plan::Ready(file)) =
            load_plan(&self.source, &ev.scope, meta.git_commit_id.as_deref()).await
        else {
            return Ok(());
        };
        let Some((remediation, _)) = file.find(ev.problem.title(), ev.problem.root_cause()) else {
            return Ok(());
        };
        let link = Link {
            keptn_context: previous
                .map(|(r, _)| r.keptn_context)
                .or_else(|| meta.keptn_context.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            triggered_id: Some(meta.id.clone()),
            git_commit_id: meta.git_commit_id.clone(),
        };
        for action in &remediation.actions_on_close {
            let event = self.events.action_triggered(
                &link,
                &ev.scope,
                &ev.labels,
                action,
                &ev.problem.as_value(),
            );
            self.out.publish(event).await?;
            metrics::counter!("close_actions_total").increment(1);
        }
        Ok(())
    }

    /// Whether a remediation is held for this problem, so that an OPEN for it starts nothing
    /// new. A cheap read for the HTTP answer; [`Self::on_problem`] still decides.
    pub async fn holds(&self, ev: &ProblemEvent) -> anyhow::Result<bool> {
        let key = problem_key(&ev.scope, &ev.identity());
        Ok(self.store.get(&key).await?.is_some())
    }

    pub async fn on_action_finished(
        self: &Arc<Self>,
        meta: &Meta,
        ev: &ActionFinished,
    ) -> anyhow::Result<()> {
        let Some(triggered) = meta.triggered_id.as_deref() else {
            return Ok(());
        };
        let Some(key) = self.store.action_owner(triggered).await? else {
            // Not one of ours (a Keptn sequence, or a close action): nothing to do.
            return Ok(());
        };
        let Some((record, rev)) = self.store.get(&key).await? else {
            return Ok(());
        };
        if record.phase != Phase::Waiting
            || record.action_triggered_id.as_deref() != Some(triggered)
        {
            return Ok(());
        }
        let detail = if ev.message.is_empty() {
            String::new()
        } else {
            format!(": {}", ev.message)
        };
        if ev.succeeded() {
            let msg = format!("action {} succeeded{detail}", record.action_label);
            self.finish(&key, record, rev, Outcome::Pass, &msg).await
        } else {
            let error = format!(
                "action {} failed ({}/{}){detail}",
                record.action_label, ev.status, ev.result
            );
            self.escalate(&key, record, rev, error).await
        }
    }

    async fn on_timeout(
        self: &Arc<Self>,
        key: &str,
        action_triggered_id: &str,
    ) -> anyhow::Result<()> {
        let Some((record, rev)) = self.store.get(key).await? else {
            return Ok(());
        };
        if record.phase != Phase::Waiting
            || record.action_triggered_id.as_deref() != Some(action_triggered_id)
        {
            return Ok(());
        }
        metrics::counter!("action_timeouts_total").increment(1);
        let error = format!(
            "action {} did not finish within {:?} (no action.finished from any provider)",
            record.action_label, self.action_timeout
        );
        self.escalate(key, record, rev, error).await
    }

    /// The current action failed: try the next one, or finish with the last error.
    async fn escalate(
        self: &Arc<Self>,
        key: &str,
        mut record: Record,
        rev: u64,
        error: String,
    ) -> anyhow::Result<()> {
        warn!(scope = %record.scope, %error, "remediation action failed");
        record.last_error = error.clone();
        let next = record.action_index + 1;
        if let Some(action) = self.action_at(&record, next).await {
            return self.start_action(key, record, rev, next, action).await;
        }
        let msg = if next > 1 {
            format!("all {next} actions failed; last error: {error}")
        } else {
            error
        };
        self.finish(key, record, rev, Outcome::Errored, &msg).await
    }

    async fn start_action(
        self: &Arc<Self>,
        key: &str,
        mut record: Record,
        rev: u64,
        index: usize,
        action: ActionInfo,
    ) -> anyhow::Result<()> {
        let id = uuid::Uuid::new_v4().to_string();
        record.phase = Phase::Waiting;
        record.action_index = index;
        record.action_triggered_id = Some(id.clone());
        record.action_label = label(&action);
        record.deadline_ms = now_ms() + self.action_timeout.as_millis() as i64;
        // Both must be stored before the action.triggered goes out; they do not depend on
        // each other, so they go together.
        let (updated, linked) = tokio::join!(
            self.store.update(key, &record, rev),
            self.store.link_action(&id, key)
        );
        if updated?.is_none() {
            return Ok(()); // another replica moved this remediation on
        }
        linked?;
        self.publish_action(&record, &action).await?;
        self.arm_timer(key.to_owned(), id, record.deadline_ms);
        Ok(())
    }

    /// Sends status.changed and action.triggered for the record's current action (again, with
    /// the same action.triggered id, when an OPEN is redelivered).
    async fn publish_action(&self, record: &Record, action: &ActionInfo) -> anyhow::Result<()> {
        let link = self.link(record);
        let status = self.events.remediation_status_changed(
            &link,
            &record.scope,
            &record.labels,
            record.action_index,
            &action.action,
        );
        self.out.publish(status).await?;
        let mut triggered = self.events.action_triggered(
            &link,
            &record.scope,
            &record.labels,
            action,
            &record.problem,
        );
        if let Some(id) = &record.action_triggered_id {
            triggered.set_id(id.clone());
        }
        self.out.publish(triggered).await
    }

    async fn resend_action(self: &Arc<Self>, record: &Record) -> anyhow::Result<()> {
        match self.action_at(record, record.action_index).await {
            Some(action) => self.publish_action(record, &action).await,
            None => Ok(()),
        }
    }

    /// The action at `index` for the record's problem, from the current remediation.yaml.
    async fn action_at(&self, record: &Record, index: usize) -> Option<ActionInfo> {
        match load_plan(&self.source, &record.scope, record.git_commit_id.as_deref()).await {
            Ok(Plan::Ready(file)) => action_at_index(&file, &problem_of(record), index),
            _ => None,
        }
    }

    fn link(&self, record: &Record) -> Link {
        Link {
            keptn_context: record.keptn_context.clone(),
            triggered_id: Some(record.remediation_triggered_id.clone()),
            git_commit_id: record.git_commit_id.clone(),
        }
    }

    async fn publish_triggered(&self, meta: &Meta, record: &Record) -> anyhow::Result<()> {
        let link = Link {
            keptn_context: record.keptn_context.clone(),
            triggered_id: Some(meta.id.clone()),
            git_commit_id: record.git_commit_id.clone(),
        };
        let mut event = self.events.remediation_triggered(
            &link,
            &record.scope,
            &record.labels,
            &record.problem,
        );
        event.set_id(record.remediation_triggered_id.clone());
        self.out.publish(event).await
    }

    async fn finish(
        &self,
        key: &str,
        mut record: Record,
        rev: u64,
        outcome: Outcome,
        message: &str,
    ) -> anyhow::Result<()> {
        record.phase = Phase::Finished;
        if self.store.update(key, &record, rev).await?.is_none() {
            return Ok(());
        }
        let event = self.events.remediation_finished(
            &self.link(&record),
            &record.scope,
            &record.labels,
            outcome,
            message,
        );
        self.out.publish(event).await?;
        let result = match outcome {
            Outcome::Pass => "pass",
            Outcome::SucceededFail => "no_action",
            Outcome::Errored => "fail",
        };
        metrics::counter!("remediations_total", "result" => result).increment(1);
        metrics::histogram!("remediation_duration_seconds")
            .record((now_ms() - record.started_ms).max(0) as f64 / 1000.0);
        info!(scope = %record.scope, keptn_context = %record.keptn_context, result, message, "remediation finished");
        Ok(())
    }

    fn arm_timer(self: &Arc<Self>, key: String, action_triggered_id: String, deadline_ms: i64) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let wait = (deadline_ms - now_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            if let Err(e) = this.on_timeout(&key, &action_triggered_id).await {
                warn!(error = %format!("{e:#}"), "handling an action timeout failed");
            }
        });
    }
}

fn label(action: &ActionInfo) -> String {
    if action.name.is_empty() || action.name == action.action {
        format!("{:?}", action.action)
    } else {
        format!("{:?} ({})", action.name, action.action)
    }
}

fn problem_of(record: &Record) -> crate::keptn::ProblemDetails {
    crate::keptn::ProblemDetails(record.problem.as_object().cloned().unwrap_or_default())
}

fn title_of(record: &Record) -> String {
    problem_of(record).title().unwrap_or_default().to_owned()
}

/// The action at `index` of the remediation matching the problem.
fn action_at_index(
    file: &RemediationFile,
    problem: &crate::keptn::ProblemDetails,
    index: usize,
) -> Option<ActionInfo> {
    let (remediation, _) = file.find(problem.title(), problem.root_cause())?;
    remediation.actions_on_open.get(index).cloned()
}
