//! Bad input, duplicates, replicas, restarts and shutdown.

use crate::common::{Bus, Fixture, Service, closing, problem_open, renotified, resource_dir};
use crate::common::{FOREIGN, spawn_responder};
use serde_json::Value;
use std::time::Duration;
use testkit::nats::NatsServer;

fn count(bus: &Bus, ty: &str, ctx: &Value) -> usize {
    bus.of_type(ty)
        .iter()
        .filter(|e| e["shkeptncontext"] == *ctx)
        .count()
}

#[tokio::test]
async fn malformed_messages_are_reported_and_the_service_keeps_working() {
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let svc = fx.service(&[]).await;
    let bus = &fx.bus;
    spawn_responder(bus);

    let subjects = [
        "sh.keptn.event.problem.open",
        "sh.keptn.events.problem",
        "sh.keptn.event.get-action.triggered",
        "sh.keptn.event.action.triggered",
        "sh.keptn.event.action.finished",
    ];
    let bad: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        b"[1,2,3]".to_vec(),
        b"\"a string\"".to_vec(),
        b"{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"t\"}".to_vec(),
        br#"{"specversion":"9.9","id":"x","source":"t","type":"sh.keptn.event.problem.open"}"#.to_vec(),
        br#"{"specversion":"1.0","id":"x","source":"t","type":42}"#.to_vec(),
        vec![0xff, 0xfe, 0x00],
        br#"{"specversion":"1.0","id":"x","source":"t","type":"sh.keptn.event.problem.open","data":"nope"}"#.to_vec(),
        br#"{"specversion":"1.0","id":"x","source":"t","type":"sh.keptn.event.problem.open","data":{"ProblemTitle":"t"}}"#.to_vec(),
        br#"{"specversion":"1.0","id":"x","source":"t","type":"sh.keptn.event.action.finished","data":{"status":"succeeded"}}"#.to_vec(),
    ];
    let mut sent = 0;
    for (i, payload) in bad.iter().cycle().take(50).enumerate() {
        bus.publish_raw(subjects[i % subjects.len()], payload.clone())
            .await;
        sent += 1;
    }
    assert_eq!(sent, 50);
    let errors = bus
        .wait_for("sh.keptn.log.error", 50, Duration::from_secs(10))
        .await;
    assert!(
        errors
            .iter()
            .all(|e| e["data"]["message"].as_str().is_some_and(|m| !m.is_empty()))
    );

    let problem = problem_open("Pass me", "after-the-garbage");
    bus.publish(&problem).await;
    let finished = bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(finished[0]["data"]["result"], "pass");
    assert_eq!(finished[0]["shkeptncontext"], problem["shkeptncontext"]);
    // Exactly the 50, nothing else was reported as an error.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bus.of_type("sh.keptn.log.error").len(), 50);
    let (status, metrics) = svc.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("events_rejected_total"), "{metrics}");
}

async fn hundred_identical_opens(services: &mut [&mut Service], bus: &Bus) {
    for s in services.iter_mut() {
        s.wait_ready().await;
    }
    let problem = problem_open("Pass me", "storm-1");
    let ctx = problem["shkeptncontext"].clone();
    for _ in 0..100 {
        let p = renotified(&problem);
        bus.publish(&p).await;
    }
    bus.wait_for(
        "sh.keptn.event.remediation.finished",
        1,
        Duration::from_secs(15),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(count(bus, "sh.keptn.event.remediation.triggered", &ctx), 1);
    assert_eq!(count(bus, "sh.keptn.event.action.triggered", &ctx), 1);
    assert_eq!(count(bus, "sh.keptn.event.remediation.finished", &ctx), 1);
}

/// The value of the first sample in `metrics` whose line starts with `prefix`; a missing or
/// unreadable series fails the test (a gauge that is never written would otherwise read 0).
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{metrics}"))
}

#[tokio::test]
async fn hundred_identical_opens_give_one_remediation_core_mode() {
    hundred_identical_opens_counted("core").await;
}

#[tokio::test]
async fn hundred_identical_opens_give_one_remediation_jetstream_mode() {
    hundred_identical_opens_counted("jetstream").await;
}

/// One remediation, and every OPEN counted: the duplicates the consumer answers where it reads
/// them as received and as duplicates, none as in flight afterwards.
async fn hundred_identical_opens_counted(mode: &'static str) {
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let mut svc = Service::spawn(&fx.env(&[("NATS_MODE", mode)]));
    spawn_responder(&fx.bus);
    hundred_identical_opens(&mut [&mut svc], &fx.bus).await;
    let (_, metrics) = svc.get("/metrics").await;
    assert_eq!(
        sample(&metrics, "unleash_remediation_duplicates_total"),
        99.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "unleash_remediation_events_received_total{type=\"problem.open\"}"
        ),
        100.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "unleash_remediation_events_in_flight"),
        0.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn two_replicas_share_duplicate_protection_core_mode() {
    two_replicas_share_duplicate_protection("core").await;
}

