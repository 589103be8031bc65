//! The Unleash client against a scripted HTTP server (wiremock): timeouts, retries and their
//! bounds, connection errors, the exact requests sent, and that the token never leaks into an
//! error.

use serde_json::json;
use std::time::{Duration, Instant};
use testkit::free_port;
use unleash_remediation_service::config::Secret;
use unleash_remediation_service::roles::action::{
    FlagChange, FlagPolicy, ToggleReport, apply_with,
};
use unleash_remediation_service::unleash::{
    Api, ApiMode, UnleashClient, UnleashConfig, UnleashError,
};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "*:*.s3cret-admin-token-0b5e";
const USER: &str = "keptn";
const FLAG: &str = "EnableStaticContent";
const ON_PATH: &str =
    "/api/admin/projects/default/features/EnableStaticContent/environments/production/on";
/// The flag's one environment (what Unleash 4+ answers with fewer queries than the whole flag).
const READ_PATH: &str =
    "/api/admin/projects/default/features/EnableStaticContent/environments/production";

fn config(base: &str) -> UnleashConfig {
    let mut c = UnleashConfig::new(base, Secret::new(TOKEN));
    c.user = USER.into();
    c.api = ApiMode::V4;
    c.timeout = Duration::from_millis(300);
    c.max_retries = 3;
    c.backoff = Duration::from_millis(10);
    c
}

fn client(c: UnleashConfig) -> UnleashClient {
    UnleashClient::new(c).unwrap()
}

/// The token must not show up in any form an error can take.
fn assert_no_secret(err: &UnleashError) {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{TOKEN}"));
    for text in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
        assert!(!text.contains("s3cret"), "token leaked: {text}");
        assert!(!text.contains(&basic), "Basic credentials leaked: {text}");
    }
}

fn read_back(enabled: bool) -> ResponseTemplate {
    // What Unleash 7.5.1 and 8.2.0 answer.
    ResponseTemplate::new(200).set_body_json(json!({
        "name": FLAG,
        "environment": "production",
        "enabled": enabled,
        "strategies": []
    }))
}

/// The switch answers `failure` `times` times, then 200; the read-back confirms the flag on.
async fn fails_then_succeeds(server: &MockServer, failure: ResponseTemplate, times: u64) {
    Mock::given(method("POST"))
        .and(path(ON_PATH))
        .respond_with(failure)
        .up_to_n_times(times)
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(ON_PATH))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(READ_PATH))
        .respond_with(read_back(true))
        .mount(server)
        .await;
}

async fn count(server: &MockServer, verb: &str, p: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r: &&Request| r.method.as_str() == verb && r.url.path() == p)
        .count()
}

/// `FLAG` switched on in `production` through `c`, under `policy`.
async fn switch_on(c: UnleashConfig, policy: &FlagPolicy) -> ToggleReport {
    let on = [FlagChange {
        flag: FLAG.parse().unwrap(),
        on: true,
    }];
    apply_with(&client(c), "production", &on, policy).await
}

#[tokio::test]
async fn v4_request_is_exactly_what_unleash_expects_and_is_confirmed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ON_PATH))
        .and(header("authorization", TOKEN))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({})))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(READ_PATH))
        .and(header("authorization", TOKEN))
        .respond_with(read_back(true))
        .expect(1)
        .mount(&server)
        .await;
    client(config(&server.uri()))
        .set_flag(FLAG, "production", true)
        .await
        .unwrap();
    server.verify().await;
}

#[tokio::test]
async fn v3_request_uses_basic_auth_and_the_exact_content_type() {
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{TOKEN}"))
    );
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/admin/features/EnableStaticContent/toggle/off"))
        .and(header("authorization", basic.as_str()))
        .and(header("content-type", "application/json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"name": FLAG, "enabled": false})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/admin/features/EnableStaticContent"))
        .and(header("authorization", basic.as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"name": FLAG, "enabled": false})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut c = config(&format!("{}/api", server.uri()));
    c.api = ApiMode::V3;
    client(c).set_flag(FLAG, "production", false).await.unwrap();
    server.verify().await;
}

