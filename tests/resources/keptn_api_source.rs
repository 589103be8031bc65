//! The Keptn API resource source against a stub that answers like Keptn's resource-service
//! (Keptn 0.12 – 1.x) and configuration-service (Keptn < 0.12):
//! `GET /{service}/v1/project/{p}/stage/{s}[/service/{svc}]/resource/{uri}`, `x-token` auth,
//! `{resourceURI, resourceContent}` with base64 content, 404 when there is no such resource.

use base64::Engine;
use serde_json::json;
use std::time::Duration;
use unleash_remediation_service::keptn::Scope;
use unleash_remediation_service::resources::{
    KeptnApiSource, RemediationFile, ResourceApi, ResourceSource, SourceError,
};
use unleash_remediation_service::secret::Secret;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "s3cr3t-keptn-token";

const REMEDIATION: &str = "apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
spec:
  remediations:
    - problemType: Failure rate increase
      actionsOnOpen:
        - action: toggle-feature
          value: {EnableStaticContent: \"on\"}
";

fn resource(uri: &str, text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "resourceURI": uri,
        "resourceContent": base64::engine::general_purpose::STANDARD.encode(text),
        "metadata": {"upstreamURL": "https://git.example/website", "version": "abc"}
    }))
}

fn scope(service: &str) -> Scope {
    Scope {
        project: "website".into(),
        stage: "production".into(),
        service: service.into(),
    }
}

fn source(server: &MockServer, api: ResourceApi) -> ResourceSource {
    ResourceSource::KeptnApi(
        KeptnApiSource::new(
            &format!("{}/api/", server.uri()),
            Secret::new(TOKEN),
            api,
            Duration::from_secs(2),
        )
        .unwrap()
        .with_retries(2, Duration::from_millis(10)),
    )
}

#[tokio::test]
async fn resource_service_reads_the_service_file_at_the_commit() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/api/resource-service/v1/project/website/stage/production/service/front-end/resource/remediation.yaml",
        ))
        .and(header("x-token", TOKEN))
        .and(query_param("gitCommitID", "0a1b2c3d"))
        .respond_with(resource("remediation.yaml", REMEDIATION))
        .expect(1)
        .mount(&server)
        .await;

    let loaded = source(&server, ResourceApi::ResourceService)
        .remediation(&scope("front-end"), Some("0a1b2c3d"))
        .await
        .unwrap()
        .expect("found");
    assert_eq!(loaded.text, REMEDIATION);
    assert!(
        loaded.origin.starts_with(&server.uri()),
        "{}",
        loaded.origin
    );
    assert!(!loaded.origin.contains(TOKEN));
    let file = RemediationFile::parse(&loaded.text, &loaded.origin).unwrap();
    assert_eq!(
        file.action(Some("Failure rate increase"), None, 0)
            .unwrap()
            .value,
        json!({"EnableStaticContent": "on"})
    );
}

#[tokio::test]
async fn without_a_service_the_stage_file_is_read() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/api/resource-service/v1/project/website/stage/production/resource/remediation.yaml",
        ))
        .and(header("x-token", TOKEN))
        .respond_with(resource("remediation.yaml", REMEDIATION))
        .expect(1)
        .mount(&server)
        .await;
    let loaded = source(&server, ResourceApi::ResourceService)
        .remediation(&scope(""), None)
        .await
        .unwrap();
    assert!(loaded.is_some());
    // No commit given, no commit parameter sent.
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].url.query(), None);
}

#[tokio::test]
async fn configuration_service_has_no_commit_parameter() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/api/configuration-service/v1/project/website/stage/production/service/front-end/resource/remediation.yaml",
        ))
        .and(header("x-token", TOKEN))
        .respond_with(|req: &Request| {
            if req.url.query().is_some() {
                ResponseTemplate::new(400)
            } else {
                resource("remediation.yaml", REMEDIATION)
            }
        })
        .expect(1)
        .mount(&server)
        .await;
    let loaded = source(&server, ResourceApi::ConfigurationService)
        .remediation(&scope("front-end"), Some("0a1b2c3d"))
        .await
        .unwrap();
    assert_eq!(loaded.unwrap().text, REMEDIATION);
}

#[tokio::test]
async fn shipyard_is_a_project_resource() {
    let server = MockServer::start().await;
    let shipyard = "apiVersion: spec.keptn.sh/0.2.2\nkind: Shipyard\nspec:\n  stages:\n    - name: production\n      sequences:\n        - name: remediation\n";
    Mock::given(method("GET"))
        .and(path(
            "/api/resource-service/v1/project/website/resource/shipyard.yaml",
        ))
        .and(header("x-token", TOKEN))
        .and(query_param("gitCommitID", "0a1b2c3d"))
        .respond_with(resource("shipyard.yaml", shipyard))
        .expect(1)
        .mount(&server)
        .await;
    let loaded = source(&server, ResourceApi::ResourceService)
        .shipyard("website", Some("0a1b2c3d"))
        .await
        .unwrap();
    assert_eq!(loaded.unwrap().text, shipyard);
}

