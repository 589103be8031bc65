//! The notifier in-process: remediation events as the roles publish them go through the
//! feedback publisher onto the in-memory bus, and the targets are wiremock stubs that follow
//! the published APIs (Dynatrace problems v1/v2, Slack incoming webhooks, Grafana annotations).

use crate::common::{body, wait_requests};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use unleash_remediation_service::bus::{Collector, Publish};
use unleash_remediation_service::config::{DynatraceApi, Secret};
use unleash_remediation_service::feedback::{
    DynatraceTarget, FeedbackConfig, GrafanaTarget, Notifier, Notifying,
};
use unleash_remediation_service::keptn::outgoing::{Link, Outcome};
use unleash_remediation_service::keptn::{ActionInfo, EventFactory, Scope};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "dt0c01.SECRET-TOKEN-VALUE";
const V2_PATH: &str = "/api/v2/problems/-4349221618435898381_1588562640000V2/comments";

fn tutorial_problem() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/tutorial/problemopen.json"
    );
    let event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    event["data"].clone()
}

fn config() -> FeedbackConfig {
    FeedbackConfig {
        timeout: Duration::from_millis(500),
        retries: 2,
        backoff: Duration::from_millis(20),
        remediator: true,
        ..FeedbackConfig::default()
    }
}

fn dynatrace(server: &MockServer, api: DynatraceApi) -> Option<DynatraceTarget> {
    Some(DynatraceTarget {
        url: server.uri(),
        token: Secret::new(TOKEN),
        api,
    })
}

/// What the remediator and the action role publish for one remediation of `problem` with one
/// toggle-feature action, through a feedback publisher.
struct Run {
    out: Arc<dyn Publish>,
    collector: Collector,
    events: EventFactory,
    link: Link,
    scope: Scope,
    /// `data.flags` of action.finished, as this service's action role sends it; `None`: only
    /// the message, as another provider or an older version sends it.
    flags: Option<Vec<Value>>,
}

impl Run {
    fn new(notifier: Notifier) -> Run {
        let collector = Collector::new();
        let out: Arc<dyn Publish> = Arc::new(Notifying::new(Arc::new(collector.clone()), notifier));
        Run {
            out,
            collector,
            events: EventFactory::new("unleash-remediation-service"),
            link: Link {
                keptn_context: "2d343334-3932-4231-b631-383433353839".into(),
                triggered_id: Some("b33aa879-ddfd-4aec-82f7-5da2097320e1".into()),
                git_commit_id: None,
            },
            scope: Scope {
                project: "website".into(),
                stage: "production".into(),
                service: "front-end".into(),
            },
            flags: None,
        }
    }

    fn with_flags(mut self, flags: Value) -> Run {
        self.flags = Some(flags.as_array().expect("a list of flags").clone());
        self
    }

    async fn remediate(&self, problem: &Value, flags: Value, outcome: Outcome, message: &str) {
        let labels = BTreeMap::new();
        let triggered =
            self.events
                .remediation_triggered(&self.link, &self.scope, &labels, problem);
        let rem_link = Link {
            triggered_id: Some(triggered.id().to_owned()),
            ..self.link.clone()
        };
        self.out.publish(triggered).await.unwrap();
        let status = self.events.remediation_status_changed(
            &rem_link,
            &self.scope,
            &labels,
            0,
            "toggle-feature",
        );
        self.out.publish(status).await.unwrap();
        let action = ActionInfo {
            name: "Serve the static page".into(),
            action: "toggle-feature".into(),
            description:
                "Switch EnableStaticContent on, so that visitors get the static page from the CDN"
                    .into(),
            value: flags,
        };
        let at = self
            .events
            .action_triggered(&rem_link, &self.scope, &labels, &action, problem);
        let act_link = Link {
            triggered_id: Some(at.id().to_owned()),
            ..self.link.clone()
        };
        self.out.publish(at).await.unwrap();
        self.out
            .publish(self.events.action_started(&act_link, &self.scope, &labels))
            .await
            .unwrap();
        self.out
            .publish(match &self.flags {
                Some(list) => self.events.action_finished_with_flags(
                    &act_link,
                    &self.scope,
                    &labels,
                    outcome,
                    message,
                    list.clone(),
                    0,
                ),
                None => {
                    self.events
                        .action_finished(&act_link, &self.scope, &labels, outcome, message)
                }
            })
            .await
            .unwrap();
        let done = if outcome == Outcome::Pass {
            format!("action \"Serve the static page\" (toggle-feature) succeeded: {message}")
        } else {
            format!(
                "action \"Serve the static page\" (toggle-feature) failed (errored/fail): {message}"
            )
        };
        self.out
            .publish(self.events.remediation_finished(
                &rem_link,
                &self.scope,
                &labels,
                outcome,
                &done,
            ))
            .await
            .unwrap();
    }
}