#[tokio::test]
async fn names_are_percent_encoded_in_paths() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(
            "/api/admin/projects/my%20project/features/F.1~x/environments/pre%2Fprod/on",
        ))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let mut c = config(&server.uri());
    c.project = "my project".into();
    client(c)
        .switch_flag("F.1~x", "pre/prod", true)
        .await
        .unwrap();
    server.verify().await;
}

#[tokio::test]
async fn invalid_flag_names_send_nothing() {
    let server = MockServer::start().await;
    let c = client(config(&server.uri()));
    for name in ["", "a/b", "../x", "..", "a b", &"x".repeat(101)] {
        let err = c.set_flag(name, "production", true).await.unwrap_err();
        assert!(
            matches!(err, UnleashError::InvalidFlagName { .. }),
            "{name}: {err:?}"
        );
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_slow_server_times_out_after_bounded_retries() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ON_PATH))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let mut c = config(&server.uri());
    c.timeout = Duration::from_millis(150);
    c.max_retries = 2;
    let started = Instant::now();
    let err = client(c)
        .set_flag(FLAG, "production", true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, UnleashError::Timeout { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(count(&server, "POST", ON_PATH).await, 3);
    // 3 × 150 ms plus backoff 10 + 20 ms, far below the server's 3 s delay.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(text.contains("did not answer"), "{text}");
    assert!(text.contains("150ms"), "{text}");
    assert!(text.contains("3 attempts"), "{text}");
    assert_no_secret(&err);
}

#[tokio::test]
async fn service_unavailable_then_ok_is_retried_and_succeeds() {
    let server = MockServer::start().await;
    fails_then_succeeds(&server, ResponseTemplate::new(503), 1).await;
    client(config(&server.uri()))
        .set_flag(FLAG, "production", true)
        .await
        .unwrap();
    assert_eq!(count(&server, "POST", ON_PATH).await, 2);
    assert_eq!(count(&server, "GET", READ_PATH).await, 1);
}

#[tokio::test]
async fn too_many_requests_is_retried() {
    let server = MockServer::start().await;
    fails_then_succeeds(
        &server,
        ResponseTemplate::new(429).insert_header("Retry-After", "0"),
        2,
    )
    .await;
    client(config(&server.uri()))
        .set_flag(FLAG, "production", true)
        .await
        .unwrap();
    assert_eq!(count(&server, "POST", ON_PATH).await, 3);
}

#[tokio::test]
async fn internal_server_error_forever_gives_up_after_exactly_max_retries() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ON_PATH))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "name": "InternalError",
            "message": "database connection lost"
        })))
        .mount(&server)
        .await;
    let mut c = config(&server.uri());
    c.max_retries = 4;
    let err = client(c)
        .set_flag(FLAG, "production", true)
        .await
        .unwrap_err();
    assert_eq!(
        count(&server, "POST", ON_PATH).await,
        5,
        "1 attempt + 4 retries"
    );
    assert!(
        matches!(err, UnleashError::ServerError { attempts: 5, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("500 Internal Server Error"), "{text}");
    assert!(text.contains("database connection lost"), "{text}");
    assert!(text.contains("5 attempts"), "{text}");
    assert_no_secret(&err);
    // Nothing was read back: the switch itself failed.
    assert_eq!(count(&server, "GET", READ_PATH).await, 0);
}

#[tokio::test]
async fn zero_retries_means_one_attempt() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let mut c = config(&server.uri());
    c.max_retries = 0;
    let err = client(c)
        .set_flag(FLAG, "production", true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, UnleashError::ServerError { attempts: 1, .. }),
        "{err:?}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let port = free_port(); // bound and released: nothing listens there
    let base = format!("http://127.0.0.1:{port}/api");
    let mut c = config(&base);
    c.max_retries = 2;
    let started = Instant::now();
    let err = client(c)
        .set_flag(FLAG, "production", true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, UnleashError::Connect { attempts: 3, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&base), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(
        started.elapsed() >= Duration::from_millis(30),
        "backoff 10 + 20 ms"
    );
    assert_no_secret(&err);
}

#[tokio::test]
async fn final_statuses_are_not_retried_and_are_explained() {
    let cases: Vec<(u16, serde_json::Value, &str)> = vec![
        (
            401,
            json!({"name": "UnauthorizedError", "message": "You must log in to use Unleash."}),
            "Unleash rejected the token (401): wrong or expired token",
        ),
        (
            403,
            json!({"message": "invalid token: expected a different token type for this endpoint"}),
            "token lacks permission (403): an admin token or personal access token is needed, not a client token",
        ),
        (
            404,
            json!({"name": "NotFoundError", "message": "There's no feature named \"EnableStaticContent\" in project \"default\"."}),
            "Unleash has no flag \"EnableStaticContent\" in project \"default\" (404)",
        ),
        (
            404,
            json!({"name": "NotFoundError", "message": "Could not find environment production for feature: EnableStaticContent"}),
            "Unleash has no environment \"production\" in project \"default\" (404)",
        ),
        (
            404,
            json!({"name": "NotFoundError", "message": "The path you were looking for (/api/admin/x) is not available."}),
            "Unleash has no such endpoint",
        ),
        (
            415,
            json!({"name": "ContentTypeError", "message": "We do not accept the content-type you provided"}),
            "Unleash refused the request's Content-Type (415)",
        ),
        (
            400,
            json!({"message": "bad request"}),
            "Unleash answered 400 Bad Request",
        ),
    ];
    for (status, body, want) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body.clone()))
            .mount(&server)
            .await;
        let err = client(config(&server.uri()))
            .set_flag(FLAG, "production", true)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with(want), "{status} {body}: {text}");
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            1,
            "{status} must not be retried"
        );
        assert_no_secret(&err);
    }
}

