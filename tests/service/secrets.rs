//! Secrets never leave the service and input cannot forge log lines: a Keptn API that echoes
//! the token, a password in KEPTN_API_ENDPOINT or NATS_URL, control characters in event fields.

use crate::common::{Fixture, Service, problem_open};
use serde_json::json;
use std::time::Duration;
use testkit::nats::NatsServer;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn a_keptn_api_echoing_the_token_and_a_password_in_its_url_leak_neither() {
    let keptn = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/api/resource-service/v1/project/website/stage/production/service/front-end/resource/remediation.yaml",
        ))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 400,
            "message": "invalid token s3cret-keptn-token for user keptn-user"
        })))
        .mount(&keptn)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/api/resource-service/v1/project/website/resource/shipyard.yaml",
        ))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"code": 404})))
        .mount(&keptn)
        .await;
    let endpoint = keptn
        .uri()
        .replace("http://", "http://keptn-user:s3cret-url-pass@")
        + "/api";
    let fx = Fixture::new(None, None).await;
    let svc = fx
        .service(&[
            ("KEPTN_API_ENDPOINT", &endpoint),
            ("KEPTN_API_TOKEN", "s3cret-keptn-token"),
            ("ROLES", "remediator"),
        ])
        .await;
    fx.bus.publish(&problem_open("Pass me", "echo")).await;
    let finished = fx
        .bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(10),
        )
        .await;
    let message = finished[0]["data"]["message"].as_str().unwrap();
    assert!(message.contains("answered 400"), "{message}");
    assert!(message.contains("invalid token ***"), "{message}");
    for event in fx.bus.events() {
        assert!(
            !event.to_string().contains("s3cret"),
            "a secret leaked: {event}"
        );
    }
    let log = svc.log();
    assert!(log.contains("answered 400"), "{log}");
    assert!(
        !log.contains("s3cret"),
        "a secret leaked into the log:\n{log}"
    );
}

#[tokio::test]
async fn credentials_in_nats_url_are_used_and_never_logged() {
    for (config, url_auth) in [
        (
            r#"authorization { user: remediator, password: "p@ss-s3cret" }"#,
            "remediator:p%40ss-s3cret@",
        ),
        (
            r#"authorization { token: "s3cret-token" }"#,
            "s3cret-token@",
        ),
    ] {
        let nats = NatsServer::start_with_config(config).unwrap();
        let url = nats.url().replace("nats://", &format!("nats://{url_auth}"));
        let dir = tempfile::tempdir().unwrap();
        let mut svc = Service::spawn(&[
            ("NATS_URL", url),
            ("RESOURCE_DIR", dir.path().display().to_string()),
            ("RUST_LOG", "debug".to_owned()),
        ]);
        svc.wait_ready().await;
        let log = svc.log();
        assert!(
            log.contains("async_nats"),
            "no debug log of the client:\n{log}"
        );
        assert!(log.contains("NATS connected"), "{log}");
        assert!(
            !log.contains("s3cret") && !log.contains("p%40ss"),
            "a secret leaked into the log:\n{log}"
        );
    }
}

#[tokio::test]
async fn control_characters_from_events_are_escaped_in_the_text_log() {
    let fx = Fixture::new(None, None).await;
    let svc = fx
        .service(&[("ROLES", "get-action"), ("LOG_FORMAT", "text")])
        .await;
    let mut ev = crate::common::vector("keptn-1.x/get-action.triggered-0.json");
    ev["id"] = json!(uuid::Uuid::new_v4().to_string());
    ev["data"]["service"] =
        json!("front-end\n2026-01-01T00:00:00.000000Z  INFO FORGED all is well\u{1b}[2J");
    fx.bus.publish(&ev).await;
    fx.bus
        .wait_for(
            "sh.keptn.event.get-action.finished",
            1,
            Duration::from_secs(10),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = svc.log();
    assert!(
        log.contains(r"front-end\n2026-01-01T00:00:00.000000Z  INFO FORGED all is well\u{1b}[2J"),
        "the field is not in the log, escaped:\n{log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01")),
        "a forged line:\n{log}"
    );
    assert!(!log.contains("\u{1b}[2J"), "a raw escape code:\n{log}");
}
