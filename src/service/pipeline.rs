//! Routing of incoming events to the roles. NATS and HTTP both end here, so the logic does not
//! know where an event came from.

use crate::bus::{ActionsHere, Confirmation, Publish, RunHere};
use crate::keptn::outgoing::Link;
use crate::keptn::{DecodeError, EventFactory, Incoming, Kind, types};
use crate::roles::action::ActionRole;
use crate::roles::get_action::GetActionRole;
use crate::roles::remediator::Remediator;
use cloudevents::Event;
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{Instrument, debug, info_span, warn};

/// The permits every event takes while it is handled, whichever transport brought it: one pool
/// for `action.triggered` (which waits on Unleash) and one for everything else, so that a hung
/// Unleash holding every toggle permit never stops problems, `action.finished` or
/// `get-action.triggered`. Shutdown drains both.
pub struct Permits {
    toggles: Arc<Semaphore>,
    others: Arc<Semaphore>,
    toggle_size: u32,
    other_size: u32,
}

impl Permits {
    /// `concurrency` split in half: toggles get half (at least one), the rest (at least one)
    /// goes to the other events.
    pub fn new(concurrency: usize) -> Permits {
        let total = u32::try_from(concurrency.max(1)).unwrap_or(u32::MAX);
        let toggle_size = (total / 2).max(1);
        let other_size = total.saturating_sub(toggle_size).max(1);
        Permits {
            toggles: Arc::new(Semaphore::new(toggle_size as usize)),
            others: Arc::new(Semaphore::new(other_size as usize)),
            toggle_size,
            other_size,
        }
    }

    /// The pool for events arriving on `subject` (or of this type).
    pub fn pool(&self, subject: &str) -> Arc<Semaphore> {
        if subject == types::ACTION_TRIGGERED {
            self.toggles.clone()
        } else {
            self.others.clone()
        }
    }

    /// Waits until every permit is back (all events in flight finished) or `grace` passed;
    /// afterwards no permit is handed out again.
    pub async fn drain(&self, grace: Duration) -> bool {
        let all = async {
            let toggles = self.toggles.acquire_many(self.toggle_size).await;
            let others = self.others.acquire_many(self.other_size).await;
            self.toggles.close();
            self.others.close();
            drop((toggles, others));
        };
        let done = tokio::time::timeout(grace, all).await.is_ok();
        self.toggles.close();
        self.others.close();
        done
    }
}

pub struct Pipeline {
    pub(crate) events: EventFactory,
    pub(crate) out: Arc<dyn Publish>,
    pub(crate) remediator: Option<Arc<Remediator>>,
    pub(crate) get_action: Option<GetActionRole>,
    pub(crate) action: Option<ActionRole>,
    /// Whether `<stage>.remediation.triggered` sequence events start remediations.
    pub(crate) accept_sequences: bool,
    /// Feedback targets; it sees what the roles publish, and here the action.triggered events
    /// this process answers but did not publish.
    pub(crate) notifier: Option<crate::feedback::Notifier>,
    pub(crate) permits: Permits,
    /// Whether events come through JetStream (kept until handled, redelivered after a crash).
    pub(crate) jetstream: bool,
    pub(crate) settled: Settled,
}

tokio::task_local! {
    /// Set by [`keeping`] while its transport keeps the current event until its handling ends.
    static KEPT: Kept;
}

/// The event being handled, as its transport keeps it.
struct Kept {
    /// What its handling started in this process, awaited before the event is acknowledged.
    runs: std::cell::RefCell<Vec<Run>>,
    /// Whether it was delivered before (and not acknowledged: a crash or a failure).
    redelivered: bool,
}

/// An action run started in this process: its outcome and the permit it ran under.
pub type Run = BoxFuture<'static, (anyhow::Result<()>, Option<OwnedSemaphorePermit>)>;

