//! Feedback out with the real binary, nats-server and Unleash 7.5.1: the comments, chat
//! messages, webhook steps and annotations one remediation sends (to wiremock stubs that follow
//! the Dynatrace, Slack and Grafana APIs), and that a failing target never holds it up.

use crate::common::{Bus, Fixture, Service, problem_open, vector};
use crate::common::{body, wait_requests};
use crate::common::{create_flag, unleash, unleash_env};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use testkit::free_port;
use testkit::nats::NatsServer;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "dt0c01.FEEDBACK-TEST-SECRET";
const V2_PATH: &str = "/api/v2/problems/-4349221618435898381_1588562640000V2/comments";

fn show(name: &str, requests: &[Request]) {
    for r in requests {
        eprintln!(
            "{name}: {} {} {}",
            r.method,
            r.url.path(),
            String::from_utf8_lossy(&r.body)
        );
    }
}

fn remediation(flag: &str) -> String {
    format!(
        r#"apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata:
  name: feedback
spec:
  remediations:
    - problemType: Failure rate increase
      actionsOnOpen:
        - name: Serve the static page
          action: toggle-feature
          value:
            {flag}: "on"
    - problemType: HighErrorRate
      actionsOnOpen:
        - name: Switch the new checkout off
          action: toggle-feature
          value:
            {flag}: "off"
"#
    )
}

/// A fixture whose remediation.yaml switches a new flag of its own in the real Unleash.
async fn flag_fixture() -> (Fixture, String) {
    let flag = format!("Feedback-{}", uuid::Uuid::new_v4().simple());
    create_flag(&flag).await;
    (Fixture::new(Some(&remediation(&flag)), None).await, flag)
}

