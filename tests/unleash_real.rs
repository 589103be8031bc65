//! The Unleash client against real servers: Unleash 8.2.0 and 7.5.1 (v4+ API) and 3.17.6 (v3
//! API), all from npm on private PostgreSQL clusters (see `testkit::unleash`). One server per
//! version for this binary; every test uses its own flag names. Every v4+ test runs on both
//! 7.5.1 and 8.2.0 (`<name>::v7`, `<name>::v8`).

use std::time::Duration;
use testkit::unleash::{UnleashServer, UnleashVersion};
use unleash_remediation_service::config::Secret;
use unleash_remediation_service::unleash::{
    Api, ApiMode, FlagCreated, UnleashClient, UnleashConfig, UnleashError,
};

fn server(version: UnleashVersion) -> &'static UnleashServer {
    UnleashServer::shared(version).unwrap_or_else(|e| panic!("{e:#}"))
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn client(config: UnleashConfig) -> UnleashClient {
    UnleashClient::new(config).expect("valid client configuration")
}

const SEEN_WITHIN: Duration = Duration::from_secs(5);

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
    toggle_is_seen_by_sdks_in_that_environment_only,
    auto_detects_the_v4_api_and_accepts_a_base_without_api,
    unknown_flag_is_reported_plainly,
    unknown_environment_is_reported_plainly,
    a_read_of_an_unknown_environment_or_flag_says_which,
    flag_in_another_project_is_explained_with_unleash_words,
    wrong_token_is_401_in_plain_words,
    client_token_is_403_in_plain_words,
    forcing_the_v3_api_explains_the_missing_endpoint,
    personal_access_token_switches_and_reads_flags,
    backend_token_from_the_admin_api_reads_the_client_api,
);

async fn toggle_is_seen_by_sdks_in_that_environment_only(version: UnleashVersion) {
    let s = server(version);
    let c = client(s.admin_config());
    let flag = unique("EnableStaticContent");

    assert_eq!(c.create_flag(&flag).await.unwrap(), FlagCreated::New);
    assert_eq!(
        c.create_flag(&flag).await.unwrap(),
        FlagCreated::AlreadyExisted
    );
    assert!(!s.client_flag_enabled(&flag, "development").await.unwrap());

    c.set_flag(&flag, "development", true).await.unwrap();
    s.wait_client_flag(&flag, "development", true, SEEN_WITHIN)
        .await
        .unwrap();
    assert!(c.flag_enabled(&flag, "development").await.unwrap());
    // Only the named environment changed.
    assert!(!s.client_flag_enabled(&flag, "production").await.unwrap());
    assert!(!c.flag_enabled(&flag, "production").await.unwrap());

    c.set_flag(&flag, "development", false).await.unwrap();
    s.wait_client_flag(&flag, "development", false, SEEN_WITHIN)
        .await
        .unwrap();

    // On twice: idempotent, still confirmed.
    c.set_flag(&flag, "development", true).await.unwrap();
    c.set_flag(&flag, "development", true).await.unwrap();
    s.wait_client_flag(&flag, "development", true, SEEN_WITHIN)
        .await
        .unwrap();

    c.set_flag(&flag, "production", true).await.unwrap();
    s.wait_client_flag(&flag, "production", true, SEEN_WITHIN)
        .await
        .unwrap();
}

async fn auto_detects_the_v4_api_and_accepts_a_base_without_api(version: UnleashVersion) {
    let s = server(version);
    let c = client(s.admin_config());
    assert_eq!(c.api().await.unwrap(), Api::V4);

    let mut config = s.admin_config();
    config.base_url = format!("http://127.0.0.1:{}", s.port());
    let c = client(config);
    assert_eq!(c.base_url(), s.base_url());
    let flag = unique("NoApiSuffix");
    c.create_flag(&flag).await.unwrap();
    c.set_flag(&flag, "development", true).await.unwrap();
    s.wait_client_flag(&flag, "development", true, SEEN_WITHIN)
        .await
        .unwrap();
}

