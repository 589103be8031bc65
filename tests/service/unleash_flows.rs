//! Flows that switch flags in a real Unleash 7.5.1; the tutorial flow also on 8.2.0.

use crate::common::{Bus, Service, closing, problem_open, renotified, resource_dir, vector};
use crate::common::{create_flag, create_flag_in, unleash, unleash_env, unleash_of};
use serde_json::Value;
use std::time::Duration;
use testkit::nats::NatsServer;
use testkit::unleash::{UnleashServer, UnleashVersion};

fn types_in(bus: &Bus, ctx: &Value) -> Vec<String> {
    bus.events()
        .iter()
        .filter(|e| e["shkeptncontext"] == *ctx && e["source"] == "unleash-remediation-service")
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn tutorial_problem_turns_enable_static_content_on() {
    let u = unleash();
    tutorial_problem(u, unleash_env(u)).await;
}

/// Unleash 8.2.0, with a personal access token: what 8.x recommends instead of admin tokens.
#[tokio::test]
async fn tutorial_problem_turns_enable_static_content_on_in_unleash_8_with_a_pat() {
    let u = unleash_of(UnleashVersion::V8);
    let pat = u.create_personal_access_token().await.unwrap();
    let env = vec![("UNLEASH_SERVER_URL", u.base_url()), ("UNLEASH_TOKEN", pat)];
    tutorial_problem(u, env).await;
}

async fn tutorial_problem(u: &UnleashServer, mut env: Vec<(&'static str, String)>) {
    create_flag_in(u, "EnableStaticContent").await;
    let nats = NatsServer::start().unwrap();
    env.push(("NATS_URL", nats.url()));
    env.push(("RESOURCE_DIR", env!("CARGO_MANIFEST_DIR").to_owned()));
    let mut svc = Service::spawn(&env);
    svc.wait_ready().await;
    let bus = Bus::connect(&nats.url()).await;

    let problem = vector("tutorial/problemopen.json");
    bus.publish(&problem).await;
    let finished = bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(
        types_in(&bus, &problem["shkeptncontext"]),
        [
            "sh.keptn.event.remediation.triggered",
            "sh.keptn.event.remediation.status.changed",
            "sh.keptn.event.action.triggered",
            "sh.keptn.event.action.started",
            "sh.keptn.event.action.finished",
            "sh.keptn.event.remediation.finished",
        ],
        "log:\n{}",
        svc.log()
    );
    let triggered = &bus.of_type("sh.keptn.event.remediation.triggered")[0];
    assert_eq!(triggered["triggeredid"], problem["id"]);
    assert_eq!(triggered["data"]["problem"]["PID"], "-4349221618435898381");
    assert_eq!(
        finished[0]["data"]["status"], "succeeded",
        "{}",
        finished[0]
    );
    assert_eq!(finished[0]["data"]["result"], "pass");
    assert_eq!(finished[0]["triggeredid"], triggered["id"]);
    assert!(
        finished[0]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("EnableStaticContent")
    );
    u.wait_client_flag(
        "EnableStaticContent",
        "production",
        true,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
}

fn toggle_remediation(first: &str, second: &str) -> String {
    format!(
        r#"apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata:
  name: escalation
spec:
  remediations:
    - problemType: Failure rate increase
      actionsOnOpen:
        - name: flag that does not exist
          action: toggle-feature
          value:
            {first}: "on"
        - name: the real flag
          action: toggle-feature
          value:
            {second}: on
      actionsOnClose:
        - name: switch back
          action: toggle-feature
          value:
            {second}: off
"#
    )
}

#[tokio::test]
async fn escalation_moves_to_the_next_action_when_a_flag_is_missing() {
    let u = unleash();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (missing, real) = (format!("Missing-{suffix}"), format!("Real-{suffix}"));
    create_flag(&real).await;
    let nats = NatsServer::start().unwrap();
    let dir = resource_dir(Some(&toggle_remediation(&missing, &real)), None);
    let mut env = unleash_env(u);
    env.push(("NATS_URL", nats.url()));
    env.push(("RESOURCE_DIR", dir.path().display().to_string()));
    let mut svc = Service::spawn(&env);
    svc.wait_ready().await;
    let bus = Bus::connect(&nats.url()).await;

    let open = problem_open("Failure rate increase", &suffix);
    bus.publish(&open).await;
    let finished = bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(finished[0]["data"]["result"], "pass", "{}", finished[0]);
    let actions = bus.of_type("sh.keptn.event.action.finished");
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[0]["data"]["status"], "errored");
    assert!(
        actions[0]["data"]["message"]
            .as_str()
            .unwrap()
            .contains(&missing)
    );
    assert_eq!(actions[1]["data"]["result"], "pass");
    u.wait_client_flag(&real, "production", true, Duration::from_secs(5))
        .await
        .unwrap();

    // Closing the problem runs actionsOnClose: the flag goes back off.
    let closed = closing(&open, "RESOLVED");
    bus.publish(&closed).await;
    u.wait_client_flag(&real, "production", false, Duration::from_secs(10))
        .await
        .unwrap();
}

#[tokio::test]
async fn hundred_identical_opens_toggle_once() {
    let u = unleash();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let flag = format!("Storm-{suffix}");
    create_flag(&flag).await;
    let nats = NatsServer::start().unwrap();
    let dir = resource_dir(Some(&toggle_remediation(&flag, &flag)), None);
    let mut env = unleash_env(u);
    env.push(("NATS_URL", nats.url()));
    env.push(("RESOURCE_DIR", dir.path().display().to_string()));
    let mut svc = Service::spawn(&env);
    svc.wait_ready().await;
    let bus = Bus::connect(&nats.url()).await;
    let open = problem_open("Failure rate increase", &suffix);
    for _ in 0..100 {
        let p = renotified(&open);
        bus.publish(&p).await;
    }
    bus.wait_for(
        "sh.keptn.event.remediation.finished",
        1,
        Duration::from_secs(20),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(bus.of_type("sh.keptn.event.remediation.triggered").len(), 1);
    assert_eq!(
        bus.of_type("sh.keptn.event.action.started").len(),
        1,
        "one toggle"
    );
    u.wait_client_flag(&flag, "production", true, Duration::from_secs(5))
        .await
        .unwrap();
}
