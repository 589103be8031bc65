//! What the service takes from NATS and what it sends back: the subject decides the type, its
//! own events do not feed back into it, actions and replies stay within bounds, and resource
//! files that are not regular files are refused.

use crate::common::{Bus, Fixture, problem_open};
use crate::common::{FOREIGN, spawn_responder};
use crate::common::{metric_sum, toggle_triggered};
use serde_json::{Value, json};
use std::time::Duration;
use testkit::nats::NatsServer;

fn replies_to(bus: &Bus, ev: &Value) -> Vec<Value> {
    bus.events()
        .into_iter()
        .filter(|e| e["triggeredid"] == ev["id"])
        .collect()
}

#[tokio::test]
async fn an_event_whose_type_is_not_its_subject_is_rejected() {
    for mode in ["core", "jetstream"] {
        let fx = Fixture::new(Some(FOREIGN), None).await;
        let svc = fx.service(&[("NATS_MODE", mode)]).await;
        let bus = &fx.bus;
        // Someone allowed to publish problems only sends an action on the problem subject.
        let action = toggle_triggered(json!({"EnableStaticContent": "on"}), json!({}));
        bus.publish_raw(
            "sh.keptn.event.problem.open",
            serde_json::to_vec(&action).unwrap(),
        )
        .await;
        let errors = bus
            .wait_for("sh.keptn.log.error", 1, Duration::from_secs(10))
            .await;
        let message = errors[0]["data"]["message"].as_str().unwrap();
        assert!(
            message.contains("subject_mismatch")
                && message.contains("\"sh.keptn.event.problem.open\""),
            "{mode}: {message}"
        );
        assert_eq!(errors[0]["triggeredid"], action["id"]);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            bus.of_type("sh.keptn.event.action.started").is_empty(),
            "{mode}: the action ran; log:\n{}",
            svc.log()
        );
        let (_, metrics) = svc.get("/metrics").await;
        assert_eq!(
            metric_sum(&metrics, "events_rejected_total", "subject_mismatch"),
            1.0,
            "{metrics}"
        );
        // The same event on its own subject is handled.
        bus.publish(&action).await;
        bus.wait_for("sh.keptn.event.action.finished", 1, Duration::from_secs(15))
            .await;
        assert_eq!(bus.of_type("sh.keptn.log.error").len(), 1, "{mode}");
    }
}

/// A remediation whose action is switched by this service's own action role (Unleash is not
/// reachable, so the action errs), then by the test's responder.
const OWN_THEN_FOREIGN: &str = r#"apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata:
  name: loop
spec:
  remediations:
    - problemType: Pass me
      actionsOnOpen:
        - name: our own action
          action: toggle-feature
          value: {EnableStaticContent: "on"}
        - name: call the on-call
          action: escalate
          value: {answer: pass}
"#;

#[tokio::test]
async fn subscribed_to_everything_the_service_does_not_feed_on_its_own_events() {
    for mode in ["core", "jetstream"] {
        let fx = Fixture::new(Some(OWN_THEN_FOREIGN), None).await;
        let svc = fx
            .service(&[
                ("NATS_MODE", mode),
                ("PUBSUB_TOPIC", "sh.keptn.>"),
                ("UNLEASH_RETRIES", "0"),
            ])
            .await;
        let bus = &fx.bus;
        spawn_responder(bus);
        // One bad event: one log.error, and nothing answers that log.error.
        bus.publish_raw(
            "sh.keptn.event.problem.open",
            br#"{"specversion":"1.0","id":"bad-1","source":"t","type":"sh.keptn.event.problem.open","data":"nope"}"#.to_vec(),
        )
        .await;
        bus.wait_for("sh.keptn.log.error", 1, Duration::from_secs(10))
            .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            bus.of_type("sh.keptn.log.error").len(),
            1,
            "{mode}: log:\n{}",
            svc.log()
        );

        // Its own action.triggered still reaches its action role, and its own action.finished
        // its remediator, which escalates to the next action.
        let problem = problem_open("Pass me", &format!("loop-{mode}"));
        bus.publish(&problem).await;
        let finished = bus
            .wait_for(
                "sh.keptn.event.remediation.finished",
                1,
                Duration::from_secs(20),
            )
            .await;
        assert_eq!(finished[0]["data"]["result"], "pass", "{}", finished[0]);
        let own_finished: Vec<Value> = bus
            .of_type("sh.keptn.event.action.finished")
            .into_iter()
            .filter(|e| e["source"] == "unleash-remediation-service")
            .collect();
        assert_eq!(own_finished.len(), 1, "{own_finished:?}");
        assert_eq!(own_finished[0]["data"]["status"], "errored");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            bus.of_type("sh.keptn.log.error").len(),
            1,
            "{mode}: {:?}",
            bus.of_type("sh.keptn.log.error")
        );
        // Other services' events of types nobody here handles are passed over, not answered.
        let mut other = problem_open("x", "y");
        other["type"] = json!("sh.keptn.event.evaluation.triggered");
        bus.publish(&other).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(bus.of_type("sh.keptn.log.error").len(), 1, "{mode}");
    }
}

