//! What each target is told: comment texts (Markdown for Dynatrace, Slack's mrkdwn for chat),
//! the generic webhook's JSON and the Grafana annotation. README "Feedback" quotes these.

use super::steps::{ActionSeen, FlagLine, FlagState, Step, StepKind};
use crate::unleash::on_off;
use serde_json::{Value, json};

/// Markdown flavour: Dynatrace renders `**bold**`, Slack `*bold*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Markdown,
    Slack,
}

fn bold(flavor: Flavor, s: &str) -> String {
    match flavor {
        Flavor::Markdown => format!("**{s}**"),
        Flavor::Slack => format!("*{s}*"),
    }
}

fn wanted(action: &ActionSeen) -> String {
    if action.flags.is_empty() {
        return if action.info.value.is_null() {
            String::new()
        } else {
            format!(": {}", action.info.value)
        };
    }
    let list: Vec<String> = action
        .flags
        .iter()
        .map(|f| format!("{} → {}", f.flag, on_off(f.on)))
        .collect();
    format!(": {}", list.join(", "))
}

/// `EnableStaticContent: off → on (confirmed)`, or `…: on (was unknown, confirmed)` when
/// the state before the switch is not known.
pub(crate) fn flag_text(line: &FlagLine) -> String {
    let outcome = match &line.state {
        FlagState::Confirmed => "confirmed".to_owned(),
        FlagState::Failed(why) => format!("failed: {why}"),
        FlagState::NotSwitched(why) => format!("not switched: {why}"),
        FlagState::Wanted => "no outcome reported".to_owned(),
    };
    match line.was_on {
        Some(was) => format!(
            "{}: {} → {} ({outcome})",
            line.flag,
            on_off(was),
            on_off(line.on)
        ),
        None => format!(
            "{}: {} (was unknown, {outcome})",
            line.flag,
            on_off(line.on)
        ),
    }
}

fn flag_line(line: &FlagLine) -> String {
    format!("- {}", flag_text(line))
}

