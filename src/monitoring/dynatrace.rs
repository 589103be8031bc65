//! Dynatrace's custom problem-notification integration ("Custom Integration", type WEBHOOK):
//! the default payload (`State`, `ProblemID`, `ProblemTitle`), the richer template (`PID`,
//! `ProblemURL`, `ImpactedEntity`, `ProblemDetailsJSON`, `Tags`, ...), or the CloudEvent
//! template dynatrace-service configured for Keptn (its `data` is read).
//!
//! One notification is one problem. It is keyed on the full problem id: the text after `;pid=`
//! in `ProblemURL`, else `ProblemDetailsJSON.id`, else `PID`, else `ProblemID` (the display
//! number, e.g. `P-210516`, which is kept as `ProblemDisplayID`).

use super::*;
use crate::keptn::decode::scope_from_tags;

/// `ProblemID` and `PID` of Dynatrace's "Send test notification".
const TEST_PROBLEM_ID: &str = "999";
const TEST_PID: &str = "99999";

/// Translates a Dynatrace notification into one outcome. `Err` means the body is unusable.
pub fn translate(body: &[u8], query: &Scope) -> Result<Vec<AlertOutcome>, DecodeError> {
    let source = Source::Dynatrace;
    let mut obj = json_object(source, body)?;
    // The Keptn CloudEvent template wraps the notification in `data`.
    if obj.get("type").is_some_and(Value::is_string)
        && let Some(Value::Object(data)) = obj.get("data")
    {
        obj = data.clone();
    }
    Ok(vec![one(obj, query)])
}

/// A string member, also written as a number by some templates; absent, null and "" are `None`.
fn member(obj: &Map<String, Value>, names: &[&str]) -> Result<Option<String>, String> {
    for name in names {
        match obj.get(*name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => return Ok(Some(s.clone())),
            Some(Value::Number(n)) => return Ok(Some(n.to_string())),
            Some(other) => {
                return Err(format!("`{name}` must be a string, not {}", kind_of(other)));
            }
        }
    }
    Ok(None)
}

/// The id after `;pid=` in a problem URL (the name matched in any case).
fn pid_in_url(url: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    let at = lower.find(";pid=")? + ";pid=".len();
    let id: String = url[at..]
        .chars()
        .take_while(|c| !matches!(c, ';' | '&' | '#' | '?' | '/'))
        .collect();
    (!id.is_empty()).then_some(id)
}