/// Unleash Enterprise with change requests on for the environment refuses a direct switch with
/// a 403 `PermissionError` naming `SKIP_CHANGE_REQUEST` (the body below is the shape 8.x sends);
/// the error says so instead of blaming the token type, and the flag is not retried.
#[tokio::test]
async fn a_change_request_403_is_explained_in_plain_words() {
    let server = MockServer::start().await;
    let message = "You don't have the required permissions to perform this operation. To perform this action, you need the \"SKIP_CHANGE_REQUEST\" permission.";
    Mock::given(method("POST"))
        .and(path(ON_PATH))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "id": "8c1f5c1e-1b1a-4f3e-9d55-0a7b3f1f2c11",
            "name": "PermissionError",
            "message": message,
            "details": [{"message": message}],
            "permissions": ["SKIP_CHANGE_REQUEST"],
        })))
        .mount(&server)
        .await;
    let err = client(config(&server.uri()))
        .set_flag(FLAG, "production", true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, UnleashError::ChangeRequestRequired { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "Unleash requires a change request to switch flags in environment \"production\" in project \"default\" (403): the token's user may not skip change requests (permission SKIP_CHANGE_REQUEST); approve the change in Unleash, or use a token of a user who may skip them"
    );
    assert_eq!(count(&server, "POST", ON_PATH).await, 1, "not retried");
    assert_eq!(count(&server, "GET", READ_PATH).await, 0);
    assert_no_secret(&err);

    // Any other permission refusal keeps the token explanation.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "name": "PermissionError",
            "message": "You don't have the required permissions to perform this operation.",
            "permissions": ["UPDATE_FEATURE_ENVIRONMENT"],
        })))
        .mount(&server)
        .await;
    let err = client(config(&server.uri()))
        .set_flag(FLAG, "production", true)
        .await
        .unwrap_err();
    assert!(matches!(err, UnleashError::Forbidden), "{err:?}");
}

#[tokio::test]
async fn a_server_echoing_the_token_does_not_leak_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "message": format!("malformed token {TOKEN} in header Authorization")
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(500).set_body_string(format!("crash while checking {TOKEN}")),
        )
        .mount(&server)
        .await;
    let c = client(config(&server.uri()));
    let err = c.set_flag(FLAG, "production", true).await.unwrap_err();
    assert!(
        err.to_string().contains("malformed token *** in header"),
        "{err}"
    );
    assert_no_secret(&err);
    let err = c.flag_enabled(FLAG, "production").await.unwrap_err();
    assert!(
        err.to_string().contains("crash while checking ***"),
        "{err}"
    );
    assert_no_secret(&err);
}