fn with_unleash(
    mut env: Vec<(&'static str, String)>,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    env.extend(unleash_env(unleash()));
    env.extend(extra.iter().cloned());
    env
}

async fn finished_for(bus: &Bus, ctx: &Value, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(f) = bus
            .of_type("sh.keptn.event.remediation.finished")
            .into_iter()
            .find(|e| e["shkeptncontext"] == *ctx)
        {
            return f;
        }
        assert!(
            Instant::now() < deadline,
            "no remediation.finished within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The sum of `notifications_total` for a target and result on /metrics.
async fn notifications(svc: &Service, target: &str, result: &str) -> f64 {
    let (_, text) = svc.get("/metrics").await;
    text.lines()
        .filter(|l| {
            l.contains("notifications_total{")
                && l.contains(&format!("target=\"{target}\""))
                && l.contains(&format!("result=\"{result}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn tutorial_remediation_comments_on_the_dynatrace_problem_and_tells_chat_and_the_hook() {
    let dt = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(V2_PATH))
        .and(header(
            "authorization",
            format!("Api-Token {TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "comment-1"})))
        .mount(&dt)
        .await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T0/B0/secret"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;

    create_flag("EnableStaticContent").await;
    let nats = NatsServer::start().unwrap();
    let env = with_unleash(
        vec![
            ("NATS_URL", nats.url()),
            ("RESOURCE_DIR", env!("CARGO_MANIFEST_DIR").to_owned()),
        ],
        &[
            ("DYNATRACE_URL", dt.uri()),
            ("DYNATRACE_API_TOKEN", TOKEN.to_owned()),
            (
                "SLACK_WEBHOOK_URL",
                format!("{}/services/T0/B0/secret", slack.uri()),
            ),
            ("NOTIFY_WEBHOOK_URL", format!("{}/hook", hook.uri())),
        ],
    );
    let mut svc = Service::spawn(&env);
    svc.wait_ready().await;
    let bus = Bus::connect(&nats.url()).await;
    let problem = vector("tutorial/problemopen.json");
    bus.publish(&problem).await;
    let finished = finished_for(&bus, &problem["shkeptncontext"], Duration::from_secs(20)).await;
    assert_eq!(finished["data"]["result"], "pass", "{finished}");

    let comments = wait_requests(&dt, 3, Duration::from_secs(10)).await;
    show("dynatrace", &comments);
    let messages: Vec<String> = comments
        .iter()
        .map(|r| {
            assert_eq!(r.method.as_str(), "POST");
            assert_eq!(r.url.path(), V2_PATH);
            assert_eq!(body(r)["context"], "unleash-remediation-service");
            body(r)["message"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        messages[0],
        "**Remediation started** for problem \"Failure rate increase\" (website/production/front-end) by unleash-remediation-service.\n\
Action 1: \"Serve the static page\" (toggle-feature): EnableStaticContent → on\n\
Switch EnableStaticContent on, so that visitors get the static page from the CDN\n\
Keptn context: 2d343334-3932-4231-b631-383433353839"
    );
    // Other tests switch EnableStaticContent in the same Unleash: it was on or off before.
    let action_finished = bus
        .of_type("sh.keptn.event.action.finished")
        .into_iter()
        .find(|e| e["shkeptncontext"] == problem["shkeptncontext"])
        .expect("action.finished");
    let flags = &action_finished["data"]["flags"];
    let from = flags[0]["from"]
        .as_str()
        .expect("the state before is known");
    assert!(from == "on" || from == "off", "{flags}");
    assert_eq!(
        flags,
        &json!([{"flag": "EnableStaticContent", "from": from, "to": "on", "result": "confirmed", "reason": null}])
    );
    assert_eq!(
        messages[1],
        format!(
            "**Remediation action succeeded**: \"Serve the static page\" (toggle-feature), status succeeded, result pass.\n\
- EnableStaticContent: {from} → on (confirmed)"
        )
    );
    assert!(
        messages[2].starts_with("**Remediation finished**: succeeded/pass after ")
            && messages[2].ends_with(
                " s.\naction \"Serve the static page\" (toggle-feature) succeeded: EnableStaticContent: on (confirmed)"
            ),
        "{}",
        messages[2]
    );

    let chat = wait_requests(&slack, 2, Duration::from_secs(10)).await;
    show("slack", &chat);
    assert!(
        body(&chat[0])["text"]
            .as_str()
            .unwrap()
            .starts_with("*Remediation started* for problem \"Failure rate increase\"")
    );
    assert!(body(&chat[1])["text"].as_str().unwrap().starts_with("*Remediation finished* for problem \"Failure rate increase\" (website/production/front-end): succeeded/pass after "));

    let steps = wait_requests(&hook, 6, Duration::from_secs(10)).await;
    show("webhook", &steps);
    let names: Vec<Value> = steps.iter().map(|r| body(r)["step"].clone()).collect();
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
    assert_eq!(
        body(&steps[4])["flags"],
        json!([{"flag": "EnableStaticContent", "from": from, "state": "on", "outcome": "confirmed", "reason": null}])
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dt.received_requests().await.unwrap().len(), 3);
    assert_eq!(slack.received_requests().await.unwrap().len(), 2);
    assert_eq!(notifications(&svc, "dynatrace", "ok").await, 3.0);
    let log = svc.log();
    assert!(
        !log.contains(TOKEN),
        "the token leaked into the log:\n{log}"
    );
    assert!(
        !log.contains("/services/T0/B0/secret"),
        "the Slack URL leaked into the log"
    );
}

/// Runs one remediation against a Dynatrace that fails the way `dt_url` does; it must finish
/// succeeded/pass on time, with the failures counted and logged without the token.
async fn remediation_survives(dt_url: String, expect_failed: f64) {
    let (fx, flag) = flag_fixture().await;
    let mut svc = Service::spawn(&with_unleash(
        fx.env(&[]),
        &[
            ("DYNATRACE_URL", dt_url),
            ("DYNATRACE_API_TOKEN", TOKEN.to_owned()),
            ("FEEDBACK_TIMEOUT", "500ms".to_owned()),
            ("FEEDBACK_RETRIES", "1".to_owned()),
        ],
    ));
    svc.wait_ready().await;
    let problem = problem_open("Failure rate increase", &uuid::Uuid::new_v4().to_string());
    let started = Instant::now();
    fx.bus.publish(&problem).await;
    let finished = finished_for(&fx.bus, &problem["shkeptncontext"], Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert_eq!(finished["data"]["status"], "succeeded", "{finished}");
    assert_eq!(finished["data"]["result"], "pass", "{finished}");
    // A remediation here takes some tens of milliseconds; one hanging comment alone would
    // take 500 ms × 2 attempts.
    assert!(took < Duration::from_secs(1), "remediation took {took:?}");
    unleash()
        .wait_client_flag(&flag, "production", true, Duration::from_secs(5))
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    while notifications(&svc, "dynatrace", "failed").await < expect_failed {
        assert!(
            Instant::now() < deadline,
            "failures not counted; metrics:\n{}\nlog:\n{}",
            svc.get("/metrics").await.1,
            svc.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = svc.log();
    assert!(log.contains("feedback not delivered"), "{log}");
    assert!(log.contains("\"dynatrace\""), "{log}");
    assert!(
        !log.contains(TOKEN),
        "the token leaked into the log:\n{log}"
    );
}

#[tokio::test]
async fn dynatrace_answering_500_does_not_hold_up_the_remediation() {
    let dt = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string(format!(
            "{{\"error\":{{\"code\":500,\"message\":\"bad token {TOKEN}\"}}}}"
        )))
        .mount(&dt)
        .await;
    remediation_survives(dt.uri(), 3.0).await;
    // Each of the three comments: one try and one retry.
    assert_eq!(dt.received_requests().await.unwrap().len(), 6);
}

#[tokio::test]
async fn dynatrace_hanging_does_not_hold_up_the_remediation() {
    let dt = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(60)))
        .mount(&dt)
        .await;
    remediation_survives(dt.uri(), 3.0).await;
}

#[tokio::test]
async fn dynatrace_refusing_connections_does_not_hold_up_the_remediation() {
    remediation_survives(format!("http://127.0.0.1:{}", free_port()), 3.0).await;
}

#[tokio::test]
async fn a_problem_without_a_dynatrace_id_gets_no_dynatrace_call_and_no_error() {
    let dt = MockServer::start().await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let (fx, _flag) = flag_fixture().await;
    let mut svc = Service::spawn(&with_unleash(
        fx.env(&[]),
        &[
            ("DYNATRACE_URL", dt.uri()),
            ("DYNATRACE_API_TOKEN", TOKEN.to_owned()),
            ("NOTIFY_WEBHOOK_URL", hook.uri()),
        ],
    ));
    svc.wait_ready().await;
    let mut problem = problem_open("Failure rate increase", "no-dynatrace-id");
    problem["data"].as_object_mut().unwrap().remove("PID");
    fx.bus.publish(&problem).await;
    let finished = finished_for(&fx.bus, &problem["shkeptncontext"], Duration::from_secs(10)).await;
    assert_eq!(finished["data"]["result"], "pass", "{finished}");
    let steps = wait_requests(&hook, 6, Duration::from_secs(10)).await;
    assert_eq!(body(&steps[5])["step"], "remediation.finished");
    assert!(body(&steps[0])["problem"]["dynatraceId"].is_null());
    assert!(dt.received_requests().await.unwrap().is_empty());
    assert_eq!(notifications(&svc, "dynatrace", "failed").await, 0.0);
    let log = svc.log();
    assert!(!log.contains("feedback not delivered"), "{log}");
}

#[tokio::test]
async fn a_grafana_problem_gets_an_annotation_on_its_panel() {
    let grafana = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/annotations"))
        .and(header("authorization", "Bearer glsa_FEEDBACK_SECRET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": 7, "message": "Annotation added"})),
        )
        .mount(&grafana)
        .await;
    let (fx, flag) = flag_fixture().await;
    let mut svc = Service::spawn(&with_unleash(
        fx.env(&[]),
        &[
            ("GRAFANA_URL", grafana.uri()),
            ("GRAFANA_API_TOKEN", "glsa_FEEDBACK_SECRET".to_owned()),
        ],
    ));
    svc.wait_ready().await;
    // The shape the Grafana webhook adapter produces.
    let problem = json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "source": "grafana",
        "type": "sh.keptn.events.problem",
        "shkeptncontext": uuid::Uuid::new_v4().to_string(),
        "datacontenttype": "application/json",
        "data": {
            "project": "website", "stage": "production", "service": "front-end",
            "State": "OPEN",
            "ProblemTitle": "HighErrorRate",
            "ProblemID": format!("grafana-{}", uuid::Uuid::new_v4().simple()),
            "rootCause": "HighErrorRate",
            "ProblemURL": "http://grafana.local/alerting/grafana/abc/view",
            "ProblemDetails": {
                "source": "grafana",
                "labels": {"alertname": "HighErrorRate"},
                "annotations": {"__dashboardUid__": "shop", "__panelId__": "2"},
                "dashboardURL": "http://grafana.local/d/shop",
                "panelURL": "http://grafana.local/d/shop?viewPanel=2",
                "dashboardUID": "shop",
                "panelId": 2,
                "orgId": 1
            }
        }
    });
    fx.bus.publish(&problem).await;
    let finished = finished_for(&fx.bus, &problem["shkeptncontext"], Duration::from_secs(10)).await;
    assert_eq!(finished["data"]["result"], "pass", "{finished}");
    let got = wait_requests(&grafana, 1, Duration::from_secs(10)).await;
    show("grafana", &got);
    let b = body(&got[0]);
    assert_eq!(b["dashboardUID"], "shop");
    assert_eq!(b["panelId"], 2);
    assert_eq!(
        b["tags"],
        json!(["unleash-remediation", "result:pass", format!("flag:{flag}")])
    );
    assert_eq!(
        b["text"],
        format!(
            "Unleash remediation \"Switch the new checkout off\" (toggle-feature): pass. {flag}: off → off (confirmed)"
        )
    );
    assert!(b["time"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn the_action_role_alone_comments_on_the_problem_of_an_action_it_answers() {
    let dt = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&dt)
        .await;
    let (fx, flag) = flag_fixture().await;
    let mut svc = Service::spawn(&with_unleash(
        fx.env(&[("ROLES", "action")]),
        &[
            ("DYNATRACE_URL", dt.uri()),
            ("DYNATRACE_API_TOKEN", TOKEN.to_owned()),
        ],
    ));
    svc.wait_ready().await;
    let mut problem = vector("tutorial/problemopen.json")["data"].clone();
    problem["ProblemURL"] =
        json!("https://abc.live.dynatrace.com/#problems/problemdetails;pid=-77_88V2");
    // What Keptn's remediation (or another remediator) sends.
    let triggered = json!({
        "specversion": "1.0", "id": uuid::Uuid::new_v4().to_string(),
        "source": "shipyard-controller", "type": "sh.keptn.event.action.triggered",
        "shkeptncontext": uuid::Uuid::new_v4().to_string(),
        "datacontenttype": "application/json",
        "data": {
            "project": "website", "stage": "production", "service": "front-end",
            "action": {"name": "Serve the static page", "action": "toggle-feature", "value": {flag.clone(): "on"}},
            "problem": problem
        }
    });
    fx.bus.publish(&triggered).await;
    let finished = fx
        .bus
        .wait_for("sh.keptn.event.action.finished", 1, Duration::from_secs(10))
        .await;
    // A new flag is off: the action role read it before switching it on.
    assert_eq!(
        finished[0]["data"]["flags"],
        json!([{"flag": flag, "from": "off", "to": "on", "result": "confirmed", "reason": null}]),
        "{}",
        finished[0]
    );
    assert_eq!(
        finished[0]["data"]["message"],
        format!("{flag}: on (confirmed)")
    );
    let got = wait_requests(&dt, 2, Duration::from_secs(10)).await;
    show("dynatrace (action role)", &got);
    assert!(
        got.iter()
            .all(|r| r.url.path() == "/api/v2/problems/-77_88V2/comments")
    );
    assert!(
        body(&got[0])["message"]
            .as_str()
            .unwrap()
            .starts_with("**Remediation started**")
    );
    assert_eq!(
        body(&got[1])["message"],
        format!(
            "**Remediation action succeeded**: \"Serve the static page\" (toggle-feature), status succeeded, result pass.\n- {flag}: off → on (confirmed)"
        )
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dt.received_requests().await.unwrap().len(), 2);
}

fn summary(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    let p = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (p(0.5), p(0.95), ms.iter().sum::<f64>() / ms.len() as f64)
}

/// Latency from problem.open published to remediation.finished received, 20 remediations
/// each, feedback off and on (every target answering after 100 ms), in the same run.
#[tokio::test]
async fn feedback_adds_no_latency_to_the_remediation() {
    const N: usize = 20;
    let slow = ResponseTemplate::new(200)
        .set_body_string("ok")
        .set_delay(Duration::from_millis(100));
    let dt = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(slow.clone())
        .mount(&dt)
        .await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(slow.clone())
        .mount(&slack)
        .await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(slow)
        .mount(&hook)
        .await;

    let mut figures = Vec::new();
    // Both services stay up until the end, so that the queued feedback is delivered.
    let mut running = Vec::new();
    for on in [false, true] {
        let (fx, _flag) = flag_fixture().await;
        let extra = if on {
            vec![
                ("DYNATRACE_URL", dt.uri()),
                ("DYNATRACE_API_TOKEN", TOKEN.to_owned()),
                ("SLACK_WEBHOOK_URL", slack.uri()),
                ("NOTIFY_WEBHOOK_URL", hook.uri()),
            ]
        } else {
            Vec::new()
        };
        let mut svc = Service::spawn(&with_unleash(fx.env(&[]), &extra));
        svc.wait_ready().await;
        let mut ms = Vec::new();
        for _ in 0..N {
            let problem = problem_open("Failure rate increase", &uuid::Uuid::new_v4().to_string());
            let started = Instant::now();
            fx.bus.publish(&problem).await;
            let f =
                finished_for(&fx.bus, &problem["shkeptncontext"], Duration::from_secs(10)).await;
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(f["data"]["result"], "pass", "{f}");
        }
        let (p50, p95, mean) = summary(ms);
        eprintln!(
            "feedback {}: {N} remediations, p50 {p50:.1} ms, p95 {p95:.1} ms, mean {mean:.1} ms",
            if on { "on " } else { "off" }
        );
        figures.push(p50);
        running.push((fx, svc));
    }
    // In front of the remediation, feedback would add at least 3 × 100 ms (the Dynatrace
    // comments alone).
    assert!(
        figures[1] < figures[0] + 150.0,
        "feedback on: p50 {:.1} ms, off: {:.1} ms",
        figures[1],
        figures[0]
    );
    // And it was really on: 3 comments, 2 chat messages and 6 steps per remediation.
    wait_requests(&dt, 3 * N, Duration::from_secs(30)).await;
    wait_requests(&slack, 2 * N, Duration::from_secs(30)).await;
    wait_requests(&hook, 6 * N, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn queued_feedback_still_goes_out_when_the_service_stops() {
    let dt = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_millis(300)))
        .mount(&dt)
        .await;
    let (fx, _flag) = flag_fixture().await;
    let mut svc = Service::spawn(&with_unleash(
        fx.env(&[]),
        &[
            ("DYNATRACE_URL", dt.uri()),
            ("DYNATRACE_API_TOKEN", TOKEN.to_owned()),
        ],
    ));
    svc.wait_ready().await;
    let problem = problem_open("Failure rate increase", &uuid::Uuid::new_v4().to_string());
    fx.bus.publish(&problem).await;
    finished_for(&fx.bus, &problem["shkeptncontext"], Duration::from_secs(10)).await;
    // The three comments take 900 ms; the stop comes at once.
    let status = svc.terminate();
    assert!(status.success(), "{status}");
    assert_eq!(dt.received_requests().await.unwrap().len(), 3);
}
