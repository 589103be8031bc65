//! Event type strings. The NATS subject of an event is its type.

/// Keptn 0.6 – 0.8.2 problem notification (dynatrace-service ≤ 0.13, prometheus-service ≤ 0.6).
pub const PROBLEM_OPEN: &str = "sh.keptn.event.problem.open";
/// Generic problem event with `State` OPEN, RESOLVED or CLOSED (all generations).
pub const PROBLEM: &str = "sh.keptn.events.problem";

pub const REMEDIATION_TRIGGERED: &str = "sh.keptn.event.remediation.triggered";
pub const REMEDIATION_STATUS_CHANGED: &str = "sh.keptn.event.remediation.status.changed";
pub const REMEDIATION_FINISHED: &str = "sh.keptn.event.remediation.finished";

pub const GET_ACTION_TRIGGERED: &str = "sh.keptn.event.get-action.triggered";
pub const GET_ACTION_STARTED: &str = "sh.keptn.event.get-action.started";
pub const GET_ACTION_FINISHED: &str = "sh.keptn.event.get-action.finished";

pub const ACTION_TRIGGERED: &str = "sh.keptn.event.action.triggered";
pub const ACTION_STARTED: &str = "sh.keptn.event.action.started";
pub const ACTION_FINISHED: &str = "sh.keptn.event.action.finished";

pub const LOG_ERROR: &str = "sh.keptn.log.error";

/// The Keptn spec version written into `shkeptnspecversion` of every outgoing event.
pub const KEPTN_SPEC_VERSION: &str = "0.2.4";

/// Action names handled by the action role.
pub const TOGGLE_FEATURE: &str = "toggle-feature";
/// Keptn 0.6 name of the same action, accepted as an alias.
pub const FEATURETOGGLE: &str = "featuretoggle";

/// Every type this service can consume, whatever roles are enabled.
pub const CONSUMED: [&str; 5] = [
    PROBLEM_OPEN,
    PROBLEM,
    GET_ACTION_TRIGGERED,
    ACTION_TRIGGERED,
    ACTION_FINISHED,
];

/// Short name of a type for metric labels and logs: `sh.keptn.event.action.triggered` →
/// `action.triggered`.
pub fn short(ty: &str) -> &str {
    ty.strip_prefix("sh.keptn.event.")
        .or_else(|| ty.strip_prefix("sh.keptn."))
        .unwrap_or(ty)
}

/// Subject pattern of Keptn 0.8.3+ remediation sequence triggers,
/// `sh.keptn.event.<stage>.remediation.triggered`.
pub const REMEDIATION_SEQUENCE_TRIGGERED: &str = "sh.keptn.event.*.remediation.triggered";

/// The stage of a `sh.keptn.event.<stage>.remediation.triggered` sequence event.
pub fn remediation_sequence_stage(ty: &str) -> Option<&str> {
    let stage = ty
        .strip_prefix("sh.keptn.event.")?
        .strip_suffix(".remediation.triggered")?;
    (!stage.is_empty() && !stage.contains('.')).then_some(stage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_stage_is_one_nonempty_segment() {
        let stage = remediation_sequence_stage;
        assert_eq!(
            stage("sh.keptn.event.production.remediation.triggered"),
            Some("production")
        );
        assert_eq!(stage("sh.keptn.event.remediation.triggered"), None);
        assert_eq!(stage("sh.keptn.event..remediation.triggered"), None);
        assert_eq!(stage("sh.keptn.event.a.b.remediation.triggered"), None);
        assert_eq!(
            stage("sh.keptn.event.production.remediation.finished"),
            None
        );
        assert_eq!(stage("sh.keptn.event.problem.open"), None);
    }
}
