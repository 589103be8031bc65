//! Monitoring in, with the real programs: Prometheus scrapes an application whose error rate
//! the test drives, evaluates the rule from `deploy/prometheus/`, Alertmanager posts to the
//! service's `/webhooks/alertmanager` with a bearer token, and the flag changes in a real
//! Unleash 7.5.1. Also checks every file under `deploy/` for the monitoring tools.
//!
//! The rule the end-to-end test loads is `deploy/prometheus/failure-rate.rules.yml` itself, with
//! two edits made by [`rule_for_test`]: the rate window `[1m]` becomes `[5s]` and `for: 2m`
//! becomes `for: 1s`, so the alert fires and resolves within seconds. Both programs run with
//! generated configuration (`testkit::prometheus`): scrapes and evaluations every second,
//! Alertmanager's `group_wait`/`group_interval` one second.

#[path = "common/mod.rs"]
mod common;

use common::{Bus, Service, resource_dir};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use testkit::nats::NatsServer;
use testkit::prometheus::{
    Alertmanager, ErrorRateTarget, Prometheus, ScrapeJob, amtool_check_config, promtool_check_rules,
};
use testkit::repo_root;
use testkit::unleash::{UnleashServer, UnleashVersion};
use unleash_remediation_service::config::Secret;
use unleash_remediation_service::unleash::UnleashClient;

const RULE_FILE: &str = "deploy/prometheus/failure-rate.rules.yml";
const ALERTMANAGER_FILE: &str = "deploy/alertmanager/alertmanager.yml";
const GRAFANA_FILE: &str = "deploy/grafana/contact-point.yaml";
const DYNATRACE_FILE: &str = "deploy/dynatrace/custom-integration.json";

const FLAG: &str = "EnableStaticContent";

/// What the tutorial's front-end does about a failure rate increase, with the switch back.
const REMEDIATION: &str = r#"apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata:
  name: front-end-remediation
spec:
  remediations:
    - problemType: Failure rate increase
      actionsOnOpen:
        - name: Serve the static page
          action: toggle-feature
          value:
            EnableStaticContent: "on"
      actionsOnClose:
        - name: Serve the dynamic site again
          action: toggle-feature
          value:
            EnableStaticContent: "off"
"#;

fn deploy_file(rel: &str) -> PathBuf {
    repo_root().join(rel)
}

