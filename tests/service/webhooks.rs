//! Monitoring webhooks and Keptn's API path over HTTP: Alertmanager, Grafana and Dynatrace
//! notifications become problems in the same pipeline as NATS events.

use crate::common::spawn_responder;
use crate::common::{Bus, Fixture, Service, resource_dir, vector};
use crate::common::{create_flag, unleash, unleash_env};
use serde_json::{Value, json};
use std::time::Duration;
use testkit::nats::NatsServer;

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

/// A Dynatrace payload template filled as Dynatrace would for one problem.
fn dynatrace_body(template: &str, state: &str, pid: &str, title: &str) -> String {
    let full = format!("{pid}_1641223491837V2");
    template
        .replace("{State}", state)
        .replace("{ProblemID}", "P-220123")
        .replace("{PID}", pid)
        .replace("{ProblemTitle}", title)
        .replace(
            "{ProblemURL}",
            &format!("https://abc.live.dynatrace.com/#problems/problemdetails;pid={full}"),
        )
        .replace(
            "{ProblemDetailsJSON}",
            &json!({"id": full, "displayId": "P-220123"}).to_string(),
        )
        .replace(
            "{Tags}",
            "keptn_project:website, keptn_stage:production, keptn_service:front-end",
        )
        .replace("{ImpactedEntities}", "[]")
        .replace("{ImpactedEntity}", "front-end")
        .replace("$KEPTN_PROJECT", "website")
}

/// The richer custom-integration payload of Dynatrace's documentation, with the problem URL.
const DYNATRACE_RICH: &str = r#"{"ImpactedEntities": {ImpactedEntities}, "ImpactedEntity": "{ImpactedEntity}",
 "PID": "{PID}", "ProblemDetailsJSON": {ProblemDetailsJSON}, "ProblemID": "{ProblemID}",
 "ProblemImpact": "SERVICE", "ProblemSeverity": "ERROR", "ProblemTitle": "{ProblemTitle}",
 "ProblemURL": "{ProblemURL}", "State": "{State}", "Tags": "{Tags}"}"#;

fn keptn_template(file: &str) -> String {
    let config = vector(file);
    config["payload"].as_str().unwrap().to_owned()
}

