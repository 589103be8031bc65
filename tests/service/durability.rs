//! JetStream durability: a process killed or stopped in the middle of a remediation loses
//! nothing, and the problem is remediated exactly once after a restart.

use crate::common::{Bus, Service, problem_open, resource_dir};
use serde_json::json;
use std::time::Duration;
use testkit::nats::NatsServer;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOGGLE: &str = r#"apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata:
  name: durable
spec:
  remediations:
    - problemType: Failure rate increase
      actionsOnOpen:
        - name: static content
          action: toggle-feature
          value:
            EnableStaticContent: "on"
"#;

/// An Unleash whose toggle takes `delay`, long enough to stop the service in the middle.
async fn slow_unleash(delay: Duration) -> MockServer {
    let unleash = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/api/admin/projects/default/features/EnableStaticContent/environments/production/on$"))
        .respond_with(ResponseTemplate::new(200).set_delay(delay))
        .mount(&unleash)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(
            r"^/api/admin/projects/default/features/EnableStaticContent$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "name": "EnableStaticContent",
            "environments": [{"name": "production", "enabled": true}]
        })))
        .mount(&unleash)
        .await;
    unleash
}

fn jetstream_env(
    nats: &NatsServer,
    dir: &tempfile::TempDir,
    unleash: &MockServer,
) -> Vec<(&'static str, String)> {
    vec![
        ("NATS_URL", nats.url()),
        ("NATS_MODE", "jetstream".to_owned()),
        ("ACK_WAIT", "2s".to_owned()),
        ("RESOURCE_DIR", dir.path().display().to_string()),
        ("UNLEASH_SERVER_URL", format!("{}/api", unleash.uri())),
        ("UNLEASH_TOKEN", "test-admin-token".to_owned()),
        ("UNLEASH_API", "v4".to_owned()),
        ("UNLEASH_TIMEOUT", "10s".to_owned()),
    ]
}

/// A JetStream-mode service in the middle of a slow toggle for problem `id`: the action has
/// started and Unleash has not answered yet.
struct MidToggle {
    _unleash: MockServer,
    _nats: NatsServer,
    _dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    first: Service,
    bus: Bus,
}

async fn mid_toggle(delay: Duration, id: &str) -> MidToggle {
    let unleash = slow_unleash(delay).await;
    let nats = NatsServer::start().unwrap();
    let dir = resource_dir(Some(TOGGLE), None);
    let env = jetstream_env(&nats, &dir, &unleash);
    let mut first = Service::spawn(&env);
    first.wait_ready().await;
    let bus = Bus::connect(&nats.url()).await;
    bus.publish(&problem_open("Failure rate increase", id))
        .await;
    bus.wait_for("sh.keptn.event.action.started", 1, Duration::from_secs(10))
        .await;
    MidToggle {
        _unleash: unleash,
        _nats: nats,
        _dir: dir,
        env,
        first,
        bus,
    }
}

#[tokio::test]
async fn sigkill_mid_remediation_then_restart_remediates_exactly_once() {
    let mut m = mid_toggle(Duration::from_secs(3), "durable-1").await;
    let (env, bus) = (m.env.clone(), m.bus.clone());
    m.first.kill9();
    assert!(
        bus.of_type("sh.keptn.event.remediation.finished")
            .is_empty()
    );

    let mut second = Service::spawn(&env);
    second.wait_ready().await;
    let finished = bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        finished[0]["data"]["result"],
        "pass",
        "{}\n{}",
        finished[0],
        second.log()
    );
    // Nothing more comes: exactly one remediation.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(bus.of_type("sh.keptn.event.remediation.triggered").len(), 1);
    assert_eq!(bus.of_type("sh.keptn.event.remediation.finished").len(), 1);
}

#[tokio::test]
async fn sigterm_finishes_the_action_in_flight_and_a_restart_completes_the_remediation() {
    let mut m = mid_toggle(Duration::from_secs(2), "graceful-1").await;
    let (env, bus) = (m.env.clone(), m.bus.clone());
    // Stopped while the toggle is under way: the toggle finishes and is reported before exit.
    let status = m.first.terminate();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        m.first.log()
    );
    let finished = bus
        .wait_for("sh.keptn.event.action.finished", 1, Duration::from_secs(2))
        .await;
    assert_eq!(finished[0]["data"]["result"], "pass");

    // The action.finished waits in the stream for the remediator; the next start picks it up.
    let mut second = Service::spawn(&env);
    second.wait_ready().await;
    let done = bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(done[0]["data"]["result"], "pass", "{}", second.log());
    assert_eq!(bus.of_type("sh.keptn.event.remediation.triggered").len(), 1);
    assert_eq!(bus.of_type("sh.keptn.event.action.started").len(), 1);
}

#[tokio::test]
async fn action_timeout_survives_a_restart() {
    let fx = crate::common::Fixture::new(Some(crate::common::FOREIGN), None).await;
    let env = fx.env(&[
        ("NATS_MODE", "jetstream"),
        ("ACTION_TIMEOUT", "3s"),
        ("ROLES", "remediator"),
    ]);
    let mut first = Service::spawn(&env);
    first.wait_ready().await;
    fx.bus
        .publish(&problem_open("Nobody answers", "timeout-after-restart"))
        .await;
    fx.bus
        .wait_for(
            "sh.keptn.event.action.triggered",
            1,
            Duration::from_secs(10),
        )
        .await;
    // The process that armed the timer dies; the deadline lives in the state bucket.
    first.kill9();
    let mut second = Service::spawn(&env);
    second.wait_ready().await;
    let finished = fx
        .bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(finished[0]["data"]["status"], "errored", "{}", finished[0]);
    let message = finished[0]["data"]["message"].as_str().unwrap();
    assert!(message.contains("did not finish within"), "{message}");
    assert!(
        second.log().contains("re-armed timeouts"),
        "{}",
        second.log()
    );
}