/// Runs `work` (the handling of one event, `redelivered` or not) and returns, beside its
/// result, the action runs it started in this process, which the caller awaits before
/// acknowledging the event.
pub async fn keeping<F: Future>(redelivered: bool, work: F) -> (F::Output, Vec<Run>) {
    let kept = Kept {
        runs: Default::default(),
        redelivered,
    };
    KEPT.scope(kept, async {
        let out = work.await;
        let left = KEPT.with(|kept| kept.runs.take());
        (out, left)
    })
    .await
}

/// Whether the event being handled is kept by its transport until [`keeping`] returns.
fn kept() -> bool {
    KEPT.try_with(|_| ()).is_ok()
}

/// A toggle permit taken for an action the remediator hands to this process's action role.
struct Reserved {
    pipeline: Arc<Pipeline>,
    permit: OwnedSemaphorePermit,
}

impl ActionsHere for Weak<Pipeline> {
    fn reserve(&self, action: &str) -> Option<Box<dyn RunHere>> {
        let pipeline = self.upgrade()?;
        if !pipeline.may_run_here() || !ActionRole::handles(action) {
            return None;
        }
        let permit = pipeline.permits.toggles.clone().try_acquire_owned().ok()?;
        Some(Box::new(Reserved { pipeline, permit }))
    }

    fn read_ahead(&self, action: &crate::keptn::ActionInfo, scope: &crate::keptn::Scope) {
        // Only when `reserve` could then take a permit for it.
        if let Some(pipeline) = self.upgrade()
            && pipeline.may_run_here()
            && pipeline.permits.toggles.available_permits() > 0
            && let Some(role) = &pipeline.action
        {
            role.read_ahead(action, scope);
        }
    }

    fn redelivered(&self) -> bool {
        KEPT.try_with(|kept| kept.redelivered).unwrap_or(false)
    }

    fn kept(&self) -> bool {
        kept()
    }
}

impl RunHere for Reserved {
    fn run(self: Box<Self>, event: Event, stored: Confirmation) {
        let Reserved { pipeline, permit } = *self;
        let task = tokio::spawn(async move {
            let outcome = pipeline.run_here(event, stored).await;
            if let Err(e) = &outcome {
                warn!(error = %format!("{e:#}"), "the action run in this process failed");
            }
            (outcome, Some(permit))
        });
        let run: Run = Box::pin(async move {
            task.await
                .unwrap_or_else(|e| (Err(anyhow::anyhow!("the action run stopped: {e}")), None))
        });
        // Detached when nothing keeps the event (core NATS, HTTP): the run goes on by itself
        // and its permit is released when it ends.
        let _ = KEPT.try_with(|kept| kept.runs.borrow_mut().push(run));
    }
}

/// Publishes like `inner` once the `action.triggered` being run is confirmed (`stored`), and
/// keeps the `action.finished` the action role sends, marked as handled here, for this
/// process's remediator.
struct HandBack {
    inner: Arc<dyn Publish>,
    /// The confirmation of the `action.triggered`, awaited once by whichever comes first: a
    /// reply or the end of the run.
    stored: std::sync::Mutex<Option<Confirmation>>,
    /// Its outcome, for every later reply.
    confirmed: tokio::sync::OnceCell<Result<(), String>>,
    finished: std::sync::Mutex<Option<Event>>,
}

impl HandBack {
    fn new(inner: Arc<dyn Publish>, stored: Confirmation) -> HandBack {
        HandBack {
            inner,
            stored: std::sync::Mutex::new(Some(stored)),
            confirmed: tokio::sync::OnceCell::new(),
            finished: Default::default(),
        }
    }

    /// Waits until the `action.triggered` is confirmed; an error when it could not be stored.
    async fn stored(&self) -> anyhow::Result<()> {
        let outcome = self
            .confirmed
            .get_or_init(|| async {
                let stored = self.stored.lock().expect("hand-back lock").take();
                match stored {
                    Some(stored) => stored.await.map_err(|e| format!("{e:#}")),
                    None => Ok(()),
                }
            })
            .await;
        outcome
            .clone()
            .map_err(|e| anyhow::anyhow!("the action.triggered run here: {e}"))
    }
}

