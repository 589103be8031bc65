//! How the service fits into its surroundings: the Keptn API as resource source, an existing
//! JetStream stream, NATS authentication, and the `send` command.

use crate::common::{BIN, Bus, Service, problem_open, resource_dir, vector};
use crate::common::{FOREIGN, spawn_responder};
use base64::Engine as _;
use serde_json::json;
use std::time::Duration;
use testkit::nats::NatsServer;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn remediation_file_comes_from_the_keptn_api() {
    let keptn = MockServer::start().await;
    let content = base64::engine::general_purpose::STANDARD.encode(FOREIGN);
    Mock::given(method("GET"))
        .and(path(
            "/api/resource-service/v1/project/website/stage/production/service/front-end/resource/remediation.yaml",
        ))
        .and(header("x-token", "keptn-api-token"))
        .and(query_param("gitCommitID", "abc123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "resourceURI": "remediation.yaml",
            "resourceContent": content
        })))
        .expect(1..)
        .mount(&keptn)
        .await;
    // No shipyard in this project: a found remediation.yaml enables remediation.
    Mock::given(method("GET"))
        .and(path(
            "/api/resource-service/v1/project/website/resource/shipyard.yaml",
        ))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json!({"code": 404, "message": "not found"})),
        )
        .mount(&keptn)
        .await;

    let nats = NatsServer::start().unwrap();
    let mut svc = Service::spawn(&[
        ("NATS_URL", nats.url()),
        ("KEPTN_API_ENDPOINT", format!("{}/api", keptn.uri())),
        ("KEPTN_API_TOKEN", "keptn-api-token".into()),
        ("ROLES", "remediator".into()),
    ]);
    svc.wait_ready().await;
    let bus = Bus::connect(&nats.url()).await;
    spawn_responder(&bus);
    let mut problem = problem_open("Pass me", "from-keptn-api");
    problem["gitcommitid"] = json!("abc123");
    bus.publish(&problem).await;
    let finished = bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(finished[0]["data"]["result"], "pass", "{}", finished[0]);
    assert_eq!(finished[0]["gitcommitid"], "abc123");
    assert!(
        !svc.log().contains("keptn-api-token"),
        "the token leaked into the log"
    );
}