fn read(rel: &str) -> String {
    let path = deploy_file(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn yaml(rel: &str) -> Value {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

/// The deployed rule with test timings: a 5 s rate window instead of 1 m, `for: 1s` instead of
/// `for: 2m`. Fails when the deployed file no longer has what is replaced, so the test cannot
/// silently run a rule that needs minutes.
fn rule_for_test() -> String {
    let text = read(RULE_FILE);
    assert_eq!(
        text.matches("[1m]").count(),
        2,
        "{RULE_FILE}: expected two 1-minute rate windows to shorten"
    );
    assert_eq!(
        text.matches("for: 2m").count(),
        1,
        "{RULE_FILE}: expected one `for: 2m` to shorten"
    );
    text.replace("[1m]", "[5s]").replace("for: 2m", "for: 1s")
}

#[test]
fn deployed_rule_passes_promtool_and_carries_the_tutorial_scope() {
    let out = promtool_check_rules(&deploy_file(RULE_FILE)).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(out.contains("SUCCESS: 1 rules found"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let shortened = dir.path().join("failure-rate.rules.yml");
    std::fs::write(&shortened, rule_for_test()).unwrap();
    let out = promtool_check_rules(&shortened).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(out.contains("SUCCESS: 1 rules found"), "{out}");

    let rules = yaml(RULE_FILE);
    let rule = &rules["groups"][0]["rules"][0];
    assert_eq!(rule["labels"]["keptn_project"], "website");
    assert_eq!(rule["labels"]["keptn_stage"], "production");
    assert_eq!(rule["labels"]["keptn_service"], "front-end");
    assert_eq!(rule["annotations"]["summary"], "Failure rate increase");
    let expr = rule["expr"].as_str().unwrap();
    assert!(expr.contains("http_requests_total"), "{expr}");
}

#[test]
fn a_broken_rule_fails_promtool() {
    // The check above means something only if promtool rejects bad rules.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.rules.yml");
    std::fs::write(&broken, rule_for_test().replace("> 0.1", "> > 0.1")).unwrap();
    let err = promtool_check_rules(&broken).expect_err("a rule with a syntax error");
    assert!(format!("{err:#}").contains("FAILED"), "{err:#}");
}

#[test]
fn deployed_alertmanager_config_passes_amtool_and_posts_resolved_with_a_bearer_token() {
    let out =
        amtool_check_config(&deploy_file(ALERTMANAGER_FILE)).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(out.contains("SUCCESS"), "{out}");

    let config = yaml(ALERTMANAGER_FILE);
    let receiver = config["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "unleash-remediation")
        .expect("a receiver named unleash-remediation");
    let webhook = &receiver["webhook_configs"][0];
    assert_eq!(
        webhook["url"],
        "http://127.0.0.1:8080/webhooks/alertmanager"
    );
    assert_eq!(webhook["send_resolved"], true);
    let auth = &webhook["http_config"]["authorization"];
    assert_eq!(auth["type"], "Bearer");
    assert!(auth["credentials_file"].is_string(), "{auth}");
    let routed = config["route"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["receiver"] == "unleash-remediation");
    assert!(routed, "no route sends alerts to unleash-remediation");

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("alertmanager.yml");
    std::fs::write(
        &broken,
        read(ALERTMANAGER_FILE).replace("receiver: unleash-remediation", "receiver: nobody"),
    )
    .unwrap();
    amtool_check_config(&broken).expect_err("a route to an undefined receiver");
}

#[test]
fn grafana_contact_point_is_a_webhook_with_bearer_auth() {
    let file = yaml(GRAFANA_FILE);
    assert_eq!(file["apiVersion"], 1);
    let point = &file["contactPoints"][0];
    assert_eq!(point["name"], "unleash-remediation");
    let receiver = &point["receivers"][0];
    assert_eq!(receiver["type"], "webhook");
    assert_eq!(receiver["disableResolveMessage"], false);
    let settings = &receiver["settings"];
    let url = url::Url::parse(settings["url"].as_str().unwrap()).unwrap();
    assert_eq!(url.path(), "/webhooks/grafana");
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    for (key, value) in [
        ("project", "website"),
        ("stage", "production"),
        ("service", "front-end"),
    ] {
        assert!(query.contains(&(key.to_owned(), value.to_owned())), "{url}");
    }
    assert_eq!(settings["httpMethod"], "POST");
    assert_eq!(settings["authorization_scheme"], "Bearer");
    assert_eq!(
        settings["authorization_credentials"],
        "${UNLEASH_REMEDIATION_TOKEN}"
    );
}

/// The Dynatrace settings object, and its payload rendered the way Dynatrace renders it.
fn dynatrace_integration() -> (Value, String) {
    let objects: Value = serde_json::from_str(&read(DYNATRACE_FILE))
        .unwrap_or_else(|e| panic!("{DYNATRACE_FILE} is not JSON: {e}"));
    let object = objects[0].clone();
    let payload = object["value"]["webHookNotification"]["payload"]
        .as_str()
        .expect("a payload template")
        .to_owned();
    (object, payload)
}

/// Fills a Dynatrace payload template: string placeholders JSON-escaped (Dynatrace escapes
/// them when the Content-Type is JSON), `{ImpactedEntities}` and `{ProblemDetailsJSON}` as
/// JSON values.
fn render_dynatrace(template: &str, state: &str, pid: &str) -> String {
    let escape = |s: &str| {
        let quoted = serde_json::to_string(s).unwrap();
        quoted[1..quoted.len() - 1].to_owned()
    };
    let details = serde_json::json!({
        "id": pid,
        "displayName": "381",
        "status": if state == "OPEN" { "OPEN" } else { "CLOSED" },
        "severityLevel": "ERROR",
        "impactLevel": "SERVICE",
        "tagsOfAffectedEntities": [
            {"context": "CONTEXTLESS", "key": "keptn_project", "value": "website"},
            {"context": "CONTEXTLESS", "key": "keptn_stage", "value": "production"},
            {"context": "CONTEXTLESS", "key": "keptn_service", "value": "front-end"}
        ]
    });
    let entities = serde_json::json!([
        {"type": "SERVICE", "name": "front-end", "entity": "SERVICE-0123456789ABCDEF"}
    ]);
    let strings = [
        ("{State}", state.to_owned()),
        ("{ProblemID}", "381".to_owned()),
        ("{PID}", pid.to_owned()),
        ("{ProblemTitle}", "Failure rate increase".to_owned()),
        (
            "{ProblemURL}",
            format!("https://abc12345.live.dynatrace.com/#problems/problemdetails;pid={pid}"),
        ),
        ("{ProblemSeverity}", "ERROR".to_owned()),
        ("{ProblemImpact}", "SERVICE".to_owned()),
        (
            "{ImpactedEntity}",
            "Failure rate increase on Web request \"/cart\" of front-end".to_owned(),
        ),
        (
            "{Tags}",
            "keptn_project:website, keptn_stage:production, keptn_service:front-end".to_owned(),
        ),
    ];
    let mut text = template
        .replace("{ImpactedEntities}", &entities.to_string())
        .replace("{ProblemDetailsJSON}", &details.to_string());
    for (placeholder, value) in strings {
        text = text.replace(placeholder, &escape(&value));
    }
    text
}

#[test]
fn dynatrace_integration_posts_to_the_webhook_with_a_bearer_header_and_renders_to_json() {
    let (object, payload) = dynatrace_integration();
    assert_eq!(object["schemaId"], "builtin:problem.notifications");
    let value = &object["value"];
    assert_eq!(value["type"], "WEBHOOK");
    let hook = &value["webHookNotification"];
    let url = url::Url::parse(hook["url"].as_str().unwrap()).unwrap();
    assert_eq!(url.path(), "/webhooks/dynatrace");
    assert_eq!(hook["notifyClosedProblems"], true);
    let header = &hook["headers"][0];
    assert_eq!(header["name"], "Authorization");
    assert_eq!(header["secret"], true);
    assert!(
        header["secretValue"]
            .as_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    // The settings schema's limit for a custom payload.
    assert!(payload.len() <= 5000, "payload is {} chars", payload.len());

    let rendered = render_dynatrace(&payload, "OPEN", "-4349221618435898381_1611238560000V2");
    let body: Value = serde_json::from_str(&rendered)
        .unwrap_or_else(|e| panic!("rendered payload is not JSON ({e}):\n{rendered}"));
    assert_eq!(body["State"], "OPEN");
    assert_eq!(body["ProblemTitle"], "Failure rate increase");
    assert_eq!(
        body["ProblemDetailsJSON"]["id"],
        "-4349221618435898381_1611238560000V2"
    );
    assert!(body["ImpactedEntities"].is_array());
    assert!(
        body["Tags"]
            .as_str()
            .unwrap()
            .contains("keptn_project:website")
    );
}

/// POSTs `body` to the service at the path and query of `configured` (a URL from a deploy
/// file), with the bearer token; (status, answer).
async fn post_like(service: &Service, configured: &str, token: &str, body: String) -> (u16, Value) {
    let configured = url::Url::parse(configured).unwrap();
    let mut target = url::Url::parse(&service.http).unwrap();
    target.set_path(configured.path());
    target.set_query(configured.query());
    let response = reqwest::Client::new()
        .post(target)
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_service_accepts_what_the_grafana_and_dynatrace_configurations_send() {
    let nats = NatsServer::start().expect("nats-server (apt-get install -y nats-server)");
    let bus = Bus::connect(&nats.url()).await;
    let resources = resource_dir(Some(REMEDIATION), None);
    let token = format!("t-{}", uuid::Uuid::new_v4().simple());
    let mut service = Service::spawn(&[
        ("NATS_URL", nats.url()),
        ("RESOURCE_DIR", resources.path().display().to_string()),
        ("HTTP_TOKEN", token.clone()),
    ]);
    service.wait_ready().await;

    // Grafana: the documentation's notification, whose labels carry no scope, sent to the
    // contact point's URL: the query parameters give the scope.
    let grafana = yaml(GRAFANA_FILE);
    let url = grafana["contactPoints"][0]["receivers"][0]["settings"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = common::vector("grafana/webhook-docs-example-2-alerts-firing.json");
    let (status, answer) = post_like(&service, &url, &token, body.to_string()).await;
    assert_eq!(status, 200, "{answer}\n{}", service.log());
    assert_eq!(answer["accepted"], 2, "{answer}");

    // Dynatrace: the custom payload rendered for a problem opening, then closing.
    let (object, payload) = dynatrace_integration();
    let url = object["value"]["webHookNotification"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let pid = "-4349221618435898381_1611238560000V2";
    for state in ["OPEN", "RESOLVED"] {
        let body = render_dynatrace(&payload, state, pid);
        let (status, answer) = post_like(&service, &url, &token, body).await;
        assert_eq!(status, 200, "{state}: {answer}\n{}", service.log());
        assert_eq!(answer["accepted"], 1, "{state}: {answer}");
    }
    let triggered = bus
        .wait_for(
            "sh.keptn.event.remediation.triggered",
            3,
            Duration::from_secs(10),
        )
        .await;
    for event in &triggered {
        assert_eq!(event["data"]["project"], "website", "{event}");
        assert_eq!(event["data"]["stage"], "production", "{event}");
    }
    let dynatrace: Vec<&Value> = triggered
        .iter()
        .filter(|e| e["data"]["problem"]["ProblemTitle"] == "Failure rate increase")
        .collect();
    assert_eq!(
        dynatrace.len(),
        1,
        "one open Dynatrace problem: {triggered:?}"
    );
    assert_eq!(dynatrace[0]["data"]["service"], "front-end");

    // Without the token nothing gets in.
    let (status, _) = post_like(
        &service,
        &url,
        "wrong",
        render_dynatrace(&payload, "OPEN", "1"),
    )
    .await;
    assert_eq!(status, 401);
}

// ---------------------------------------------------------------------------------------------
// End to end

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` and `context()`.
async fn wait_until<T, F, Fut>(
    what: &str,
    within: Duration,
    mut check: F,
    context: impl Fn() -> String,
) -> (T, Instant)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return (value, Instant::now());
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {within:?}\n{}", context());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_our_alert(alert: &Value) -> bool {
    alert["labels"]["alertname"] == "FailureRateIncrease"
        && alert["labels"]["keptn_service"] == "front-end"
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_rate_alert_switches_the_flag_on_and_its_resolution_switches_it_off() {
    let started = Instant::now();
    // Unleash (with its PostgreSQL) takes longest to start; everything else starts meanwhile.
    let unleash = tokio::task::spawn_blocking(|| UnleashServer::start(UnleashVersion::V7));
    let nats = NatsServer::start().expect("nats-server (apt-get install -y nats-server)");
    let bus = Bus::connect(&nats.url()).await;
    let target = ErrorRateTarget::start().await.unwrap();
    let rules = tempfile::tempdir().unwrap();
    let rule_file = rules.path().join("failure-rate.rules.yml");
    std::fs::write(&rule_file, rule_for_test()).unwrap();
    let resources = resource_dir(Some(REMEDIATION), None);
    let unleash = unleash
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("real Unleash 7.5.1: {e:#}"));
    let admin = UnleashClient::new(unleash.admin_config()).unwrap();
    admin.create_flag(FLAG).await.unwrap();
    assert!(
        !unleash
            .client_flag_enabled(FLAG, "production")
            .await
            .unwrap(),
        "{FLAG} starts off"
    );

    let token = format!("t-{}", uuid::Uuid::new_v4().simple());
    let mut service = Service::spawn(&[
        ("NATS_URL", nats.url()),
        ("RESOURCE_DIR", resources.path().display().to_string()),
        ("UNLEASH_SERVER_URL", unleash.base_url()),
        ("UNLEASH_TOKEN", unleash.admin_token().to_owned()),
        ("HTTP_TOKEN", token.clone()),
    ]);
    service.wait_ready().await;
    let alertmanager = Alertmanager::start(
        &format!("{}/webhooks/alertmanager", service.http),
        Some(&Secret::new(token.clone())),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let prometheus = Prometheus::start(
        &[ScrapeJob::new("front-end", &[target.address()])],
        &[rule_file],
        Some(&alertmanager.url()),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let setup = started.elapsed();

    let logs = || {
        format!(
            "service log:\n{}\nAlertmanager log:\n{}\nPrometheus log:\n{}\nevents:\n{}",
            service.log(),
            alertmanager.log_tail(30),
            prometheus.log_tail(20),
            bus.events()
                .iter()
                .map(|e| format!("{} {}", e["type"], e["data"]))
                .collect::<Vec<_>>()
                .join("\n")
        )
    };

    // Healthy traffic first: the target is scraped and nothing fires.
    wait_until(
        "Prometheus scrapes the target",
        // Prometheus applies new targets on a 5 s tick.
        Duration::from_secs(20),
        || async {
            let targets = prometheus.targets().await.ok()?;
            targets.iter().any(|t| t["health"] == "up").then_some(())
        },
        logs,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !prometheus.alerts().await.unwrap().iter().any(is_our_alert),
        "the alert is pending or firing with no errors"
    );

    // 30% of requests fail (threshold 10%).
    target.set_error_percent(30);
    let first_error = Instant::now();
    let (_, firing) = wait_until(
        "Prometheus fires FailureRateIncrease",
        Duration::from_secs(20),
        || async {
            let alerts = prometheus.alerts().await.ok()?;
            alerts
                .iter()
                .any(|a| is_our_alert(a) && a["state"] == "firing")
                .then_some(())
        },
        logs,
    )
    .await;
    let (triggered, received) = wait_until(
        "the service reports remediation.triggered for the alert",
        Duration::from_secs(15),
        || async {
            bus.of_type("sh.keptn.event.remediation.triggered")
                .first()
                .cloned()
        },
        logs,
    )
    .await;
    let (_, flag_on) = wait_until(
        "the client API reports EnableStaticContent on in production",
        Duration::from_secs(15),
        || async {
            matches!(
                unleash.client_flag_enabled(FLAG, "production").await,
                Ok(true)
            )
            .then_some(())
        },
        logs,
    )
    .await;
    let problem = &triggered["data"]["problem"];
    assert_eq!(
        problem["ProblemTitle"], "Failure rate increase",
        "{triggered}"
    );
    assert_eq!(problem["State"], "OPEN", "{triggered}");
    assert_eq!(
        problem["ProblemDetails"]["source"], "alertmanager",
        "{triggered}"
    );
    assert_eq!(triggered["data"]["project"], "website");
    assert_eq!(triggered["data"]["stage"], "production");
    assert_eq!(triggered["data"]["service"], "front-end");
    let opened = bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(opened[0]["data"]["status"], "succeeded", "{}", opened[0]);

    // Back to normal: the rate falls below the threshold, Prometheus resolves the alert,
    // Alertmanager sends the resolved notification, and actionsOnClose switches the flag off.
    target.set_error_percent(0);
    let recovered = Instant::now();
    let (_, inactive) = wait_until(
        "Prometheus resolves FailureRateIncrease",
        Duration::from_secs(30),
        || async {
            let alerts = prometheus.alerts().await.ok()?;
            (!alerts.iter().any(is_our_alert)).then_some(())
        },
        logs,
    )
    .await;
    let (_, flag_off) = wait_until(
        "the client API reports EnableStaticContent off in production",
        Duration::from_secs(20),
        || async {
            matches!(
                unleash.client_flag_enabled(FLAG, "production").await,
                Ok(false)
            )
            .then_some(())
        },
        logs,
    )
    .await;
    let close_actions: Vec<Value> = bus
        .of_type("sh.keptn.event.action.triggered")
        .into_iter()
        .filter(|e| e["data"]["action"]["name"] == "Serve the dynamic site again")
        .collect();
    assert_eq!(close_actions.len(), 1, "{}", logs());
    // One problem, one remediation: Alertmanager's notifications did not start a second one.
    assert_eq!(
        bus.of_type("sh.keptn.event.remediation.triggered").len(),
        1,
        "{}",
        logs()
    );

    let (ok, failed) = target.counts();
    println!(
        "measured: setup {} (Unleash, NATS, service, Alertmanager, Prometheus); \
         first error -> alert firing {}; firing -> remediation.triggered on NATS {}; \
         remediation.triggered -> flag on (client API) {}; \
         back to normal -> alert resolved {}; resolved -> flag off (client API) {}; \
         total {} ({ok} ok / {failed} failed requests simulated)",
        secs(setup),
        secs(firing - first_error),
        secs(received - firing),
        secs(flag_on - received),
        secs(inactive - recovered),
        secs(flag_off - inactive),
        secs(started.elapsed()),
    );
}

#[test]
fn readme_shows_the_deploy_files_as_they_are() {
    let readme = read("README.md");
    for rel in [RULE_FILE, ALERTMANAGER_FILE, GRAFANA_FILE] {
        assert!(
            readme.contains(read(rel).trim()),
            "the README's copy of {rel} differs from the file"
        );
    }
    let (_, payload) = dynatrace_integration();
    assert!(
        readme.contains(payload.trim()),
        "the README's Dynatrace payload differs from {DYNATRACE_FILE}"
    );
}