fn seconds(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The problem as a text: `"Failure rate increase" (website/production/front-end)`.
fn about(step: &Step) -> String {
    let p = &step.problem;
    let title = if p.title.is_empty() {
        "(no title)".to_owned()
    } else {
        format!("{:?}", p.title)
    };
    if p.scope.project.is_empty() {
        title
    } else {
        format!("{title} ({})", p.scope)
    }
}

/// The comment or chat text of a step; `None` for steps that only the webhook reports.
pub(crate) fn message(step: &Step, flavor: Flavor) -> Option<String> {
    let mut lines = Vec::new();
    match &step.kind {
        StepKind::ActionTriggered => {
            let action = step.action.as_ref()?;
            let head = if step.problem.closed {
                "Problem closed: running a close action"
            } else if action.number == 1 {
                "Remediation started"
            } else {
                "Remediation: the previous action failed, trying the next"
            };
            lines.push(format!(
                "{} for problem {} by unleash-remediation-service.",
                bold(flavor, head),
                about(step)
            ));
            lines.push(format!(
                "Action {}: {}{}",
                action.number,
                action.label(),
                wanted(action)
            ));
            if !action.info.description.trim().is_empty() {
                lines.push(action.info.description.trim().to_owned());
            }
            if flavor == Flavor::Slack
                && let Some(url) = &step.problem.url
            {
                lines.push(format!("Problem: {url}"));
            }
            lines.push(format!("Keptn context: {}", step.keptn_context));
        }
        StepKind::ActionFinished {
            status,
            result,
            message,
            flags,
        } => {
            let ok = status != "errored" && matches!(result.as_str(), "pass" | "warning");
            let head = if ok {
                "Remediation action succeeded"
            } else {
                "Remediation action failed"
            };
            let label = step
                .action
                .as_ref()
                .map(ActionSeen::label)
                .unwrap_or_else(|| "(unknown action)".to_owned());
            if flavor == Flavor::Slack {
                lines.push(format!(
                    "{}: {label} for problem {}, status {status}, result {result}.",
                    bold(flavor, head),
                    about(step)
                ));
            } else {
                lines.push(format!(
                    "{}: {label}, status {status}, result {result}.",
                    bold(flavor, head)
                ));
            }
            let reported = flags.iter().any(|f| f.state != FlagState::Wanted);
            if reported {
                lines.extend(flags.iter().map(flag_line));
            } else if !message.is_empty() {
                lines.push(message.clone());
            }
        }
        StepKind::RemediationFinished {
            status,
            result,
            message,
            duration_ms,
            ..
        } => {
            let head = match (status.as_str(), result.as_str()) {
                (_, "pass") => "Remediation finished",
                ("errored", _) => "Remediation failed",
                _ => "Remediation finished without an action",
            };
            let after = duration_ms
                .map(|ms| format!(" after {}", seconds(ms)))
                .unwrap_or_default();
            let head = bold(flavor, head);
            if flavor == Flavor::Slack {
                lines.push(format!(
                    "{head} for problem {}: {status}/{result}{after}.",
                    about(step)
                ));
            } else {
                lines.push(format!("{head}: {status}/{result}{after}."));
            }
            if !message.is_empty() {
                lines.push(message.clone());
            }
        }
        _ => return None,
    }
    let text = lines.join("\n");
    Some(match flavor {
        Flavor::Markdown => text,
        // Slack reads `<…>` as links and mentions (`<!channel>`): a problem title must not ping.
        Flavor::Slack => text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
    })
}

fn outcome_word(state: &FlagState) -> (&'static str, Option<&str>) {
    match state {
        FlagState::Wanted => ("wanted", None),
        FlagState::Confirmed => ("confirmed", None),
        FlagState::Failed(why) => ("failed", Some(why)),
        FlagState::NotSwitched(why) => ("not switched", Some(why)),
    }
}

/// The generic webhook's body for any step.
pub(crate) fn webhook_body(step: &Step) -> Value {
    let p = &step.problem;
    let mut body = json!({
        "step": step.kind.name(),
        "time": step.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "keptnContext": step.keptn_context,
        "scope": {
            "project": p.scope.project,
            "stage": p.scope.stage,
            "service": p.scope.service,
        },
        "problem": {
            "id": p.id,
            "title": p.title,
            "dynatraceId": p.dynatrace_id,
            "source": p.source,
            "url": p.url,
            "closed": p.closed,
        },
        "action": step.action.as_ref().map(|a| json!({
            "number": a.number,
            "name": a.info.name,
            "action": a.info.action,
            "description": a.info.description,
        })),
    });
    let flags: Vec<Value> = match &step.kind {
        StepKind::ActionFinished { flags, .. } | StepKind::RemediationFinished { flags, .. } => flags
            .iter()
            .map(|f| {
                let (outcome, reason) = outcome_word(&f.state);
                json!({"flag": f.flag, "from": f.was_on.map(on_off), "state": on_off(f.on), "outcome": outcome, "reason": reason})
            })
            .collect(),
        _ => step
            .action
            .iter()
            .flat_map(|a| &a.flags)
            .map(|f| json!({"flag": f.flag, "from": null, "state": on_off(f.on), "outcome": "wanted", "reason": null}))
            .collect(),
    };
    body["flags"] = Value::Array(flags);
    match &step.kind {
        StepKind::ActionFinished {
            status,
            result,
            message,
            ..
        } => {
            body["status"] = json!(status);
            body["result"] = json!(result);
            body["message"] = json!(message);
        }
        StepKind::RemediationFinished {
            status,
            result,
            message,
            duration_ms,
            ..
        } => {
            body["status"] = json!(status);
            body["result"] = json!(result);
            body["message"] = json!(message);
            body["durationMs"] = json!(duration_ms);
        }
        _ => {}
    }
    body
}

/// The Grafana annotation of an action.finished (`None` for other steps).
pub(crate) fn grafana_annotation(step: &Step) -> Option<Value> {
    let StepKind::ActionFinished {
        result,
        message,
        flags,
        ..
    } = &step.kind
    else {
        return None;
    };
    let detail = if flags.iter().any(|f| f.state != FlagState::Wanted) {
        flags.iter().map(flag_text).collect::<Vec<_>>().join("; ")
    } else {
        message.clone()
    };
    let action = step.action.as_ref();
    let label = action
        .map(ActionSeen::label)
        .unwrap_or_else(|| "(unknown action)".to_owned());
    let mut tags = vec!["unleash-remediation".to_owned(), format!("result:{result}")];
    if let Some(a) = action {
        tags.extend(a.flags.iter().map(|f| format!("flag:{}", f.flag)));
    }
    let mut body = json!({
        "text": format!("Unleash remediation {label}: {result}. {detail}").trim_end().to_owned(),
        "tags": tags,
        "time": step.time.timestamp_millis(),
    });
    if let Some(uid) = &step.problem.dashboard_uid {
        body["dashboardUID"] = json!(uid);
    }
    if let Some(panel) = step.problem.panel_id {
        body["panelId"] = json!(panel);
    }
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::steps::Problem;

    #[test]
    fn slack_text_cannot_mention_or_link() {
        let step = Step {
            kind: StepKind::RemediationFinished {
                status: "succeeded".into(),
                result: "pass".into(),
                message: String::new(),
                duration_ms: Some(1200),
                flags: Vec::new(),
            },
            problem: Problem {
                title: "<!channel> a & b".into(),
                ..Problem::default()
            },
            keptn_context: "c".into(),
            time: chrono::Utc::now(),
            action: None,
        };
        assert_eq!(
            message(&step, Flavor::Slack).unwrap(),
            "*Remediation finished* for problem \"&lt;!channel&gt; a &amp; b\": succeeded/pass after 1.2 s."
        );
        assert_eq!(
            message(&step, Flavor::Markdown).unwrap(),
            "**Remediation finished**: succeeded/pass after 1.2 s."
        );
    }
}