#[tokio::test]
async fn two_replicas_share_duplicate_protection_jetstream_mode() {
    two_replicas_share_duplicate_protection("jetstream").await;
}

async fn two_replicas_share_duplicate_protection(mode: &'static str) {
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let env = fx.env(&[("NATS_MODE", mode)]);
    let mut a = Service::spawn(&env);
    let mut b = Service::spawn(&env);
    spawn_responder(&fx.bus);
    hundred_identical_opens(&mut [&mut a, &mut b], &fx.bus).await;
}

#[tokio::test]
async fn closed_then_open_remediates_again() {
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let _svc = fx.service(&[]).await;
    let bus = &fx.bus;
    spawn_responder(bus);
    let open = problem_open("Pass me", "reopened-1");
    bus.publish(&open).await;
    bus.wait_for(
        "sh.keptn.event.remediation.finished",
        1,
        Duration::from_secs(10),
    )
    .await;
    // A second OPEN while not closed is a duplicate.
    let again = renotified(&open);
    bus.publish(&again).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bus.of_type("sh.keptn.event.remediation.triggered").len(), 1);

    close_and_reopen(bus, &open).await;
}

#[tokio::test]
async fn sigterm_stops_cleanly_with_exit_zero() {
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let mut svc = fx.service(&[]).await;
    let status = svc.terminate();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        svc.log()
    );
}

#[tokio::test]
async fn nats_restart_is_survived() {
    let mut nats = NatsServer::start().unwrap();
    let dir = resource_dir(Some(FOREIGN), None);
    let mut svc = Service::spawn(&[
        ("NATS_URL", nats.url()),
        ("RESOURCE_DIR", dir.path().display().to_string()),
    ]);
    svc.wait_ready().await;
    assert_eq!(svc.get("/health").await.0, 200);

    nats.stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = svc.get("/ready").await;
        if status == 503 {
            assert!(body.contains("NATS"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/ready stayed {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(svc.get("/health").await.0, 200);

    nats.start_again().unwrap();
    svc.wait_ready().await;
    let bus = Bus::connect(&nats.url()).await;
    spawn_responder(&bus);
    // The subscriptions are restored with the connection; give the server a moment to have them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    bus.publish(&problem_open("Pass me", "after-restart")).await;
    let finished = bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(finished[0]["data"]["result"], "pass");
}

#[tokio::test]
async fn jetstream_redelivery_is_bounded_then_reported() {
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let _svc = fx
        .service(&[("NATS_MODE", "jetstream"), ("MAX_DELIVER", "2")])
        .await;
    // Take the state bucket away: every attempt to claim the problem now fails (each after the
    // client's 10 s request timeout, hence the long wait below).
    let js = async_nats::jetstream::new(fx.bus.client.clone());
    js.delete_stream("KV_unleash-remediation-state")
        .await
        .unwrap();
    let bus = &fx.bus;
    bus.publish(&problem_open("Pass me", "cannot-claim")).await;
    let errors = bus
        .wait_for("sh.keptn.log.error", 1, Duration::from_secs(40))
        .await;
    let message = errors[0]["data"]["message"].as_str().unwrap();
    assert!(
        message.contains("gave up on event after 2 deliveries"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        bus.of_type("sh.keptn.log.error").len(),
        1,
        "no further redelivery"
    );
    assert!(
        bus.of_type("sh.keptn.event.remediation.triggered")
            .is_empty()
    );
}

#[tokio::test]
async fn a_problem_closed_on_one_replica_reopens_on_another() {
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let base = [("NATS_MODE", "core"), ("ROLES", "remediator")];
    // Replica A only sees OPENs, replica B only sees CLOSEDs.
    let a_topics = "sh.keptn.event.problem.open,sh.keptn.event.action.finished";
    let _a = fx
        .service(&[base[0], base[1], ("PUBSUB_TOPIC", a_topics)])
        .await;
    let _b = fx
        .service(&[
            base[0],
            base[1],
            ("PUBSUB_TOPIC", "sh.keptn.events.problem"),
        ])
        .await;
    let bus = &fx.bus;
    spawn_responder(bus);

    let open = problem_open("Pass me", "across-replicas");
    bus.publish(&open).await;
    bus.wait_for(
        "sh.keptn.event.remediation.finished",
        1,
        Duration::from_secs(10),
    )
    .await;
    close_and_reopen(bus, &open).await;
}

/// Closes the problem `open` reported (already remediated once), opens it again, and checks
/// that it is remediated a second time.
async fn close_and_reopen(bus: &Bus, open: &Value) {
    bus.publish(&closing(open, "CLOSED")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    bus.publish(&renotified(open)).await;
    bus.wait_for(
        "sh.keptn.event.remediation.finished",
        2,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(bus.of_type("sh.keptn.event.remediation.triggered").len(), 2);
}