use cloudevents::AttributesReader;

const START: &str = "**Remediation started** for problem \"Failure rate increase\" (website/production/front-end) by unleash-remediation-service.\n\
Action 1: \"Serve the static page\" (toggle-feature): EnableStaticContent → on\n\
Switch EnableStaticContent on, so that visitors get the static page from the CDN\n\
Keptn context: 2d343334-3932-4231-b631-383433353839";
const ACTION_DONE: &str = "**Remediation action succeeded**: \"Serve the static page\" (toggle-feature), status succeeded, result pass.\n\
- EnableStaticContent: off → on (confirmed)";

#[tokio::test]
async fn tutorial_problem_gives_three_dynatrace_v2_comments_in_order() {
    let dt = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(V2_PATH))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "c1"})))
        .mount(&dt)
        .await;
    let notifier = Notifier::start(FeedbackConfig {
        dynatrace: dynatrace(&dt, DynatraceApi::V2),
        ..config()
    })
    .unwrap();
    let run = Run::new(notifier).with_flags(json!([
        {"flag": "EnableStaticContent", "from": "off", "to": "on", "result": "confirmed", "reason": null}
    ]));
    run.remediate(
        &tutorial_problem(),
        json!({"EnableStaticContent": "on"}),
        Outcome::Pass,
        "EnableStaticContent: on (confirmed)",
    )
    .await;
    // Every event went on to the bus unchanged.
    assert_eq!(run.collector.events().len(), 6);

    let got = wait_requests(&dt, 3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got_after = dt.received_requests().await.unwrap();
    assert_eq!(got_after.len(), 3, "exactly three comments");
    for r in &got {
        assert_eq!(r.method.as_str(), "POST");
        assert_eq!(r.url.path(), V2_PATH);
        assert_eq!(
            r.headers.get("authorization").unwrap().to_str().unwrap(),
            format!("Api-Token {TOKEN}")
        );
        assert_eq!(
            r.headers.get("content-type").unwrap().to_str().unwrap(),
            "application/json"
        );
        assert_eq!(body(r)["context"], "unleash-remediation-service");
        assert_eq!(
            body(r).as_object().unwrap().len(),
            2,
            "v2 takes message and context only"
        );
    }
    assert_eq!(body(&got[0])["message"], START);
    assert_eq!(body(&got[1])["message"], ACTION_DONE);
    let finish = body(&got[2])["message"].as_str().unwrap().to_owned();
    assert!(
        finish.starts_with("**Remediation finished**: succeeded/pass after "),
        "{finish}"
    );
    assert!(
        finish.ends_with(" s.\naction \"Serve the static page\" (toggle-feature) succeeded: EnableStaticContent: on (confirmed)"),
        "{finish}"
    );
}