fn one(mut obj: Map<String, Value>, query: &Scope) -> AlertOutcome {
    let source = Source::Dynatrace;
    let reject = |problem_id: Option<String>, reason: &'static str, message: String| AlertOutcome {
        index: 0,
        verdict: Verdict::Rejected(alert_error(
            source,
            0,
            problem_id.as_deref(),
            reason,
            message,
        )),
        problem_id,
    };
    let details = match obj
        .remove("ProblemDetailsJSON")
        .or_else(|| obj.remove("ProblemDetails"))
    {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(Value::String(s)) if s.is_empty() => Map::new(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(m)) => m,
            _ => {
                return reject(
                    None,
                    "invalid_data",
                    "`ProblemDetailsJSON` must be an object (write {ProblemDetailsJSON} without quotes in the payload)".into(),
                );
            }
        },
        Some(other) => {
            return reject(
                None,
                "invalid_data",
                format!(
                    "`ProblemDetailsJSON` must be an object, not {}",
                    kind_of(&other)
                ),
            );
        }
    };
    let fields = (|| {
        Ok::<_, String>((
            member(&obj, &["State"])?,
            member(&obj, &["ProblemID"])?,
            member(&obj, &["PID"])?,
            member(&obj, &["ProblemTitle"])?,
            member(&obj, &["ProblemURL", "Problem URL"])?,
            member(&obj, &["Tags"])?,
            member(&details, &["id", "ID", "Id"])?,
        ))
    })();
    let (state, display_id, pid, title, url, tags, details_id) = match fields {
        Ok(f) => f,
        Err(m) => return reject(None, "invalid_data", m),
    };
    let is_test = pid.as_deref() == Some(TEST_PID)
        || (pid.is_none() && display_id.as_deref() == Some(TEST_PROBLEM_ID));
    let full_id = url
        .as_deref()
        .and_then(pid_in_url)
        .or(details_id)
        .or_else(|| pid.clone())
        .or_else(|| display_id.clone());
    if is_test {
        return AlertOutcome {
            index: 0,
            problem_id: full_id,
            verdict: Verdict::Ignored(
                "Dynatrace test notification (ProblemID 999, PID 99999): nothing is remediated"
                    .into(),
            ),
        };
    }
    let Some(problem_id) = full_id else {
        return reject(
            None,
            "invalid_data",
            "no problem id: none of ProblemURL (;pid=), ProblemDetailsJSON.id, PID or ProblemID is set".into(),
        );
    };
    let state = match state.as_deref().map(str::to_ascii_uppercase).as_deref() {
        Some("OPEN") => ProblemState::Open,
        Some("RESOLVED") | Some("CLOSED") => ProblemState::Closed,
        Some(other) => {
            return reject(
                Some(problem_id),
                "invalid_data",
                format!("unknown State {other:?} (expected OPEN, RESOLVED or CLOSED)"),
            );
        }
        None => {
            return reject(
                Some(problem_id),
                "invalid_data",
                "the notification has no State (add \"State\":\"{State}\" to the payload)".into(),
            );
        }
    };
    let Some(title) = title else {
        return reject(
            Some(problem_id),
            "invalid_data",
            "the notification has no ProblemTitle".into(),
        );
    };
    let raw = |name: &str| member(&obj, &[name]).ok().flatten().unwrap_or_default();
    let scope = first_scope(&[
        tags.as_deref().map(scope_from_tags).unwrap_or_default(),
        Scope {
            project: raw("KeptnProject"),
            stage: raw("KeptnStage"),
            service: raw("KeptnService"),
        },
        query.clone(),
    ]);
    if let Some(missing) = missing_scope(&scope) {
        return reject(
            Some(problem_id),
            "missing_scope",
            format!(
                "no {missing}: tag the entities keptn_project:/keptn_stage: (sent in {{Tags}}), or put ?project=&stage= on the webhook URL"
            ),
        );
    }
    let mut problem_details = details;
    problem_details.insert("source".into(), source.name().into());
    let mut data = obj;
    data.insert("ProblemTitle".into(), title.into());
    if let Some(pid) = &pid {
        data.insert("PID".into(), pid.clone().into());
    }
    if let Some(display) = display_id.filter(|d| *d != problem_id) {
        data.insert("ProblemDisplayID".into(), display.into());
    }
    let mut labels = BTreeMap::new();
    if let Some(url) = url {
        data.insert("ProblemURL".into(), url.clone().into());
        labels.insert("Problem URL".to_owned(), url);
    }
    data.insert("ProblemDetails".into(), Value::Object(problem_details));
    AlertOutcome {
        index: 0,
        verdict: Verdict::Problem(Box::new(incoming(
            source,
            &problem_id,
            scope,
            state,
            data,
            labels,
        ))),
        problem_id: Some(problem_id),
    }
}

/// Whether a Keptn problem event is Dynatrace's test notification (`/v1/event` receives the
/// same test through the Keptn template).
pub fn is_test_problem(problem: &ProblemDetails) -> bool {
    problem.pid() == Some(TEST_PID)
        || (problem.pid().is_none() && problem.problem_id() == Some(TEST_PROBLEM_ID))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_from_problem_url() {
        assert_eq!(
            pid_in_url("https://t.live.dynatrace.com/#problems/problemdetails;pid=-647_164V2")
                .as_deref(),
            Some("-647_164V2")
        );
        assert_eq!(
            pid_in_url("https://x/#problems;PID=abc;gf=all").as_deref(),
            Some("abc")
        );
        assert_eq!(pid_in_url("https://example.com"), None);
    }
}
