//! HTTP ingest (docs/design.md §7): the same pipeline as NATS.

use crate::common::{FOREIGN, spawn_responder};
use crate::common::{Fixture, problem_open};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ingest_accepts_structured_and_binary_and_rejects_bad_input() {
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let svc = fx
        .in_process(&["--http-token=let-me-in", "--http-body-limit=4096"])
        .await;
    let bus = &fx.bus;
    spawn_responder(bus);
    let http = reqwest::Client::new();

    // Structured mode, on POST / (where Keptn's distributor posts).
    let structured = problem_open("Pass me", "http-structured");
    let r = http
        .post(format!("{}/", svc.http))
        .header("content-type", "application/cloudevents+json")
        .header("x-token", "let-me-in")
        .body(serde_json::to_vec(&structured).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);

    // Binary mode, on POST /events.
    let binary = problem_open("Pass me", "http-binary");
    let r = http
        .post(format!("{}/events", svc.http))
        .header("x-token", "let-me-in")
        .header("ce-specversion", "1.0")
        .header("ce-id", binary["id"].as_str().unwrap())
        .header("ce-source", "test")
        .header("ce-type", "sh.keptn.event.problem.open")
        .header(
            "ce-shkeptncontext",
            binary["shkeptncontext"].as_str().unwrap(),
        )
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&binary["data"]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap());

    let finished = bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            2,
            Duration::from_secs(10),
        )
        .await;
    let contexts: Vec<_> = finished
        .iter()
        .map(|e| e["shkeptncontext"].clone())
        .collect();
    assert!(contexts.contains(&structured["shkeptncontext"]));
    assert!(contexts.contains(&binary["shkeptncontext"]));

    // Bad JSON: 400 with a JSON reason.
    let r = http
        .post(format!("{}/events", svc.http))
        .header("x-token", "let-me-in")
        .header("content-type", "application/cloudevents+json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("not JSON"),
        "{body}"
    );

    // Missing or wrong token: 401.
    for token in [None, Some("wrong")] {
        let mut req = http
            .post(format!("{}/", svc.http))
            .body(serde_json::to_vec(&structured).unwrap());
        if let Some(t) = token {
            req = req.header("x-token", t);
        }
        assert_eq!(req.send().await.unwrap().status().as_u16(), 401);
    }

    // Over the body limit: 413.
    let mut big = problem_open("Pass me", "too-big");
    big["data"]["ProblemDetails"] = serde_json::json!("x".repeat(10_000));
    let r = http
        .post(format!("{}/", svc.http))
        .header("x-token", "let-me-in")
        .header("content-type", "application/cloudevents+json")
        .body(serde_json::to_vec(&big).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);

    // Health and metrics.
    assert_eq!(svc.get("/health").await.0, 200);
    let (status, metrics) = svc.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("events_received_total"), "{metrics}");
    assert!(metrics.contains("http_unauthorized_total"), "{metrics}");
    svc.stop().await.expect("a clean stop");
}