#[tokio::test]
async fn the_problem_url_pid_wins_over_the_details_id() {
    let dt = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&dt)
        .await;
    let notifier = Notifier::start(FeedbackConfig {
        dynatrace: dynatrace(&dt, DynatraceApi::V2),
        ..config()
    })
    .unwrap();
    let mut problem = tutorial_problem();
    problem["ProblemURL"] =
        json!("https://abc12345.live.dynatrace.com/#problems/problemdetails;pid=-111_222V2;gf=all");
    Run::new(notifier)
        .remediate(
            &problem,
            json!({"EnableStaticContent": "on"}),
            Outcome::Pass,
            "EnableStaticContent: on (confirmed)",
        )
        .await;
    let got = wait_requests(&dt, 3, Duration::from_secs(10)).await;
    for r in &got {
        assert_eq!(r.url.path(), "/api/v2/problems/-111_222V2/comments");
    }
}

#[tokio::test]
async fn v1_mode_posts_comment_user_and_context() {
    let dt = MockServer::start().await;
    let v1 = "/api/v1/problem/details/-4349221618435898381_1588562640000V2/comments";
    Mock::given(method("POST"))
        .and(path(v1))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "c", "content": "x"})))
        .mount(&dt)
        .await;
    let notifier = Notifier::start(FeedbackConfig {
        dynatrace: dynatrace(&dt, DynatraceApi::V1),
        ..config()
    })
    .unwrap();
    Run::new(notifier)
        .remediate(
            &tutorial_problem(),
            json!({"EnableStaticContent": "on"}),
            Outcome::Pass,
            "EnableStaticContent: on (confirmed)",
        )
        .await;
    let got = wait_requests(&dt, 3, Duration::from_secs(10)).await;
    assert!(got.iter().all(|r| r.url.path() == v1));
    let first = body(&got[0]);
    assert_eq!(
        first,
        json!({"comment": START, "user": "unleash-remediation-service", "context": "unleash-remediation-service"})
    );
    assert_eq!(
        got[1].headers.get("authorization").unwrap(),
        &format!("Api-Token {TOKEN}")
    );
}

