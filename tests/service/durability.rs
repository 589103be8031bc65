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
            r"^/api/admin/projects/default/features/EnableStaticContent/environments/production$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "name": "EnableStaticContent",
            "environment": "production",
            "enabled": true,
            "strategies": []
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

/// Kills the service of `m` with SIGKILL in the middle of its toggle (nothing finished yet),
/// starts a second one on the same settings and waits for the remediation.finished.
async fn kill_mid_toggle_and_restart(
    mut m: MidToggle,
) -> (MidToggle, Service, Vec<serde_json::Value>) {
    m.first.kill9();
    assert!(
        m.bus
            .of_type("sh.keptn.event.remediation.finished")
            .is_empty()
    );
    let mut second = Service::spawn(&m.env);
    second.wait_ready().await;
    let finished = m
        .bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(30),
        )
        .await;
    (m, second, finished)
}

#[tokio::test]
async fn sigkill_mid_remediation_then_restart_remediates_exactly_once() {
    let m = mid_toggle(Duration::from_secs(3), "durable-1").await;
    let (m, second, finished) = kill_mid_toggle_and_restart(m).await;
    let bus = &m.bus;
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

/// The steps of a remediation at which the process is stopped dead (`src/failpoint.rs`).
const CRASH_POINTS: [&str; 6] = [
    "after-claim",
    "after-triggered",
    "after-action-triggered",
    "after-toggle",
    "before-finish",
    "after-finish",
];

/// How many `remediation.finished` of the Keptn context `ctx` the service's stream (`keptn`)
/// holds.
async fn stored_finished(client: &async_nats::Client, ctx: &serde_json::Value) -> usize {
    use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
    use futures::StreamExt;
    let stream = async_nats::jetstream::new(client.clone())
        .get_stream("keptn")
        .await
        .expect("the service's stream");
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: "sh.keptn.event.remediation.finished".into(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("a consumer of the stream");
    let mut batch = consumer
        .fetch()
        .max_messages(1000)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .expect("a batch");
    let mut of_ctx = 0;
    while let Some(Ok(msg)) = batch.next().await {
        let event: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
        of_ctx += usize::from(event["shkeptncontext"] == *ctx);
    }
    of_ctx
}

/// How often Unleash recorded `flag` switched on in `production`: its own event log, which
/// records a change only when the state changed.
async fn times_switched_on(u: &testkit::unleash::UnleashServer, flag: &str) -> usize {
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/admin/events/{flag}", u.base_url()))
        .header("Authorization", u.admin_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no event list from Unleash: {body}"))
        .iter()
        .filter(|e| e["type"] == "feature-environment-enabled" && e["environment"] == "production")
        .count()
}

/// The process dies at each step of a JetStream remediation in turn, with a real Unleash; the
/// next process finishes it: exactly one switch of the flag and one `remediation.finished` (one
/// on the bus, or, for a crash just after it was sent, one id that the stream keeps once).
#[tokio::test]
async fn a_crash_at_any_step_ends_in_one_switch_and_one_finished_remediation() {
    use crate::common::{create_flag, unleash, unleash_env};
    let u = unleash();
    let nats = NatsServer::start().unwrap();
    let bus = Bus::connect(&nats.url()).await;
    for (i, point) in CRASH_POINTS.iter().enumerate() {
        let flag = format!("Crash{i}{}", uuid::Uuid::new_v4().simple());
        create_flag(&flag).await;
        let yaml = TOGGLE.replace("EnableStaticContent", &flag);
        let dir = resource_dir(Some(&yaml), None);
        let mut env = unleash_env(u);
        env.extend([
            ("NATS_URL", nats.url()),
            ("NATS_MODE", "jetstream".to_owned()),
            ("ACK_WAIT", "2s".to_owned()),
            ("RESOURCE_DIR", dir.path().display().to_string()),
        ]);
        let mut crashing = env.clone();
        crashing.push(("UNLEASH_REMEDIATION_FAILPOINT", point.to_string()));
        let mut first = Service::spawn(&crashing);
        first.wait_ready().await;
        let problem = format!("crash-{i}");
        let open = problem_open("Failure rate increase", &problem);
        let ctx = open["shkeptncontext"].clone();
        bus.publish(&open).await;
        let status = first.wait_exit(Duration::from_secs(20)).await;
        assert!(
            status.is_some_and(|s| !s.success()),
            "{point}: the process did not stop at its crash point ({status:?}); log:\n{}",
            first.log()
        );
        assert!(
            first.log().contains(&format!("failpoint {point} reached")),
            "{point}: {}",
            first.log()
        );

        let mut second = Service::spawn(&env);
        second.wait_ready().await;
        let of = |ty: &str| {
            bus.of_type(ty)
                .into_iter()
                .filter(|e| e["shkeptncontext"] == ctx)
                .collect::<Vec<_>>()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while of("sh.keptn.event.remediation.finished").is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "{point}: no remediation.finished after the restart; log:\n{}",
                second.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Redeliveries settle (ACK_WAIT is 2 s): nothing more may come.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let finished = of("sh.keptn.event.remediation.finished");
        let ids: std::collections::HashSet<_> = finished.iter().map(|e| e["id"].clone()).collect();
        assert_eq!(
            ids.len(),
            1,
            "{point}: one remediation.finished id: {finished:?}"
        );
        if *point == "after-finish" {
            // Sent before the crash, and again by the action run again after it, under its id.
            assert!(finished.len() <= 2, "{point}: {finished:?}");
        } else {
            assert_eq!(finished.len(), 1, "{point}: {finished:?}");
        }
        assert_eq!(
            stored_finished(&bus.client, &ctx).await,
            1,
            "{point}: the stream keeps one remediation.finished"
        );
        assert_eq!(
            finished[0]["data"]["result"], "pass",
            "{point}: {}",
            finished[0]
        );
        assert_eq!(
            times_switched_on(u, &flag).await,
            1,
            "{point}: the flag is switched exactly once"
        );
        u.wait_client_flag(&flag, "production", true, Duration::from_secs(5))
            .await
            .unwrap();
        second.terminate();
    }
}

/// Records the `Unleash-Remediation-Handled-By` header of every `action.triggered`.
async fn handled_by_marks(url: &str) -> std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>> {
    let client = async_nats::connect(url).await.expect("test NATS client");
    let mut sub = client
        .subscribe("sh.keptn.event.action.triggered")
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    let marks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = marks.clone();
    tokio::spawn(async move {
        use futures::StreamExt;
        let _client = client;
        while let Some(msg) = sub.next().await {
            let mark = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("Unleash-Remediation-Handled-By"))
                .map(|v| v.as_str().to_owned());
            sink.lock().unwrap().push(mark);
        }
    });
    marks
}

#[tokio::test]
async fn with_two_replicas_each_first_action_runs_once_in_the_process_that_opened_it() {
    let unleash = slow_unleash(Duration::ZERO).await;
    let nats = NatsServer::start().unwrap();
    let dir = resource_dir(Some(TOGGLE), None);
    let env = jetstream_env(&nats, &dir, &unleash);
    let mut a = Service::spawn(&env);
    let mut b = Service::spawn(&env);
    a.wait_ready().await;
    b.wait_ready().await;
    let marks = handled_by_marks(&nats.url()).await;
    let bus = Bus::connect(&nats.url()).await;
    const N: usize = 8;
    for i in 0..N {
        bus.publish(&problem_open(
            "Failure rate increase",
            &format!("replicas-{i}"),
        ))
        .await;
    }
    let finished = bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            N,
            Duration::from_secs(30),
        )
        .await;
    assert!(
        finished.iter().all(|f| f["data"]["result"] == "pass"),
        "{finished:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Every action ran once, although both replicas consume action.triggered.
    assert_eq!(bus.of_type("sh.keptn.event.action.triggered").len(), N);
    assert_eq!(bus.of_type("sh.keptn.event.action.started").len(), N);
    assert_eq!(bus.of_type("sh.keptn.event.action.finished").len(), N);
    assert_eq!(bus.of_type("sh.keptn.event.remediation.finished").len(), N);
    // Each was marked with the group, and the group's consumers passed over the marked
    // action.triggered and action.finished: none was handled a second time.
    let marks = marks.lock().unwrap().clone();
    assert_eq!(marks.len(), N);
    assert!(
        marks
            .iter()
            .all(|m| m.as_deref() == Some("unleash-remediation-service")),
        "{marks:?}"
    );
    let mut skipped = 0.0;
    let mut received = 0.0;
    for svc in [&a, &b] {
        let (_, metrics) = svc.get("/metrics").await;
        skipped += crate::common::metric_sum(&metrics, "events_skipped_total", "handled_by_sender");
        received += crate::common::metric_sum(
            &metrics,
            "events_received_total",
            "type=\"action.triggered\"",
        );
    }
    assert_eq!(skipped, (2 * N) as f64, "marked events passed over");
    assert_eq!(received, N as f64, "action.triggered handled");
}

#[tokio::test]
async fn a_process_killed_mid_action_has_the_redelivered_problem_run_it_again_and_send_nothing_twice()
 {
    let m = mid_toggle(Duration::from_secs(3), "run-again-1").await;
    let (m, second, finished) = kill_mid_toggle_and_restart(m).await;
    let bus = &m.bus;
    assert_eq!(finished[0]["data"]["result"], "pass", "{}", second.log());
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The action ran again from the redelivered OPEN, under the id it had; nothing that came
    // before it was sent again.
    for (ty, count) in [
        ("remediation.triggered", 1),
        ("remediation.status.changed", 1),
        ("action.triggered", 1),
        ("action.started", 2),
        ("action.finished", 1),
        ("remediation.finished", 1),
    ] {
        assert_eq!(
            bus.of_type(&format!("sh.keptn.event.{ty}")).len(),
            count,
            "{ty}; log:\n{}",
            second.log()
        );
    }
    let (_, metrics) = second.get("/metrics").await;
    assert_eq!(
        crate::common::metric_sum(&metrics, "actions_run_again_total", ""),
        1.0,
        "{metrics}"
    );
}