async fn wait_until(what: &str, svc: &Service, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within 15 s; log:\n{}",
            svc.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn webhooks_dynatrace_open_then_resolved_and_test_notification_and_grafana_signature() {
    let fx = Fixture::new(Some(ESCALATE), None).await;
    let svc = fx
        .service(&[
            ("HTTP_TOKEN", "tok-123"),
            ("GRAFANA_WEBHOOK_SECRET", "grafana-secret"),
        ])
        .await;
    let bus = &fx.bus;
    spawn_responder(bus);
    let bearer = [("authorization", "Bearer tok-123")];

    // "Send test notification": 200, ignored, nothing starts.
    let test_run = vector("dynatrace-notification/webhook-doc-example-test-run.json");
    let (status, answer) = post(&svc, "/webhooks/dynatrace", test_run.to_string(), &bearer).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(outcomes(&answer), ["ignored"], "{answer}");
    assert!(
        answer["alerts"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("test")
    );

    // OPEN: remediated; the problem is keyed on the full id from ProblemURL.
    let open = dynatrace_body(
        DYNATRACE_RICH,
        "OPEN",
        "-647801782512",
        "Failure rate increase",
    );
    let (status, answer) = post(&svc, "/webhooks/dynatrace", open, &bearer).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(outcomes(&answer), ["accepted"], "{answer}");
    assert_eq!(
        answer["alerts"][0]["problemId"],
        "-647801782512_1641223491837V2"
    );
    let finished = bus.wait_for(FINISHED, 1, Duration::from_secs(15)).await;
    assert_eq!(finished[0]["data"]["result"], "pass", "{}", finished[0]);
    let triggered = bus.of_type(TRIGGERED);
    assert_eq!(triggered.len(), 1, "the test notification started nothing");
    let problem = &triggered[0]["data"]["problem"];
    assert_eq!(problem["PID"], "-647801782512");
    assert_eq!(problem["ProblemDetails"]["source"], "dynatrace");
    assert_eq!(triggered[0]["data"]["service"], "front-end");

    // The same OPEN again (Dynatrace may notify twice): a duplicate.
    let again = dynatrace_body(
        DYNATRACE_RICH,
        "OPEN",
        "-647801782512",
        "Failure rate increase",
    );
    let (_, answer) = post(&svc, "/webhooks/dynatrace", again, &bearer).await;
    assert_eq!(outcomes(&answer), ["duplicate"], "{answer}");

    // RESOLVED: the close actions run in the problem's context.
    let resolved = dynatrace_body(
        DYNATRACE_RICH,
        "RESOLVED",
        "-647801782512",
        "Failure rate increase",
    );
    let (status, answer) = post(&svc, "/webhooks/dynatrace", resolved, &bearer).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["alerts"][0]["state"], "CLOSED");
    let ctx = triggered[0]["shkeptncontext"].clone();
    wait_until("the close action", &svc, || {
        bus.of_type(ACTION)
            .iter()
            .any(|e| e["data"]["action"]["value"]["close"] == true && e["shkeptncontext"] == ctx)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bus.of_type(TRIGGERED).len(), 1);

    // Grafana with its HMAC signature.
    let body = String::from_utf8(
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/vectors/grafana/webhook-docs-example-2-alerts-firing.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let hex = |mac: [u8; 32]| mac.iter().map(|b| format!("{b:02x}")).collect::<String>();
    use unleash_remediation_service::monitoring::grafana::hmac_sha256;
    let good = hex(hmac_sha256(
        b"grafana-secret",
        &[b"1764000000:", body.as_bytes()],
    ));
    let path = "/webhooks/grafana?project=website&stage=production";
    for (sig, ts) in [
        (None, None),
        (Some("00ff"), Some("1764000000")),
        (Some(good.as_str()), None),
    ] {
        let mut headers = vec![bearer[0]];
        if let Some(s) = sig {
            headers.push(("x-grafana-alerting-signature", s));
        }
        if let Some(t) = ts {
            headers.push(("x-grafana-alerting-timestamp", t));
        }
        let (status, answer) = post(&svc, path, body.clone(), &headers).await;
        assert_eq!(status, 401, "signature {sig:?} ts {ts:?}: {answer}");
        assert_eq!(answer["reason"], "bad_signature");
    }
    let (status, answer) = post(
        &svc,
        path,
        body.clone(),
        &[
            bearer[0],
            ("x-grafana-alerting-signature", &good),
            ("x-grafana-alerting-timestamp", "1764000000"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(outcomes(&answer), ["accepted", "accepted"], "{answer}");
    let finished = bus.wait_for(FINISHED, 3, Duration::from_secs(15)).await;
    let grafana: Vec<_> = bus
        .of_type(TRIGGERED)
        .into_iter()
        .filter(|t| t["data"]["problem"]["ProblemDetails"]["source"] == "grafana")
        .collect();
    assert_eq!(grafana.len(), 2, "{finished:?}");
    assert_eq!(
        grafana[0]["data"]["problem"]["ProblemDetails"]["values"]["C"],
        1
    );
}

#[tokio::test]
async fn webhooks_keptn_api_path_and_tokens() {
    let fx = Fixture::new(Some(ESCALATE), None).await;
    let svc = fx.service(&[("HTTP_TOKEN", "tok-123")]).await;
    let bus = &fx.bus;
    spawn_responder(bus);
    let ce = [("content-type", "application/cloudevents+json")];

    let event = crate::common::problem_open("HighErrorRate", "keptn-api-1");
    // Without a token, or with a wrong one in either header: 401.
    for headers in [
        vec![ce[0]],
        vec![ce[0], ("x-token", "wrong")],
        vec![ce[0], ("authorization", "Bearer wrong")],
        vec![ce[0], ("authorization", "tok-123")],
    ] {
        for path in ["/v1/event", "/api/v1/event", "/webhooks/alertmanager", "/"] {
            let (status, answer) = post(&svc, path, event.to_string(), &headers).await;
            assert_eq!(status, 401, "{path} {headers:?}: {answer}");
        }
    }
    assert!(bus.of_type(TRIGGERED).is_empty());

    // x-token on /v1/event: 200 with the event's context, as Keptn's API answers.
    let (status, answer) = post(
        &svc,
        "/v1/event",
        event.to_string(),
        &[ce[0], ("x-token", "tok-123")],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["keptnContext"], event["shkeptncontext"]);
    let finished = bus.wait_for(FINISHED, 1, Duration::from_secs(15)).await;
    assert_eq!(finished[0]["shkeptncontext"], event["shkeptncontext"]);

    // Dynatrace's Keptn integration, Bearer on /api/v1/event: the PID context becomes a UUID
    // the way Keptn's API makes it, and the remediation runs in it.
    let body = dynatrace_body(
        &keptn_template(
            "dynatrace-notification/keptn-problem-notification-config-0.27.template.json",
        ),
        "OPEN",
        "-4349221618435898381",
        "Failure rate increase",
    );
    let (status, answer) = post(
        &svc,
        "/api/v1/event",
        body,
        &[ce[0], ("authorization", "Bearer tok-123")],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let expected =
        unleash_remediation_service::monitoring::keptn_context_from("-4349221618435898381");
    assert_eq!(answer["keptnContext"], expected.as_str());
    let finished = bus.wait_for(FINISHED, 2, Duration::from_secs(15)).await;
    assert!(
        finished
            .iter()
            .any(|f| f["shkeptncontext"] == expected.as_str()),
        "{finished:?}"
    );

    // Its test notification (no stage in the template): 200, ignored, nothing starts.
    let test = keptn_template(
        "dynatrace-notification/keptn-problem-notification-config-0.6.template.json",
    )
    .replace("{State}", "OPEN")
    .replace("{ProblemID}", "999")
    .replace("{PID}", "99999")
    .replace("{ProblemTitle}", "Dynatrace problem notification test run")
    .replace("{ProblemDetailsJSON}", r#"{"ID":"99999"}"#)
    .replace("{Tags}", "testtag1, testtag2")
    .replace("{ImpactedEntities}", "[]")
    .replace("{ImpactedEntity}", "MyHost1");
    let (status, answer) = post(&svc, "/v1/event", test, &[ce[0], ("x-token", "tok-123")]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "ignored", "{answer}");
    assert_eq!(
        answer["keptnContext"],
        "39393939-3920-4020-a020-202020202020"
    );

    // A webhook with x-token is fine too.
    let g = group(vec![alert(
        "firing",
        keptn_scope("HighErrorRate", "x-token-service"),
        "bbbb000000000001",
        "2026-12-01T10:00:00Z",
    )]);
    let (status, answer) = post(
        &svc,
        "/webhooks/alertmanager",
        g.to_string(),
        &[("x-token", "tok-123")],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    bus.wait_for(FINISHED, 3, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bus.of_type(TRIGGERED).len(), 3);
}

#[tokio::test]
async fn webhooks_malformed_bodies_get_reasons_and_the_service_keeps_working() {
    let fx = Fixture::new(Some(ESCALATE), None).await;
    let svc = fx.service(&[]).await;
    let bus = &fx.bus;
    spawn_responder(bus);
    let paths = [
        "/webhooks/alertmanager?project=p&stage=s",
        "/webhooks/grafana?project=p&stage=s",
        "/webhooks/dynatrace?project=p&stage=s",
        "/v1/event",
        "/api/v1/event",
    ];
    let many: Vec<Value> = (0..10_000)
        .map(|i| json!({"status": "firing", "labels": {"alertname": format!("a{i}")}}))
        .collect();
    let many = json!({"version": "4", "alerts": many}).to_string();
    assert!(
        many.len() < 1024 * 1024,
        "under the body limit: the alert limit decides"
    );
    for path in paths {
        for (body, want) in [
            ("{not json".to_owned(), "not_json"),
            ("[1, 2, 3]".to_owned(), ""),
            (
                r#"{"alerts": "many", "State": 5, "type": 7}"#.to_owned(),
                "",
            ),
        ] {
            let (status, answer) = post(&svc, path, body.clone(), &[]).await;
            assert_eq!(status, 400, "{path} {body}: {answer}");
            let reason = answer["reason"].as_str().unwrap_or_default();
            assert!(!reason.is_empty(), "{path} {body}: {answer}");
            if !want.is_empty() {
                assert_eq!(reason, want, "{path}: {answer}");
            }
        }
        // A form or text POST, which any web page can send: 415 before anything is read.
        let (status, answer) = post(
            &svc,
            path,
            crate::common::problem_open("HighErrorRate", "text").to_string(),
            &[("content-type", "text/plain")],
        )
        .await;
        assert_eq!(status, 415, "{path}: {answer}");
    }
    // The same on the CloudEvent paths: a page of another origin cannot post an event.
    for path in ["/", "/events"] {
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            let (status, answer) = post(
                &svc,
                path,
                crate::common::problem_open("HighErrorRate", "cross-origin").to_string(),
                &[("content-type", ct), ("origin", "http://evil.example")],
            )
            .await;
            assert_eq!(status, 415, "{path} {ct}: {answer}");
        }
        let (status, _) = reqwest::Client::new()
            .post(format!("{}{path}", svc.http))
            .body(crate::common::problem_open("HighErrorRate", "untyped").to_string())
            .send()
            .await
            .map(|r| (r.status().as_u16(), ()))
            .unwrap();
        assert_eq!(status, 415, "{path} without a content type");
    }
    for path in &paths[..2] {
        let (status, answer) = post(&svc, path, many.clone(), &[]).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["reason"], "too_many_alerts", "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("10000 alerts"),
            "{answer}"
        );
    }
    // A Dynatrace notification is one problem: without a scope the whole body is refused.
    let unscoped =
        json!({"State": "OPEN", "PID": "1", "ProblemTitle": "HighErrorRate", "Tags": "env:prod"});
    let (status, answer) = post(&svc, "/webhooks/dynatrace", unscoped.to_string(), &[]).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["reason"], "missing_scope", "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("keptn_project"),
        "{answer}"
    );

    // Huge labels: that alert is rejected with a reason, its neighbour goes through.
    let huge = group(vec![
        alert(
            "firing",
            json!({"alertname": "HighErrorRate", "blob": "x".repeat(200_000)}),
            "cccc000000000001",
            "2026-12-01T10:00:00Z",
        ),
        alert(
            "firing",
            keptn_scope("HighErrorRate", "neighbour"),
            "cccc000000000002",
            "2026-12-01T10:00:00Z",
        ),
    ]);
    let (status, answer) = post(&svc, paths[0], huge.to_string(), &[]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(outcomes(&answer), ["rejected", "accepted"], "{answer}");
    assert_eq!(answer["alerts"][0]["reason"], "too_large");
    bus.wait_for(FINISHED, 1, Duration::from_secs(15)).await;

    // Every refused body was reported like other bad input, and the service is fine.
    let errors = bus.of_type("sh.keptn.log.error");
    assert!(
        // 15 bad bodies, 2 storms, the unscoped Dynatrace problem, the huge alert.
        errors.len() >= 19,
        "{} log.error events",
        errors.len()
    );
    assert_eq!(svc.get("/health").await.0, 200);
    let g = group(vec![alert(
        "firing",
        keptn_scope("HighErrorRate", "after-the-storm"),
        "cccc000000000003",
        "2026-12-01T10:00:00Z",
    )]);
    let (status, _) = post(&svc, paths[0], g.to_string(), &[]).await;
    assert_eq!(status, 200);
    let finished = bus.wait_for(FINISHED, 2, Duration::from_secs(15)).await;
    assert!(finished.iter().all(|f| f["data"]["result"] == "pass"));
    let (_, metrics) = svc.get("/metrics").await;
    assert!(metrics.contains("webhook_alerts_total"), "{metrics}");
}

/// Sends only the headers of a POST announcing a large body, and reads the answer: it must
/// come without the body being sent.
fn answer_without_body(http: &str, path: &str, headers: &str, length: usize) -> String {
    use std::io::{Read, Write};
    let addr = http.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{headers}Content-Length: {length}\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn webhooks_token_and_size_are_checked_before_the_body_is_read() {
    let fx = Fixture::new(Some(ESCALATE), None).await;
    let svc = fx.service(&[("HTTP_TOKEN", "tok-123")]).await;
    let http = svc.http.clone();
    tokio::task::spawn_blocking(move || {
        for path in [
            "/",
            "/events",
            "/v1/event",
            "/api/v1/event",
            "/webhooks/alertmanager",
            "/webhooks/grafana",
            "/webhooks/dynatrace",
        ] {
            let unauth = answer_without_body(&http, path, "x-token: wrong\r\n", 100 * 1024 * 1024);
            assert!(unauth.starts_with("HTTP/1.1 401"), "{path}: {unauth:?}");
            let big = answer_without_body(&http, path, "x-token: tok-123\r\n", 100 * 1024 * 1024);
            assert!(big.starts_with("HTTP/1.1 413"), "{path}: {big:?}");
        }
        // 200 unauthenticated 1 MiB announcements: none is read, the service stays small.
        for _ in 0..200 {
            let a = answer_without_body(&http, "/webhooks/alertmanager", "", 1024 * 1024);
            assert!(a.starts_with("HTTP/1.1 401"), "{a:?}");
        }
    })
    .await
    .unwrap();
    let rss = std::fs::read_to_string(format!("/proc/{}/status", svc.pid()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .unwrap();
    assert!(
        rss < 100 * 1024,
        "RSS {rss} kB after 200 refused large POSTs"
    );
    assert_eq!(svc.get("/health").await.0, 200);
}

#[tokio::test]
async fn webhooks_no_open_listener_without_a_token() {
    let port = testkit::free_port();
    let out = std::process::Command::new(crate::common::BIN)
        .arg("serve")
        .env_clear()
        .env("HTTP_ADDR", format!("0.0.0.0:{port}"))
        .env("NATS_URL", "nats://127.0.0.1:9")
        .env("UNLEASH_SERVER_URL", "http://127.0.0.1:9/api")
        .env("UNLEASH_TOKEN", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP_TOKEN") && err.contains("HTTP_ALLOW_ANONYMOUS"),
        "{err}"
    );

    // Explicitly anonymous: it starts, with a warning.
    let fx = Fixture::new(Some(ESCALATE), None).await;
    let mut env = fx.env(&[("HTTP_ALLOW_ANONYMOUS", "true")]);
    env.push(("HTTP_ADDR", format!("0.0.0.0:{port}")));
    let svc = Service::spawn(&env);
    let mut svc = svc;
    svc.http = format!("http://127.0.0.1:{port}");
    svc.wait_ready().await;
    assert!(
        svc.log().contains("HTTP_ALLOW_ANONYMOUS=true"),
        "{}",
        svc.log()
    );
}

#[tokio::test]
async fn webhook_alert_switches_a_real_flag_and_its_resolve_switches_it_back() {
    let u = unleash();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let flag = format!("Webhook-{suffix}");
    create_flag(&flag).await;
    let nats = NatsServer::start().unwrap();
    let remediation = format!(
        r#"apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata:
  name: webhook
spec:
  remediations:
    - problemType: HighErrorRate
      actionsOnOpen:
        - name: switch the fallback on
          action: toggle-feature
          value:
            {flag}: "on"
      actionsOnClose:
        - name: switch it back
          action: toggle-feature
          value:
            {flag}: "off"
"#
    );
    let dir = resource_dir(Some(&remediation), None);
    let mut env = unleash_env(u);
    env.push(("NATS_URL", nats.url()));
    env.push(("RESOURCE_DIR", dir.path().display().to_string()));
    let mut svc = Service::spawn(&env);
    svc.wait_ready().await;
    let bus = Bus::connect(&nats.url()).await;

    let firing = group(vec![alert(
        "firing",
        json!({"alertname": "HighErrorRate", "severity": "page"}),
        "dddd000000000001",
        "2026-12-01T10:00:00Z",
    )]);
    let path = "/webhooks/alertmanager?project=website&stage=production&service=front-end";
    let posted = std::time::Instant::now();
    let (status, answer) = post(&svc, path, firing.to_string(), &[]).await;
    let answered = posted.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(outcomes(&answer), ["accepted"], "{answer}");
    let finished = bus.wait_for(FINISHED, 1, Duration::from_secs(20)).await;
    let remediated = posted.elapsed();
    assert_eq!(finished[0]["data"]["result"], "pass", "{}", finished[0]);
    u.wait_client_flag(&flag, "production", true, Duration::from_secs(5))
        .await
        .unwrap();
    eprintln!(
        "webhook POST answered in {answered:?}; remediation.finished after {remediated:?}; flag on for Unleash clients after {:?}",
        posted.elapsed()
    );

    // The repeat toggles nothing more.
    let (_, again) = post(&svc, path, firing.to_string(), &[]).await;
    assert_eq!(outcomes(&again), ["duplicate"], "{again}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        bus.of_type("sh.keptn.event.action.started").len(),
        1,
        "one toggle"
    );

    let resolved = group(vec![alert(
        "resolved",
        json!({"alertname": "HighErrorRate", "severity": "page"}),
        "dddd000000000001",
        "2026-12-01T10:00:00Z",
    )]);
    let (status, answer) = post(&svc, path, resolved.to_string(), &[]).await;
    assert_eq!(status, 200, "{answer}");
    u.wait_client_flag(&flag, "production", false, Duration::from_secs(10))
        .await
        .unwrap();
}

#[tokio::test]
async fn webhooks_an_ha_pair_posting_at_once_starts_one_remediation() {
    let fx = Fixture::new(Some(ESCALATE), None).await;
    let svc = fx.service(&[]).await;
    let bus = &fx.bus;
    spawn_responder(bus);
    let g = group(vec![alert(
        "firing",
        keptn_scope("HighErrorRate", "ha"),
        "eeee000000000001",
        "2026-12-01T10:00:00Z",
    )])
    .to_string();
    let posts: Vec<_> = (0..8)
        .map(|_| post(&svc, "/webhooks/alertmanager", g.clone(), &[]))
        .collect();
    let answers = futures::future::join_all(posts).await;
    let mut accepted = 0;
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
        match outcomes(answer)[0].as_str() {
            "accepted" => accepted += 1,
            "duplicate" => {}
            other => panic!("{other}: {answer}"),
        }
    }
    assert_eq!(accepted, 1, "{answers:?}");
    bus.wait_for(FINISHED, 1, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bus.of_type(TRIGGERED).len(), 1);
    assert_eq!(bus.of_type(ACTION).len(), 1, "one action");
    assert_eq!(bus.of_type(FINISHED).len(), 1);
}
