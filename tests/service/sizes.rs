//! Problem events near NATS's 1 MiB limit: what the state record needs is kept (the problem
//! trimmed, labels once), and what cannot be kept is refused with a reason, never silently.

use crate::common::{FOREIGN, spawn_responder};
use crate::common::{Fixture, problem_open};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_problem_is_remediated_with_a_trimmed_problem_and_oversized_labels_are_refused() {
    let fx = Fixture::new(Some(FOREIGN), None).await;
    let _svc = fx.in_process(&["--nats-mode=jetstream"]).await;
    spawn_responder(&fx.bus);

    // 600 KB of details (Dynatrace sends whole entity lists) and 300 KB of labels.
    let mut big = problem_open("Pass me", "big-details");
    big["data"]["ProblemDetails"] = json!({"events": "x".repeat(600_000)});
    big["data"]["labels"] = json!({"run": "y".repeat(300_000)});
    fx.bus.publish(&big).await;
    // The labels alone are more than a record may hold: refused, and said so.
    let errors = fx
        .bus
        .wait_for("sh.keptn.log.error", 1, Duration::from_secs(10))
        .await;
    let message = errors[0]["data"]["message"].as_str().unwrap();
    assert!(message.contains("is not remediated"), "{message}");
    assert!(
        fx.bus
            .of_type("sh.keptn.event.remediation.triggered")
            .is_empty()
    );

    // The same details with small labels: remediated; the record kept what identifies it.
    let mut details = problem_open("Pass me", "big-details-2");
    details["data"]["ProblemDetails"] = json!({"events": "x".repeat(900_000)});
    details["data"]["labels"] = json!({"run": "small"});
    fx.bus.publish(&details).await;
    let finished = fx
        .bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(finished[0]["data"]["result"], "pass", "{}", finished[0]);
    let triggered = fx.bus.of_type("sh.keptn.event.action.triggered");
    let problem = &triggered[0]["data"]["problem"];
    assert_eq!(problem["ProblemTitle"], "Pass me");
    assert_eq!(problem["ProblemID"], "big-details-2");
    assert!(problem.get("ProblemDetails").is_none(), "trimmed");
    assert_eq!(triggered[0]["data"]["labels"]["run"], "small");
}
