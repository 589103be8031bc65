//! A CLOSED that arrives while the open action is still switching its flag (Unleash answered
//! 503 and the toggle is being retried): the close wins, and the remediation ends with one
//! `remediation.finished`.

use crate::common::{Fixture, closing, problem_open};
use serde_json::json;
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FLAG_ON_THEN_OFF: &str = r#"apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata:
  name: close-wins
spec:
  remediations:
    - problemType: Failure rate increase
      actionsOnOpen:
        - name: static content
          action: toggle-feature
          value:
            EnableStaticContent: "on"
      actionsOnClose:
        - name: back to dynamic
          action: toggle-feature
          value:
            EnableStaticContent: "off"
"#;

const ON: &str =
    r"^/api/admin/projects/default/features/EnableStaticContent/environments/production/on$";
const OFF: &str =
    r"^/api/admin/projects/default/features/EnableStaticContent/environments/production/off$";

/// The toggles Unleash received, in order: "on" or "off".
async fn toggles(unleash: &MockServer) -> Vec<String> {
    unleash
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| r.url.path().rsplit('/').next().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn a_close_during_a_retried_toggle_leaves_the_flag_off_and_finishes_once() {
    let unleash = MockServer::start().await;
    // The first "on" fails (503, retried), the retry takes 2 s: the CLOSED arrives meanwhile.
    Mock::given(method("POST"))
        .and(path_regex(ON))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&unleash)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(ON))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .with_priority(2)
        .mount(&unleash)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(OFF))
        .respond_with(ResponseTemplate::new(200))
        .mount(&unleash)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(
            r"^/api/admin/projects/default/features/EnableStaticContent/environments/production$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "name": "EnableStaticContent",
            "environment": "production",
            "enabled": false,
            "strategies": []
        })))
        .mount(&unleash)
        .await;

    let fx = Fixture::new(Some(FLAG_ON_THEN_OFF), None).await;
    let url = format!("{}/api", unleash.uri());
    let svc = fx
        .service(&[
            ("UNLEASH_SERVER_URL", &url),
            ("UNLEASH_API", "v4"),
            ("UNLEASH_TIMEOUT", "10s"),
        ])
        .await;
    let open = problem_open("Failure rate increase", "close-wins-1");
    fx.bus.publish(&open).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while toggles(&unleash).await.is_empty() {
        assert!(Instant::now() < deadline, "no toggle reached Unleash");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Unleash has answered 503 to the first "on"; the toggle is being retried.
    fx.bus.publish(&closing(&open, "CLOSED")).await;

    let finished = fx
        .bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(15),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while toggles(&unleash).await.last().map(String::as_str) != Some("off") {
        assert!(
            Instant::now() < deadline,
            "the flag was left on: toggles {:?}\n{}",
            toggles(&unleash).await,
            svc.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        toggles(&unleash).await,
        ["on", "on", "off"],
        "the close runs after the retried open toggle"
    );
    assert_eq!(
        fx.bus.of_type("sh.keptn.event.remediation.finished").len(),
        1,
        "{}",
        finished[0]
    );
}
