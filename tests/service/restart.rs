//! Restart readiness does not grow with the remembered state: the state is picked up in the
//! background, after `/ready`.

use crate::common::FOREIGN;
use crate::common::{Fixture, Service};
use futures::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn ready_soon_after_a_restart_with_30000_remembered_problems() {
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let env = fx.env(&[("NATS_MODE", "jetstream"), ("ROLES", "remediator")]);
    // The first start creates the bucket.
    let mut first = Service::spawn(&env);
    first.wait_ready().await;
    first.terminate();

    let js = async_nats::jetstream::new(fx.bus.client.clone());
    let kv = js
        .get_key_value("unleash-remediation-state")
        .await
        .expect("state bucket");
    let now = chrono::Utc::now().timestamp_millis();
    futures::stream::iter(0..30_000)
        .map(|i| {
            let kv = kv.clone();
            async move {
                let record = json!({
                    "phase": "Finished", "opened_by": format!("open-{i}"),
                    "scope": {"project": "website", "stage": "production", "service": "front-end"},
                    "labels": {}, "problem": {"ProblemTitle": "Pass me", "ProblemID": format!("r-{i}")},
                    "keptn_context": format!("ctx-{i}"), "git_commit_id": null,
                    "remediation_triggered_id": format!("rt-{i}"), "action_index": 0,
                    "action_triggered_id": format!("at-{i}"), "action_label": "x",
                    "deadline_ms": now, "last_error": "", "started_ms": now
                });
                kv.put(
                    format!("p.{i:032x}"),
                    serde_json::to_vec(&record).unwrap().into(),
                )
                .await
                .expect("filling the bucket");
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;

    let started = Instant::now();
    let second = Service::spawn(&env);
    loop {
        if second.get("/ready").await.0 == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "not ready within 4 s of the start with 30,000 problems remembered:\n{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
