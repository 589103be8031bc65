//! Monitoring webhooks and Keptn's API path over HTTP: Alertmanager, Grafana and Dynatrace
//! notifications become problems in the same pipeline as NATS events.

use crate::common::{Bus, Fixture, Service, resource_dir, vector};
use crate::outcomes::spawn_responder;
use crate::unleash_flows::{create_flag, unleash, unleash_env};
use serde_json::{Value, json};
use std::time::Duration;
use unleash_remediation_service::testkit::nats::NatsServer;

/// Foreign actions answered by the test itself (see `spawn_responder`); `close` marks the
/// actions that run when a problem closes.
const ESCALATE: &str = r#"apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata:
  name: webhooks
spec:
  remediations:
    - problemType: HighErrorRate
      actionsOnOpen:
        - name: page
          action: escalate
          value: {answer: pass}
      actionsOnClose:
        - name: all clear
          action: escalate
          value: {answer: pass, close: true}
    - problemType: Failure rate increase
      actionsOnOpen:
        - name: page
          action: escalate
          value: {answer: pass}
      actionsOnClose:
        - name: all clear
          action: escalate
          value: {answer: pass, close: true}
"#;

const TRIGGERED: &str = "sh.keptn.event.remediation.triggered";
const FINISHED: &str = "sh.keptn.event.remediation.finished";
const ACTION: &str = "sh.keptn.event.action.triggered";

/// POSTs JSON; (status, body as JSON or as a string).
pub async fn post(
    svc: &Service,
    path: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", svc.http))
        .body(body);
    let mut typed = false;
    for (k, v) in headers {
        typed |= k.eq_ignore_ascii_case("content-type");
        req = req.header(*k, *v);
    }
    if !typed {
        req = req.header("content-type", "application/json");
    }
    let r = req.send().await.expect("POST");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn alert(status: &str, labels: Value, fingerprint: &str, starts_at: &str) -> Value {
    json!({
        "status": status,
        "labels": labels,
        "annotations": {"description": "error rate above 10%"},
        "startsAt": starts_at,
        "endsAt": if status == "resolved" { "2026-12-01T10:05:00Z" } else { "0001-01-01T00:00:00Z" },
        "generatorURL": "http://prometheus:9090/graph?g0.expr=rate",
        "fingerprint": fingerprint
    })
}

pub fn group(alerts: Vec<Value>) -> Value {
    let firing = alerts.iter().any(|a| a["status"] == "firing");
    json!({
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": "unleash-remediation",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts
    })
}

fn outcomes(answer: &Value) -> Vec<String> {
    answer["alerts"]
        .as_array()
        .unwrap_or_else(|| panic!("no alerts in {answer}"))
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_owned())
        .collect()
}

fn keptn_scope(alertname: &str, service: &str) -> Value {
    json!({"alertname": alertname, "keptn_project": "website", "keptn_stage": "production",
           "keptn_service": service})
}

#[tokio::test]
async fn webhooks_alertmanager_group_mixed_status_and_scope_then_repeat_and_resolve() {
    let fx = Fixture::new(Some(ESCALATE), None).await;
    let svc = fx.service(&[]).await;
    let bus = &fx.bus;
    spawn_responder(bus);

    let t0 = "2026-12-01T10:00:00Z";
    let first = group(vec![
        // Scope from keptn_* labels.
        alert(
            "firing",
            keptn_scope("HighErrorRate", "front-end"),
            "aaaa000000000001",
            t0,
        ),
        // Scope from project/stage/service labels.
        alert(
            "firing",
            json!({"alertname": "HighErrorRate", "project": "website", "stage": "production", "service": "carts"}),
            "aaaa000000000002",
            t0,
        ),
        // No scope anywhere: rejected, the others still go through.
        alert(
            "firing",
            json!({"alertname": "HighErrorRate"}),
            "aaaa000000000003",
            t0,
        ),
        // Resolved in the same group.
        alert(
            "resolved",
            keptn_scope("HighErrorRate", "orders"),
            "aaaa000000000004",
            t0,
        ),
    ]);
    let (status, answer) = post(&svc, "/webhooks/alertmanager", first.to_string(), &[]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        outcomes(&answer),
        ["accepted", "accepted", "rejected", "accepted"],
        "{answer}"
    );
    assert_eq!(answer["alerts"][2]["reason"], "missing_scope", "{answer}");
    assert_eq!(answer["alerts"][0]["state"], "OPEN");
    assert_eq!(answer["alerts"][3]["state"], "CLOSED");
    assert_eq!(answer["alerts"][1]["scope"]["service"], "carts");

    let finished = bus.wait_for(FINISHED, 2, Duration::from_secs(15)).await;
    assert!(
        finished.iter().all(|f| f["data"]["result"] == "pass"),
        "{finished:?}"
    );
    let errors = bus
        .wait_for("sh.keptn.log.error", 1, Duration::from_secs(5))
        .await;
    assert!(
        errors[0]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("missing_scope"),
        "{}",
        errors[0]
    );
    let triggered = bus.of_type(TRIGGERED);
    assert_eq!(triggered.len(), 2);
    let a = triggered
        .iter()
        .find(|t| t["data"]["service"] == "front-end")
        .expect("remediation for front-end");
    assert_eq!(a["source"], "unleash-remediation-service");
    assert_eq!(a["data"]["problem"]["ProblemTitle"], "HighErrorRate");
    assert_eq!(a["data"]["problem"]["rootCause"], "HighErrorRate");
    assert_eq!(
        a["data"]["problem"]["ProblemDetails"]["source"],
        "alertmanager"
    );
    assert_eq!(a["shkeptncontext"], answer["alerts"][0]["keptnContext"]);

    // Alertmanager re-sends the whole group every repeat_interval: nothing new starts.
    let (status, again) = post(&svc, "/webhooks/alertmanager", first.to_string(), &[]).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        outcomes(&again),
        ["duplicate", "duplicate", "rejected", "accepted"],
        "{again}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(bus.of_type(TRIGGERED).len(), 2, "a repeat starts nothing");
    let opens = |bus: &Bus| {
        bus.of_type(ACTION)
            .into_iter()
            .filter(|e| e["data"]["action"]["value"]["close"].is_null())
            .count()
    };
    assert_eq!(opens(bus), 2, "one action per problem");

    // The first alert resolves: its close actions run, in its context.
    let resolved = group(vec![alert(
        "resolved",
        keptn_scope("HighErrorRate", "front-end"),
        "aaaa000000000001",
        t0,
    )]);
    let (status, answer) = post(&svc, "/webhooks/alertmanager", resolved.to_string(), &[]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(outcomes(&answer), ["accepted"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let close = bus.of_type(ACTION).into_iter().find(|e| {
            e["data"]["action"]["value"]["close"] == true
                && e["shkeptncontext"] == a["shkeptncontext"]
        });
        if close.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no close action for the resolved alert; log:\n{}",
            svc.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Scope from the webhook URL's query parameters.
    let unscoped = group(vec![alert(
        "firing",
        json!({"alertname": "HighErrorRate", "instance": "web-1"}),
        "aaaa000000000005",
        t0,
    )]);
    let (status, answer) = post(
        &svc,
        "/webhooks/alertmanager?project=website&stage=production&service=checkout",
        unscoped.to_string(),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(outcomes(&answer), ["accepted"], "{answer}");
    assert_eq!(answer["alerts"][0]["scope"]["service"], "checkout");
    bus.wait_for(FINISHED, 3, Duration::from_secs(15)).await;
}
