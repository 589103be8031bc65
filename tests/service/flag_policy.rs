//! Which flags may be switched (ALLOWED_FLAGS) and dry runs (DRY_RUN), against a real
//! Unleash 7.5.1.

use crate::common::toggle_triggered;
use crate::common::{Fixture, problem_open};
use crate::common::{create_flag, unleash, unleash_env};
use serde_json::json;
use std::time::Duration;
use unleash_remediation_service::unleash::UnleashClient;

async fn flag_on(flag: &str) -> bool {
    UnleashClient::new(unleash().admin_config())
        .unwrap()
        .flag_enabled(flag, "production")
        .await
        .unwrap()
}

#[tokio::test]
async fn a_flag_outside_allowed_flags_is_refused_and_the_others_still_run() {
    let u = unleash();
    let s = uuid::Uuid::new_v4().simple().to_string();
    let (allowed, forbidden) = (format!("Allowed-{s}"), format!("Forbidden-{s}"));
    create_flag(&allowed).await;
    create_flag(&forbidden).await;
    let fx = Fixture::new(None, None).await;
    let mut env = fx.env(&[("ROLES", "action"), ("ALLOWED_FLAGS", "Allowed-*, Other")]);
    env.extend(unleash_env(u));
    let mut svc = crate::common::Service::spawn(&env);
    svc.wait_ready().await;
    let action = toggle_triggered(json!({&forbidden: "on", &allowed: "on"}), json!({}));
    fx.bus.publish(&action).await;
    let finished = fx
        .bus
        .wait_for("sh.keptn.event.action.finished", 1, Duration::from_secs(20))
        .await;
    let data = &finished[0]["data"];
    assert_eq!(data["status"], "errored", "{data}");
    assert_eq!(data["result"], "fail");
    let message = data["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "{forbidden}: refused, not switched on (not in ALLOWED_FLAGS=Allowed-*,Other)"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("{allowed}: on (confirmed)")),
        "{message}"
    );
    assert!(flag_on(&allowed).await);
    assert!(!flag_on(&forbidden).await, "the refused flag was switched");
}

#[tokio::test]
async fn a_dry_run_reports_every_step_and_writes_nothing() {
    let u = unleash();
    let s = uuid::Uuid::new_v4().simple().to_string();
    let flag = format!("Dry-{s}");
    create_flag(&flag).await;
    let remediation = format!(
        r#"apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata:
  name: dry
spec:
  remediations:
    - problemType: Dry me
      actionsOnOpen:
        - name: switch it
          action: toggle-feature
          value:
            {flag}: "on"
"#
    );
    let fx = Fixture::new(Some(&remediation), None).await;
    let mut env = fx.env(&[("DRY_RUN", "true")]);
    env.extend(unleash_env(u));
    let mut svc = crate::common::Service::spawn(&env);
    svc.wait_ready().await;
    fx.bus.publish(&problem_open("Dry me", &s)).await;
    let finished = fx
        .bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(finished[0]["data"]["result"], "pass", "{}", finished[0]);
    let ours: Vec<_> = fx
        .bus
        .events()
        .into_iter()
        .filter(|e| e["source"] == "unleash-remediation-service")
        .collect();
    assert_eq!(ours.len(), 6, "{ours:#?}");
    for e in &ours {
        assert_eq!(e["data"]["dryRun"], true, "{e}");
    }
    let action = &fx.bus.of_type("sh.keptn.event.action.finished")[0];
    assert_eq!(
        action["data"]["message"],
        format!("dry run: {flag}: would switch on (now off)"),
        "{action}"
    );
    assert!(
        finished[0]["data"]["message"]
            .as_str()
            .unwrap()
            .starts_with("dry run: "),
        "{}",
        finished[0]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!flag_on(&flag).await, "a dry run switched the flag");
    let (_, metrics) = svc.get("/metrics").await;
    let requests = |method: &str| {
        crate::common::metric_sum(
            &metrics,
            "unleash_requests_total",
            &format!("method=\"{method}\""),
        )
    };
    assert_eq!(requests("POST"), 0.0, "{metrics}");
    assert!(requests("GET") > 0.0, "{metrics}");
}
