//! Each row of the remediator's outcome table (docs/design.md §4), with a foreign action answered
//! by the test itself acting as another provider on the bus.

use crate::common::{Bus, Fixture, Service, problem_open, renotified, resource_dir};
use crate::common::{FOREIGN, spawn_responder};
use serde_json::{Value, json};
use std::time::Duration;
use testkit::nats::NatsServer;

fn finished_for<'a>(events: &'a [Value], triggered_id: &Value) -> Option<&'a Value> {
    events.iter().find(|e| {
        e["type"] == "sh.keptn.event.remediation.finished" && e["triggeredid"] == *triggered_id
    })
}

/// Publishes a problem and returns its remediation.finished.
async fn remediate(bus: &Bus, title: &str) -> Value {
    let problem = problem_open(title, &uuid::Uuid::new_v4().to_string());
    let ctx = problem["shkeptncontext"].clone();
    bus.publish(&problem).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let events = bus.events();
        let triggered = events.iter().find(|e| {
            e["type"] == "sh.keptn.event.remediation.triggered" && e["shkeptncontext"] == ctx
        });
        if let Some(f) = triggered.and_then(|t| finished_for(&events, &t["id"])) {
            return f.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no remediation.finished for {title:?}; events: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcome_table_rows_for_actions() {
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let _svc = fx
        .in_process(&["--action-timeout=1s", "--roles=remediator"])
        .await;
    let bus = &fx.bus;
    spawn_responder(bus);

    let pass = remediate(bus, "Pass me").await;
    assert_eq!(pass["data"]["status"], "succeeded");
    assert_eq!(pass["data"]["result"], "pass");
    assert!(
        pass["data"]["message"]
            .as_str()
            .unwrap()
            .contains("call the on-call"),
        "{pass}"
    );

    let fail = remediate(bus, "Fail me").await;
    assert_eq!(fail["data"]["status"], "errored");
    assert_eq!(fail["data"]["result"], "fail");
    let msg = fail["data"]["message"].as_str().unwrap();
    assert!(
        msg.contains("second try") && msg.contains("pager is down"),
        "{msg}"
    );

    let escalated = remediate(bus, "Fail then pass").await;
    assert_eq!(escalated["data"]["result"], "pass", "{escalated}");
    assert!(
        escalated["data"]["message"]
            .as_str()
            .unwrap()
            .contains("second try")
    );

    let timeout = remediate(bus, "Nobody answers").await;
    assert_eq!(timeout["data"]["status"], "errored");
    assert!(
        timeout["data"]["message"]
            .as_str()
            .unwrap()
            .contains("did not finish within"),
        "{timeout}"
    );

    let none = remediate(bus, "Something nobody planned for").await;
    assert_eq!(none["data"]["status"], "succeeded");
    assert_eq!(none["data"]["result"], "fail");
    assert!(
        none["data"]["message"]
            .as_str()
            .unwrap()
            .contains("no remediation action")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_is_reported_in_order_with_links() {
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let _svc = fx.in_process(&[]).await;
    let bus = &fx.bus;
    spawn_responder(bus);
    let finished = remediate(bus, "Fail then pass").await;
    let ctx = finished["shkeptncontext"].clone();
    let ours: Vec<Value> = bus
        .events()
        .into_iter()
        .filter(|e| e["shkeptncontext"] == ctx && e["source"] == "unleash-remediation-service")
        .collect();
    let types: Vec<&str> = ours.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "sh.keptn.event.remediation.triggered",
            "sh.keptn.event.remediation.status.changed",
            "sh.keptn.event.action.triggered",
            "sh.keptn.event.remediation.status.changed",
            "sh.keptn.event.action.triggered",
            "sh.keptn.event.remediation.finished",
        ]
    );
    let rid = &ours[0]["id"];
    for e in &ours[1..] {
        assert_eq!(&e["triggeredid"], rid, "{e}");
        assert_eq!(e["shkeptnspecversion"], "0.2.4");
    }
    assert_eq!(ours[1]["data"]["remediation"]["actionIndex"], 0);
    assert_eq!(ours[3]["data"]["remediation"]["actionIndex"], 1);
    assert_eq!(ours[0]["data"]["problem"]["ProblemTitle"], "Fail then pass");
}

async fn assert_finished_errored(remediation: Option<&str>, expect: &str) {
    let fx = Fixture::new(remediation, None).await;
    let _svc = fx.in_process(&[]).await;
    let finished = remediate(&fx.bus, "Failure rate increase").await;
    assert_eq!(finished["data"]["status"], "errored");
    assert_eq!(finished["data"]["result"], "fail");
    let msg = finished["data"]["message"].as_str().unwrap();
    assert!(
        msg.contains(expect),
        "message {msg:?} should contain {expect:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_remediation_file_finishes_errored() {
    assert_finished_errored(None, "no remediation.yaml found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_remediation_file_finishes_errored_naming_the_line() {
    let broken = "apiVersion: spec.keptn.sh/0.1.4\nkind: Remediation\nspec:\n  remediations: [\n";
    assert_finished_errored(Some(broken), "remediation.yaml").await;
}

#[tokio::test]
async fn stage_disabled_by_shipyard_sends_nothing() {
    let shipyard = "stages:\n  - name: production\n    remediation_strategy: manual\n";
    let fx = Fixture::new(Some(FOREIGN), Some(shipyard)).await;
    let svc = fx.service(&[]).await;
    let bus = &fx.bus;
    bus.publish(&problem_open("Pass me", "disabled-1")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ours: Vec<Value> = bus
        .events()
        .into_iter()
        .filter(|e| e["source"] == "unleash-remediation-service")
        .collect();
    assert!(ours.is_empty(), "expected no events, got {ours:#?}");
    assert!(svc.log().contains("not enabled"), "log: {}", svc.log());
}

#[tokio::test]
async fn sequence_triggers_start_remediations_only_when_accepted() {
    let remediation = FOREIGN.replace("problemType: Pass me", "problemType: response_time_p90");
    let nats = NatsServer::start().unwrap();
    let dir = resource_dir(Some(&remediation), None);
    let trigger = crate::common::vector("prometheus-service/trigger_remediation.json");
    for accept in [false, true] {
        let mut svc = Service::spawn(&[
            ("NATS_URL", nats.url()),
            ("RESOURCE_DIR", dir.path().display().to_string()),
            ("ROLES", "remediator".into()),
            ("ACCEPT_REMEDIATION_SEQUENCES", accept.to_string()),
        ]);
        svc.wait_ready().await;
        let bus = Bus::connect(&nats.url()).await;
        spawn_responder(&bus);
        let mut ev = renotified(&trigger);
        ev["shkeptncontext"] = json!(uuid::Uuid::new_v4().to_string());
        bus.publish(&ev).await;
        if accept {
            let finished = bus
                .wait_for(
                    "sh.keptn.event.remediation.finished",
                    1,
                    Duration::from_secs(10),
                )
                .await;
            assert_eq!(finished[0]["data"]["result"], "pass", "{}", finished[0]);
            assert_eq!(finished[0]["data"]["project"], "sockshop");
        } else {
            tokio::time::sleep(Duration::from_millis(800)).await;
            assert!(
                bus.of_type("sh.keptn.event.remediation.triggered")
                    .is_empty()
            );
        }
    }
}
