//! The remediator role (docs/design.md §4): an open problem becomes
//! `remediation.triggered` → `remediation.status.changed` → `action.triggered` → (the action
//! runs, here or in another provider) → `remediation.finished`.
//!
//! The flow is driven by events, not by a task waiting in memory: the state of each remediation
//! is a [`Record`] in the [`Store`], and whichever replica receives the `action.finished` (or
//! sees the deadline pass) moves it on with a compare-and-set. A failed or timed-out action
//! escalates to the next action of the same remediation.
//!
//! Nothing is marked done before it is sent: the outcome is stored first (phase `Finishing`),
//! then `remediation.finished` goes out, then the record is marked finished; a redelivery or a
//! restart that finds a `Finishing` record sends the event again with the same id. A first
//! action that ran in this process while the transport keeps the OPEN that led to it
//! (JetStream) skips the first of those writes: its `remediation.finished` goes out, then the
//! record is marked finished, and a crash in between redelivers the OPEN, whose action runs
//! again under the same ids and ends in the same `remediation.finished` (which the stream keeps
//! once).
//!
//! A CLOSED that arrives while an action runs marks the record closing: the close actions
//! follow the `remediation.finished`, so they never race the open action on the same flag.

use crate::bus::{ActionsHere, Publish};
use crate::keptn::outgoing::{Link, Outcome};
use crate::keptn::{
    ActionFinished, ActionInfo, EventFactory, Meta, ProblemEvent, ProblemState, Scope,
};
use crate::resources::{Plan, ResourceSource, SourceError, load_plan};
use crate::state::{
    Actions, Cas, Claim, Closing, Finish, MAX_RECORD_BYTES, Phase, Record, Store, problem_key,
    stored_problem,
};
use cloudevents::event::AttributesWriter;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub struct Remediator {
    source: ResourceSource,
    events: EventFactory,
    store: Store,
    action_timeout: Duration,
    out: Arc<dyn Publish>,
    /// Every action deadline of this process, kept by one task (not a task per action).
    deadlines: Arc<Timers>,
    /// Remediations whose remediation.finished this process is sending right now.
    sending: Arc<Mutex<std::collections::HashSet<String>>>,
    /// This process's action role, when it runs here too: a problem's first action is handed
    /// to it directly (and still published for everyone else).
    actions_here: std::sync::OnceLock<Box<dyn ActionsHere>>,
    /// The actions handed to this process's action role: their problem key, record and revision
    /// as this process wrote them, by action.triggered id. The action's end is decided on them
    /// without reading the record again; when anything wrote it since (a CLOSED, another
    /// replica), that write conflicts and the record is read after all.
    held: Mutex<HashMap<String, Held>>,
    this: Weak<Remediator>,
    /// `duplicates_total`, looked up once: an alert storm counts it for nearly every event.
    duplicates: metrics::Counter,
    /// Shifts this process's wall clock in tests, to play a replica whose clock is off.
    #[cfg(test)]
    skew_ms: std::sync::atomic::AtomicI64,
}

/// The action deadlines armed in this process: at most one per problem (the problem key packed
/// into 16 bytes), removed when its action ends here, so what is held is one small entry per
/// remediation actually waiting.
#[derive(Default)]
struct Timers {
    deadlines: Mutex<Deadlines>,
    /// Wakes the deadline task when a deadline is armed.
    rearmed: Notify,
}

#[derive(Default)]
struct Deadlines {
    /// (when, problem) → the action.triggered id it waits for.
    by_time: BTreeMap<(Instant, u128), Box<str>>,
    by_problem: HashMap<u128, Instant>,
    task_started: bool,
}

impl Deadlines {
    fn remove(&mut self, problem: u128) {
        if let Some(at) = self.by_problem.remove(&problem) {
            self.by_time.remove(&(at, problem));
        }
    }

    fn gauge(&self) {
        metrics::gauge!("remediations_waiting").set(self.by_problem.len() as f64);
    }
}

/// How long a failed timeout (the store or the bus was down) waits before it is tried again.
const TIMEOUT_RETRY: Duration = Duration::from_secs(5);

