//! Keptn 0.8.3 – 1.x: the get-action role and the action role on real Keptn events.

use crate::common::{Bus, Service, renotified, vector};
use crate::common::{create_flag, unleash, unleash_env};
use serde_json::{Value, json};
use std::time::Duration;
use testkit::nats::NatsServer;

fn replies_to<'a>(events: &'a [Value], id: &Value) -> Vec<&'a Value> {
    events.iter().filter(|e| e["triggeredid"] == *id).collect()
}

#[tokio::test]
async fn get_action_vectors_are_answered_as_keptn_does() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let svc_dir = dir.path().join("myproject/mystage/myservice");
    std::fs::create_dir_all(&svc_dir).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/keptn-0.8/remediation.yaml"
        ),
        svc_dir.join("remediation.yaml"),
    )
    .unwrap();
    let mut svc = Service::spawn(&[
        ("NATS_URL", nats.url()),
        ("RESOURCE_DIR", dir.path().display().to_string()),
        ("ROLES", "get-action".into()),
    ]);
    svc.wait_ready().await;
    let bus = Bus::connect(&nats.url()).await;

    let cases = [
        (
            "keptn-1.x/get-action.triggered-0.json",
            Some(("toggle-feature", 1)),
        ),
        (
            "keptn-1.x/get-action.triggered-1.json",
            Some(("run-snow-wf", 2)),
        ),
        ("keptn-1.x/get-action.triggered-2.json", None),
    ];
    for (i, (file, expect)) in cases.iter().enumerate() {
        let mut ev = vector(file);
        ev["id"] = json!(uuid::Uuid::new_v4().to_string()); // the vectors share one id
        bus.publish(&ev).await;
        let finished = bus
            .wait_for(
                "sh.keptn.event.get-action.finished",
                i + 1,
                Duration::from_secs(10),
            )
            .await;
        let events = bus.events();
        let replies = replies_to(&events, &ev["id"]);
        assert_eq!(replies.len(), 2, "{file}: {replies:#?}");
        assert_eq!(replies[0]["type"], "sh.keptn.event.get-action.started");
        let f = finished.last().unwrap();
        assert_eq!(f["triggeredid"], ev["id"]);
        assert_eq!(f["shkeptncontext"], ev["shkeptncontext"]);
        match expect {
            Some((action, next)) => {
                assert_eq!(f["data"]["result"], "pass", "{f}");
                assert_eq!(f["data"]["action"]["action"], *action);
                assert_eq!(f["data"]["get-action"]["actionIndex"], *next);
                assert_eq!(f["data"]["ActionIndex"], *next);
            }
            None => {
                assert_eq!(f["data"]["status"], "succeeded");
                assert_eq!(f["data"]["result"], "fail");
                assert!(
                    f["data"]["message"].as_str().unwrap().contains("index 2"),
                    "{f}"
                );
            }
        }
    }
    assert_eq!(
        bus.of_type("sh.keptn.event.get-action.finished")[0]["gitcommitid"],
        "1234"
    );

    let malformed = vector("keptn-1.x/get-action.triggered-malformed.json");
    bus.publish(&malformed).await;
    let finished = bus
        .wait_for(
            "sh.keptn.event.get-action.finished",
            4,
            Duration::from_secs(10),
        )
        .await;
    let f = finished.last().unwrap();
    assert_eq!(f["data"]["status"], "errored");
    assert_eq!(f["data"]["result"], "fail");
    assert!(
        f["data"]["message"]
            .as_str()
            .unwrap()
            .contains("Could not decode input event data")
    );
}

#[tokio::test]
async fn unleash_service_action_vector_is_toggled() {
    let u = unleash();
    create_flag("EnableItemCache").await;
    let nats = NatsServer::start().unwrap();
    let mut env = unleash_env(u);
    env.push(("NATS_URL", nats.url()));
    env.push(("ROLES", "action".into()));
    // The vector's stage is `staging`; a fresh Unleash has development and production.
    env.push(("UNLEASH_ENVIRONMENT", "development".into()));
    let mut svc = Service::spawn(&env);
    svc.wait_ready().await;
    let bus = Bus::connect(&nats.url()).await;

    let ev = vector("unleash-service/action_triggered.json");
    bus.publish(&ev).await;
    let finished = bus
        .wait_for("sh.keptn.event.action.finished", 1, Duration::from_secs(15))
        .await;
    let started = bus.of_type("sh.keptn.event.action.started");
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["triggeredid"], ev["id"]);
    assert_eq!(finished[0]["triggeredid"], ev["id"]);
    assert_eq!(finished[0]["shkeptncontext"], ev["shkeptncontext"]);
    assert_eq!(
        finished[0]["data"]["status"], "succeeded",
        "{}",
        finished[0]
    );
    assert_eq!(finished[0]["data"]["result"], "pass");
    assert_eq!(finished[0]["data"]["project"], "sockshop");
    assert_eq!(finished[0]["data"]["labels"]["buildnr"], "build17");
    u.wait_client_flag(
        "EnableItemCache",
        "development",
        true,
        Duration::from_secs(5),
    )
    .await
    .unwrap();

    // An action for another provider gets no reply at all.
    let mut scale = renotified(&ev);
    scale["data"]["action"] = json!({"name": "scale up", "action": "scale", "value": 1});
    bus.publish(&scale).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = bus.events();
    assert!(replies_to(&events, &scale["id"]).is_empty());
}
