//! Routing of incoming events to the roles. NATS and HTTP both end here, so the logic does not
//! know where an event came from.

use crate::bus::Publish;
use crate::keptn::outgoing::Link;
use crate::keptn::{DecodeError, EventFactory, Incoming, Kind, types};
use crate::roles::action::ActionRole;
use crate::roles::get_action::GetActionRole;
use crate::roles::remediator::Remediator;
use std::sync::Arc;
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
    pub(crate) permits: Permits,
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
        let this = self.clone();
        tokio::spawn(async move {
            let _ = this.dispatch(incoming).await;
            drop(permit);
        });
        Ok(())
    }

    /// Decodes and handles one structured-mode event. An unusable event is rejected (logged,
    /// counted, reported as `sh.keptn.log.error`) and counts as handled; `Err` means a transient
    /// failure worth a redelivery.
    pub async fn handle_payload(&self, payload: &[u8]) -> anyhow::Result<()> {
        match crate::keptn::decode_bytes(payload) {
            Ok(incoming) => self.dispatch(incoming).await,
            Err(e) => {
                self.reject(&e).await;
                Ok(())
            }
        }
    }

    /// Logs, counts and reports an event that cannot be used.
    pub async fn reject(&self, e: &DecodeError) {
        let ty =
            e.ty.as_deref()
                .map(types::short)
                .unwrap_or("unknown")
                .to_owned();
        metrics::counter!("events_rejected_total", "type" => ty.clone(), "reason" => e.reason)
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

    /// Hands a decoded event to its role.
    pub async fn dispatch(&self, incoming: Incoming) -> anyhow::Result<()> {
        let meta = &incoming.meta;
        let ty = types::short(&meta.ty).to_owned();
        metrics::counter!("events_received_total", "type" => ty.clone()).increment(1);
        let scope = incoming.scope().map(|s| s.to_string()).unwrap_or_default();
        let span = info_span!(
            "event",
            shkeptncontext = meta.keptn_context.as_deref().unwrap_or("-"),
            event_id = %meta.id,
            event_type = %ty,
            scope = %scope,
        );
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
                    Some(r) => Some(r.on_action_finished(meta, f).await),
                    None => None,
                },
                Kind::GetActionTriggered(g) => match &self.get_action {
                    Some(role) => Some(role.handle(meta, g, self.out.as_ref()).await),
                    None => None,
                },
                Kind::ActionTriggered(a) => match &self.action {
                    Some(role) => Some(role.handle(meta, a, self.out.as_ref()).await),
                    None => None,
                },
            };
            match handled {
                None => {
                    metrics::counter!("events_ignored_total", "type" => ty.clone()).increment(1);
                    debug!("no enabled role handles this event type");
                    Ok(())
                }
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => {
                    metrics::counter!("events_failed_total", "type" => ty.clone()).increment(1);
                    warn!(error = %format!("{e:#}"), "handling the event failed");
                    Err(e)
                }
            }
        }
        .instrument(span)
        .await
    }
}