impl Publish for HandBack {
    fn publish(&self, event: Event) -> BoxFuture<'_, anyhow::Result<()>> {
        use cloudevents::AttributesReader;
        Box::pin(async move {
            self.stored().await?;
            if event.ty() != types::ACTION_FINISHED {
                return self.inner.publish(event).await;
            }
            self.inner
                .publish_all_handled_here(vec![event.clone()])
                .await?;
            *self.finished.lock().expect("hand-back lock") = Some(event);
            Ok(())
        })
    }

    fn publish_all_handled_here(&self, events: Vec<Event>) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.stored().await?;
            self.inner.publish_all_handled_here(events).await
        })
    }
}

/// Why [`Pipeline::admit`] did not take an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Every permit of its pool is in use; try again shortly.
    Busy,
    /// The service is stopping.
    Stopping,
}

impl Pipeline {
    /// Takes an event decoded elsewhere (HTTP) for handling in the background, under the same
    /// permits and drain as events from NATS; refused at once when its pool is full.
    pub fn admit(self: &Arc<Self>, incoming: Incoming) -> Result<(), Refused> {
        let permit: OwnedSemaphorePermit =
            match self.permits.pool(&incoming.meta.ty).try_acquire_owned() {
                Ok(p) => p,
                Err(tokio::sync::TryAcquireError::NoPermits) => {
                    metrics::counter!("events_refused_total", "reason" => "busy").increment(1);
                    return Err(Refused::Busy);
                }
                Err(tokio::sync::TryAcquireError::Closed) => return Err(Refused::Stopping),
            };
        self.spawn_dispatch(permit, incoming, ());
        Ok(())
    }

