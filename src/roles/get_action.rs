//! The get-action role (Keptn 0.8.3 – 1.x, docs/design.md §5): answers `get-action.triggered` the
//! way Keptn's remediation-service does, so that the shipyard-controller's `remediation`
//! sequence can run without it.
//!
//! Every trigger gets `get-action.started` and then exactly one `get-action.finished`:
//! - the action and the next index (`"get-action": {"actionIndex": n+1}` and `ActionIndex`);
//! - errored/fail when the event data or the `remediation.yaml` cannot be used;
//! - succeeded/fail when the file has no action for the problem or no action at that index:
//!   the lookup worked, the answer is "nothing (more) to try", which ends the sequence.

use crate::bus::Publish;
use crate::keptn::outgoing::{Link, Outcome};
use crate::keptn::{EventFactory, GetActionTriggered, Meta, Scope};
use crate::resources::ResourceSource;

pub struct GetActionRole {
    source: ResourceSource,
    events: EventFactory,
}

impl GetActionRole {
    pub fn new(source: ResourceSource, events: EventFactory) -> Self {
        GetActionRole { source, events }
    }

    /// Answers one `get-action.triggered`. `Err` only when publishing failed; every problem with
    /// the event or the file is answered with an event instead.
    pub async fn handle(
        &self,
        meta: &Meta,
        ev: &GetActionTriggered,
        out: &dyn Publish,
    ) -> anyhow::Result<()> {
        let link = Link::reply_to(meta);
        out.publish(self.events.get_action_started(&link, &ev.scope, &ev.labels))
            .await?;
        let (reply, result) = match self.choose(meta, ev).await {
            Ok((action, next_index)) => {
                tracing::info!(
                    scope = %ev.scope, action = %action.action, name = %action.name, next_index,
                    "get-action chose an action"
                );
                let reply = self
                    .events
                    .get_action_finished(&link, &ev.scope, &ev.labels, &action, next_index);
                (reply, "action")
            }
            Err((outcome, message)) => {
                tracing::warn!(
                    scope = %ev.scope, status = outcome.status(), detail = %message,
                    "get-action has no action to give"
                );
                let reply = self
                    .events
                    .get_action_failed(&link, &ev.scope, &ev.labels, outcome, &message);
                let result = match outcome {
                    Outcome::Errored => "errored",
                    _ => "no_action",
                };
                (reply, result)
            }
        };
        metrics::counter!("get_action_replies_total", "result" => result).increment(1);
        out.publish(reply).await
    }

    async fn choose(
        &self,
        meta: &Meta,
        ev: &GetActionTriggered,
    ) -> Result<(crate::keptn::ActionInfo, usize), (Outcome, String)> {
        let request = ev.data.as_ref().map_err(|reason| {
            (
                Outcome::Errored,
                format!("Could not decode input event data: {reason}"),
            )
        })?;
        let not_found = missing_message(&ev.scope);
        let loaded = match self
            .source
            .remediation(&ev.scope, meta.git_commit_id.as_deref())
            .await
        {
            Ok(Some(loaded)) => loaded,
            Ok(None) => return Err((Outcome::Errored, not_found)),
            Err(e) => return Err((Outcome::Errored, format!("{not_found} {e}"))),
        };
        let file = crate::resources::plan::parsed(&loaded).map_err(|e| {
            (
                Outcome::Errored,
                format!("Could not parse remediation.yaml file: {e}"),
            )
        })?;
        let index = request.action_index;
        let action = file
            .action(request.problem.title(), request.problem.root_cause(), index)
            .map_err(|e| (Outcome::SucceededFail, e.to_string()))?;
        Ok((action.clone(), index.saturating_add(1)))
    }
}

/// Keptn 1.x's message (without its "services" typo).
fn missing_message(scope: &Scope) -> String {
    if scope.service.is_empty() {
        format!(
            "Could not get remediation.yaml file for stage {}.",
            scope.stage
        )
    } else {
        format!(
            "Could not get remediation.yaml file for service {} in stage {}.",
            scope.service, scope.stage
        )
    }
}