#[tokio::test]
async fn binds_to_an_existing_keptn_stream() {
    let nats = NatsServer::start().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "keptn-events".into(),
        subjects: vec!["sh.keptn.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = resource_dir(Some(FOREIGN), None);
    let mut svc = Service::spawn(&[
        ("NATS_URL", nats.url()),
        ("NATS_MODE", "jetstream".into()),
        ("RESOURCE_DIR", dir.path().display().to_string()),
    ]);
    svc.wait_ready().await;
    assert!(
        svc.log().contains("binding to existing JetStream stream"),
        "{}",
        svc.log()
    );
    let names: Vec<String> = {
        use futures::TryStreamExt;
        js.stream_names().try_collect().await.unwrap()
    };
    assert!(names.contains(&"keptn-events".to_owned()));
    assert!(
        !names.contains(&"keptn".to_owned()),
        "a second stream was created: {names:?}"
    );
    let bus = Bus::connect(&nats.url()).await;
    spawn_responder(&bus);
    bus.publish(&problem_open("Pass me", "bound-stream")).await;
    let finished = bus
        .wait_for(
            "sh.keptn.event.remediation.finished",
            1,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(finished[0]["data"]["result"], "pass");
}

#[tokio::test]
async fn connects_with_token_and_with_user_password() {
    for (server_args, env) in [
        (
            vec!["--auth", "s3cret-token"],
            vec![("NATS_TOKEN", "s3cret-token".to_owned())],
        ),
        (
            vec!["--user", "remediator", "--pass", "s3cret-pass"],
            vec![
                ("NATS_USER", "remediator".to_owned()),
                ("NATS_PASSWORD", "s3cret-pass".to_owned()),
            ],
        ),
    ] {
        let port = testkit::free_port();
        let _server = PlainNats::start(port, &server_args);
        let url = format!("nats://127.0.0.1:{port}");
        let mut env = env.clone();
        env.push(("NATS_URL", url));
        env.push(("ROLES", "get-action".to_owned()));
        let mut svc = Service::spawn(&env);
        svc.wait_ready().await;
        let log = svc.log();
        assert!(
            !log.contains("s3cret"),
            "a secret leaked into the log:\n{log}"
        );
    }
}

#[tokio::test]
async fn send_publishes_a_file_and_refuses_what_is_not_a_cloudevent() {
    let nats = NatsServer::start().unwrap();
    let bus = Bus::connect(&nats.url()).await;
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/tutorial/problemopen.json"
    );
    let out = std::process::Command::new(BIN)
        .args(["send", file])
        .env("NATS_URL", nats.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sh.keptn.event.problem.open"));
    let got = bus
        .wait_for("sh.keptn.event.problem.open", 1, Duration::from_secs(5))
        .await;
    assert_eq!(got[0], vector("tutorial/problemopen.json"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "[1,2]").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["send", bad.to_str().unwrap()])
        .env("NATS_URL", nats.url())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a CloudEvent"));
}

/// Runs `openssl` with `args` in `dir`, failing the test with its output when it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (apt-get install -y openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn connects_over_tls_with_a_custom_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        d.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );

    let port = testkit::free_port();
    let (cert, key) = (d.join("server.pem"), d.join("server.key"));
    let _server = PlainNats::start(
        port,
        &[
            "--tls",
            "--tlscert",
            cert.to_str().unwrap(),
            "--tlskey",
            key.to_str().unwrap(),
        ],
    );
    let mut svc = Service::spawn(&[
        ("NATS_URL", format!("tls://127.0.0.1:{port}")),
        ("NATS_TLS_CA", d.join("ca.pem").display().to_string()),
        ("ROLES", "get-action".to_owned()),
    ]);
    svc.wait_ready().await;
    assert!(svc.log().contains("NATS connected"), "{}", svc.log());
}

#[tokio::test]
async fn first_connect_is_retried_until_nats_comes_up() {
    let port = testkit::free_port();
    let mut svc = Service::spawn(&[
        ("NATS_URL", format!("nats://127.0.0.1:{port}")),
        ("ROLES", "get-action".to_owned()),
    ]);
    // No NATS yet: alive, not ready.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while svc.get("/health").await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "/health never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = svc.get("/ready").await;
    assert_eq!(status, 503, "{body}");
    let _server = PlainNats::start(port, &[]);
    svc.wait_ready().await;
}

/// A nats-server with options the test kit does not offer (auth, TLS), killed on drop.
struct PlainNats(std::process::Child);

impl PlainNats {
    fn start(port: u16, args: &[&str]) -> PlainNats {
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server (apt-get install -y nats-server)");
        PlainNats(child)
    }
}

impl Drop for PlainNats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn connects_with_an_nkey() {
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "authorization {{ users = [ {{ nkey: {} }} ] }}\n",
            user.public_key()
        ),
    )
    .unwrap();
    let port = testkit::free_port();
    let _server = PlainNats::start(port, &["-c", conf.to_str().unwrap()]);
    let mut svc = Service::spawn(&[
        ("NATS_URL", format!("nats://127.0.0.1:{port}")),
        ("NATS_NKEY", seed.clone()),
        ("ROLES", "get-action".to_owned()),
    ]);
    svc.wait_ready().await;
    assert!(
        !svc.log().contains(&seed),
        "the nkey seed leaked into the log"
    );

    // Without the key the server refuses the service: it stays unready.
    let mut refused = Service::spawn(&[
        ("NATS_URL", format!("nats://127.0.0.1:{port}")),
        ("ROLES", "get-action".to_owned()),
    ]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(refused.get("/ready").await.0, 503);
    refused.kill9();
}
