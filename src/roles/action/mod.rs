//! The action role: the Unleash `toggle-feature` provider (docs/design.md §6), replacing
//! keptn-contrib/unleash-service.
//!
//! For an `action.triggered` whose action is `toggle-feature` (or Keptn 0.6's `featuretoggle`)
//! it replies `action.started`, switches the flags, and replies `action.finished` with
//! succeeded/pass or errored/fail, a message naming each flag's outcome and `flags`, each
//! flag's state before and after. Every other action
//! belongs to another provider and gets no reply at all: a stray `action.started` would make
//! Keptn wait for a `finished` this service will never send.
//!
//! - [`toggle`]: what `toggle-feature` means: the flags and states named by the action's
//!   `value`, in order; `ALLOWED_FLAGS`, `MAX_FLAGS_PER_ACTION` and dry run ([`FlagPolicy`]);
//!   the read before each switch; the report per flag.
//! - this file: the replies (`action.started`, `action.finished`) and which Unleash
//!   environment an event means.

pub mod ahead;
pub mod toggle;

pub use toggle::{
    DEFAULT_MAX_FLAGS, FlagChange, FlagOutcome, FlagPolicy, FlagResult, ToggleReport, ValueError,
    apply, apply_with, glob_match, parse_value,
};

use crate::bus::Publish;
use crate::keptn::outgoing::{Link, Outcome};
use crate::keptn::types::{FEATURETOGGLE, TOGGLE_FEATURE};
use crate::keptn::{ActionInfo, ActionTriggered, EventFactory, Meta, Scope};
use crate::unleash::UnleashClient;
use ahead::{MAX_FLAGS_AHEAD, ReadAhead};
use std::sync::Arc;

/// Handles `action.triggered` events for Unleash flags.
#[derive(Debug, Clone)]
pub struct ActionRole {
    client: UnleashClient,
    events: EventFactory,
    /// `UNLEASH_ENVIRONMENT`; when unset, the event's stage names the Unleash environment.
    environment: Option<String>,
    policy: FlagPolicy,
    /// Flags read ahead of their action, shared by the clones of this role.
    ahead: Arc<ReadAhead>,
}

impl ActionRole {
    pub fn new(client: UnleashClient, events: EventFactory, environment: Option<String>) -> Self {
        ActionRole {
            client,
            events,
            environment: environment.filter(|e| !e.trim().is_empty()),
            policy: FlagPolicy::default(),
            ahead: Arc::default(),
        }
    }