/// An event id derived from `parts`, so that a resend carries the id of the first attempt.
fn derived_id(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

impl Remediator {
    pub fn new(
        source: ResourceSource,
        events: EventFactory,
        store: Store,
        action_timeout: Duration,
        out: Arc<dyn Publish>,
    ) -> Arc<Remediator> {
        Arc::new_cyclic(|this| Remediator {
            source,
            events,
            store,
            action_timeout,
            out,
            deadlines: Default::default(),
            sending: Default::default(),
            actions_here: Default::default(),
            held: Default::default(),
            this: this.clone(),
            duplicates: metrics::counter!("duplicates_total"),
            #[cfg(test)]
            skew_ms: Default::default(),
        })
    }

    /// Hands the first action of each problem to `here` (this process's action role) when it
    /// takes it, instead of waiting for it to come back over the bus. Set once.
    pub fn run_actions_here(&self, here: Box<dyn ActionsHere>) {
        let _ = self.actions_here.set(here);
    }

    /// The wall clock, only for times written into records and the duration metric: replicas'
    /// clocks differ, so no decision compares it with a time another replica wrote.
    fn now_ms(&self) -> i64 {
        let now = chrono::Utc::now().timestamp_millis();
        #[cfg(test)]
        let now = now + self.skew_ms.load(std::sync::atomic::Ordering::Relaxed);
        now
    }

    /// Picks up remediations that were waiting or finishing when a process stopped: finishes
    /// those whose outcome was decided and re-arms the timeouts of the others. Each waiting
    /// action gets a full `ACTION_TIMEOUT` from now on this process's monotonic clock; the
    /// wall-clock deadline in the record (written by any replica) is not compared with this
    /// clock, so a replica whose clock is ahead does not time out actions that just started.
    pub async fn resume(self: &Arc<Self>) -> anyhow::Result<usize> {
        let pending = self.store.pending().await?;
        for (key, record) in &pending {
            match record.phase {
                Phase::Finishing => {
                    if let Some((record, rev)) = self.store.get(key).await?
                        && let Err(e) = self.complete(key, record, rev).await
                    {
                        warn!(error = %format!("{e:#}"), "finishing a remediation after a restart failed");
                    }
                }
                _ => {
                    if let Some(id) = &record.action_triggered_id {
                        self.arm_timer(key.clone(), id.clone(), self.action_timeout);
                    }
                }
            }
        }
        Ok(pending.len())
    }

    /// Whether `ev` is an OPEN for a problem another event is known here to have claimed,
    /// counted as a duplicate if so: it does nothing, as the claim would refuse it. Known
    /// without a round trip, this is what most of an alert storm costs, and the pipeline asks
    /// it before anything else is spent on the event.
    pub fn duplicate_open(&self, meta: &Meta, ev: &ProblemEvent) -> bool {
        ev.state == ProblemState::Open && self.known_duplicate(&meta.id, &ev.scope, &ev.identity())
    }

    /// [`Self::duplicate_open`] for an OPEN known only by its identity, read from its payload
    /// without decoding the rest ([`crate::keptn::quick`]).
    pub fn duplicate_identity(&self, open: &crate::keptn::quick::OpenIdentity) -> bool {
        self.known_duplicate(&open.id, &open.scope, &open.identity)
    }

    /// Whether the OPEN `event_id` of the problem `identity` in `scope` is known here to be a
    /// duplicate, counted as one if so.
    fn known_duplicate(&self, event_id: &str, scope: &Scope, identity: &str) -> bool {
        let key = crate::state::packed_problem_key(scope, identity);
        if !self
            .store
            .claimed_by_other_packed(key, crate::state::id_hash(event_id))
        {
            return false;
        }
        self.counted_duplicate(event_id, identity, scope);
        true
    }

    /// Counts and logs an OPEN for a problem that is already being or already was remediated.
    fn duplicate(&self, meta: &Meta, ev: &ProblemEvent) {
        self.counted_duplicate(&meta.id, &ev.identity(), &ev.scope);
    }

    fn counted_duplicate(&self, event_id: &str, problem: &str, scope: &Scope) {
        self.duplicates.increment(1);
        // Debug, not info: an alert storm repeats one problem thousands of times.
        debug!(
            event_id = %event_id, problem = %problem, %scope,
            "problem already being or already remediated; duplicate OPEN ignored"
        );
    }

    pub async fn on_problem(
        self: &Arc<Self>,
        meta: &Meta,
        ev: &ProblemEvent,
    ) -> anyhow::Result<()> {
        let key = problem_key(&ev.scope, &ev.identity());
        // An OPEN for a problem another event is known here to have claimed does nothing,
        // whether this one was handled before or not: the claim would refuse it. Known without
        // a round trip, this is what most of an alert storm costs.
        if ev.state == ProblemState::Open && self.store.claimed_by_other(&key, &meta.id) {
            self.duplicate(meta, ev);
            return Ok(());
        }
        // A replay (the same event id again, after it was handled) does nothing; an event that
        // failed part-way is not remembered, so its redelivery completes it. An OPEN learns
        // whether it was handled from its claim (`open`), which needs no read for a problem
        // never seen.
        //
        // Boxed: a remediation's future is kilobytes, and an alert storm's duplicates, which
        // end above, would otherwise copy it with every event handed to a task.
        let handled_before = match ev.state {
            ProblemState::Open => {
                let plan = load_plan(&self.source, &ev.scope, meta.git_commit_id.as_deref());
                let plan = Box::pin(plan).await;
                // An action handed to this process's action role runs on meanwhile.
                Box::pin(self.open(&key, meta, ev, plan)).await?
            }
            ProblemState::Closed | ProblemState::Resolved => {
                let handled = self.store.handled(&meta.id).await?;
                if !handled {
                    Box::pin(self.close(&key, meta, ev)).await?;
                }
                handled
            }
        };
        if !handled_before {
            return self.store.remember(&meta.id).await;
        }
        if ev.state == ProblemState::Open && self.redelivered() {
            // Handled, but not acknowledged: the process stopped (or failed) while the action
            // it had handed to its action role may still have been running.
            return Box::pin(self.run_again_here(&key, meta)).await;
        }
        metrics::counter!("events_replayed_total").increment(1);
        debug!(event_id = %meta.id, "problem event already handled; replay ignored");
        Ok(())
    }

    /// Whether the event being handled is a redelivery of one that was not acknowledged.
    fn redelivered(&self) -> bool {
        self.actions_here.get().is_some_and(|h| h.redelivered())
    }

    /// A redelivered OPEN that was handled: when its remediation still waits for its first
    /// action, that action (handed to this process's role, whose `action.triggered` every
    /// subscriber of the service passed over) runs again, under the same id, without sending
    /// anything before it again. A remediation already deciding its end completes.
    async fn run_again_here(self: &Arc<Self>, key: &str, meta: &Meta) -> anyhow::Result<()> {
        let Some((record, rev)) = self.store.get(key).await? else {
            return Ok(());
        };
        if record.opened_by != meta.id {
            return Ok(());
        }
        match record.phase {
            Phase::Waiting if record.action_index == 0 => {}
            Phase::Finishing => return self.complete(key, record, rev).await,
            _ => return Ok(()),
        }
        let Some(action) = self.action_at(&record, 0).await else {
            return Ok(());
        };
        metrics::counter!("actions_run_again_total").increment(1);
        info!(scope = %record.scope, action = %record.action_label, "running a remediation's first action again: the process that ran it stopped before its end");
        let here = self
            .actions_here
            .get()
            .and_then(|h| h.reserve(&action.action));
        match here {
            Some(here) => {
                // Its action.triggered is on the bus since the first run.
                here.run(self.action_event(&record, &action), crate::bus::confirmed());
                Ok(())
            }
            // No room here now: the action goes over the bus, unmarked, to any provider.
            None => {
                self.publish_action(&record, &action, None, false, None)
                    .await
            }
        }
    }

    /// Starts a remediation for a new OPEN, or completes one a redelivered OPEN left unfinished;
    /// `true` when the event was handled before (nothing is done).
    ///
    /// When `plan` names a first action, the problem is claimed with that action already fixed
    /// (its id linked to the problem beside the claim), so that one write decides the
    /// remediation and its first action; remediation.triggered, status.changed and
    /// action.triggered then go out together, confirmed together. A crash after the claim leaves
    /// a waiting record whose redelivered OPEN sends them, under the same ids.
    async fn open(
        self: &Arc<Self>,
        key: &str,
        meta: &Meta,
        ev: &ProblemEvent,
        plan: Result<Plan, SourceError>,
    ) -> anyhow::Result<bool> {
        let mut fresh = Record {
            phase: Phase::Starting,
            opened_by: meta.id.clone(),
            scope: ev.scope.clone(),
            labels: ev.labels.clone(),
            problem: stored_problem(&ev.problem),
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
            started_ms: self.now_ms(),
            actions: None,
            finish: None,
            closing: None,
        };
        let size = fresh.encoded_len();
        if size > MAX_RECORD_BYTES / 2 {
            // Room is left for the actions and the outcome the record takes on later.
            if self.store.handled(&meta.id).await? {
                return Ok(true);
            }
            self.refuse(meta, ev, size).await?;
            return Ok(false);
        }
        // The actions are fixed now, for the whole remediation and its close.
        fresh.actions = actions_of(&plan, ev);
        let first = fresh.action(0);
        if let Some(action) = &first {
            self.waiting_for(&mut fresh, 0, action);
            // The flags it will switch are read while the claim is written.
            if let Some(here) = self.actions_here.get() {
                here.read_ahead(action, &fresh.scope);
            }
        }
        let Some(claim) = self.store.claim_open(key, &fresh).await? else {
            return Ok(true);
        };
        self.claimed(key, meta, ev, plan, fresh, claim).await?;
        Ok(false)
    }

    /// What follows the claim of [`Self::open`].
    async fn claimed(
        self: &Arc<Self>,
        key: &str,
        meta: &Meta,
        ev: &ProblemEvent,
        plan: Result<Plan, SourceError>,
        fresh: Record,
        claim: Claim,
    ) -> anyhow::Result<()> {
        let (mut record, rev) = match claim {
            Claim::Created(rev) => {
                crate::failpoint::point("after-claim");
                (fresh, rev)
            }
            Claim::Exists(existing, rev) if existing.opened_by == meta.id => {
                // The same event again: a redelivery after a crash or a failed ack.
                match existing.phase {
                    Phase::Starting => (*existing, rev),
                    Phase::Waiting => {
                        // Linked again: the link's write may be what failed the first time.
                        if let Some(id) = &existing.action_triggered_id {
                            self.store.link_action(id, key).await?;
                        }
                        let announce =
                            self.triggered_event(meta, &existing, &ev.problem.as_value());
                        return self.resend_action(&existing, Some(announce)).await;
                    }
                    Phase::Finishing => return self.complete(key, *existing, rev).await,
                    Phase::Finished => return Ok(()),
                }
            }
            Claim::Exists(..) | Claim::Taken => {
                self.duplicate(meta, ev);
                return Ok(());
            }
        };
        if record.phase == Phase::Waiting
            && let Some(action) = record.action(0)
        {
            // Claimed just now, waiting for its first action.
            let id = record.action_triggered_id.clone().unwrap_or_default();
            self.arm_timer(key.to_owned(), id, self.action_timeout);
            let announce = self.triggered_event(meta, &record, &ev.problem.as_value());
            return self
                .publish_action(&record, &action, Some(announce), true, Some((key, rev)))
                .await;
        }
        // A record still starting (claimed without an action, or by an attempt that stopped
        // before its action was fixed): what the remediation.yaml says now decides.
        match plan {
            Ok(Plan::Disabled { shipyard }) => {
                self.store.forget(key).await?;
                info!(scope = %record.scope, %shipyard, "remediation is not enabled for this stage by the shipyard; nothing sent");
                return Ok(());
            }
            Ok(Plan::Missing) => {
                self.publish_triggered(meta, &record, &ev.problem.as_value())
                    .await?;
                let msg = format!(
                    "no remediation.yaml found for project {} stage {} service {}",
                    record.scope.project, record.scope.stage, record.scope.service
                );
                return self.finish(key, record, rev, Outcome::Errored, msg).await;
            }
            Ok(Plan::Invalid(err)) => {
                self.publish_triggered(meta, &record, &ev.problem.as_value())
                    .await?;
                let msg = format!("remediation cannot run: {err}");
                return self.finish(key, record, rev, Outcome::Errored, msg).await;
            }
            Err(err) => {
                self.publish_triggered(meta, &record, &ev.problem.as_value())
                    .await?;
                let msg = format!("remediation.yaml could not be read: {err}");
                return self.finish(key, record, rev, Outcome::Errored, msg).await;
            }
            Ok(Plan::Ready(_)) => {}
        }
        record.actions = actions_of(&plan, ev);
        match record.action(0) {
            Some(action) => {
                let announce = self.triggered_event(meta, &record, &ev.problem.as_value());
                self.start_action(key, record, rev, 0, action, Some(announce))
                    .await
            }
            None => {
                self.publish_triggered(meta, &record, &ev.problem.as_value())
                    .await?;
                let msg = format!(
                    "no remediation action for problem {:?} in remediation.yaml (no problemType matches and no default)",
                    title_of(&record)
                );
                self.finish(key, record, rev, Outcome::SucceededFail, msg)
                    .await
            }
        }
    }

    /// A problem whose state cannot be stored is not remediated, and says so.
    async fn refuse(&self, meta: &Meta, ev: &ProblemEvent, size: usize) -> anyhow::Result<()> {
        metrics::counter!("problems_refused_total", "reason" => "too_large").increment(1);
        let message = format!(
            "problem {:?} is not remediated: what must be kept of it (scope and labels) takes {size} bytes, more than the {} bytes a remediation record may use",
            ev.identity(),
            MAX_RECORD_BYTES / 2
        );
        warn!(scope = %ev.scope, "{message}");
        let link = Link {
            keptn_context: meta
                .keptn_context
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            triggered_id: Some(meta.id.clone()),
            git_commit_id: meta.git_commit_id.clone(),
        };
        let event = self
            .events
            .log_error(&link, Some(&ev.scope), "remediation", &message);
        self.out.publish(event).await
    }

    /// A CLOSED ends the remediation this service started for the problem, and runs its close
    /// actions once. A CLOSED for a problem not opened here (or already closed) switches nothing.
    async fn close(
        self: &Arc<Self>,
        key: &str,
        meta: &Meta,
        ev: &ProblemEvent,
    ) -> anyhow::Result<()> {
        // A compare-and-set lost to a concurrent change (the action finishing) is tried again.
        for _ in 0..5 {
            if self.try_close(key, meta, ev).await? {
                return Ok(());
            }
        }
        anyhow::bail!("remediation state kept changing while the problem was being closed")
    }

    /// `Ok(false)` when the record changed under the attempt.
    async fn try_close(&self, key: &str, meta: &Meta, ev: &ProblemEvent) -> anyhow::Result<bool> {
        let Some((mut record, rev)) = self.store.get(key).await? else {
            metrics::counter!("closes_ignored_total").increment(1);
            info!(problem = %ev.identity(), scope = %ev.scope, "CLOSED for a problem not opened here or already closed; no close actions");
            return Ok(true);
        };
        match &record.closing {
            // This CLOSED again (a redelivery): complete what it started.
            Some(c) if c.event_id == meta.id => {
                if record.phase != Phase::Waiting {
                    self.complete(key, record, rev).await?;
                }
                return Ok(true);
            }
            Some(_) => {
                metrics::counter!("closes_ignored_total").increment(1);
                debug!(problem = %ev.identity(), "problem already closing; CLOSED ignored");
                return Ok(true);
            }
            None => {}
        }
        record.closing = Some(Closing {
            event_id: meta.id.clone(),
            git_commit_id: meta.git_commit_id.clone(),
        });
        match record.phase {
            Phase::Starting => {
                record.phase = Phase::Finishing;
                record.finish = Some(Finish {
                    outcome: Outcome::SucceededFail,
                    message: "the problem closed before an action started".to_owned(),
                });
            }
            Phase::Waiting => {
                // The action may be switching its flags right now: its end (action.finished
                // or the deadline) finishes the remediation, and the close actions follow it.
                if self.store.update(key, &record, rev).await? == Cas::Conflict {
                    return Ok(false);
                }
                info!(problem = %ev.identity(), action = %record.action_label, "problem closed while its action runs; the close actions follow when it ends");
                return Ok(true);
            }
            Phase::Finishing | Phase::Finished => {}
        }
        let Cas::Written(rev) = self.store.update(key, &record, rev).await? else {
            return Ok(false);
        };
        info!(problem = %ev.identity(), scope = %ev.scope, "problem closed; it will be remediated again if it reopens");
        self.complete(key, record, rev).await?;
        Ok(true)
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
        let held = self.held.lock().expect("held lock").remove(triggered);
        if let Some(Held {
            key,
            record,
            rev,
            kept,
        }) = held
            && ev.succeeded()
        {
            let msg = succeeded(&record, ev);
            let ended = if kept && self.far_from_deadline(&record) {
                self.send_then_mark_finished(&key, record, rev, msg).await?
            } else {
                self.finish_unless_moved(&key, record, rev, Outcome::Pass, msg)
                    .await?
            };
            if ended {
                return Ok(());
            }
        }
        let Some(key) = self.store.action_owner(triggered).await? else {
            // Not one of ours (a Keptn sequence, or a close action): nothing to do.
            return Ok(());
        };
        let Some((record, rev)) = self.store.get(&key).await? else {
            return Ok(());
        };
        if record.action_triggered_id.as_deref() != Some(triggered) {
            return Ok(());
        }
        match record.phase {
            Phase::Waiting => {}
            // Decided before, not yet sent (a failed publish): this redelivery sends it.
            Phase::Finishing => return self.complete(&key, record, rev).await,
            Phase::Starting | Phase::Finished => return Ok(()),
        }
        if ev.succeeded() {
            let msg = succeeded(&record, ev);
            self.finish(&key, record, rev, Outcome::Pass, msg).await
        } else {
            let error = format!(
                "action {} failed ({}/{}){}",
                record.action_label,
                ev.status,
                ev.result,
                detail(ev)
            );
            self.escalate(&key, record, rev, error).await
        }
    }

    async fn on_timeout(
        self: &Arc<Self>,
        key: &str,
        action_triggered_id: &str,
    ) -> anyhow::Result<()> {
        self.held
            .lock()
            .expect("held lock")
            .remove(action_triggered_id);
        let Some((record, rev)) = self.store.get(key).await? else {
            return Ok(());
        };
        if record.action_triggered_id.as_deref() != Some(action_triggered_id) {
            return Ok(());
        }
        match record.phase {
            Phase::Waiting => {}
            Phase::Finishing => return self.complete(key, record, rev).await,
            Phase::Starting | Phase::Finished => return Ok(()),
        }
        metrics::counter!("action_timeouts_total").increment(1);
        let error = format!(
            "action {} did not finish within {:?} (no action.finished from any provider)",
            record.action_label, self.action_timeout
        );
        self.escalate(key, record, rev, error).await
    }

    /// The current action failed: try the next one (unless the problem closed meanwhile), or
    /// finish with the last error.
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
        if record.closing.is_none()
            && let Some(action) = self.action_at(&record, next).await
        {
            return self
                .start_action(key, record, rev, next, action, None)
                .await;
        }
        let msg = if record.closing.is_some() {
            format!("{error}; the problem closed meanwhile, so no further action was started")
        } else if next > 1 {
            format!("all {next} actions failed; last error: {error}")
        } else {
            error
        };
        self.finish(key, record, rev, Outcome::Errored, msg).await
    }

    /// Starts the action at `index`. `announce` is the remediation.triggered of a new
    /// remediation: it goes out first and is confirmed while the record is written, and the
    /// action may run in this process ([`Self::publish_action`]); a later action (an
    /// escalation) always goes over the bus: nothing would start it again after a crash.
    async fn start_action(
        self: &Arc<Self>,
        key: &str,
        mut record: Record,
        rev: u64,
        index: usize,
        action: ActionInfo,
        announce: Option<cloudevents::Event>,
    ) -> anyhow::Result<()> {
        let first = announce.is_some();
        self.waiting_for(&mut record, index, &action);
        let id = record.action_triggered_id.clone().unwrap_or_default();
        // The record and the link must be stored before the action.triggered goes out; they do
        // not depend on each other or on the remediation.triggered, so the three go together
        // (the remediation.triggered is sent first, so it stays first on the bus). When its
        // confirmation fails, the redelivered OPEN finds the record waiting and sends it again
        // with the action, under the same ids.
        let announced = async {
            match announce {
                Some(event) => self.out.publish(event).await,
                None => Ok(()),
            }
        };
        let (announced, updated, linked) = tokio::join!(
            announced,
            self.store.update(key, &record, rev),
            self.store.link_action(&id, key)
        );
        announced?;
        let Cas::Written(rev) = updated? else {
            return Ok(()); // another replica moved this remediation on, or it closed
        };
        linked?;
        // The timer runs on this process's monotonic clock, whatever the wall clock says.
        self.arm_timer(key.to_owned(), id, self.action_timeout);
        self.publish_action(&record, &action, None, first, Some((key, rev)))
            .await
    }

    /// Moves `record` on to wait for the action at `index`, under a new action.triggered id.
    fn waiting_for(&self, record: &mut Record, index: usize, action: &ActionInfo) {
        record.phase = Phase::Waiting;
        record.action_index = index;
        record.action_triggered_id = Some(uuid::Uuid::new_v4().to_string());
        record.action_label = label(action);
        record.deadline_ms = self.now_ms() + self.action_timeout.as_millis() as i64;
    }

    /// Sends status.changed and action.triggered for the record's current action (again, with
    /// the same action.triggered id, when an OPEN is redelivered), after `first` if given.
    ///
    /// With `may_run_here`, an action this process's action role takes is handed to it once
    /// the action.triggered is stored (published marked as handled here, so no subscriber of
    /// this service runs it again). `written` is the problem key and the revision when this
    /// process just wrote the record: the action's end is then decided on it.
    async fn publish_action(
        &self,
        record: &Record,
        action: &ActionInfo,
        first: Option<cloudevents::Event>,
        may_run_here: bool,
        written: Option<(&str, u64)>,
    ) -> anyhow::Result<()> {
        let link = self.link(record);
        let status = self.events.remediation_status_changed(
            &link,
            &record.scope,
            &record.labels,
            record.action_index,
            &action.action,
        );
        let triggered = self.action_event(record, action);
        let here = match self.actions_here.get() {
            Some(here) if may_run_here => here.reserve(&action.action),
            _ => None,
        };
        // One confirmation wait for all; the order on the bus stays as written.
        let mut events: Vec<_> = first.into_iter().chain([status]).collect();
        match here {
            Some(here) => {
                // The action starts while the bus confirms its action.triggered; its replies
                // wait for that confirmation (`RunHere::run`).
                events.push(triggered.clone());
                let stored = self.out.send_all_handled_here(events).await?;
                let stored: crate::bus::Confirmation = Box::pin(async move {
                    stored.await?;
                    crate::failpoint::point("after-action-triggered");
                    Ok(())
                });
                if let Some((key, rev)) = written
                    && let Some(id) = &record.action_triggered_id
                {
                    self.hold(id, key, record, rev);
                }
                here.run(triggered, stored);
            }
            None => {
                events.push(triggered);
                self.out.publish_all(events).await?;
                crate::failpoint::point("after-action-triggered");
            }
        }
        Ok(())
    }

    /// The action.triggered of the record's current action, under the id fixed in the record.
    fn action_event(&self, record: &Record, action: &ActionInfo) -> cloudevents::Event {
        let mut triggered = self.events.action_triggered(
            &self.link(record),
            &record.scope,
            &record.labels,
            action,
            &record.problem,
        );
        if let Some(id) = &record.action_triggered_id {
            triggered.set_id(id.clone());
        }
        triggered
    }

    /// Sends the current action again (an OPEN redelivered while its action was running); a
    /// first action may run here again.
    async fn resend_action(
        self: &Arc<Self>,
        record: &Record,
        announce: Option<cloudevents::Event>,
    ) -> anyhow::Result<()> {
        match self.action_at(record, record.action_index).await {
            Some(action) => {
                let first = record.action_index == 0;
                self.publish_action(record, &action, announce, first, None)
                    .await
            }
            None => Ok(()),
        }
    }

    /// The action at `index`: from the record (fixed when the remediation started), or for a
    /// record written before actions were kept, from the current remediation.yaml.
    async fn action_at(&self, record: &Record, index: usize) -> Option<ActionInfo> {
        if record.actions.is_some() {
            return record.action(index);
        }
        match load_plan(&self.source, &record.scope, record.git_commit_id.as_deref()).await {
            Ok(Plan::Ready(file)) => {
                let problem = problem_of(record);
                let (remediation, _) = file.find(problem.title(), problem.root_cause())?;
                remediation.actions_on_open.get(index).cloned()
            }
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

    async fn publish_triggered(
        &self,
        meta: &Meta,
        record: &Record,
        problem: &serde_json::Value,
    ) -> anyhow::Result<()> {
        self.out
            .publish(self.triggered_event(meta, record, problem))
            .await
    }

    /// The remediation.triggered of a remediation, under the id fixed in its record.
    fn triggered_event(
        &self,
        meta: &Meta,
        record: &Record,
        problem: &serde_json::Value,
    ) -> cloudevents::Event {
        let link = Link {
            keptn_context: record.keptn_context.clone(),
            triggered_id: Some(meta.id.clone()),
            git_commit_id: record.git_commit_id.clone(),
        };
        let mut event =
            self.events
                .remediation_triggered(&link, &record.scope, &record.labels, problem);
        event.set_id(record.remediation_triggered_id.clone());
        event
    }

    /// Decides the outcome (stored first, so a failed publish loses nothing), then sends it.
    async fn finish(
        &self,
        key: &str,
        record: Record,
        rev: u64,
        outcome: Outcome,
        message: String,
    ) -> anyhow::Result<()> {
        // Nothing written (another replica or a CLOSED moved this remediation on) is no error:
        // whoever moved it on ends it.
        self.finish_unless_moved(key, record, rev, outcome, message)
            .await
            .map(drop)
    }

    /// [`Self::finish`] on `record` as it was at `rev`; `false` when the record has moved on
    /// since, and nothing was written or sent.
    async fn finish_unless_moved(
        &self,
        key: &str,
        mut record: Record,
        rev: u64,
        outcome: Outcome,
        message: String,
    ) -> anyhow::Result<bool> {
        record.phase = Phase::Finishing;
        record.finish = Some(Finish { outcome, message });
        let Cas::Written(rev) = self.store.update(key, &record, rev).await? else {
            return Ok(false);
        };
        self.complete(key, record, rev).await?;
        Ok(true)
    }

    /// Whether `record`'s action ended in the first half of its time, so that no deadline of any
    /// replica (whose clock may be off by less than that) can be deciding its end meanwhile.
    fn far_from_deadline(&self, record: &Record) -> bool {
        let half = (self.action_timeout.as_millis() / 2) as i64;
        self.now_ms() + half < record.deadline_ms
    }

    /// The end of a first action that succeeded here while the transport keeps the OPEN that
    /// led to it: `remediation.finished` is sent before the record (as written at `rev`) is
    /// marked finished, without storing the outcome first. Should the process stop in between,
    /// the OPEN comes again and its action runs again under the same ids, ending in the same
    /// `remediation.finished`. `false` when another sender is at work here, and nothing was
    /// sent.
    async fn send_then_mark_finished(
        &self,
        key: &str,
        mut record: Record,
        rev: u64,
        message: String,
    ) -> anyhow::Result<bool> {
        let Some(_sending) = Sending::start(&self.sending, key) else {
            return Ok(false);
        };
        record.finish = Some(Finish {
            outcome: Outcome::Pass,
            message,
        });
        self.send_finished(key, &record).await?;
        crate::failpoint::point("after-finish");
        self.mark_finished(key, record, rev).await?;
        Ok(true)
    }

    /// Marks the remediation whose `remediation.finished` is sent finished: `record` as it was
    /// at `rev`, or, when it was written since (a CLOSED, which waits for this end), as it is
    /// stored now; then runs its close actions if the problem closed meanwhile.
    async fn mark_finished(
        &self,
        key: &str,
        mut record: Record,
        mut rev: u64,
    ) -> anyhow::Result<()> {
        let action_triggered_id = record.action_triggered_id.clone();
        for _ in 0..5 {
            record.phase = Phase::Finished;
            record.finish = None;
            if let Cas::Written(rev) = self.store.update(key, &record, rev).await? {
                return self.complete(key, record, rev).await;
            }
            let Some((stored, at)) = self.store.get(key).await? else {
                return Ok(());
            };
            if stored.action_triggered_id != action_triggered_id || stored.phase != Phase::Waiting {
                // Decided by another event since: that one ends it.
                return Ok(());
            }
            (record, rev) = (stored, at);
        }
        anyhow::bail!("remediation state kept changing while its end was being recorded")
    }

    /// Keeps the record of an action handed to this process's action role, as just written
    /// at `rev`, for the action's end.
    fn hold(&self, action_triggered_id: &str, key: &str, record: &Record, rev: u64) {
        let mut held = self.held.lock().expect("held lock");
        // Each is taken by its action's end or its deadline, and the actions running here are
        // bounded by the toggle permits; the bound matters when ends are lost in numbers.
        if held.len() >= MAX_HELD {
            held.clear();
        }
        let kept = self.actions_here.get().is_some_and(|here| here.kept());
        held.insert(
            action_triggered_id.to_owned(),
            Held {
                key: key.to_owned(),
                record: record.clone(),
                rev,
                kept,
            },
        );
    }

    /// Sends what a decided remediation still owes: its remediation.finished (phase
    /// `Finishing`), then, when the problem closed, its close actions. Every id is derived from
    /// the record, so a resend after a failure carries the ids of the first attempt.
    async fn complete(&self, key: &str, mut record: Record, rev: u64) -> anyhow::Result<()> {
        // One sender per remediation in this process: a second action.finished, a redelivery or
        // the resume after a start that finds the record finishing while this process is
        // already sending its end leaves it to that sender (whose own event is redelivered if
        // it fails).
        let _sending = match record.phase {
            Phase::Finishing => match Sending::start(&self.sending, key) {
                Some(guard) => Some(guard),
                None => return Ok(()),
            },
            _ => None,
        };
        if record.phase == Phase::Finishing {
            self.send_finished(key, &record).await?;
            if record.closing.is_none() {
                record.phase = Phase::Finished;
                record.finish = None;
                // Lost to a concurrent CLOSED: that one runs the close actions.
                if self.store.update(key, &record, rev).await? == Cas::Conflict {
                    debug!("remediation closed while its end was being sent");
                }
                return Ok(());
            }
        }
        let Some(closing) = &record.closing else {
            return Ok(());
        };
        let on_close = match &record.actions {
            Some(actions) => actions.on_close.clone(),
            None => self.close_actions_from_file(&record, closing).await,
        };
        let link = Link {
            keptn_context: record.keptn_context.clone(),
            triggered_id: Some(closing.event_id.clone()),
            git_commit_id: closing.git_commit_id.clone(),
        };
        // The record holds the problem as it was opened; a close action is about it closed.
        let closed = closed_problem(&record.problem);
        for (i, action) in on_close.iter().enumerate() {
            let mut event =
                self.events
                    .action_triggered(&link, &record.scope, &record.labels, action, &closed);
            event.set_id(derived_id(&[&closing.event_id, "close", &i.to_string()]));
            self.out.publish(event).await?;
            metrics::counter!("close_actions_total").increment(1);
        }
        self.store.forget(key).await
    }

    /// Sends the `remediation.finished` of a decided remediation (`record.finish`), under the id
    /// derived from the record, and counts it.
    async fn send_finished(&self, key: &str, record: &Record) -> anyhow::Result<()> {
        let finish = record.finish.clone().unwrap_or(Finish {
            outcome: Outcome::Errored,
            message: String::new(),
        });
        let mut event = self.events.remediation_finished(
            &self.link(record),
            &record.scope,
            &record.labels,
            finish.outcome,
            &finish.message,
        );
        event.set_id(derived_id(&[&record.remediation_triggered_id, "finished"]));
        crate::failpoint::point("before-finish");
        self.out.publish(event).await?;
        let result = match finish.outcome {
            Outcome::Pass => "pass",
            Outcome::SucceededFail => "no_action",
            Outcome::Errored => "fail",
        };
        metrics::counter!("remediations_total", "result" => result).increment(1);
        metrics::histogram!("remediation_duration_seconds")
            .record((self.now_ms() - record.started_ms).max(0) as f64 / 1000.0);
        self.disarm(key);
        info!(scope = %record.scope, shkeptncontext = %record.keptn_context, result, detail = %finish.message, "remediation finished");
        Ok(())
    }

    /// Close actions of a record written before actions were kept.
    async fn close_actions_from_file(&self, record: &Record, closing: &Closing) -> Vec<ActionInfo> {
        let problem = problem_of(record);
        match load_plan(
            &self.source,
            &record.scope,
            closing.git_commit_id.as_deref(),
        )
        .await
        {
            Ok(Plan::Ready(file)) => file
                .actions_on_close(problem.title(), problem.root_cause())
                .to_vec(),
            _ => Vec::new(),
        }
    }

    /// Arms a timeout `after` from now on the one deadline task of this process, in place of
    /// any deadline the problem had.
    fn arm_timer(&self, key: String, action_triggered_id: String, after: Duration) {
        let problem = crate::state::pack_key(&key);
        let at = Instant::now() + after;
        let mut deadlines = self.deadlines.deadlines.lock().expect("deadline lock");
        deadlines.remove(problem);
        deadlines.by_problem.insert(problem, at);
        deadlines
            .by_time
            .insert((at, problem), action_triggered_id.into_boxed_str());
        deadlines.gauge();
        if !std::mem::replace(&mut deadlines.task_started, true) {
            tokio::spawn(run_deadlines(self.deadlines.clone(), self.this.clone()));
        }
        drop(deadlines);
        self.deadlines.rearmed.notify_one();
    }

    /// The problem no longer waits for an action here.
    fn disarm(&self, key: &str) {
        let mut deadlines = self.deadlines.deadlines.lock().expect("deadline lock");
        deadlines.remove(crate::state::pack_key(key));
        deadlines.gauge();
    }
}

/// Marks a remediation as having its end sent by this process, until dropped.
struct Sending {
    set: Arc<Mutex<std::collections::HashSet<String>>>,
    key: String,
}

impl Sending {
    fn start(set: &Arc<Mutex<std::collections::HashSet<String>>>, key: &str) -> Option<Sending> {
        set.lock()
            .expect("sending lock")
            .insert(key.to_owned())
            .then(|| Sending {
                set: set.clone(),
                key: key.to_owned(),
            })
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.set.lock().expect("sending lock").remove(&self.key);
    }
}

/// `problem` with its state member (in whatever spelling it came) saying CLOSED.
fn closed_problem(problem: &Value) -> Value {
    let mut closed = problem.clone();
    if let Value::Object(map) = &mut closed {
        let key = map
            .keys()
            .find(|k| k.eq_ignore_ascii_case("state"))
            .cloned()
            .unwrap_or_else(|| "State".to_owned());
        map.insert(key, Value::String("CLOSED".to_owned()));
    }
    closed
}

/// The deadline task: sleeps until the earliest deadline (or until an earlier one is armed),
/// and handles each one that passed in a task of its own.
async fn run_deadlines(timers: Arc<Timers>, this: Weak<Remediator>) {
    // Looked at now and then even when nothing is due, to end once the remediator is gone.
    const IDLE: Duration = Duration::from_secs(60);
    loop {
        let next = {
            let d = timers.deadlines.lock().expect("deadline lock");
            d.by_time.keys().next().map(|(at, _)| *at)
        };
        let wake = next.unwrap_or_else(|| Instant::now() + IDLE);
        tokio::select! {
            _ = timers.rearmed.notified() => continue,
            _ = tokio::time::sleep_until(wake) => {}
        }
        let Some(remediator) = this.upgrade() else {
            return;
        };
        let now = Instant::now();
        let due: Vec<(u128, Box<str>)> = {
            let mut d = timers.deadlines.lock().expect("deadline lock");
            let mut due = Vec::new();
            while let Some(entry) = d.by_time.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let ((_, problem), id) = entry.remove_entry();
                d.by_problem.remove(&problem);
                due.push((problem, id));
            }
            d.gauge();
            due
        };
        for (problem, id) in due {
            let remediator = remediator.clone();
            let (key, id) = (crate::state::unpack_key(problem), String::from(id));
            tokio::spawn(async move {
                if let Err(e) = remediator.on_timeout(&key, &id).await {
                    warn!(error = %format!("{e:#}"), "handling an action timeout failed; trying again");
                    remediator.arm_timer(key, id, TIMEOUT_RETRY);
                }
            });
        }
    }
}

/// The actions the remediation.yaml names for the problem, when it could be read and used.
fn actions_of(plan: &Result<Plan, SourceError>, ev: &ProblemEvent) -> Option<Actions> {
    let Ok(Plan::Ready(file)) = plan else {
        return None;
    };
    Some(
        file.find(ev.problem.title(), ev.problem.root_cause())
            .map(|(r, _)| Actions {
                on_open: r.actions_on_open.clone(),
                on_close: r.actions_on_close.clone(),
            })
            .unwrap_or_default(),
    )
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

/// A record as this process wrote it, held for the end of the action it hands to its own
/// action role.
struct Held {
    key: String,
    record: Record,
    rev: u64,
    /// Whether the event that led to the action is kept by its transport until the action's
    /// end is handled ([`ActionsHere::kept`]).
    kept: bool,
}

/// The most records held for actions running here (each is one remediation's record, up to
/// tens of KiB with a large problem): past it they are let go, and those actions' ends read
/// their records again.
const MAX_HELD: usize = 512;

/// What follows an action's name in its outcome: `": <message>"`, or nothing.
fn detail(ev: &ActionFinished) -> String {
    if ev.message.is_empty() {
        String::new()
    } else {
        format!(": {}", ev.message)
    }
}

/// The outcome message of a remediation whose action succeeded.
fn succeeded(record: &Record, ev: &ActionFinished) -> String {
    format!("action {} succeeded{}", record.action_label, detail(ev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Collector;
    use crate::keptn::{Incoming, Kind, decode_bytes};
    use crate::resources::DirSource;
    use cloudevents::{AttributesReader, Event};
    use futures::future::BoxFuture;
    use serde_json::{Value, json};
    use std::sync::Mutex;

    const FILE: &str = r#"apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata:
  name: unit
spec:
  remediations:
    - problemType: Failure rate increase
      actionsOnOpen:
        - name: first
          action: toggle-feature
          value:
            First: "on"
        - name: second
          action: toggle-feature
          value:
            Second: "on"
      actionsOnClose:
        - name: back
          action: toggle-feature
          value:
            First: "off"
"#;

    /// A bus that fails the publishes whose type is listed in `fail_once`, once each.
    #[derive(Clone, Default)]
    struct Flaky {
        seen: Collector,
        fail_once: Arc<Mutex<Vec<String>>>,
    }

    impl Flaky {
        fn failing(types: &[&str]) -> Flaky {
            Flaky {
                seen: Collector::new(),
                fail_once: Arc::new(Mutex::new(types.iter().map(|t| (*t).to_owned()).collect())),
            }
        }
        fn of(&self, short: &str) -> Vec<Event> {
            let ty = format!("sh.keptn.event.{short}");
            self.seen
                .events()
                .into_iter()
                .filter(|e| e.ty() == ty)
                .collect()
        }
    }

    impl Publish for Flaky {
        fn publish(&self, event: Event) -> BoxFuture<'_, anyhow::Result<()>> {
            let mut fail = self.fail_once.lock().unwrap();
            if let Some(i) = fail.iter().position(|t| t == event.ty()) {
                fail.remove(i);
                return Box::pin(async { anyhow::bail!("publish failed (test)") });
            }
            drop(fail);
            self.seen.publish(event)
        }

        fn publish_all_handled_here(
            &self,
            events: Vec<Event>,
        ) -> BoxFuture<'_, anyhow::Result<()>> {
            self.publish_all(events)
        }
    }

    struct Rig {
        remediator: Arc<Remediator>,
        bus: Flaky,
        dir: tempfile::TempDir,
    }

    fn rig(bus: Flaky) -> Rig {
        rig_with(bus, Duration::from_secs(600))
    }

    fn rig_with(bus: Flaky, timeout: Duration) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("remediation.yaml"), FILE).unwrap();
        let remediator = Remediator::new(
            ResourceSource::Dir(DirSource::new(dir.path())),
            EventFactory::new("test"),
            Store::memory(Duration::from_secs(3600)),
            timeout,
            Arc::new(bus.clone()),
        );
        Rig {
            remediator,
            bus,
            dir,
        }
    }

    fn decode(v: Value) -> Incoming {
        decode_bytes(&serde_json::to_vec(&v).unwrap()).unwrap()
    }

    fn problem(id: &str, state: &str, problem_id: Value) -> Value {
        json!({
            "specversion": "1.0", "id": id, "source": "test",
            "type": if state == "OPEN" { "sh.keptn.event.problem.open" } else { "sh.keptn.events.problem" },
            "shkeptncontext": "ctx-1",
            "data": {
                "State": state, "ProblemID": problem_id, "ProblemTitle": "Failure rate increase",
                "project": "website", "stage": "production", "service": "front-end"
            }
        })
    }

    fn finished_for(triggered: &Event, result: &str) -> Incoming {
        decode(json!({
            "specversion": "1.0", "id": uuid::Uuid::new_v4().to_string(), "source": "test",
            "type": "sh.keptn.event.action.finished", "shkeptncontext": "ctx-1",
            "triggeredid": triggered.id(),
            "data": {
                "project": "website", "stage": "production", "service": "front-end",
                "status": if result == "pass" { "succeeded" } else { "errored" }, "result": result
            }
        }))
    }

    async fn handle(r: &Arc<Remediator>, ev: &Incoming) -> anyhow::Result<()> {
        match &ev.kind {
            Kind::Problem(p) => r.on_problem(&ev.meta, p).await,
            Kind::ActionFinished(f) => r.on_action_finished(&ev.meta, f).await,
            _ => unreachable!(),
        }
    }

    fn flag_values(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e.data() {
                Some(cloudevents::Data::Json(v)) => v["action"]["value"].to_string(),
                _ => String::new(),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_failed_finished_publish_is_sent_on_redelivery_with_the_same_id() {
        let rig = rig(Flaky::failing(&["sh.keptn.event.remediation.finished"]));
        let r = &rig.remediator;
        handle(r, &decode(problem("open-1", "OPEN", json!("P-1"))))
            .await
            .unwrap();
        let triggered = rig.bus.of("action.triggered");
        assert_eq!(triggered.len(), 1);
        let done = finished_for(&triggered[0], "pass");
        assert!(
            handle(r, &done).await.is_err(),
            "the failed publish is reported"
        );
        assert!(rig.bus.of("remediation.finished").is_empty());
        // JetStream redelivers the action.finished: this time the event goes out.
        handle(r, &done).await.unwrap();
        let finished = rig.bus.of("remediation.finished");
        assert_eq!(finished.len(), 1, "sent on redelivery");
        // A further redelivery (the ack was lost) sends nothing more.
        handle(r, &done).await.unwrap();
        assert_eq!(rig.bus.of("remediation.finished").len(), 1);
        drop(rig.dir);
    }

    /// A stand-in for this process's action role: takes every action and keeps what it was
    /// handed (the test plays the action's end).
    #[derive(Clone, Default)]
    struct Here {
        handed: Arc<Mutex<Vec<Event>>>,
        /// What [`ActionsHere::kept`] answers: the OPEN is kept until the action's end.
        kept: bool,
        /// What [`ActionsHere::redelivered`] answers: the OPEN comes again unacknowledged.
        redelivered: Arc<std::sync::atomic::AtomicBool>,
    }

    impl ActionsHere for Here {
        fn reserve(&self, _action: &str) -> Option<Box<dyn crate::bus::RunHere>> {
            Some(Box::new(self.clone()))
        }
        fn redelivered(&self) -> bool {
            self.redelivered.load(std::sync::atomic::Ordering::SeqCst)
        }
        fn kept(&self) -> bool {
            self.kept
        }
    }

    impl crate::bus::RunHere for Here {
        fn run(self: Box<Self>, event: Event, _stored: crate::bus::Confirmation) {
            self.handed.lock().unwrap().push(event);
        }
    }

    /// A rig on `bus` whose remediator hands actions to [`Here`], after the OPEN `open_id` for
    /// problem `problem_id`, `kept` by its transport or not: the rig, what was handed over, and
    /// the stand-in.
    async fn opened_here_on(
        bus: Flaky,
        kept: bool,
        open_id: &str,
        problem_id: &str,
    ) -> (Rig, Vec<Event>, Here) {
        let rig = rig(bus);
        let here = Here {
            kept,
            ..Here::default()
        };
        rig.remediator.run_actions_here(Box::new(here.clone()));
        handle(
            &rig.remediator,
            &decode(problem(open_id, "OPEN", json!(problem_id))),
        )
        .await
        .unwrap();
        let handed = here.handed.lock().unwrap().clone();
        (rig, handed, here)
    }

    /// The stored record of the problem `problem_id` of [`problem`].
    async fn record_of(r: &Remediator, problem_id: &str) -> Option<Record> {
        let Kind::Problem(ev) = decode(problem("any", "OPEN", json!(problem_id))).kind else {
            unreachable!()
        };
        let key = problem_key(&ev.scope, &ev.identity());
        r.store.get(&key).await.unwrap().map(|(record, _)| record)
    }

    #[tokio::test]
    async fn an_action_run_here_ends_the_remediation_on_the_record_it_was_handed_with() {
        for kept in [false, true] {
            let (rig, handed, _) = opened_here_on(Flaky::default(), kept, "open-8", "P-8").await;
            let r = &rig.remediator;
            assert_eq!(handed.len(), 1, "the first action runs here");
            assert_eq!(rig.bus.of("action.triggered")[0].id(), handed[0].id());
            handle(r, &finished_for(&handed[0], "pass")).await.unwrap();
            let finished = rig.bus.of("remediation.finished");
            assert_eq!(finished.len(), 1, "kept: {kept}");
            assert!(
                r.held.lock().unwrap().is_empty(),
                "the held record is taken by the end"
            );
            let record = record_of(r, "P-8").await.expect("remembered");
            assert_eq!(record.phase, Phase::Finished, "kept: {kept}");
            // A second delivery of the same end (no record held any more) sends nothing again.
            handle(r, &finished_for(&handed[0], "pass")).await.unwrap();
            assert_eq!(rig.bus.of("remediation.finished").len(), 1);
        }
    }

    #[tokio::test]
    async fn a_close_while_an_action_runs_here_is_not_lost_to_the_record_held_for_its_end() {
        for kept in [false, true] {
            let (rig, handed, _) = opened_here_on(Flaky::default(), kept, "open-9", "P-9").await;
            let r = &rig.remediator;
            assert_eq!(handed.len(), 1);
            // The CLOSED writes the record after it was held: the held revision is stale.
            handle(r, &decode(problem("close-9", "CLOSED", json!("P-9"))))
                .await
                .unwrap();
            handle(r, &finished_for(&handed[0], "pass")).await.unwrap();
            assert_eq!(rig.bus.of("remediation.finished").len(), 1, "kept: {kept}");
            let triggered = rig.bus.of("action.triggered");
            assert_eq!(triggered.len(), 2, "the open action, then the close action");
            assert_eq!(flag_values(&triggered[1..]), vec![r#"{"First":"off"}"#]);
            let all = rig.bus.seen.events();
            let at = |id: &str| all.iter().position(|e| e.id() == id).unwrap();
            assert!(
                at(rig.bus.of("remediation.finished")[0].id()) < at(triggered[1].id()),
                "the close action follows the end (kept: {kept})"
            );
            assert!(record_of(r, "P-9").await.is_none(), "closed and forgotten");
        }
    }

    #[tokio::test]
    async fn an_action_run_here_for_a_kept_open_sends_its_end_before_storing_it() {
        // The publish of remediation.finished fails once: what was stored before it shows.
        let failing = || Flaky::failing(&["sh.keptn.event.remediation.finished"]);
        let (rig, handed, here) = opened_here_on(failing(), true, "open-12", "P-12").await;
        let r = &rig.remediator;
        let done = finished_for(&handed[0], "pass");
        assert!(
            handle(r, &done).await.is_err(),
            "the failed publish is reported"
        );
        let record = record_of(r, "P-12").await.expect("claimed");
        assert_eq!(
            record.phase,
            Phase::Waiting,
            "no outcome stored before the send"
        );
        assert!(record.finish.is_none());
        // The kept OPEN comes again, unacknowledged: the action runs here again under its id,
        // and its end (not held this time) stores the outcome, then sends it.
        here.redelivered
            .store(true, std::sync::atomic::Ordering::SeqCst);
        handle(r, &decode(problem("open-12", "OPEN", json!("P-12"))))
            .await
            .unwrap();
        let again = here.handed.lock().unwrap().clone();
        assert_eq!(again.len(), 2, "the action runs again");
        assert_eq!(again[1].id(), handed[0].id(), "the same action id");
        handle(r, &done).await.unwrap();
        let finished = rig.bus.of("remediation.finished");
        assert_eq!(finished.len(), 1);
        assert_eq!(
            finished[0].id(),
            derived_id(&[&record.remediation_triggered_id, "finished"]),
            "the id the first attempt had"
        );
        assert_eq!(record_of(r, "P-12").await.unwrap().phase, Phase::Finished);

        // Not kept (core NATS, HTTP): the outcome is stored before the send, as always.
        let (rig, handed, _) = opened_here_on(failing(), false, "open-13", "P-13").await;
        let r = &rig.remediator;
        assert!(handle(r, &finished_for(&handed[0], "pass")).await.is_err());
        let record = record_of(r, "P-13").await.expect("claimed");
        assert_eq!(record.phase, Phase::Finishing, "stored before the send");
    }

    #[tokio::test]
    async fn a_kept_action_ending_late_in_its_time_stores_its_outcome_before_sending_it() {
        let failing = Flaky::failing(&["sh.keptn.event.remediation.finished"]);
        let (rig, handed, _) = opened_here_on(failing, true, "open-14", "P-14").await;
        let r = &rig.remediator;
        // 600 s to finish; it ends after 301 s: a replica's deadline may be deciding it too.
        r.skew_ms
            .store(301_000, std::sync::atomic::Ordering::SeqCst);
        assert!(handle(r, &finished_for(&handed[0], "pass")).await.is_err());
        let record = record_of(r, "P-14").await.expect("claimed");
        assert_eq!(
            record.phase,
            Phase::Finishing,
            "the compare-and-set decides"
        );
    }

    #[tokio::test]
    async fn a_close_during_a_running_action_waits_for_it_then_finishes_and_runs_close_actions() {
        let rig = rig(Flaky::default());
        let r = &rig.remediator;
        handle(r, &decode(problem("open-6", "OPEN", json!("P-6"))))
            .await
            .unwrap();
        let first = rig.bus.of("action.triggered");
        assert_eq!(first.len(), 1);
        handle(r, &decode(problem("close-6", "CLOSED", json!("P-6"))))
            .await
            .unwrap();
        // The open action may still be switching the flag on: the close action must not race it.
        assert_eq!(
            rig.bus.of("action.triggered").len(),
            1,
            "no close action yet"
        );
        // The open action fails: no escalation (the problem is closed), the remediation ends.
        handle(r, &finished_for(&first[0], "fail")).await.unwrap();
        let finished = rig.bus.of("remediation.finished");
        assert_eq!(finished.len(), 1, "the remediation ends with an event");
        let all = rig.bus.seen.events();
        let at_finished = all.iter().position(|e| e.id() == finished[0].id()).unwrap();
        let triggered = rig.bus.of("action.triggered");
        assert_eq!(triggered.len(), 2, "one open action, then the close action");
        assert_eq!(flag_values(&triggered[1..]), vec![r#"{"First":"off"}"#]);
        let at_close = all
            .iter()
            .position(|e| e.id() == triggered[1].id())
            .unwrap();
        assert!(
            at_finished < at_close,
            "remediation.finished, then the close action"
        );
        // A late action.finished or a second CLOSED changes nothing.
        handle(r, &finished_for(&first[0], "pass")).await.unwrap();
        handle(r, &decode(problem("close-6b", "CLOSED", json!("P-6"))))
            .await
            .unwrap();
        assert_eq!(rig.bus.of("action.triggered").len(), 2);
        assert_eq!(rig.bus.of("remediation.finished").len(), 1);
    }

    #[tokio::test]
    async fn close_actions_run_only_for_a_problem_opened_here_and_not_yet_closed() {
        let rig = rig(Flaky::default());
        let r = &rig.remediator;
        // Never opened here: nothing is switched.
        handle(r, &decode(problem("forged", "CLOSED", json!("P-never"))))
            .await
            .unwrap();
        assert!(
            rig.bus.seen.events().is_empty(),
            "{:?}",
            rig.bus.seen.events()
        );

        let open = decode(problem("open-4", "OPEN", json!("P-4")));
        handle(r, &open).await.unwrap();
        let first = rig.bus.of("action.triggered");
        handle(r, &finished_for(&first[0], "pass")).await.unwrap();
        let close = decode(problem("close-4", "CLOSED", json!("P-4")));
        handle(r, &close).await.unwrap();
        let triggered = rig.bus.of("action.triggered");
        assert_eq!(triggered.len(), 2, "one close action");
        let data = match triggered[1].data() {
            Some(cloudevents::Data::Json(v)) => v.clone(),
            other => panic!("action.triggered data: {other:?}"),
        };
        assert_eq!(data["problem"]["State"], "CLOSED", "{data}");
        assert_eq!(data["problem"]["ProblemID"], "P-4", "{data}");
        let before = rig.bus.seen.events().len();
        // Replays of the OPEN and of the CLOSED: already handled, nothing happens.
        handle(r, &open).await.unwrap();
        handle(r, &close).await.unwrap();
        assert_eq!(
            rig.bus.seen.events().len(),
            before,
            "{:?}",
            rig.bus.seen.events()
        );
        // A new notification of the problem (a new id) is a new remediation.
        handle(r, &decode(problem("open-4b", "OPEN", json!("P-4"))))
            .await
            .unwrap();
        assert_eq!(rig.bus.of("remediation.triggered").len(), 2);
    }

    #[tokio::test]
    async fn numeric_problem_ids_keep_problems_with_one_title_apart() {
        let rig = rig(Flaky::default());
        let r = &rig.remediator;
        handle(r, &decode(problem("n-1", "OPEN", json!(101))))
            .await
            .unwrap();
        handle(r, &decode(problem("n-2", "OPEN", json!(102))))
            .await
            .unwrap();
        assert_eq!(rig.bus.of("remediation.triggered").len(), 2);
        assert_eq!(rig.bus.of("action.triggered").len(), 2);
    }

    #[tokio::test]
    async fn the_actions_are_fixed_when_the_remediation_starts() {
        let rig = rig(Flaky::default());
        let r = &rig.remediator;
        handle(r, &decode(problem("open-18", "OPEN", json!("P-18"))))
            .await
            .unwrap();
        // The file is edited while the first action runs.
        let edited = FILE
            .replace("Second: \"on\"", "Other: \"on\"")
            .replace("First: \"off\"", "Other: \"off\"");
        std::fs::write(rig.dir.path().join("remediation.yaml"), edited).unwrap();
        let first = rig.bus.of("action.triggered");
        handle(r, &finished_for(&first[0], "fail")).await.unwrap();
        let triggered = rig.bus.of("action.triggered");
        assert_eq!(flag_values(&triggered[1..]), vec![r#"{"Second":"on"}"#]);
        handle(r, &finished_for(&triggered[1], "pass"))
            .await
            .unwrap();
        handle(r, &decode(problem("close-18", "CLOSED", json!("P-18"))))
            .await
            .unwrap();
        let triggered = rig.bus.of("action.triggered");
        assert_eq!(flag_values(&triggered[2..]), vec![r#"{"First":"off"}"#]);
    }

    #[tokio::test]
    async fn a_timeout_whose_publish_fails_is_tried_again() {
        let rig = rig_with(
            Flaky::failing(&["sh.keptn.event.remediation.finished"]),
            Duration::from_millis(50),
        );
        let r = &rig.remediator;
        handle(r, &decode(problem("open-t", "OPEN", json!("P-t"))))
            .await
            .unwrap();
        // Two actions time out; the first remediation.finished publish fails, the retry sends it.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while rig.bus.of("remediation.finished").is_empty() {
            assert!(std::time::Instant::now() < deadline, "never finished");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(rig.bus.of("action.triggered").len(), 2);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rig.bus.of("remediation.finished").len(), 1);
    }

    /// Two replicas share a JetStream state bucket; the second one's wall clock is 15 minutes
    /// ahead, so by its clock the deadline the first one wrote has long passed. It picks up the
    /// running action (as after a restart) and must still wait a full `ACTION_TIMEOUT`.
    #[tokio::test]
    async fn a_replica_whose_clock_is_ahead_does_not_time_out_running_actions() {
        use std::sync::atomic::Ordering;
        let nats = testkit::nats::NatsServer::start().unwrap();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let timeout = Duration::from_secs(3);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("remediation.yaml"), FILE).unwrap();
        let mut replicas = Vec::new();
        for _ in 0..2 {
            let store = Store::jetstream(&js, "skew", Duration::from_secs(3600))
                .await
                .unwrap();
            let bus = Flaky::default();
            let remediator = Remediator::new(
                ResourceSource::Dir(DirSource::new(dir.path())),
                EventFactory::new("test"),
                store,
                timeout,
                Arc::new(bus.clone()),
            );
            replicas.push((remediator, bus));
        }
        let (a, a_bus) = &replicas[0];
        let (b, b_bus) = &replicas[1];
        b.skew_ms.store(15 * 60 * 1000, Ordering::Relaxed);

        let started = std::time::Instant::now();
        handle(a, &decode(problem("open-skew", "OPEN", json!("P-skew"))))
            .await
            .unwrap();
        assert_eq!(a_bus.of("action.triggered").len(), 1);
        assert_eq!(
            b.resume().await.unwrap(),
            1,
            "the ahead replica sees the action"
        );
        let triggered = || a_bus.of("action.triggered").len() + b_bus.of("action.triggered").len();

        tokio::time::sleep(timeout / 2).await;
        assert_eq!(
            triggered(),
            1,
            "timed out early by the replica whose clock is ahead"
        );

        // After ACTION_TIMEOUT the action does time out: exactly one replica escalates.
        let give_up = started + timeout * 5;
        while triggered() < 2 {
            assert!(
                std::time::Instant::now() < give_up,
                "the action never timed out"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            started.elapsed() >= timeout,
            "timed out after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(triggered(), 2, "one escalation, not one per replica");
        let second: Vec<Event> = [a_bus.of("action.triggered"), b_bus.of("action.triggered")]
            .concat()
            .into_iter()
            .filter(|e| flag_values(std::slice::from_ref(e)) == [r#"{"Second":"on"}"#])
            .collect();
        assert_eq!(second.len(), 1, "the next action started once");
    }

    // The state machine under paused time: the clock stands still while the test works and
    // jumps to the next timer when everything waits, so a ten-minute ACTION_TIMEOUT passes in
    // milliseconds of wall time and the deadline task is exercised as in production.

    const TIMEOUT: Duration = Duration::from_secs(600);

    /// An event as the JSON it goes out as.
    fn json_of(event: &Event) -> Value {
        serde_json::to_value(event).unwrap()
    }

    fn short_types(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| e.ty().trim_start_matches("sh.keptn.event.").to_owned())
            .collect()
    }

    /// Lets every task run (virtual time only moves when all of them wait) until `done` holds;
    /// at most `within` of virtual time, looked at every millisecond (so only for short waits:
    /// a long one is a plain sleep, which the clock jumps over).
    async fn settle(within: Duration, done: impl Fn() -> bool) -> bool {
        let until = Instant::now() + within;
        while !done() {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        true
    }

    /// A bus on which the first publish of each listed type goes out but reports a failure, as
    /// when the stream stored an event and its acknowledgement was lost.
    #[derive(Clone, Default)]
    struct LostAck {
        seen: Collector,
        lose_once: Arc<Mutex<Vec<String>>>,
    }

    impl LostAck {
        fn losing(types: &[&str]) -> LostAck {
            LostAck {
                seen: Collector::new(),
                lose_once: Arc::new(Mutex::new(types.iter().map(|t| (*t).to_owned()).collect())),
            }
        }
    }

    impl Publish for LostAck {
        fn publish(&self, event: Event) -> BoxFuture<'_, anyhow::Result<()>> {
            let lost = {
                let mut lose = self.lose_once.lock().unwrap();
                lose.iter()
                    .position(|t| t == event.ty())
                    .map(|i| lose.remove(i))
                    .is_some()
            };
            Box::pin(async move {
                self.seen.publish(event).await?;
                anyhow::ensure!(!lost, "the stream's acknowledgement was lost (test)");
                Ok(())
            })
        }

        fn publish_all_handled_here(
            &self,
            events: Vec<Event>,
        ) -> BoxFuture<'_, anyhow::Result<()>> {
            self.publish_all(events)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn paused_an_open_problem_triggers_its_first_action_linked_to_the_remediation() {
        let wall = std::time::Instant::now();
        let rig = rig_with(Flaky::default(), TIMEOUT);
        let r = &rig.remediator;
        handle(r, &decode(problem("p-open", "OPEN", json!("P-open"))))
            .await
            .unwrap();
        let events = rig.bus.seen.events();
        assert_eq!(
            short_types(&events),
            [
                "remediation.triggered",
                "remediation.status.changed",
                "action.triggered"
            ]
        );
        let triggered = json_of(&events[0]);
        assert_eq!(triggered["triggeredid"], "p-open", "{triggered}");
        assert_eq!(triggered["shkeptncontext"], "ctx-1");
        for e in &events[1..] {
            let e = json_of(e);
            assert_eq!(e["triggeredid"], triggered["id"], "{e}");
            assert_eq!(e["shkeptncontext"], "ctx-1");
        }
        assert_eq!(flag_values(&events[2..]), vec![r#"{"First":"on"}"#]);
        // Just before the deadline nothing more has happened.
        tokio::time::sleep(TIMEOUT - Duration::from_secs(1)).await;
        assert_eq!(
            rig.bus.seen.events().len(),
            3,
            "{:?}",
            rig.bus.seen.events()
        );
        assert!(
            wall.elapsed() < Duration::from_secs(5),
            "took {:?}",
            wall.elapsed()
        );
    }

    #[tokio::test]
    async fn the_first_action_is_fixed_by_the_claim_so_a_failed_announce_resends_it_under_its_ids()
    {
        let rig = rig(Flaky::failing(&["sh.keptn.event.remediation.triggered"]));
        let r = &rig.remediator;
        let open = decode(problem("p-fixed", "OPEN", json!("P-fixed")));
        assert!(
            handle(r, &open).await.is_err(),
            "the failed publish is reported"
        );
        assert!(
            rig.bus.seen.events().is_empty(),
            "nothing after the failure"
        );
        // The one write that claimed the problem fixed its first action and linked its id.
        let Incoming { meta, kind } = &open;
        let Kind::Problem(ev) = kind else {
            panic!("a problem event")
        };
        let key = problem_key(&ev.scope, &ev.identity());
        let (record, _) = r.store.get(&key).await.unwrap().expect("claimed");
        assert_eq!(record.phase, Phase::Waiting);
        assert_eq!(record.opened_by, meta.id);
        let id = record.action_triggered_id.clone().expect("an action id");
        assert_eq!(r.store.action_owner(&id).await.unwrap(), Some(key));
        // The redelivery sends the three, the action under the id fixed in the claim.
        handle(r, &open).await.unwrap();
        let events = rig.bus.seen.events();
        assert_eq!(
            short_types(&events),
            [
                "remediation.triggered",
                "remediation.status.changed",
                "action.triggered"
            ]
        );
        assert_eq!(json_of(&events[0])["id"], record.remediation_triggered_id);
        assert_eq!(json_of(&events[2])["id"], id.as_str());
    }

    #[tokio::test(start_paused = true)]
    async fn paused_a_duplicate_open_of_a_running_remediation_is_silent() {
        let rig = rig_with(Flaky::default(), TIMEOUT);
        let r = &rig.remediator;
        handle(r, &decode(problem("dup-1", "OPEN", json!("P-dup"))))
            .await
            .unwrap();
        let before = rig.bus.seen.events().len();
        // The monitoring tool notifies the same problem again (a new event id), twice.
        for id in ["dup-2", "dup-3"] {
            handle(r, &decode(problem(id, "OPEN", json!("P-dup"))))
                .await
                .unwrap();
        }
        assert_eq!(rig.bus.seen.events().len(), before);
        assert_eq!(rig.bus.of("remediation.triggered").len(), 1);
        // The one remediation still ends normally.
        let first = rig.bus.of("action.triggered");
        handle(r, &finished_for(&first[0], "pass")).await.unwrap();
        assert_eq!(rig.bus.of("remediation.finished").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn paused_a_redelivered_open_resends_its_action_with_the_same_ids() {
        let bus = LostAck::losing(&["sh.keptn.event.action.triggered"]);
        let remediator = {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("remediation.yaml"), FILE).unwrap();
            let r = Remediator::new(
                ResourceSource::Dir(DirSource::new(dir.path())),
                EventFactory::new("test"),
                Store::memory(Duration::from_secs(3600)),
                TIMEOUT,
                Arc::new(bus.clone()),
            );
            (r, dir)
        };
        let r = &remediator.0;
        let open = decode(problem("redo-1", "OPEN", json!("P-redo")));
        assert!(
            handle(r, &open).await.is_err(),
            "the lost acknowledgement is reported, so the OPEN is redelivered"
        );
        handle(r, &open).await.unwrap();
        let of = |ty: &str| -> Vec<Value> {
            bus.seen
                .events()
                .iter()
                .filter(|e| e.ty() == format!("sh.keptn.event.{ty}"))
                .map(json_of)
                .collect()
        };
        // Its remediation.triggered may go out again with the action (its confirmation could
        // have been the lost one), under the same id: the remediation is not started twice.
        let remediation = of("remediation.triggered");
        assert!(!remediation.is_empty());
        assert!(
            remediation.iter().all(|e| e["id"] == remediation[0]["id"]),
            "one remediation: {remediation:?}"
        );
        let actions = of("action.triggered");
        assert_eq!(actions.len(), 2, "sent again");
        assert_eq!(actions[0]["id"], actions[1]["id"], "with the same id");
        for a in &actions {
            assert_eq!(a["triggeredid"], remediation[0]["id"], "{a}");
        }
        // A replay once the OPEN was handled sends nothing.
        handle(r, &open).await.unwrap();
        assert_eq!(of("action.triggered").len(), 2);
        // The answer to the action (whichever copy a provider saw) finishes the remediation,
        // and the first deadline is gone with it.
        let sent: Vec<Event> = bus
            .seen
            .events()
            .into_iter()
            .filter(|e| e.ty() == "sh.keptn.event.action.triggered")
            .collect();
        handle(r, &finished_for(&sent[1], "pass")).await.unwrap();
        assert_eq!(of("remediation.finished").len(), 1);
        tokio::time::sleep(TIMEOUT * 2).await;
        assert_eq!(of("remediation.finished").len(), 1);
        assert_eq!(of("action.triggered").len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn paused_a_failed_action_escalates_to_the_next_and_its_timer_is_dropped() {
        let wall = std::time::Instant::now();
        let rig = rig_with(Flaky::default(), TIMEOUT);
        let r = &rig.remediator;
        handle(r, &decode(problem("esc-1", "OPEN", json!("P-esc"))))
            .await
            .unwrap();
        let first = rig.bus.of("action.triggered");
        tokio::time::sleep(TIMEOUT / 2).await;
        handle(r, &finished_for(&first[0], "fail")).await.unwrap();
        let triggered = rig.bus.of("action.triggered");
        assert_eq!(
            flag_values(&triggered),
            [r#"{"First":"on"}"#, r#"{"Second":"on"}"#]
        );
        let status = rig.bus.of("remediation.status.changed");
        assert_eq!(json_of(&status[1])["data"]["remediation"]["actionIndex"], 1);
        let remediation = json_of(&rig.bus.of("remediation.triggered")[0]);
        assert_eq!(json_of(&triggered[1])["triggeredid"], remediation["id"]);
        // The first action's deadline passes: it finished already, nothing happens. The second
        // gets a full ACTION_TIMEOUT of its own from when it started.
        tokio::time::sleep(TIMEOUT / 2 + Duration::from_secs(1)).await;
        assert_eq!(rig.bus.of("action.triggered").len(), 2);
        assert!(rig.bus.of("remediation.finished").is_empty());
        handle(r, &finished_for(&triggered[1], "pass"))
            .await
            .unwrap();
        let finished = rig.bus.of("remediation.finished");
        assert_eq!(finished.len(), 1);
        let data = &json_of(&finished[0])["data"];
        assert_eq!(data["result"], "pass", "{data}");
        assert!(
            data["message"].as_str().unwrap().contains("second"),
            "{data}"
        );
        tokio::time::sleep(TIMEOUT * 2).await;
        assert_eq!(
            rig.bus.seen.events().len(),
            6,
            "{:?}",
            short_types(&rig.bus.seen.events())
        );
        assert!(
            wall.elapsed() < Duration::from_secs(5),
            "took {:?}",
            wall.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn paused_an_action_that_never_finishes_times_out_and_escalates() {
        let wall = std::time::Instant::now();
        let start = Instant::now();
        let rig = rig_with(Flaky::default(), TIMEOUT);
        let r = &rig.remediator;
        handle(r, &decode(problem("late-1", "OPEN", json!("P-late"))))
            .await
            .unwrap();
        let actions = || rig.bus.of("action.triggered").len();
        tokio::time::sleep(TIMEOUT - Duration::from_millis(10)).await;
        assert_eq!(actions(), 1, "not before ACTION_TIMEOUT");
        assert!(
            settle(Duration::from_secs(1), || actions() == 2).await,
            "escalated at the deadline"
        );
        assert!(start.elapsed() >= TIMEOUT);
        // Nobody answers the second action either: the remediation ends with both errors.
        tokio::time::sleep(TIMEOUT - Duration::from_millis(10)).await;
        assert!(
            rig.bus.of("remediation.finished").is_empty(),
            "not before its own deadline"
        );
        assert!(
            settle(Duration::from_secs(1), || !rig
                .bus
                .of("remediation.finished")
                .is_empty())
            .await,
            "the second action timed out"
        );
        assert!(start.elapsed() >= TIMEOUT * 2);
        let finished = rig.bus.of("remediation.finished");
        let data = &json_of(&finished[0])["data"];
        assert_eq!(data["status"], "errored", "{data}");
        assert_eq!(data["result"], "fail", "{data}");
        let message = data["message"].as_str().unwrap();
        assert!(
            message.contains("all 2 actions failed") && message.contains("did not finish within"),
            "{message}"
        );
        // A late answer to the timed-out action changes nothing.
        let first = rig.bus.of("action.triggered");
        handle(r, &finished_for(&first[0], "pass")).await.unwrap();
        tokio::time::sleep(TIMEOUT).await;
        assert_eq!(rig.bus.of("remediation.finished").len(), 1);
        assert_eq!(actions(), 2);
        assert!(
            wall.elapsed() < Duration::from_secs(5),
            "took {:?}",
            wall.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn paused_a_close_while_the_action_runs_switches_back_after_the_timeout() {
        let rig = rig_with(Flaky::default(), TIMEOUT);
        let r = &rig.remediator;
        handle(r, &decode(problem("cl-1", "OPEN", json!("P-cl"))))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        handle(r, &decode(problem("cl-2", "CLOSED", json!("P-cl"))))
            .await
            .unwrap();
        assert_eq!(
            rig.bus.of("action.triggered").len(),
            1,
            "no close action yet"
        );
        // The open action never answers: at its deadline the remediation ends (no escalation,
        // the problem is closed) and the close action follows.
        tokio::time::sleep(TIMEOUT - Duration::from_secs(61)).await;
        assert_eq!(
            rig.bus.of("action.triggered").len(),
            1,
            "not before the deadline"
        );
        assert!(
            settle(Duration::from_secs(2), || rig
                .bus
                .of("action.triggered")
                .len()
                == 2)
            .await,
            "{:?}",
            short_types(&rig.bus.seen.events())
        );
        let all = rig.bus.seen.events();
        let finished = rig.bus.of("remediation.finished");
        assert_eq!(finished.len(), 1);
        let message = json_of(&finished[0])["data"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.contains("the problem closed meanwhile"),
            "{message}"
        );
        let at_finished = all.iter().position(|e| e.id() == finished[0].id()).unwrap();
        let close = rig.bus.of("action.triggered").pop().unwrap();
        let at_close = all.iter().position(|e| e.id() == close.id()).unwrap();
        assert!(
            at_finished < at_close,
            "remediation.finished, then the close action"
        );
        assert_eq!(
            flag_values(std::slice::from_ref(&close)),
            vec![r#"{"First":"off"}"#]
        );
        let data = json_of(&close);
        assert_eq!(data["data"]["problem"]["State"], "CLOSED", "{data}");
        // The close action is not waited for: no timeout follows it.
        tokio::time::sleep(TIMEOUT * 2).await;
        assert_eq!(rig.bus.of("action.triggered").len(), 2);
        assert_eq!(rig.bus.of("remediation.finished").len(), 1);
    }
}