#[tokio::test]
async fn a_state_that_does_not_change_is_an_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ON_PATH))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(READ_PATH))
        .respond_with(read_back(false))
        .mount(&server)
        .await;
    let err = client(config(&server.uri()))
        .set_flag(FLAG, "production", true)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            UnleashError::NotConfirmed {
                wanted: true,
                actual: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "Unleash still reports flag \"EnableStaticContent\" as off in environment \"production\" after switching it on"
    );
}

#[tokio::test]
async fn detection_reads_the_public_v3_index_once() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"name": "unleash-server", "version": "3.17.6"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut c = config(&server.uri());
    c.api = ApiMode::Auto;
    let c = client(c);
    assert_eq!(c.api().await.unwrap(), Api::V3);
    assert_eq!(
        c.clone().api().await.unwrap(),
        Api::V3,
        "cached, shared by clones"
    );
    server.verify().await;
}

#[tokio::test]
async fn detection_falls_back_to_the_projects_endpoint() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"name": "AuthenticationRequired"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/admin/projects"))
        .and(header("authorization", TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"projects": []})))
        .expect(1)
        .mount(&server)
        .await;
    let mut c = config(&server.uri());
    c.api = ApiMode::Auto;
    let c = client(c);
    assert_eq!(c.api().await.unwrap(), Api::V4);
    assert_eq!(c.api().await.unwrap(), Api::V4);
    server.verify().await;
}

#[tokio::test]
async fn failed_detection_is_not_cached() {
    let port = free_port();
    let mut c = config(&format!("http://127.0.0.1:{port}"));
    c.api = ApiMode::Auto;
    c.max_retries = 0;
    let c = client(c);
    assert!(matches!(
        c.api().await.unwrap_err(),
        UnleashError::Connect { .. }
    ));
    // Still unknown: the next call asks again (and fails again, nothing listens).
    assert!(matches!(
        c.api().await.unwrap_err(),
        UnleashError::Connect { .. }
    ));
}

#[test]
fn configuration_errors_are_clear_and_secret_free() {
    let err = UnleashClient::new(config("http://user:pass@unleash:4242/api")).unwrap_err();
    assert!(
        err.to_string().contains("must not contain credentials"),
        "{err}"
    );
    assert!(!err.to_string().contains("pass@"), "{err}");
    let err =
        UnleashClient::new(UnleashConfig::new("http://unleash/api", Secret::new(""))).unwrap_err();
    assert!(err.to_string().contains("UNLEASH_TOKEN is empty"), "{err}");
    let err = UnleashClient::new(config("unleash:4242")).unwrap_err();
    assert!(
        err.to_string().contains("http or https") || err.to_string().contains("not a URL"),
        "{err}"
    );
}

/// The request metrics, through a Prometheus recorder local to this thread.
#[test]
fn requests_are_counted_and_timed() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(500))
                .mount(&server)
                .await;
            let mut c = config(&server.uri());
            c.max_retries = 2;
            client(c)
                .set_flag(FLAG, "production", true)
                .await
                .unwrap_err();
            let mut c = config(&format!("http://127.0.0.1:{}", free_port()));
            c.max_retries = 0;
            client(c)
                .set_flag(FLAG, "production", true)
                .await
                .unwrap_err();
        })
    });
    let text = handle.render();
    assert!(
        text.contains(r#"unleash_requests_total{method="POST",status="500"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"unleash_requests_total{method="POST",status="error"} 1"#),
        "{text}"
    );
    assert!(text.contains("unleash_request_duration_seconds"), "{text}");
    assert!(!text.contains("s3cret"));
}

#[tokio::test]
async fn a_failing_read_before_the_switch_still_switches_and_leaves_the_old_state_unknown() {
    use unleash_remediation_service::roles::action::FlagResult;
    let server = MockServer::start().await;
    // The first read (the one before the switch) fails; the read-back after it works.
    Mock::given(method("GET"))
        .and(path(READ_PATH))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(READ_PATH))
        .respond_with(read_back(true))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ON_PATH))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let mut c = config(&server.uri());
    c.max_retries = 0;
    let report = switch_on(c, &FlagPolicy::default()).await;
    let o = &report.outcomes[0];
    assert!(matches!(o.result, FlagResult::Confirmed), "{o:?}");
    assert_eq!(o.was_on, None);
    assert!(report.succeeded());
    assert_eq!(report.message(), "EnableStaticContent: on (confirmed)");
    let (flags, left_out) = report.flags_json();
    assert_eq!(left_out, 0);
    assert_eq!(
        flags,
        [json!({"flag": FLAG, "from": null, "to": "on", "result": "confirmed", "reason": null})]
    );
    server.verify().await;
}