    /// `ALLOWED_FLAGS`, `MAX_FLAGS_PER_ACTION` and `DRY_RUN`.
    pub fn with_policy(mut self, policy: FlagPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Starts reading the flags `action` names in `scope`'s environment, for the read before
    /// each switch of the run of that action that is about to follow in this process (the
    /// remediator calls this before it claims the problem; see [`ahead`]). Nothing is read
    /// for an action of another provider, one this role would refuse, one whose flags would
    /// not be read (`READ_BEFORE_SWITCH=false`), or one of more than [`MAX_FLAGS_AHEAD`] flags.
    pub fn read_ahead(&self, action: &ActionInfo, scope: &Scope) {
        if !Self::handles(&action.action) || !(self.policy.reads_before() || self.policy.dry_run())
        {
            return;
        }
        let Ok(changes) = parse_value(&action.value) else {
            return;
        };
        if changes.len() > MAX_FLAGS_AHEAD.min(self.policy.max_flags()) {
            return;
        }
        let Some(environment) = self.environment_for(scope) else {
            return;
        };
        let flags = changes
            .into_iter()
            .filter(|c| self.policy.allows(&c.flag))
            .map(|c| c.flag)
            .collect();
        self.ahead.start(&self.client, environment, flags);
    }

    /// Reads taken ahead and not yet used by a run.
    #[cfg(test)]
    pub(crate) fn reads_ahead_pending(&self) -> usize {
        self.ahead.pending()
    }

    /// The Unleash environment an event about `scope` means: `UNLEASH_ENVIRONMENT`, else the
    /// stage.
    fn environment_for<'a>(&'a self, scope: &'a Scope) -> Option<&'a str> {
        match self.environment.as_deref() {
            Some(env) => Some(env),
            None if !scope.stage.trim().is_empty() => Some(scope.stage.trim()),
            None => None,
        }
    }

    /// Whether this role answers an action of that name (`toggle-feature`, `featuretoggle`,
    /// in any case).
    pub fn handles(action: &str) -> bool {
        let action = action.trim();
        action.eq_ignore_ascii_case(TOGGLE_FEATURE) || action.eq_ignore_ascii_case(FEATURETOGGLE)
    }

    /// Answers one `action.triggered`. Returns an error only when publishing a reply failed
    /// (the transport may then redeliver; switching a flag again is harmless); a failed toggle
    /// is reported in `action.finished`, not as an error.
    pub async fn handle(
        &self,
        meta: &Meta,
        ev: &ActionTriggered,
        out: &dyn Publish,
    ) -> anyhow::Result<()> {
        let action = ev.action.action.trim();
        if !Self::handles(action) {
            tracing::debug!(event_id = %meta.id, action, "action for another provider; not answered");
            return Ok(());
        }
        let action_label = action.to_ascii_lowercase();
        let link = Link::reply_to(meta);
        // A dry-run remediator marks its action.triggered; the action is then a dry run too.
        let asked_dry = ev.data.get("dryRun").and_then(serde_json::Value::as_bool) == Some(true);
        let dry_run = self.policy.dry_run() || asked_dry;
        let events = self
            .events
            .clone()
            .dry_run(dry_run || self.events.is_dry_run());
        // action.started goes out first; the flags are read and switched while the bus
        // confirms it (a failed confirmation fails the event after the switch, and the
        // redelivered action.triggered switches again, which is harmless).
        let (started, (outcome, message, report)) = tokio::join!(
            out.publish(events.action_started(&link, &ev.scope, &ev.labels)),
            self.run(ev, dry_run)
        );
        started?;
        crate::failpoint::point("after-toggle");
        tracing::info!(
            shkeptncontext = %link.keptn_context,
            event_id = %meta.id,
            scope = %ev.scope,
            result = outcome.result(),
            dry_run,
            detail = %message,
            "toggle-feature done"
        );
        metrics::counter!("actions_total", "action" => action_label, "result" => outcome.result())
            .increment(1);
        let finished = match report {
            Some(report) => {
                let (flags, not_listed) = report.flags_json();
                events.action_finished_with_flags(
                    &link, &ev.scope, &ev.labels, outcome, &message, flags, not_listed,
                )
            }
            None => events.action_finished(&link, &ev.scope, &ev.labels, outcome, &message),
        };
        out.publish(finished).await?;
        Ok(())
    }

    /// The outcome, the message, and the flag-by-flag report when flags were tried.
    async fn run(
        &self,
        ev: &ActionTriggered,
        dry_run: bool,
    ) -> (Outcome, String, Option<ToggleReport>) {
        let changes = match parse_value(&ev.action.value) {
            Ok(changes) => changes,
            Err(e) => return (Outcome::Errored, e.to_string(), None),
        };
        // Refused whole, before any request: one action must not become thousands of them.
        if changes.len() > self.policy.max_flags() {
            return (
                Outcome::Errored,
                format!(
                    "the action names {} flags; at most {} are switched by one action (MAX_FLAGS_PER_ACTION); no flag was switched",
                    changes.len(),
                    self.policy.max_flags()
                ),
                None,
            );
        }
        let environment = match self.environment_for(&ev.scope) {
            Some(env) => env,
            None => {
                return (
                    Outcome::Errored,
                    "no Unleash environment: the event has no stage and UNLEASH_ENVIRONMENT is not set".into(),
                    None,
                );
            }
        };
        let policy = self.policy.clone().with_dry_run(dry_run);
        let report = toggle::apply_reading_ahead(
            &self.client,
            environment,
            &changes,
            &policy,
            Some(&self.ahead),
        )
        .await;
        let done = if dry_run {
            report.would_succeed()
        } else {
            report.succeeded()
        };
        let outcome = if done {
            Outcome::Pass
        } else {
            Outcome::Errored
        };
        let message = report.message();
        (outcome, message, Some(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_both_names_in_any_case() {
        for a in [
            "toggle-feature",
            "Toggle-Feature",
            "featuretoggle",
            "FeatureToggle",
            " toggle-feature ",
        ] {
            assert!(ActionRole::handles(a), "{a}");
        }
        for a in ["scale", "", "toggle", "feature-toggle"] {
            assert!(!ActionRole::handles(a), "{a}");
        }
    }
}