    /// Like [`Self::admit`], but waits for a permit: the alerts of one webhook notification are
    /// taken one after another rather than refused beyond `CONCURRENCY`. `guard` is dropped
    /// when the handling ends.
    pub async fn admit_waiting<G: Send + 'static>(
        self: &Arc<Self>,
        incoming: Incoming,
        guard: G,
    ) -> Result<(), Refused> {
        let permit = self
            .permits
            .pool(&incoming.meta.ty)
            .acquire_owned()
            .await
            .map_err(|_| Refused::Stopping)?;
        self.spawn_dispatch(permit, incoming, guard);
        Ok(())
    }

    fn spawn_dispatch<G: Send + 'static>(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        incoming: Incoming,
        guard: G,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let _ = this.dispatch(incoming).await;
            drop(guard);
            drop(permit);
        });
    }

    /// Decodes and handles one structured-mode event that arrived on NATS `subject`. An unusable
    /// event is rejected (logged, counted, reported as `sh.keptn.log.error`) and counts as
    /// handled; `Err` means a transient failure worth a redelivery.
    ///
    /// The subject is what NATS permissions control, so an event is only handled when its
    /// `type` is its subject (the Keptn convention): otherwise a sender allowed to publish
    /// problems only could trigger actions. Events nobody here handles are not answered when
    /// this service sent them itself or they are logs (`sh.keptn.log.*`), so that a broad
    /// subscription such as `sh.keptn.>` cannot feed on its own replies; with such a
    /// subscription, other services' events of types no role handles are passed over too.
    pub async fn handle_payload(&self, subject: &str, payload: &[u8]) -> anyhow::Result<()> {
        self.handle_decoded(subject, payload, crate::keptn::decode_bytes(payload))
            .await
    }

    /// [`Self::handle_payload`] for a payload its transport already decoded (to ask
    /// [`Self::settled_at_once`] first).
    pub async fn handle_decoded(
        &self,
        subject: &str,
        payload: &[u8],
        decoded: Result<Incoming, DecodeError>,
    ) -> anyhow::Result<()> {
        match decoded {
            Ok(incoming) if incoming.meta.ty == subject => self.dispatch(incoming).await,
            Ok(incoming) => {
                let meta = &incoming.meta;
                if meta.source == self.events.source() {
                    skip("own_event", &meta.ty);
                    return Ok(());
                }
                self.reject(&mismatch(
                    subject,
                    Some(meta.id.clone()),
                    Some(meta.ty.clone()),
                    meta.keptn_context.clone(),
                ))
                .await;
                Ok(())
            }
            Err(e) => {
                let ty = e.ty.as_deref().unwrap_or_default();
                if is_log(ty) {
                    skip("log_event", ty);
                    return Ok(());
                }
                if sent_by(payload, self.events.source()) {
                    skip("own_event", ty);
                    return Ok(());
                }
                if e.reason == "unsupported_type" {
                    if ty == subject {
                        skip("unhandled_type", ty);
                        return Ok(());
                    }
                    let e = mismatch(subject, e.id, e.ty, e.keptn_context);
                    self.reject(&e).await;
                    return Ok(());
                }
                self.reject(&e).await;
                Ok(())
            }
        }
    }

    /// Logs, counts and reports an event that cannot be used. A log event is never answered
    /// with another one.
    pub async fn reject(&self, e: &DecodeError) {
        if e.ty.as_deref().is_some_and(is_log) {
            skip("log_event", e.ty.as_deref().unwrap_or_default());
            return;
        }
        let ty =
            e.ty.as_deref()
                .map(types::short)
                .unwrap_or("unknown")
                .to_owned();
        let label =
            e.ty.as_deref()
                .map_or("other", crate::telemetry::type_label);
        metrics::counter!("events_rejected_total", "type" => label, "reason" => e.reason)
            .increment(1);
        warn!(
            event_id = e.id.as_deref().unwrap_or("-"),
            event_type = %ty,
            shkeptncontext = e.keptn_context.as_deref().unwrap_or("-"),
            reason = e.reason,
            "event rejected: {}", e.message
        );
        let link = Link {
            keptn_context: e
                .keptn_context
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            triggered_id: e.id.clone(),
            git_commit_id: None,
        };
        let message = format!(
            "event {} of type {} rejected ({}): {}",
            e.id.as_deref().unwrap_or("without id"),
            e.ty.as_deref().unwrap_or("unknown"),
            e.reason,
            e.message
        );
        let event = self.events.log_error(&link, None, &ty, &message);
        if let Err(err) = self.out.publish(event).await {
            warn!(error = %format!("{err:#}"), "could not publish sh.keptn.log.error");
        }
    }

    /// Whether an enabled role takes this event (what `dispatch` would not count as ignored).
    pub(crate) fn handles(&self, incoming: &Incoming) -> bool {
        match &incoming.kind {
            Kind::Problem(_) => {
                self.remediator.is_some()
                    && (self.accept_sequences
                        || types::remediation_sequence_stage(&incoming.meta.ty).is_none())
            }
            Kind::ActionFinished(_) => self.remediator.is_some(),
            Kind::GetActionTriggered(_) => self.get_action.is_some(),
            Kind::ActionTriggered(_) => self.action.is_some(),
        }
    }

    /// Whether an event decoded from a message on `subject` is an OPEN of a problem another
    /// event is known here to have claimed. Such an event is counted as handled and needs
    /// nothing more, so the transport answers it where it read it, without a task or a permit
    /// of its own: most of an alert storm.
    pub fn settled_at_once(&self, subject: &str, incoming: &Incoming) -> bool {
        incoming.meta.ty == subject && self.duplicate(incoming)
    }

    /// [`Self::settled_at_once`] asked of a message's payload before it is decoded: whether it
    /// is an OPEN of a problem another event is known here to have claimed, read from the few
    /// members that name it ([`crate::keptn::quick`]). `false` leaves the message to the full
    /// decode, which also answers the events this reading does not.
    pub fn settled_quickly(&self, subject: &str, payload: &[u8]) -> bool {
        // Only an OPEN's type is its subject here: other messages are not read twice.
        let Some(r) = &self.remediator else {
            return false;
        };
        if subject != types::PROBLEM_OPEN && subject != types::PROBLEM {
            return false;
        }
        let Some(open) = crate::keptn::quick::open_identity(payload) else {
            return false;
        };
        if open.ty != subject || !r.duplicate_identity(&open) {
            return false;
        }
        self.settled.count(&open.ty);
        true
    }

    /// Whether `incoming` is an OPEN that the claim cache knows to be a duplicate; counts it
    /// (received, duplicate, in flight for no time) when it is.
    fn duplicate(&self, incoming: &Incoming) -> bool {
        let (Kind::Problem(p), Some(r)) = (&incoming.kind, &self.remediator) else {
            return false;
        };
        if !(self.handles(incoming) && r.duplicate_open(&incoming.meta, p)) {
            return false;
        }
        self.settled.count(&incoming.meta.ty);
        true
    }

    /// Whether an action of the event being handled may run in this process's action role:
    /// there is one, and with JetStream the event is kept until the run ends (an action run
    /// here is only as durable as the event that led to it; one that came over HTTP is not
    /// kept).
    fn may_run_here(&self) -> bool {
        self.action.is_some() && (!self.jetstream || kept())
    }

    /// Runs an `action.triggered` of this process's remediator in its action role, and hands
    /// the `action.finished` back to the remediator, without the bus in between (both are
    /// published, marked as handled here, for everyone else).
    async fn run_here(&self, event: Event, stored: Confirmation) -> anyhow::Result<()> {
        let incoming = crate::keptn::decode_event(event)
            .map_err(|e| anyhow::anyhow!("the action.triggered to run here: {}", e.message))?;
        let back = HandBack::new(self.out.clone(), stored);
        // The notifier sees this action.triggered from the publisher that sent it, once it is
        // confirmed, after the events sent before it; not here, where it would come first.
        self.dispatch_to(incoming, &back, false).await?;
        // Confirmed even when the role sent nothing: a run whose action.triggered was not
        // stored fails, and the event that led to it is delivered again.
        back.stored().await?;
        let finished = back.finished.lock().expect("hand-back lock").take();
        if let Some(finished) = finished {
            let incoming = crate::keptn::decode_event(finished)
                .map_err(|e| anyhow::anyhow!("the action.finished run here: {}", e.message))?;
            self.dispatch(incoming).await?;
        }
        Ok(())
    }

    /// Hands a decoded event to its role.
    pub async fn dispatch(&self, incoming: Incoming) -> anyhow::Result<()> {
        self.dispatch_to(incoming, self.out.as_ref(), true).await
    }

    /// Hands a decoded event to its role, whose replies go to `out`; `notify_action`: whether
    /// the notifier is shown an `action.triggered` the action role answers (not one this
    /// process sent itself to run here, which its publisher shows).
    async fn dispatch_to(
        &self,
        incoming: Incoming,
        out: &dyn Publish,
        notify_action: bool,
    ) -> anyhow::Result<()> {
        // A duplicate OPEN ends here, before its span, its log fields and its in-flight count:
        // an alert storm is mostly these.
        if self.duplicate(&incoming) {
            return Ok(());
        }
        let meta = &incoming.meta;
        let label = crate::telemetry::type_label(&meta.ty);
        let ty = types::short(&meta.ty).to_owned();
        let _in_flight = crate::telemetry::InFlight::start();
        metrics::counter!("events_received_total", "type" => label).increment(1);
        let scope = incoming.scope().map(|s| s.to_string()).unwrap_or_default();
        let span = info_span!(
            "event",
            shkeptncontext = meta.keptn_context.as_deref().unwrap_or("-"),
            event_id = %meta.id,
            event_type = %ty,
            scope = %scope,
        );
        // Every arm but a problem's is boxed, and a problem's boxes what follows its duplicate
        // check: the future handed to a task per event stays small.
        async {
            let handled = match &incoming.kind {
                Kind::Problem(p) => match &self.remediator {
                    Some(_)
                        if !self.accept_sequences
                            && types::remediation_sequence_stage(&meta.ty).is_some() =>
                    {
                        None
                    }
                    Some(r) => Some(r.on_problem(meta, p).await),
                    None => None,
                },
                Kind::ActionFinished(f) => match &self.remediator {
                    Some(r) => Some(Box::pin(r.on_action_finished(meta, f)).await),
                    None => None,
                },
                Kind::GetActionTriggered(g) => match &self.get_action {
                    Some(role) => Some(Box::pin(role.handle(meta, g, out)).await),
                    None => None,
                },
                Kind::ActionTriggered(a) => match &self.action {
                    Some(role) => {
                        if let Some(n) = &self.notifier
                            && notify_action
                            && ActionRole::handles(&a.action.action)
                        {
                            n.observe_action_triggered(meta, a);
                        }
                        Some(Box::pin(role.handle(meta, a, out)).await)
                    }
                    None => None,
                },
            };
            match handled {
                None => {
                    metrics::counter!("events_ignored_total", "type" => label).increment(1);
                    debug!("no enabled role handles this event type");
                    Ok(())
                }
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => {
                    metrics::counter!("events_failed_total", "type" => label).increment(1);
                    warn!(error = %format!("{e:#}"), "handling the event failed");
                    Err(e)
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// Counts an event of type `ty` settled at once (a duplicate): received, in flight for no time.
/// `events_received_total` of the problem types, looked up once: an alert storm counts one of
/// them for nearly every event it settles at once.
pub(crate) struct Settled {
    open: metrics::Counter,
    problem: metrics::Counter,
}

impl Settled {
    pub(crate) fn new() -> Settled {
        let received = |ty| metrics::counter!("events_received_total", "type" => crate::telemetry::type_label(ty));
        Settled {
            open: received(types::PROBLEM_OPEN),
            problem: received(types::PROBLEM),
        }
    }

    /// Counts an event of type `ty` received and settled at once.
    fn count(&self, ty: &str) {
        match ty {
            types::PROBLEM_OPEN => self.open.increment(1),
            types::PROBLEM => self.problem.increment(1),
            _ => {
                let label = crate::telemetry::type_label(ty);
                metrics::counter!("events_received_total", "type" => label).increment(1);
            }
        }
        crate::telemetry::InFlight::count();
    }
}

/// Whether `ty` is a Keptn log event (`sh.keptn.log.error`, …).
fn is_log(ty: &str) -> bool {
    ty.starts_with("sh.keptn.log.")
}

/// Whether the message's `source` is `source` (read without decoding the rest of it).
fn sent_by(payload: &[u8], source: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Envelope {
        source: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Envelope>(payload)
        .ok()
        .and_then(|e| e.source)
        .is_some_and(|s| s.as_str() == Some(source))
}

/// Counts an event that is deliberately not handled and not answered.
fn skip(reason: &'static str, ty: &str) {
    metrics::counter!("events_skipped_total", "reason" => reason).increment(1);
    debug!(event_type = %ty, reason, "event not handled and not answered");
}

/// The rejection of an event whose type is not the subject it came on.
fn mismatch(
    subject: &str,
    id: Option<String>,
    ty: Option<String>,
    keptn_context: Option<String>,
) -> DecodeError {
    DecodeError {
        reason: "subject_mismatch",
        message: format!(
            "the event's type {:?} is not the subject {subject:?} it was published on; the type must be the subject",
            ty.as_deref().unwrap_or_default()
        ),
        id,
        ty,
        keptn_context,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Collector;
    use crate::resources::{DirSource, ResourceSource};
    use crate::roles::action::ActionRole;
    use crate::state::Store;
    use crate::unleash::{ApiMode, UnleashClient, UnleashConfig};
    use cloudevents::AttributesReader;
    use std::sync::Mutex;
    use tokio::sync::oneshot;
    use wiremock::matchers::{method, path_regex};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const FILE: &str = r#"apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata:
  name: unit
spec:
  remediations:
    - problemType: Failure rate increase
      actionsOnOpen:
        - name: static
          action: toggle-feature
          value:
            EnableStaticContent: "on"
"#;

    /// A transport whose confirmation of events sent together waits until the test gives it
    /// (or fails when the test drops the sender).
    struct Gated {
        seen: Collector,
        gate: Mutex<Option<oneshot::Receiver<()>>>,
        /// The stand-in Unleash, and whether it had been asked for the flag when the events
        /// that announce the action were sent (waited for, bounded).
        unleash: Arc<MockServer>,
        read_when_sent: Mutex<Option<bool>>,
    }

    impl Publish for Gated {
        fn publish(&self, event: Event) -> BoxFuture<'_, anyhow::Result<()>> {
            self.seen.publish(event)
        }

        fn publish_all_handled_here(
            &self,
            events: Vec<Event>,
        ) -> BoxFuture<'_, anyhow::Result<()>> {
            self.seen.publish_all(events)
        }

        fn send_all_handled_here(
            &self,
            events: Vec<Event>,
        ) -> BoxFuture<'_, anyhow::Result<Confirmation>> {
            Box::pin(async move {
                let mut read = false;
                for _ in 0..200 {
                    let requests = self.unleash.received_requests().await.unwrap_or_default();
                    if requests.iter().any(|r| r.method.as_str() == "GET") {
                        read = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                *self.read_when_sent.lock().unwrap() = Some(read);
                self.seen.publish_all(events).await?;
                let gate = self.gate.lock().unwrap().take().expect("one gated send");
                let stored: Confirmation = Box::pin(async move {
                    gate.await
                        .map_err(|_| anyhow::anyhow!("the stream did not store them (test)"))
                });
                Ok(stored)
            })
        }
    }

    struct Rig {
        pipeline: Arc<Pipeline>,
        seen: Collector,
        unleash: Arc<MockServer>,
        out: Arc<Gated>,
        _dir: tempfile::TempDir,
    }

    async fn rig(gate: oneshot::Receiver<()>, jetstream: bool) -> Rig {
        let unleash = Arc::new(MockServer::start().await);
        Mock::given(method("POST"))
            .and(path_regex("/on$"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&unleash)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "name": "production", "enabled": true
            })))
            .mount(&unleash)
            .await;
        let mut config = UnleashConfig::new(
            format!("{}/api", unleash.uri()),
            crate::secret::Secret::new("test-token"),
        );
        config.api = ApiMode::V4;
        config.max_retries = 0;
        let events = EventFactory::new("test");
        let action = ActionRole::new(UnleashClient::new(config).unwrap(), events.clone(), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("remediation.yaml"), FILE).unwrap();
        let seen = Collector::new();
        let gated = Arc::new(Gated {
            seen: seen.clone(),
            gate: Mutex::new(Some(gate)),
            unleash: unleash.clone(),
            read_when_sent: Mutex::new(None),
        });
        let out: Arc<dyn Publish> = gated.clone();
        let remediator = Remediator::new(
            ResourceSource::Dir(DirSource::new(dir.path())),
            events.clone(),
            Store::memory(Duration::from_secs(3600)),
            Duration::from_secs(60),
            out.clone(),
        );
        let pipeline = Arc::new(Pipeline {
            events,
            out,
            remediator: Some(remediator),
            get_action: None,
            action: Some(action),
            accept_sequences: false,
            notifier: None,
            permits: Permits::new(8),
            jetstream,
            settled: Settled::new(),
        });
        let r = pipeline.remediator.clone().unwrap();
        r.run_actions_here(Box::new(Arc::downgrade(&pipeline)));
        Rig {
            pipeline,
            seen,
            unleash,
            out: gated,
            _dir: dir,
        }
    }

    fn open() -> Incoming {
        let event = serde_json::json!({
            "specversion": "1.0",
            "id": "open-1",
            "source": "test",
            "type": types::PROBLEM_OPEN,
            "shkeptncontext": "ctx-1",
            "datacontenttype": "application/json",
            "data": {
                "State": "OPEN", "ProblemID": "P-1", "ProblemTitle": "Failure rate increase",
                "project": "website", "stage": "production", "service": "front-end"
            }
        });
        crate::keptn::decode_bytes(&serde_json::to_vec(&event).unwrap()).unwrap()
    }

    fn short_types(seen: &Collector) -> Vec<String> {
        seen.events()
            .iter()
            .map(|e| types::short(e.ty()).to_owned())
            .collect()
    }

    /// Waits (bounded) until the stand-in Unleash was asked to switch the flag.
    async fn switched(unleash: &MockServer) -> bool {
        for _ in 0..500 {
            let requests = unleash.received_requests().await.unwrap_or_default();
            if requests.iter().any(|r| r.method.as_str() == "POST") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn the_flag_is_switched_while_the_bus_confirms_the_action_and_the_replies_follow_it() {
        let (give, gate) = oneshot::channel();
        let rig = rig(gate, false).await;
        tokio::time::timeout(Duration::from_secs(5), rig.pipeline.dispatch(open()))
            .await
            .expect("the OPEN is handled without waiting for the confirmation")
            .unwrap();
        assert!(
            switched(&rig.unleash).await,
            "the flag is switched before the action.triggered is confirmed"
        );
        // The read-back too; the action's replies still wait for the confirmation.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            short_types(&rig.seen),
            [
                "remediation.triggered",
                "remediation.status.changed",
                "action.triggered"
            ]
        );
        give.send(()).unwrap();
        for _ in 0..500 {
            if short_types(&rig.seen).len() == 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            short_types(&rig.seen),
            [
                "remediation.triggered",
                "remediation.status.changed",
                "action.triggered",
                "action.started",
                "action.finished",
                "remediation.finished"
            ]
        );
        let finished = serde_json::to_value(&rig.seen.events()[5]).unwrap();
        assert_eq!(finished["data"]["result"], "pass", "{finished}");
    }

    /// The flag is read (for the report) while the problem is claimed, not after the claim,
    /// and the action reports that read: Unleash is asked three times in all.
    #[tokio::test]
    async fn the_flag_is_read_while_the_problem_is_claimed_and_not_again_before_its_switch() {
        let (give, gate) = oneshot::channel();
        give.send(()).unwrap();
        let rig = rig(gate, false).await;
        rig.pipeline.dispatch(open()).await.unwrap();
        for _ in 0..500 {
            if short_types(&rig.seen).len() == 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            *rig.out.read_when_sent.lock().unwrap(),
            Some(true),
            "the flag was read before the remediation was announced"
        );
        let requests = rig.unleash.received_requests().await.unwrap();
        let asked: Vec<&str> = requests.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(asked, ["GET", "POST", "GET"]);
        let finished = serde_json::to_value(&rig.seen.events()[4]).unwrap();
        assert_eq!(finished["type"], types::ACTION_FINISHED);
        assert_eq!(finished["data"]["flags"][0]["from"], "on", "{finished}");
        let role = rig.pipeline.action.as_ref().unwrap();
        assert_eq!(
            role.reads_ahead_pending(),
            0,
            "the read was taken by the run"
        );
    }

    #[tokio::test]
    async fn a_run_whose_action_was_not_stored_fails_and_replies_nothing() {
        let (give, gate) = oneshot::channel::<()>();
        let rig = rig(gate, true).await;
        let handling = keeping(false, rig.pipeline.dispatch(open()));
        let (handled, runs) = tokio::time::timeout(Duration::from_secs(5), handling)
            .await
            .expect("the OPEN is handled without waiting for the confirmation");
        handled.unwrap();
        assert_eq!(runs.len(), 1, "the action runs here, kept with the event");
        assert!(switched(&rig.unleash).await);
        drop(give); // the stream refuses the events
        let mut outcomes = Vec::new();
        for run in runs {
            outcomes.push(run.await.0);
        }
        let err = outcomes.remove(0).expect_err("the run fails");
        assert!(format!("{err:#}").contains("did not store"), "{err:#}");
        assert_eq!(
            short_types(&rig.seen),
            [
                "remediation.triggered",
                "remediation.status.changed",
                "action.triggered"
            ],
            "no reply follows events the bus did not store"
        );
    }
}