#[tokio::test]
async fn slack_gets_start_and_finish_and_the_webhook_every_step() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T000/B000/XXXX"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&hook)
        .await;
    let notifier = Notifier::start(FeedbackConfig {
        slack_webhook_url: Some(Secret::new(format!(
            "{}/services/T000/B000/XXXX",
            slack.uri()
        ))),
        notify_webhook_url: Some(Secret::new(format!("{}/hook", hook.uri()))),
        ..config()
    })
    .unwrap();
    let mut problem = tutorial_problem();
    problem["ProblemURL"] =
        json!("https://abc12345.live.dynatrace.com/#problems/problemdetails;pid=-111_222V2");
    Run::new(notifier)
        .remediate(
            &problem,
            json!({"EnableStaticContent": "on", "EnablePromotion": "off"}),
            Outcome::Errored,
            "EnableStaticContent: on (confirmed); EnablePromotion: failed to switch off: flag \"EnablePromotion\" does not exist in project \"default\"",
        )
        .await;

    let chat = wait_requests(&slack, 2, Duration::from_secs(10)).await;
    let texts: Vec<String> = chat
        .iter()
        .map(|r| body(r)["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(chat.iter().all(|r| body(r).as_object().unwrap().len() == 1));
    assert_eq!(
        texts[0],
        "*Remediation started* for problem \"Failure rate increase\" (website/production/front-end) by unleash-remediation-service.\n\
Action 1: \"Serve the static page\" (toggle-feature): EnableStaticContent → on, EnablePromotion → off\n\
Switch EnableStaticContent on, so that visitors get the static page from the CDN\n\
Problem: https://abc12345.live.dynatrace.com/#problems/problemdetails;pid=-111_222V2\n\
Keptn context: 2d343334-3932-4231-b631-383433353839"
    );
    assert!(
        texts[1].starts_with("*Remediation failed* for problem \"Failure rate increase\" (website/production/front-end): errored/fail after "),
        "{}",
        texts[1]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(slack.received_requests().await.unwrap().len(), 2);

    let steps = wait_requests(&hook, 6, Duration::from_secs(10)).await;
    let bodies: Vec<Value> = steps.iter().map(body).collect();
    let names: Vec<&str> = bodies.iter().map(|b| b["step"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "remediation.triggered",
            "remediation.status.changed",
            "action.triggered",
            "action.started",
            "action.finished",
            "remediation.finished"
        ]
    );
    for b in &bodies {
        assert_eq!(b["keptnContext"], "2d343334-3932-4231-b631-383433353839");
        assert_eq!(
            b["scope"],
            json!({"project": "website", "stage": "production", "service": "front-end"})
        );
        assert_eq!(b["problem"]["id"], "381");
        assert_eq!(b["problem"]["title"], "Failure rate increase");
        assert_eq!(b["problem"]["dynatraceId"], "-111_222V2");
    }
    let finished = &bodies[4];
    assert_eq!(finished["status"], "errored");
    assert_eq!(finished["result"], "fail");
    assert_eq!(finished["action"]["name"], "Serve the static page");
    assert_eq!(
        finished["flags"],
        json!([
            {"flag": "EnableStaticContent", "from": null, "state": "on", "outcome": "confirmed", "reason": null},
            {"flag": "EnablePromotion", "from": null, "state": "off", "outcome": "failed",
             "reason": "flag \"EnablePromotion\" does not exist in project \"default\""}
        ])
    );
    assert!(bodies[5]["durationMs"].is_i64(), "{}", bodies[5]);
    assert_eq!(bodies[5]["result"], "fail");
}

fn grafana_problem() -> Value {
    json!({
        "ProblemTitle": "HighErrorRate",
        "State": "OPEN",
        "ProblemID": "grafana-0f3a",
        "rootCause": "HighErrorRate",
        "ProblemURL": "http://grafana.local/alerting/grafana/abc/view",
        "ProblemDetails": {
            "source": "grafana",
            "labels": {"alertname": "HighErrorRate"},
            "annotations": {"__dashboardUid__": "shop-dash", "__panelId__": "4"},
            "dashboardURL": "http://grafana.local/d/shop-dash",
            "panelURL": "http://grafana.local/d/shop-dash?viewPanel=4",
            "dashboardUID": "shop-dash",
            "panelId": 4,
            "orgId": 1
        }
    })
}

#[tokio::test]
async fn a_grafana_problem_gets_an_annotation_on_its_panel_and_no_dynatrace_comment() {
    let grafana = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/annotations"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": 1, "message": "Annotation added"})),
        )
        .mount(&grafana)
        .await;
    let dt = MockServer::start().await;
    let notifier = Notifier::start(FeedbackConfig {
        dynatrace: dynatrace(&dt, DynatraceApi::V2),
        grafana: Some(GrafanaTarget {
            url: grafana.uri(),
            token: Secret::new("glsa_SECRET"),
        }),
        ..config()
    })
    .unwrap();
    let before = chrono::Utc::now().timestamp_millis();
    Run::new(notifier)
        .with_flags(json!([
            {"flag": "EnableStaticContent", "from": "off", "to": "on", "result": "confirmed", "reason": null}
        ]))
        .remediate(
            &grafana_problem(),
            json!({"EnableStaticContent": "on"}),
            Outcome::Pass,
            "EnableStaticContent: on (confirmed)",
        )
        .await;
    let got = wait_requests(&grafana, 1, Duration::from_secs(10)).await;
    let r = &got[0];
    assert_eq!(
        r.headers.get("authorization").unwrap(),
        "Bearer glsa_SECRET"
    );
    let b = body(r);
    assert_eq!(b["dashboardUID"], "shop-dash");
    assert_eq!(b["panelId"], 4);
    assert_eq!(
        b["tags"],
        json!([
            "unleash-remediation",
            "result:pass",
            "flag:EnableStaticContent"
        ])
    );
    assert_eq!(
        b["text"],
        "Unleash remediation \"Serve the static page\" (toggle-feature): pass. EnableStaticContent: off → on (confirmed)"
    );
    let t = b["time"].as_i64().unwrap();
    assert!(t >= before && t <= chrono::Utc::now().timestamp_millis());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(grafana.received_requests().await.unwrap().len(), 1);
    assert!(
        dt.received_requests().await.unwrap().is_empty(),
        "a Grafana problem has no Dynatrace id"
    );
}

