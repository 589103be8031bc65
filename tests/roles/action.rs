//! The action role (the Unleash toggle-feature provider) on keptn-contrib/unleash-service's own
//! `action.triggered` test event, against a real Unleash 7.5.1 and 8.2.0 (`<test>::v7`,
//! `<test>::v8`). Events go through the wire
//! format: JSON bytes → `keptn::decode_bytes` → the role → the collected CloudEvents.

use cloudevents::{AttributesReader, Data, Event};
use serde_json::{Value, json};
use std::time::Duration;
use testkit::unleash::{UnleashServer, UnleashVersion};
use unleash_remediation_service::bus::Collector;
use unleash_remediation_service::keptn::{self, EventFactory, Incoming, Kind, types};
use unleash_remediation_service::roles::action::ActionRole;
use unleash_remediation_service::unleash::UnleashClient;

const VECTOR: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/unleash-service/action_triggered.json"
));

fn server(version: UnleashVersion) -> &'static UnleashServer {
    UnleashServer::shared(version).unwrap_or_else(|e| panic!("{e:#}"))
}

/// `<name>::v7` and `<name>::v8`: the test `async fn <name>(UnleashVersion)` on each server.
macro_rules! on_v7_and_v8 {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::UnleashVersion;
            #[tokio::test]
            async fn v7() {
                super::$name(UnleashVersion::V7).await
            }
            #[tokio::test]
            async fn v8() {
                super::$name(UnleashVersion::V8).await
            }
        }
    )*};
}

on_v7_and_v8!(
    the_unleash_service_vector_switches_the_flag_and_reports_pass,
    without_a_configured_environment_the_stage_is_the_environment,
    a_stage_unleash_does_not_know_is_errored_with_the_reason,
    the_keptn_06_featuretoggle_action_with_a_string_value,
    other_actions_get_no_reply_at_all,
    malformed_values_are_errored_with_a_clear_message,
    one_good_and_one_missing_flag_names_both_and_switches_the_good_one,
    a_wrong_token_is_reported_once_and_the_rest_skipped,
);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn role(version: UnleashVersion, environment: Option<&str>) -> ActionRole {
    let client = UnleashClient::new(server(version).admin_config()).unwrap();
    ActionRole::new(
        client,
        EventFactory::new("unleash-remediation-service"),
        environment.map(str::to_owned),
    )
}

/// The vector with `edit` applied to its JSON, decoded the way the transports decode.
fn triggered(edit: impl FnOnce(&mut Value)) -> Incoming {
    let mut v: Value = serde_json::from_str(VECTOR).unwrap();
    edit(&mut v);
    keptn::decode_bytes(&serde_json::to_vec(&v).unwrap()).expect("decodes")
}

/// The vector with its action value replaced.
fn with_value(value: Value) -> Incoming {
    triggered(|v| v["data"]["action"]["value"] = value)
}

async fn run(role: &ActionRole, incoming: &Incoming) -> Vec<Event> {
    let Kind::ActionTriggered(ev) = &incoming.kind else {
        panic!("not an action.triggered: {:?}", incoming.kind)
    };
    let out = Collector::new();
    role.handle(&incoming.meta, ev, &out).await.unwrap();
    out.events()
}

fn data(e: &Event) -> Value {
    match e.data() {
        Some(Data::Json(v)) => v.clone(),
        other => panic!("data is not JSON: {other:?}"),
    }
}