#[tokio::test]
async fn the_state_before_the_switch_is_read_once_and_reported() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(READ_PATH))
        .respond_with(read_back(false))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(READ_PATH))
        .respond_with(read_back(true))
        .with_priority(2)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ON_PATH))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let report = switch_on(config(&server.uri()), &FlagPolicy::default()).await;
    assert_eq!(report.outcomes[0].was_on, Some(false));
    assert_eq!(report.flags_json().0[0]["from"], "off");
    server.verify().await;
}

#[tokio::test]
async fn without_the_read_before_the_switch_only_the_read_back_is_sent() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(READ_PATH))
        .respond_with(read_back(true))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ON_PATH))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let policy = FlagPolicy::default().with_read_before(false);
    let report = switch_on(config(&server.uri()), &policy).await;
    assert!(report.succeeded(), "{}", report.message());
    assert_eq!(report.outcomes[0].was_on, None);
    assert_eq!(
        report.flags_json().0,
        [json!({"flag": FLAG, "from": null, "to": "on", "result": "confirmed", "reason": null})]
    );
    // The switch came first: the one GET is the read-back after it.
    let requests = server.received_requests().await.unwrap();
    let order: Vec<&str> = requests.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(order, ["POST", "GET"]);
    server.verify().await;
}

/// A dry run reads the flag whatever `READ_BEFORE_SWITCH` says: the read is all it does.
#[tokio::test]
async fn a_dry_run_reads_even_without_the_read_before_the_switch() {
    use unleash_remediation_service::roles::action::FlagResult;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(READ_PATH))
        .respond_with(read_back(false))
        .expect(1)
        .mount(&server)
        .await;
    let policy = FlagPolicy::default()
        .with_read_before(false)
        .with_dry_run(true);
    let report = switch_on(config(&server.uri()), &policy).await;
    assert!(
        matches!(
            report.outcomes[0].result,
            FlagResult::WouldSwitch {
                currently_on: false
            }
        ),
        "{:?}",
        report.outcomes[0]
    );
    assert_eq!(count(&server, "POST", ON_PATH).await, 0);
    server.verify().await;
}

/// The flags of one action are independent: after the first, they are switched side by side,
/// and the report keeps the action's order. Each switch takes 800 ms here; one after another,
/// five would take 4 s.
#[tokio::test]
async fn the_flags_of_one_action_are_switched_side_by_side_and_reported_in_order() {
    use unleash_remediation_service::roles::action::{apply, parse_value};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(
            r"^/api/admin/projects/default/features/Flag[0-9]/environments/production/on$",
        ))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(800)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(
            r"^/api/admin/projects/default/features/Flag[0-9]/environments/production$",
        ))
        .respond_with(read_back(true))
        .mount(&server)
        .await;
    let mut c = config(&format!("{}/api", server.uri()));
    c.timeout = Duration::from_secs(5);
    let unleash = client(c);
    let names = ["Flag4", "Flag0", "Flag3", "Flag1", "Flag2"];
    let value =
        serde_json::Value::Object(names.iter().map(|n| (n.to_string(), json!("on"))).collect());
    let changes = parse_value(&value).unwrap();
    let started = Instant::now();
    let report = apply(&unleash, "production", &changes).await;
    let took = started.elapsed();
    assert!(report.succeeded(), "{}", report.message());
    let (flags, _) = report.flags_json();
    let order: Vec<&str> = flags.iter().map(|f| f["flag"].as_str().unwrap()).collect();
    assert_eq!(order, names, "reported in the action's order");
    assert!(
        took < Duration::from_millis(3000),
        "five switches of 800 ms took {took:?}: not side by side"
    );
    let posts = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 5);
}