#[tokio::test]
async fn an_action_with_20000_flags_is_refused_before_any_request() {
    let fx = Fixture::new(None, None).await;
    let svc = fx.service(&[("ROLES", "action")]).await;
    let bus = &fx.bus;
    let flags: serde_json::Map<String, Value> = (0..20_000)
        .map(|i| (format!("Flag-{i}"), json!("on")))
        .collect();
    let action = toggle_triggered(Value::Object(flags), json!({}));
    bus.publish(&action).await;
    let finished = bus
        .wait_for("sh.keptn.event.action.finished", 1, Duration::from_secs(15))
        .await;
    let data = &finished[0]["data"];
    assert_eq!(data["status"], "errored", "{data}");
    assert_eq!(data["result"], "fail");
    let message = data["message"].as_str().unwrap();
    assert!(
        message.contains("names 20000 flags; at most 100")
            && message.contains("MAX_FLAGS_PER_ACTION"),
        "{message}"
    );
    let (_, metrics) = svc.get("/metrics").await;
    assert_eq!(
        metric_sum(&metrics, "unleash_requests_total", ""),
        0.0,
        "Unleash was asked:\n{metrics}"
    );
}

#[tokio::test]
async fn replies_are_shortened_to_the_servers_max_payload_not_dropped() {
    const MAX: usize = 16 * 1024;
    let nats = NatsServer::start_with_config(&format!("max_payload: {MAX}\n")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::connect(&nats.url()).await;
    let env = vec![
        ("NATS_URL", nats.url()),
        ("NATS_MODE", "core".to_owned()),
        ("RESOURCE_DIR", dir.path().display().to_string()),
        ("ROLES", "action".to_owned()),
        ("UNLEASH_RETRIES", "0".to_owned()),
    ];
    let mut svc = crate::common::Service::spawn(&env);
    svc.wait_ready().await;
    // The trigger fits (about 15 KiB); the reply repeats the labels and names 20 long flags
    // that failed, which together do not.
    let labels: serde_json::Map<String, Value> = (0..100)
        .map(|i| (format!("label-{i:03}"), json!("v".repeat(110))))
        .collect();
    let flags: serde_json::Map<String, Value> = (0..20)
        .map(|i| (format!("Flag-{i:02}-{}", "x".repeat(85)), json!("on")))
        .collect();
    let action = toggle_triggered(Value::Object(flags), Value::Object(labels));
    let payload = serde_json::to_vec(&action).unwrap();
    assert!(payload.len() < MAX, "{}", payload.len());
    bus.publish(&action).await;
    let finished = bus
        .wait_for("sh.keptn.event.action.finished", 1, Duration::from_secs(15))
        .await;
    let f = &finished[0];
    assert!(serde_json::to_vec(f).unwrap().len() <= MAX);
    assert_eq!(f["data"]["status"], "errored", "{f}");
    assert_eq!(f["triggeredid"], action["id"]);
    assert!(
        f["data"]["truncated"]
            .as_str()
            .unwrap()
            .contains("max_payload of 16384"),
        "{f}"
    );
    assert!(
        f["data"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Flag-00-"),
        "{f}"
    );
    assert_eq!(replies_to(&bus, &action).len(), 2);
}

#[tokio::test]
async fn a_fifo_or_dev_zero_as_remediation_yaml_is_refused_and_the_service_stays_responsive() {
    for (what, make) in [
        (
            "a FIFO",
            (|p: &std::path::Path| {
                let ok = std::process::Command::new("mkfifo")
                    .arg(p)
                    .status()
                    .expect("mkfifo (coreutils)");
                assert!(ok.success());
            }) as fn(&std::path::Path),
        ),
        ("a character device", |p: &std::path::Path| {
            std::os::unix::fs::symlink("/dev/zero", p).unwrap()
        }),
    ] {
        let fx = Fixture::new(None, None).await;
        make(&fx.dir.path().join("remediation.yaml"));
        let svc = fx.service(&[("ROLES", "remediator,get-action")]).await;
        let bus = &fx.bus;
        bus.publish(&problem_open("Pass me", what)).await;
        let finished = bus
            .wait_for(
                "sh.keptn.event.remediation.finished",
                1,
                Duration::from_secs(10),
            )
            .await;
        let message = finished[0]["data"]["message"].as_str().unwrap();
        assert_eq!(finished[0]["data"]["status"], "errored");
        assert!(
            message.contains(&format!("is not a regular file but {what}")),
            "{message}"
        );
        let mut get_action = crate::common::vector("keptn-1.x/get-action.triggered-0.json");
        get_action["id"] = json!(uuid::Uuid::new_v4().to_string());
        bus.publish(&get_action).await;
        let answer = bus
            .wait_for(
                "sh.keptn.event.get-action.finished",
                1,
                Duration::from_secs(10),
            )
            .await;
        assert_eq!(answer[0]["data"]["status"], "errored", "{}", answer[0]);
        assert_eq!(svc.get("/health").await.0, 200);
    }
}