fn ext(e: &Event, name: &str) -> String {
    e.extension(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_string()
}

/// Exactly started then finished, both replies to `incoming`; returns the finished data.
fn started_then_finished(incoming: &Incoming, events: &[Event]) -> Value {
    let types: Vec<&str> = events.iter().map(|e| e.ty()).collect();
    assert_eq!(types, [types::ACTION_STARTED, types::ACTION_FINISHED]);
    for e in events {
        assert_eq!(ext(e, "triggeredid"), incoming.meta.id);
        assert_eq!(
            Some(ext(e, "shkeptncontext")),
            incoming.meta.keptn_context.clone()
        );
        assert_eq!(
            Some(ext(e, "gitcommitid")),
            incoming.meta.git_commit_id.clone()
        );
        assert_eq!(e.source().to_string(), "unleash-remediation-service");
    }
    data(&events[1])
}

async fn the_unleash_service_vector_switches_the_flag_and_reports_pass(version: UnleashVersion) {
    let s = server(version);
    let flag = unique("EnableItemCache");
    UnleashClient::new(s.admin_config())
        .unwrap()
        .create_flag(&flag)
        .await
        .unwrap();
    // The vector's stage is "staging", which a fresh Unleash does not have:
    // UNLEASH_ENVIRONMENT names the environment, as an operator would configure it.
    let incoming = with_value(json!({ flag.clone(): "on" }));
    assert_eq!(incoming.meta.id, "6f14d952-3729-4605-915f-12ff84f0e5f1");
    let events = run(&role(version, Some("development")), &incoming).await;

    let started = data(&events[0]);
    let finished = started_then_finished(&incoming, &events);
    for d in [&started, &finished] {
        assert_eq!(d["project"], "sockshop");
        assert_eq!(d["stage"], "staging");
        assert_eq!(d["service"], "carts");
        assert_eq!(d["labels"]["buildnr"], "build17");
    }
    assert_eq!(
        ext(&events[0], "shkeptncontext"),
        "cdba1c70-e3e7-441d-8115-e6c9c2d6477b"
    );
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["result"], "pass", "{finished}");
    assert_eq!(finished["message"], format!("{flag}: on (confirmed)"));
    s.wait_client_flag(&flag, "development", true, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(!s.client_flag_enabled(&flag, "production").await.unwrap());
}

async fn without_a_configured_environment_the_stage_is_the_environment(version: UnleashVersion) {
    let s = server(version);
    let on = unique("StageOn");
    let off = unique("StageOff");
    let c = UnleashClient::new(s.admin_config()).unwrap();
    for f in [&on, &off] {
        c.create_flag(f).await.unwrap();
    }
    c.set_flag(&off, "production", true).await.unwrap();

    let incoming = triggered(|v| {
        v["data"]["stage"] = json!("production");
        v["data"]["action"]["value"] = json!({ on.clone(): "ON", off.clone(): false });
    });
    let events = run(&role(version, None), &incoming).await;
    let finished = started_then_finished(&incoming, &events);
    assert_eq!(finished["result"], "pass", "{finished}");
    // Reported in the order written.
    assert_eq!(
        finished["message"],
        format!("{on}: on (confirmed); {off}: off (confirmed)")
    );
    s.wait_client_flag(&on, "production", true, Duration::from_secs(5))
        .await
        .unwrap();
    s.wait_client_flag(&off, "production", false, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(!s.client_flag_enabled(&on, "development").await.unwrap());
}

async fn a_stage_unleash_does_not_know_is_errored_with_the_reason(version: UnleashVersion) {
    let s = server(version);
    let flag = unique("UnknownStage");
    UnleashClient::new(s.admin_config())
        .unwrap()
        .create_flag(&flag)
        .await
        .unwrap();
    let incoming = with_value(json!({ flag.clone(): "on" })); // stage "staging"
    let events = run(&role(version, None), &incoming).await;
    let finished = started_then_finished(&incoming, &events);
    assert_eq!(finished["status"], "errored");
    assert_eq!(finished["result"], "fail");
    let message = finished["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "{flag}: failed to switch on: Unleash has no environment \"staging\" in project \"default\" (404)"
        )),
        "{message}"
    );
}

async fn the_keptn_06_featuretoggle_action_with_a_string_value(version: UnleashVersion) {
    let s = server(version);
    let flag = unique("EnableStaticContent");
    UnleashClient::new(s.admin_config())
        .unwrap()
        .create_flag(&flag)
        .await
        .unwrap();
    let incoming = triggered(|v| {
        v["data"]["action"]["action"] = json!("featuretoggle");
        v["data"]["action"]["value"] = json!(format!("{flag}:on"));
    });
    let events = run(&role(version, Some("development")), &incoming).await;
    let finished = started_then_finished(&incoming, &events);
    assert_eq!(finished["result"], "pass", "{finished}");
    s.wait_client_flag(&flag, "development", true, Duration::from_secs(5))
        .await
        .unwrap();
}