async fn unknown_flag_is_reported_plainly(version: UnleashVersion) {
    let s = server(version);
    let c = client(s.admin_config());
    let flag = unique("EnablePromotion");
    let err = c.set_flag(&flag, "development", true).await.unwrap_err();
    assert!(matches!(err, UnleashError::NoSuchFlag { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("Unleash has no flag \"{flag}\" in project \"default\" (404)")
    );
}

async fn unknown_environment_is_reported_plainly(version: UnleashVersion) {
    let s = server(version);
    let c = client(s.admin_config());
    let flag = unique("EnvCheck");
    c.create_flag(&flag).await.unwrap();
    let err = c.set_flag(&flag, "staging", true).await.unwrap_err();
    assert!(
        matches!(err, UnleashError::NoSuchEnvironment { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("Unleash has no environment \"staging\" in project \"default\" (404)"),
        "{text}"
    );
    assert!(text.contains("UNLEASH_ENVIRONMENT"), "{text}");
    // Nothing was switched anywhere.
    assert!(!s.client_flag_enabled(&flag, "development").await.unwrap());
}

/// The read (before a switch, in a dry run, and the read-back) asks for the flag's one
/// environment; Unleash's 404s for it name an unknown environment and an unknown flag in other
/// words than the switch's.
async fn a_read_of_an_unknown_environment_or_flag_says_which(version: UnleashVersion) {
    let s = server(version);
    let c = client(s.admin_config());
    let flag = unique("ReadCheck");
    c.create_flag(&flag).await.unwrap();
    assert!(!c.flag_enabled(&flag, "production").await.unwrap());
    let err = c.flag_enabled(&flag, "staging").await.unwrap_err();
    assert!(
        matches!(err, UnleashError::NoSuchEnvironment { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("Unleash has no environment \"staging\" in project \"default\" (404)"),
        "{err}"
    );
    let missing = unique("NeverCreated");
    let err = c.flag_enabled(&missing, "production").await.unwrap_err();
    assert!(matches!(err, UnleashError::NoSuchFlag { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("Unleash has no flag \"{missing}\" in project \"default\" (404)")
    );
}

async fn flag_in_another_project_is_explained_with_unleash_words(version: UnleashVersion) {
    let s = server(version);
    let flag = unique("OtherProject");
    client(s.admin_config()).create_flag(&flag).await.unwrap();
    let mut config = s.admin_config();
    config.project = "website".into();
    let err = client(config)
        .set_flag(&flag, "development", true)
        .await
        .unwrap_err();
    assert!(matches!(err, UnleashError::NoSuchFlag { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "Unleash has no flag \"{flag}\" in project \"website\" (404): "
        )),
        "{text}"
    );
    assert!(text.contains("in project \"default\""), "{text}");
}

async fn wrong_token_is_401_in_plain_words(version: UnleashVersion) {
    let s = server(version);
    let flag = unique("WrongToken");
    client(s.admin_config()).create_flag(&flag).await.unwrap();
    let wrong = "*:*.this-token-does-not-exist-4f1c";
    let mut config = s.admin_config();
    config.token = Secret::new(wrong);
    let err = client(config)
        .set_flag(&flag, "development", true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, UnleashError::Unauthorized { hint: None }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "Unleash rejected the token (401): wrong or expired token"
    );
    assert!(!format!("{err} {err:?}").contains(wrong));
    assert!(!s.client_flag_enabled(&flag, "development").await.unwrap());
}

async fn client_token_is_403_in_plain_words(version: UnleashVersion) {
    let s = server(version);
    let flag = unique("ClientToken");
    client(s.admin_config()).create_flag(&flag).await.unwrap();
    let mut config = s.admin_config();
    config.token = Secret::new(s.client_token());
    let err = client(config)
        .set_flag(&flag, "development", true)
        .await
        .unwrap_err();
    assert!(matches!(err, UnleashError::Forbidden), "{err:?}");
    assert_eq!(
        err.to_string(),
        "token lacks permission (403): an admin token or personal access token is needed, not a client token"
    );
    assert!(!err.to_string().contains(s.client_token()));
}

async fn forcing_the_v3_api_explains_the_missing_endpoint(version: UnleashVersion) {
    let s = server(version);
    let flag = unique("ForcedV3");
    client(s.admin_config()).create_flag(&flag).await.unwrap();
    let mut config = s.admin_config();
    config.api = ApiMode::V3;
    let err = client(config)
        .set_flag(&flag, "development", true)
        .await
        .unwrap_err();
    // 7.5.1 checks credentials before routing and refuses Basic auth with 401; the error
    // says what is really wrong.
    assert!(matches!(err, UnleashError::Unauthorized { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Unleash rejected the token (401): wrong or expired token; the server answers like Unleash 4 or later, which has no v3 API: set UNLEASH_API=v4 or auto"
    );
}

/// A personal access token (what Unleash 8 recommends instead of admin tokens) switches and
/// reads flags like the admin token does.
async fn personal_access_token_switches_and_reads_flags(version: UnleashVersion) {
    let s = server(version);
    let pat = s.create_personal_access_token().await.unwrap();
    assert!(pat.starts_with("user:"), "a PAT, not {pat:.5}…");
    let mut config = s.admin_config();
    config.token = Secret::new(pat.clone());
    let c = client(config);
    let flag = unique("PatFlag");
    assert_eq!(c.create_flag(&flag).await.unwrap(), FlagCreated::New);
    c.set_flag(&flag, "production", true).await.unwrap();
    assert!(c.flag_enabled(&flag, "production").await.unwrap());
    s.wait_client_flag(&flag, "production", true, SEEN_WITHIN)
        .await
        .unwrap();
    c.set_flag(&flag, "production", false).await.unwrap();
    s.wait_client_flag(&flag, "production", false, SEEN_WITHIN)
        .await
        .unwrap();

    // A PAT in a wrong form is refused in plain words, and never echoed.
    let mut config = s.admin_config();
    let wrong = format!("{pat}x");
    config.token = Secret::new(wrong.clone());
    let err = client(config)
        .set_flag(&flag, "production", true)
        .await
        .unwrap_err();
    assert!(matches!(err, UnleashError::Unauthorized { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(&pat));
}

/// A backend token minted through the admin API reads the client API (what an SDK does).
async fn backend_token_from_the_admin_api_reads_the_client_api(version: UnleashVersion) {
    let s = server(version);
    let token = s.create_backend_token("production").await.unwrap();
    let flag = unique("SdkRead");
    let c = client(s.admin_config());
    c.create_flag(&flag).await.unwrap();
    c.set_flag(&flag, "production", true).await.unwrap();
    let url = format!("{}/client/features/{flag}", s.base_url());
    let answer = reqwest::Client::new()
        .get(&url)
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["enabled"], true, "{body}");
}

/// What changed in 8.x for anyone reading flags: the client API takes backend tokens only
/// (admin tokens and PATs get 403, no token 401), and the admin feature read has no top-level
/// `strategies`/`variants` any more (the client reads `environments[]`).
#[tokio::test]
async fn v8_client_api_takes_backend_tokens_only_and_the_feature_read_is_per_environment() {
    let s = server(UnleashVersion::V8);
    let flag = unique("V8Changes");
    let c = client(s.admin_config());
    c.create_flag(&flag).await.unwrap();
    c.set_flag(&flag, "development", true).await.unwrap();
    assert!(c.flag_enabled(&flag, "development").await.unwrap());
    assert!(!c.flag_enabled(&flag, "production").await.unwrap());

    let http = reqwest::Client::new();
    let url = format!("{}/client/features/{flag}", s.base_url());
    let pat = s.create_personal_access_token().await.unwrap();
    for (what, token) in [("admin token", s.admin_token()), ("PAT", pat.as_str())] {
        let answer = http
            .get(&url)
            .header("Authorization", token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 403, "{what} on the client API");
    }
    let answer = http.get(&url).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 401, "no token on the client API");
    assert!(s.client_flag_enabled(&flag, "development").await.unwrap());

    let read: serde_json::Value = http
        .get(format!(
            "{}/admin/projects/default/features/{flag}",
            s.base_url()
        ))
        .header("Authorization", s.admin_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(read.get("strategies").is_none(), "{read}");
    assert!(read.get("variants").is_none(), "{read}");
    assert!(read["environments"].is_array(), "{read}");
}

#[tokio::test]
async fn v3_toggle_with_basic_auth_and_exact_content_type() {
    let s = server(UnleashVersion::V3);
    let c = client(s.admin_config());
    assert_eq!(c.api().await.unwrap(), Api::V3);
    let flag = unique("EnableStaticContent");

    assert_eq!(c.create_flag(&flag).await.unwrap(), FlagCreated::New);
    assert_eq!(
        c.create_flag(&flag).await.unwrap(),
        FlagCreated::AlreadyExisted
    );
    assert!(!s.client_flag_enabled(&flag, "production").await.unwrap());

    // The environment means nothing to 3.x: flags are global.
    c.set_flag(&flag, "production", true).await.unwrap();
    s.wait_client_flag(&flag, "production", true, SEEN_WITHIN)
        .await
        .unwrap();
    c.set_flag(&flag, "production", false).await.unwrap();
    s.wait_client_flag(&flag, "production", false, SEEN_WITHIN)
        .await
        .unwrap();
    c.set_flag(&flag, "production", true).await.unwrap();
    c.set_flag(&flag, "production", true).await.unwrap();
    assert!(c.flag_enabled(&flag, "production").await.unwrap());
}

/// Proves the server really is as strict as Keptn's users found it, so the test above means
/// something: `application/json; charset=utf-8` and a missing Content-Type are refused.
#[tokio::test]
async fn v3_server_refuses_any_other_content_type() {
    let s = server(UnleashVersion::V3);
    let flag = unique("ContentType");
    client(s.admin_config()).create_flag(&flag).await.unwrap();
    let url = format!("{}/admin/features/{flag}/toggle/on", s.base_url());
    let http = reqwest::Client::new();
    for content_type in [None, Some("application/json; charset=utf-8")] {
        let mut request = http
            .post(&url)
            .basic_auth(s.user(), Some(s.admin_token()))
            .body("{}");
        if let Some(ct) = content_type {
            request = request.header("Content-Type", ct);
        }
        let status = request.send().await.unwrap().status();
        assert_eq!(status.as_u16(), 415, "Content-Type {content_type:?}");
    }
    assert!(!s.client_flag_enabled(&flag, "production").await.unwrap());
}

#[tokio::test]
async fn v3_wrong_token_and_unknown_flag_are_reported_plainly() {
    let s = server(UnleashVersion::V3);
    let flag = unique("V3Errors");
    client(s.admin_config()).create_flag(&flag).await.unwrap();

    let mut config = s.admin_config();
    config.token = Secret::new("definitely-wrong-password");
    // Forced: detection would work too (the v3 index is public), but be explicit.
    config.api = ApiMode::V3;
    let err = client(config)
        .set_flag(&flag, "production", true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, UnleashError::Unauthorized { hint: None }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("definitely-wrong-password"));

    let missing = unique("V3Missing");
    let err = client(s.admin_config())
        .set_flag(&missing, "production", true)
        .await
        .unwrap_err();
    assert!(matches!(err, UnleashError::NoSuchFlag { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("Unleash has no flag \"{missing}\" (404)")
    );
    assert!(!s.client_flag_enabled(&flag, "production").await.unwrap());
}

#[tokio::test]
async fn v3_auto_detection_survives_a_wrong_token() {
    // The v3 index is public, so detection does not depend on the credentials; the wrong
    // token is then reported by the toggle itself.
    let s = server(UnleashVersion::V3);
    let mut config = s.admin_config();
    config.token = Secret::new("wrong-password-for-detection");
    let c = client(config);
    assert_eq!(c.api().await.unwrap(), Api::V3);
}
