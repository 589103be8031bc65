//! Prometheus Alertmanager's webhook (`"version": "4"`): one POST carries one aggregation group
//! of 1..N alerts, firing and resolved mixed; each alert is its own problem.
//!
//! - scope per alert: labels `keptn_project`/`keptn_stage`/`keptn_service`, then
//!   `project`/`stage`/`service`, then the webhook URL's query parameters;
//! - title `annotations.summary`, else `labels.alertname`; root cause `labels.alertname`;
//! - problem id from `fingerprint` and `startsAt` (the fingerprint alone is reused when the same
//!   series fires again later); without a fingerprint, from the sorted label set;
//! - `status` decides OPEN or CLOSED, never `endsAt` (old versions sent a future `endsAt`).

use super::*;

/// Translates an Alertmanager notification. `Err` means the body as a whole is unusable.
pub fn translate(
    body: &[u8],
    query: &Scope,
    max_alerts: usize,
) -> Result<Vec<AlertOutcome>, DecodeError> {
    let obj = json_object(Source::Alertmanager, body)?;
    translate_group(Source::Alertmanager, &obj, query, max_alerts, |_, _| {})
}

/// The part Alertmanager and Grafana share. `extra` adds source-specific details of one alert
/// to its `ProblemDetails`.
pub(crate) fn translate_group(
    source: Source,
    obj: &Map<String, Value>,
    query: &Scope,
    max_alerts: usize,
    extra: impl Fn(&Map<String, Value>, &mut Map<String, Value>),
) -> Result<Vec<AlertOutcome>, DecodeError> {
    let alerts = match obj.get("alerts") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => {
            return Err(body_error(
                source,
                "invalid_body",
                "`alerts` is missing (is this really a webhook notification?)",
            ));
        }
        Some(other) => {
            return Err(body_error(
                source,
                "invalid_body",
                format!("`alerts` must be an array, not {}", kind_of(other)),
            ));
        }
    };
    if alerts.len() > max_alerts {
        return Err(body_error(
            source,
            "too_many_alerts",
            format!(
                "{} alerts in one notification, at most {max_alerts} are accepted (set `max_alerts` on the receiver, or raise WEBHOOK_MAX_ALERTS)",
                alerts.len()
            ),
        ));
    }
    let external_url = obj.get("externalURL").and_then(Value::as_str).unwrap_or("");
    Ok(alerts
        .iter()
        .enumerate()
        .map(|(index, alert)| one(source, index, alert, external_url, query, &extra))
        .collect())
}

/// A map of strings (`labels`, `annotations`); absent or null is empty.
fn string_map(alert: &Map<String, Value>, name: &str) -> Result<BTreeMap<String, String>, String> {
    match alert.get(name) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!(
                    "`{name}.{k}` must be a string, not {}",
                    kind_of(other)
                )),
            })
            .collect(),
        Some(other) => Err(format!(
            "`{name}` must be an object, not {}",
            kind_of(other)
        )),
    }
}

fn text<'a>(alert: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match alert.get(name) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("`{name}` must be a string, not {}", kind_of(other))),
    }
}

fn one(
    source: Source,
    index: usize,
    alert: &Value,
    external_url: &str,
    query: &Scope,
    extra: &impl Fn(&Map<String, Value>, &mut Map<String, Value>),
) -> AlertOutcome {
    let reject = |problem_id: Option<String>, reason: &'static str, message: String| AlertOutcome {
        index,
        verdict: Verdict::Rejected(alert_error(
            source,
            index,
            problem_id.as_deref(),
            reason,
            message,
        )),
        problem_id,
    };
    let Value::Object(alert) = alert else {
        return reject(
            None,
            "invalid_data",
            format!("an alert must be an object, not {}", kind_of(alert)),
        );
    };
    let size = serde_json::to_vec(alert).map(|v| v.len()).unwrap_or(0);
    if size > MAX_ALERT_BYTES {
        return reject(
            None,
            "too_large",
            format!("the alert is {size} bytes of JSON, at most {MAX_ALERT_BYTES} are accepted"),
        );
    }
    let fields = (|| {
        Ok::<_, String>((
            string_map(alert, "labels")?,
            string_map(alert, "annotations")?,
            text(alert, "status")?,
            text(alert, "startsAt")?,
            text(alert, "fingerprint")?,
            text(alert, "generatorURL")?,
        ))
    })();
    let (labels, annotations, status, starts_at, fingerprint, generator_url) = match fields {
        Ok(f) => f,
        Err(m) => return reject(None, "invalid_data", m),
    };
    let problem_id = if fingerprint.is_empty() {
        let mut parts: Vec<&str> = vec![starts_at];
        for (k, v) in &labels {
            parts.extend([k.as_str(), v.as_str()]);
        }
        format!("{}-{}", source.name(), short_hash(&parts))
    } else {
        format!(
            "{}-{}",
            source.name(),
            short_hash(&[fingerprint, starts_at])
        )
    };
    let state = match status {
        "firing" => ProblemState::Open,
        "resolved" => ProblemState::Closed,
        other => {
            return reject(
                Some(problem_id),
                "invalid_data",
                format!("`status` must be \"firing\" or \"resolved\", not {other:?}"),
            );
        }
    };
    let label = |name: &str| labels.get(name).cloned().unwrap_or_default();
    let scope = first_scope(&[
        Scope {
            project: label("keptn_project"),
            stage: label("keptn_stage"),
            service: label("keptn_service"),
        },
        Scope {
            project: label("project"),
            stage: label("stage"),
            service: label("service"),
        },
        query.clone(),
    ]);
    if let Some(missing) = missing_scope(&scope) {
        return reject(
            Some(problem_id),
            "missing_scope",
            format!(
                "no {missing}: set the labels keptn_project and keptn_stage (or project and stage) on the alert, or ?project=&stage= on the webhook URL"
            ),
        );
    }
    let alertname = label("alertname");
    let title = annotations
        .get("summary")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| alertname.clone());
    if title.is_empty() {
        return reject(
            Some(problem_id),
            "invalid_data",
            "the alert has neither annotations.summary nor labels.alertname".into(),
        );
    }
    let mut details = Map::new();
    details.insert("source".into(), source.name().into());
    details.insert(
        "labels".into(),
        serde_json::to_value(&labels).unwrap_or_default(),
    );
    details.insert(
        "annotations".into(),
        serde_json::to_value(&annotations).unwrap_or_default(),
    );
    details.insert("generatorURL".into(), generator_url.into());
    details.insert("externalURL".into(), external_url.into());
    details.insert("fingerprint".into(), fingerprint.into());
    details.insert("startsAt".into(), starts_at.into());
    extra(alert, &mut details);

    let mut data = Map::new();
    data.insert("ProblemTitle".into(), title.into());
    if !alertname.is_empty() {
        data.insert("rootCause".into(), alertname.into());
    }
    let mut event_labels = BTreeMap::new();
    if !generator_url.is_empty() {
        data.insert("ProblemURL".into(), generator_url.into());
        event_labels.insert("Problem URL".to_owned(), generator_url.to_owned());
    }
    data.insert("ProblemDetails".into(), Value::Object(details));
    AlertOutcome {
        index,
        verdict: Verdict::Problem(Box::new(incoming(
            source,
            &problem_id,
            scope,
            state,
            data,
            event_labels,
        ))),
        problem_id: Some(problem_id),
    }
}
