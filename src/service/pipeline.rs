//! Routing of incoming events to the roles. NATS and HTTP both end here, so the logic does not
//! know where an event came from.

use crate::bus::Publish;
use crate::keptn::outgoing::Link;
use crate::keptn::{DecodeError, EventFactory, Incoming, Kind, types};
use crate::roles::action::ActionRole;
use crate::roles::get_action::GetActionRole;
use crate::roles::remediator::Remediator;
use std::sync::Arc;
use tracing::{Instrument, debug, info_span, warn};

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
}

impl Pipeline {
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

    /// Hands a decoded event to its role.
    pub async fn dispatch(&self, incoming: Incoming) -> anyhow::Result<()> {
        let meta = &incoming.meta;
        let ty = types::short(&meta.ty).to_owned();
        let label = crate::telemetry::type_label(&meta.ty);
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
                    Some(role) => {
                        if let Some(n) = &self.notifier
                            && ActionRole::handles(&a.action.action)
                        {
                            n.observe_action_triggered(meta, a);
                        }
                        Some(role.handle(meta, a, self.out.as_ref()).await)
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
