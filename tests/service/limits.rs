//! One set of permits for every source: HTTP events are bounded by `CONCURRENCY` and drained
//! on SIGTERM like NATS events, and toggles waiting on a hung Unleash do not hold up the rest.

use crate::common::FOREIGN;
use crate::common::{Fixture, problem_open, vector};
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// An Unleash that answers every toggle after `delay`.
async fn hung_unleash(delay: Duration) -> MockServer {
    let unleash = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"/environments/[^/]+/(on|off)$"))
        .respond_with(ResponseTemplate::new(200).set_delay(delay))
        .mount(&unleash)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(
            r"^/api/admin/projects/default/features/[^/]+/environments/[^/]+$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "name": "EnableItemCache",
            "environment": "staging",
            "enabled": false,
            "strategies": []
        })))
        .mount(&unleash)
        .await;
    unleash
}

fn toggle(n: usize) -> Value {
    let mut ev = vector("unleash-service/action_triggered.json");
    ev["id"] = json!(uuid::Uuid::new_v4().to_string());
    ev["shkeptncontext"] = json!(format!("00000000-0000-4000-8000-{n:012}"));
    ev
}

async fn toggles_received(unleash: &MockServer) -> usize {
    unleash
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count()
}

#[tokio::test]
async fn http_events_take_the_same_permits_and_are_drained_on_sigterm() {
    let unleash = hung_unleash(Duration::from_secs(3)).await;
    let fx = Fixture::new(None, None).await;
    let url = format!("{}/api", unleash.uri());
    let mut svc = fx
        .service(&[
            ("ROLES", "action"),
            ("CONCURRENCY", "2"),
            ("UNLEASH_SERVER_URL", &url),
            ("UNLEASH_API", "v4"),
            ("UNLEASH_TIMEOUT", "10s"),
            ("SHUTDOWN_GRACE", "8s"),
        ])
        .await;
    let http = reqwest::Client::new();
    let (mut accepted, mut refused) = (Vec::new(), 0);
    for n in 0..20 {
        let ev = toggle(n);
        let r = http
            .post(format!("{}/", svc.http))
            .header("content-type", "application/cloudevents+json")
            .body(serde_json::to_vec(&ev).unwrap())
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            202 => accepted.push(ev),
            503 => {
                assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
                refused += 1;
            }
            other => panic!("unexpected status {other}: {}", r.text().await.unwrap()),
        }
    }
    // CONCURRENCY=2 leaves one permit for toggles: one is taken, the others are refused.
    assert_eq!(
        accepted.len(),
        1,
        "accepted {}, refused {refused}",
        accepted.len()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        toggles_received(&unleash).await,
        1,
        "one Unleash request at a time"
    );

    // SIGTERM while the toggle waits on Unleash: it finishes and is reported before the exit.
    let status = svc.terminate();
    assert!(status.success(), "{status}\n{}", svc.log());
    let finished = fx
        .bus
        .wait_for("sh.keptn.event.action.finished", 1, Duration::from_secs(3))
        .await;
    assert_eq!(finished.len(), 1, "{}", svc.log());
    assert_eq!(finished[0]["triggeredid"], accepted[0]["id"]);
    assert!(svc.log().contains("all events in flight finished"));
}

#[tokio::test]
async fn a_hung_unleash_does_not_hold_up_other_events() {
    hung_unleash_with(&[]).await;
}

/// With one subscription for everything, toggles still take their own permits and loop.
#[tokio::test]
async fn a_hung_unleash_does_not_hold_up_other_events_on_a_wildcard_subscription() {
    hung_unleash_with(&[("PUBSUB_TOPIC", "sh.keptn.>")]).await;
}

#[tokio::test]
async fn a_hung_unleash_does_not_hold_up_other_events_on_a_wildcard_core_subscription() {
    hung_unleash_with(&[("PUBSUB_TOPIC", "sh.keptn.>"), ("NATS_MODE", "core")]).await;
}

async fn hung_unleash_with(extra: &[(&'static str, &str)]) {
    let unleash = hung_unleash(Duration::from_secs(8)).await;
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let url = format!("{}/api", unleash.uri());
    let mut env = vec![
        ("CONCURRENCY", "4"),
        ("UNLEASH_SERVER_URL", url.as_str()),
        ("UNLEASH_API", "v4"),
        ("UNLEASH_TIMEOUT", "10s"),
    ];
    env.extend_from_slice(extra);
    let svc = fx.service(&env).await;
    for n in 0..10 {
        fx.bus.publish(&toggle(n)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while toggles_received(&unleash).await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no toggle reached Unleash"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every toggle permit waits on Unleash; a problem still goes through at once.
    fx.bus
        .publish(&problem_open("Pass me", "while-unleash-hangs"))
        .await;
    fx.bus
        .wait_for(
            "sh.keptn.event.remediation.triggered",
            1,
            Duration::from_secs(3),
        )
        .await;
    drop(svc);
}