async fn other_actions_get_no_reply_at_all(version: UnleashVersion) {
    for action in ["scale", "restart-pod", "toggle"] {
        let incoming = triggered(|v| {
            v["data"]["action"]["action"] = json!(action);
            v["data"]["action"]["value"] = json!({"replicas": 3});
        });
        let events = run(&role(version, Some("development")), &incoming).await;
        assert!(events.is_empty(), "{action}: {events:?}");
    }
}

async fn malformed_values_are_errored_with_a_clear_message(version: UnleashVersion) {
    let role = role(version, Some("development"));
    let cases = [
        (json!(null), "missing (null)"),
        (json!(42), "the number 42"),
        (json!(["EnableItemCache"]), "a list"),
        (
            json!("Flag"),
            r#""Flag" names no state: write "Flag:on" or "Flag:off""#,
        ),
        (
            json!("Flag:maybe"),
            r#"flag "Flag": state "maybe" is not "on" or "off""#,
        ),
        (
            json!({"F": "sideways"}),
            r#"flag "F": state "sideways" is not "on" or "off""#,
        ),
        (json!({}), "the map is empty"),
        (json!({"bad name": "on"}), r#"invalid flag name "bad name""#),
    ];
    for (value, needle) in cases {
        let incoming = with_value(value.clone());
        let events = run(&role, &incoming).await;
        let finished = started_then_finished(&incoming, &events);
        assert_eq!(finished["status"], "errored", "{value}");
        assert_eq!(finished["result"], "fail", "{value}");
        let message = finished["message"].as_str().unwrap();
        assert!(
            message.starts_with("invalid toggle-feature value: "),
            "{value}: {message}"
        );
        assert!(message.contains(needle), "{value}: {message}");
    }
}

async fn one_good_and_one_missing_flag_names_both_and_switches_the_good_one(
    version: UnleashVersion,
) {
    let s = server(version);
    let good = unique("EnableStaticContent");
    let missing = unique("EnablePromotion");
    UnleashClient::new(s.admin_config())
        .unwrap()
        .create_flag(&good)
        .await
        .unwrap();
    // The missing flag first: it must not stop the good one.
    let incoming = with_value(json!({ missing.clone(): "off", good.clone(): "on" }));
    let events = run(&role(version, Some("development")), &incoming).await;
    let finished = started_then_finished(&incoming, &events);
    assert_eq!(finished["status"], "errored");
    assert_eq!(finished["result"], "fail");
    assert_eq!(
        finished["message"],
        format!(
            "{missing}: failed to switch off: Unleash has no flag \"{missing}\" in project \"default\" (404); {good}: on (confirmed)"
        )
    );
    s.wait_client_flag(&good, "development", true, Duration::from_secs(5))
        .await
        .unwrap();
}

async fn a_wrong_token_is_reported_once_and_the_rest_skipped(version: UnleashVersion) {
    let s = server(version);
    let a = unique("TokenA");
    let b = unique("TokenB");
    let mut config = s.admin_config();
    config.token = unleash_remediation_service::config::Secret::new("*:*.not-a-real-token");
    let role = ActionRole::new(
        UnleashClient::new(config).unwrap(),
        EventFactory::new("unleash-remediation-service"),
        Some("development".into()),
    );
    let incoming = with_value(json!({ a.clone(): "on", b.clone(): "on" }));
    let events = run(&role, &incoming).await;
    let finished = started_then_finished(&incoming, &events);
    assert_eq!(finished["result"], "fail");
    let message = finished["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!(
            "{a}: failed to switch on: Unleash rejected the token (401): wrong or expired token; {b}: not switched on ({a} failed the same way)"
        )
    );
    assert!(!message.contains("not-a-real-token"));
}