#[tokio::test]
async fn not_found_is_none() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"code": 404, "message": "Could not find resource remediation.yaml"}),
        ))
        .expect(2)
        .mount(&server)
        .await;
    let src = source(&server, ResourceApi::ResourceService);
    assert_eq!(
        src.remediation(&scope("front-end"), None).await.unwrap(),
        None
    );
    assert_eq!(src.shipyard("website", None).await.unwrap(), None);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported_without_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500).set_body_string("internal error"))
        .expect(3)
        .mount(&server)
        .await;
    let err = source(&server, ResourceApi::ResourceService)
        .remediation(&scope("front-end"), Some("0a1b2c3d"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SourceError::Status { status: 500, .. }),
        "{err:?}"
    );
    let text = format!("{err} {err:?}");
    assert!(text.contains("500"), "{text}");
    assert!(text.contains("internal error"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
}

#[tokio::test]
async fn a_transient_error_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(resource("remediation.yaml", REMEDIATION))
        .mount(&server)
        .await;
    let loaded = source(&server, ResourceApi::ResourceService)
        .remediation(&scope("front-end"), None)
        .await
        .unwrap();
    assert_eq!(loaded.unwrap().text, REMEDIATION);
}

#[tokio::test]
async fn client_errors_are_final() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"message": "invalid token"})))
        .expect(1)
        .mount(&server)
        .await;
    let err = source(&server, ResourceApi::ResourceService)
        .remediation(&scope("front-end"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SourceError::Status { status: 401, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn names_are_escaped_in_the_path() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/api/resource-service/v1/project/web%20site/stage/prod%3F/service/front%20end/resource/remediation.yaml",
        ))
        .respond_with(resource("remediation.yaml", REMEDIATION))
        .expect(1)
        .mount(&server)
        .await;
    let api = KeptnApiSource::new(
        &format!("{}/api", server.uri()),
        Secret::new(TOKEN),
        ResourceApi::ResourceService,
        Duration::from_secs(2),
    )
    .unwrap();
    let odd = Scope {
        project: "web site".into(),
        stage: "prod?".into(),
        service: "front end".into(),
    };
    let url = api.remediation_url(&odd, Some("a b")).unwrap();
    assert!(
        url.ends_with("/service/front%20end/resource/remediation.yaml?gitCommitID=a%20b"),
        "{url}"
    );
    // A slash inside a name is refused rather than escaped: it would be a different resource
    // on a proxy that decodes %2F.
    let slashed = Scope {
        service: "front/end".into(),
        ..odd.clone()
    };
    assert!(api.remediation_url(&slashed, None).is_err());
    // The escaped form reaches the server as written.
    let source = ResourceSource::KeptnApi(api);
    assert!(source.remediation(&odd, None).await.unwrap().is_some());
}

#[tokio::test]
async fn bad_answers_are_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/api/resource-service/v1/project/a/resource/shipyard.yaml",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>proxy login</html>"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/api/resource-service/v1/project/b/resource/shipyard.yaml",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"resourceContent": "%%%"})))
        .mount(&server)
        .await;
    let src = source(&server, ResourceApi::ResourceService);
    let err = src.shipyard("a", None).await.unwrap_err();
    assert!(matches!(err, SourceError::BadResponse { .. }), "{err:?}");
    let err = src.shipyard("b", None).await.unwrap_err();
    assert!(err.to_string().contains("base64"), "{err}");
}

#[tokio::test]
async fn an_unreachable_api_is_an_error_after_retries() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let src = ResourceSource::KeptnApi(
        KeptnApiSource::new(
            &format!("http://127.0.0.1:{port}/api"),
            Secret::new(TOKEN),
            ResourceApi::ResourceService,
            Duration::from_secs(1),
        )
        .unwrap()
        .with_retries(1, Duration::from_millis(10)),
    );
    let err = src
        .remediation(&scope("front-end"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(TOKEN));
}

#[test]
fn the_token_never_prints() {
    let token = Secret::new(TOKEN);
    assert_eq!(format!("{token:?}"), "***");
    let api = KeptnApiSource::new(
        "http://keptn.example/api",
        token,
        ResourceApi::ResourceService,
        Duration::from_secs(1),
    )
    .unwrap();
    assert!(!format!("{api:?}").contains(TOKEN));
    assert!(
        KeptnApiSource::new(
            "keptn",
            Secret::new(TOKEN),
            ResourceApi::ResourceService,
            Duration::from_secs(1)
        )
        .is_err()
    );
}