#[tokio::test]
async fn a_problem_without_dynatrace_id_gets_no_dynatrace_call() {
    let dt = MockServer::start().await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let notifier = Notifier::start(FeedbackConfig {
        dynatrace: dynatrace(&dt, DynatraceApi::V2),
        notify_webhook_url: Some(Secret::new(hook.uri())),
        ..config()
    })
    .unwrap();
    let problem =
        json!({"ProblemTitle": "Failure rate increase", "State": "OPEN", "ProblemID": "p-1"});
    Run::new(notifier)
        .remediate(
            &problem,
            json!({"EnableStaticContent": "on"}),
            Outcome::Pass,
            "EnableStaticContent: on (confirmed)",
        )
        .await;
    // The webhook saw the whole remediation, so the notifier ran; Dynatrace got nothing.
    let steps = wait_requests(&hook, 6, Duration::from_secs(10)).await;
    assert!(body(&steps[0])["problem"]["dynatraceId"].is_null());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(dt.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failing_target_is_retried_a_bounded_number_of_times_and_does_not_hold_up_publishing() {
    let dt = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(500).set_body_string(format!("internal error for token {TOKEN}")),
        )
        .mount(&dt)
        .await;
    let hang = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&hang)
        .await;
    let notifier = Notifier::start(FeedbackConfig {
        dynatrace: dynatrace(&dt, DynatraceApi::V2),
        slack_webhook_url: Some(Secret::new(hang.uri())),
        ..config()
    })
    .unwrap();
    let run = Run::new(notifier);
    let started = Instant::now();
    run.remediate(
        &tutorial_problem(),
        json!({"EnableStaticContent": "on"}),
        Outcome::Pass,
        "EnableStaticContent: on (confirmed)",
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(100),
        "publishing waited for feedback: {took:?}"
    );
    // 3 comments × (1 + 2 retries).
    wait_requests(&dt, 9, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(dt.received_requests().await.unwrap().len(), 9);
}

#[tokio::test]
async fn drain_waits_for_queued_messages_and_gives_up_after_its_bound() {
    let dt = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_millis(100)))
        .mount(&dt)
        .await;
    let notifier = Notifier::start(FeedbackConfig {
        dynatrace: dynatrace(&dt, DynatraceApi::V2),
        ..config()
    })
    .unwrap();
    Run::new(notifier.clone())
        .remediate(
            &tutorial_problem(),
            json!({"EnableStaticContent": "on"}),
            Outcome::Pass,
            "EnableStaticContent: on (confirmed)",
        )
        .await;
    assert!(notifier.drain(Duration::from_secs(5)).await);
    assert_eq!(dt.received_requests().await.unwrap().len(), 3);

    let hang = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(30)))
        .mount(&hang)
        .await;
    let notifier = Notifier::start(FeedbackConfig {
        dynatrace: dynatrace(&hang, DynatraceApi::V2),
        timeout: Duration::from_secs(20),
        ..config()
    })
    .unwrap();
    Run::new(notifier.clone())
        .remediate(
            &tutorial_problem(),
            json!({"EnableStaticContent": "on"}),
            Outcome::Pass,
            "EnableStaticContent: on (confirmed)",
        )
        .await;
    let started = Instant::now();
    assert!(!notifier.drain(Duration::from_millis(300)).await);
    assert!(started.elapsed() < Duration::from_secs(2));
}
