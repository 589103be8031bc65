//! The get-action role against Keptn 1.4.5's own get-action.triggered events (copies under
//! tests/vectors/keptn-1.x/) and a resource directory holding Keptn 0.8's remediation.yaml.

use cloudevents::{AttributesReader, Data, Event};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use unleash_remediation_service::bus::Collector;
use unleash_remediation_service::keptn::{self, EventFactory, Kind};
use unleash_remediation_service::resources::{DirSource, ResourceSource};
use unleash_remediation_service::roles::get_action::GetActionRole;

const CONTEXT: &str = "08735340-6f9e-4b32-97ff-3b6c292bc50f";
const TRIGGER_ID: &str = "f2b878d3-03c0-4e8f-bc3f-454bc1b3d79d";

fn vector(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/keptn-1.x")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A resource directory with `text` as the service-level remediation.yaml of the vectors' scope.
fn resource_dir(text: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    if let Some(text) = text {
        let service = dir.path().join("myproject/mystage/myservice");
        std::fs::create_dir_all(&service).unwrap();
        std::fs::write(service.join("remediation.yaml"), text).unwrap();
    }
    dir
}

fn keptn_08_remediation() -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/keptn-0.8/remediation.yaml"),
    )
    .unwrap()
}

/// Runs the role on one raw event; returns the trigger's id and what the role published.
async fn run(raw: &[u8], dir: &Path) -> (String, Vec<Event>) {
    let incoming = keptn::decode_bytes(raw).expect("the vector decodes");
    let Kind::GetActionTriggered(trigger) = &incoming.kind else {
        panic!("not a get-action.triggered: {:?}", incoming.kind)
    };
    let role = GetActionRole::new(
        ResourceSource::Dir(DirSource::new(dir)),
        EventFactory::new("unleash-remediation-service"),
    );
    let out = Collector::new();
    role.handle(&incoming.meta, trigger, &out).await.unwrap();
    (incoming.meta.id.clone(), out.events())
}

fn data(event: &Event) -> &Value {
    match event.data() {
        Some(Data::Json(v)) => v,
        other => panic!("data is not JSON: {other:?}"),
    }
}

fn ext(event: &Event, name: &str) -> Option<String> {
    event.extension(name).map(|v| v.to_string())
}

/// started, then finished; both replies to the trigger, in its context.
fn assert_replies(events: &[Event], trigger_id: &str, context: Option<&str>) {
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0].ty(), "sh.keptn.event.get-action.started");
    assert_eq!(events[1].ty(), "sh.keptn.event.get-action.finished");
    for e in events {
        assert_eq!(ext(e, "triggeredid").as_deref(), Some(trigger_id));
        if let Some(context) = context {
            assert_eq!(ext(e, "shkeptncontext").as_deref(), Some(context));
        }
    }
    let started = data(&events[0]);
    assert_eq!(started["project"], data(&events[1])["project"]);
}

#[tokio::test]
async fn index_0_gives_the_first_action_and_next_index_1() {
    let dir = resource_dir(Some(&keptn_08_remediation()));
    let (id, events) = run(&vector("get-action.triggered-0.json"), dir.path()).await;
    assert_eq!(id, TRIGGER_ID);
    assert_replies(&events, TRIGGER_ID, Some(CONTEXT));
    for e in &events {
        assert_eq!(ext(e, "gitcommitid").as_deref(), Some("1234"));
    }
    let started = data(&events[0]);
    assert_eq!(started["project"], "myproject");
    assert_eq!(started["stage"], "mystage");
    assert_eq!(started["service"], "myservice");

    let finished = data(&events[1]);
    assert_eq!(finished["status"], "succeeded");
    assert_eq!(finished["result"], "pass");
    assert_eq!(finished["action"]["name"], "toggle-feature");
    assert_eq!(finished["action"]["action"], "toggle-feature");
    assert_eq!(
        finished["action"]["description"],
        "Toggle feature flag EnablePromotion to OFF"
    );
    assert_eq!(
        finished["action"]["value"],
        json!({"EnablePromotion": "off"})
    );
    assert_eq!(finished["get-action"], json!({"actionIndex": 1}));
    assert_eq!(finished["ActionIndex"], 1);
}

#[tokio::test]
async fn index_1_gives_the_second_action_and_next_index_2() {
    let dir = resource_dir(Some(&keptn_08_remediation()));
    let (_, events) = run(&vector("get-action.triggered-1.json"), dir.path()).await;
    assert_replies(&events, TRIGGER_ID, Some(CONTEXT));
    // This trigger has no gitcommitid, so neither have the replies.
    assert_eq!(ext(&events[1], "gitcommitid"), None);
    let finished = data(&events[1]);
    assert_eq!(finished["result"], "pass");
    assert_eq!(finished["action"]["action"], "run-snow-wf");
    assert_eq!(
        finished["action"]["value"],
        json!({"hook": "https://myremediationlink"})
    );
    assert_eq!(finished["get-action"]["actionIndex"], 2);
    assert_eq!(finished["ActionIndex"], 2);
}

#[tokio::test]
async fn index_2_is_out_of_range_and_ends_the_sequence() {
    let dir = resource_dir(Some(&keptn_08_remediation()));
    let (_, events) = run(&vector("get-action.triggered-2.json"), dir.path()).await;
    assert_replies(&events, TRIGGER_ID, Some(CONTEXT));
    let finished = data(&events[1]);
    assert_eq!(finished["status"], "succeeded");
    assert_eq!(finished["result"], "fail");
    assert_eq!(
        finished["message"],
        "there is no action with index 2 for problem type Response time degradation"
    );
    assert!(finished.get("action").is_none());
    assert!(finished.get("get-action").is_none());
}

#[tokio::test]
async fn malformed_data_is_answered_errored() {
    let dir = resource_dir(Some(&keptn_08_remediation()));
    let raw = vector("get-action.triggered-malformed.json");
    let (id, events) = run(&raw, dir.path()).await;
    // The vector has no id; the replies still point at the one the trigger was given.
    assert_replies(&events, &id, Some("f90c939d-8803-4e73-9720-9c969e9d2b46"));
    let finished = data(&events[1]);
    assert_eq!(finished["status"], "errored");
    assert_eq!(finished["result"], "fail");
    let message = finished["message"].as_str().unwrap();
    assert!(
        message.starts_with("Could not decode input event data"),
        "{message}"
    );
}

#[tokio::test]
async fn missing_file_is_answered_errored() {
    let dir = resource_dir(None);
    let (_, events) = run(&vector("get-action.triggered-0.json"), dir.path()).await;
    assert_replies(&events, TRIGGER_ID, Some(CONTEXT));
    let finished = data(&events[1]);
    assert_eq!(finished["status"], "errored");
    assert_eq!(finished["result"], "fail");
    assert_eq!(
        finished["message"],
        "Could not get remediation.yaml file for service myservice in stage mystage."
    );
}

#[tokio::test]
async fn broken_file_is_answered_errored_with_line_and_column() {
    let dir = resource_dir(Some(
        "apiVersion: spec.keptn.sh/0.2.0\nkind: Remediation\nspec:\n  remediations: []\n",
    ));
    let (_, events) = run(&vector("get-action.triggered-0.json"), dir.path()).await;
    let finished = data(&events[1]);
    assert_eq!(finished["status"], "errored");
    assert_eq!(finished["result"], "fail");
    let message = finished["message"].as_str().unwrap();
    assert!(
        message.starts_with("Could not parse remediation.yaml file: "),
        "{message}"
    );
    assert!(
        message.contains("myproject/mystage/myservice/remediation.yaml:1:13: apiVersion is"),
        "{message}"
    );
}

#[tokio::test]
async fn no_matching_problem_type_is_succeeded_fail() {
    let dir = resource_dir(Some(
        "apiVersion: spec.keptn.sh/0.1.4\nkind: Remediation\nspec:\n  remediations:\n    - problemType: Something else\n      actionsOnOpen: [{action: a}]\n",
    ));
    let (_, events) = run(&vector("get-action.triggered-0.json"), dir.path()).await;
    let finished = data(&events[1]);
    assert_eq!(finished["status"], "succeeded");
    assert_eq!(finished["result"], "fail");
    assert_eq!(
        finished["message"],
        "unable to find action for root cause Response time degradation"
    );
}

#[tokio::test]
async fn stage_level_file_serves_services_without_their_own() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("myproject/mystage")).unwrap();
    std::fs::write(
        dir.path().join("myproject/mystage/remediation.yaml"),
        keptn_08_remediation(),
    )
    .unwrap();
    let (_, events) = run(&vector("get-action.triggered-1.json"), dir.path()).await;
    assert_eq!(data(&events[1])["action"]["action"], "run-snow-wf");
}

#[tokio::test]
async fn directory_fallbacks_go_from_service_to_stage_to_top() {
    let dir = tempfile::tempdir().unwrap();
    let source = DirSource::new(dir.path());
    let scope = keptn::Scope {
        project: "p".into(),
        stage: "s".into(),
        service: "svc".into(),
    };
    let top = dir.path().join("remediation.yaml");
    let stage = dir.path().join("p/s/remediation.yaml");
    let service = dir.path().join("p/s/svc/remediation.yaml");
    assert_eq!(
        source.remediation_candidates(&scope).unwrap(),
        vec![service.clone(), stage.clone(), top.clone()]
    );
    let source = ResourceSource::Dir(source);
    assert_eq!(source.remediation(&scope, None).await.unwrap(), None);
    std::fs::write(&top, "top").unwrap();
    assert_eq!(
        source
            .remediation(&scope, None)
            .await
            .unwrap()
            .unwrap()
            .text,
        "top"
    );
    std::fs::create_dir_all(service.parent().unwrap()).unwrap();
    std::fs::write(&stage, "stage").unwrap();
    assert_eq!(
        source
            .remediation(&scope, None)
            .await
            .unwrap()
            .unwrap()
            .text,
        "stage"
    );
    std::fs::write(&service, "service").unwrap();
    let loaded = source.remediation(&scope, None).await.unwrap().unwrap();
    assert_eq!(loaded.text, "service");
    assert_eq!(loaded.origin, service.display().to_string());

    std::fs::write(dir.path().join("shipyard.yaml"), "top").unwrap();
    assert_eq!(
        source.shipyard("p", None).await.unwrap().unwrap().text,
        "top"
    );
    std::fs::write(dir.path().join("p/shipyard.yaml"), "project").unwrap();
    assert_eq!(
        source.shipyard("p", None).await.unwrap().unwrap().text,
        "project"
    );
}

#[tokio::test]
async fn names_that_could_leave_the_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = ResourceSource::Dir(DirSource::new(dir.path()));
    for (project, stage, service) in [
        ("..", "s", "v"),
        ("p", "..", "v"),
        ("p", "s", ".."),
        ("p/../..", "s", "v"),
        ("p", "a\\b", "v"),
        ("", "s", "v"),
        ("p", "", "v"),
    ] {
        let scope = keptn::Scope {
            project: project.into(),
            stage: stage.into(),
            service: service.into(),
        };
        let err = source.remediation(&scope, None).await.unwrap_err();
        assert!(err.to_string().contains("cannot name a resource"), "{err}");
    }
    assert!(source.shipyard("..", None).await.is_err());
}

#[tokio::test]
async fn plan_follows_the_shipyard() {
    use unleash_remediation_service::resources::{Plan, load_plan};
    let dir = tempfile::tempdir().unwrap();
    let source = ResourceSource::Dir(DirSource::new(dir.path()));
    let scope = keptn::Scope {
        project: "website".into(),
        stage: "production".into(),
        service: "front-end".into(),
    };
    assert_eq!(
        load_plan(&source, &scope, None).await.unwrap(),
        Plan::Missing
    );

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        root.join("remediation.yaml"),
        dir.path().join("remediation.yaml"),
    )
    .unwrap();
    // No shipyard: the remediation file alone turns remediation on.
    assert!(matches!(
        load_plan(&source, &scope, None).await.unwrap(),
        Plan::Ready(_)
    ));

    std::fs::copy(root.join("shipyard.yaml"), dir.path().join("shipyard.yaml")).unwrap();
    let Plan::Ready(file) = load_plan(&source, &scope, None).await.unwrap() else {
        panic!("production remediates")
    };
    assert_eq!(
        file.action(Some("Failure rate increase"), None, 0)
            .unwrap()
            .action,
        "toggle-feature"
    );

    let staging = keptn::Scope {
        stage: "staging".into(),
        ..scope.clone()
    };
    assert!(matches!(
        load_plan(&source, &staging, None).await.unwrap(),
        Plan::Disabled { .. }
    ));

    std::fs::write(dir.path().join("shipyard.yaml"), "stages: production\n").unwrap();
    let Plan::Invalid(e) = load_plan(&source, &scope, None).await.unwrap() else {
        panic!("a broken shipyard is reported")
    };
    assert!(e.to_string().contains("shipyard.yaml:1:9"), "{e}");

    std::fs::remove_file(dir.path().join("shipyard.yaml")).unwrap();
    std::fs::write(dir.path().join("remediation.yaml"), "remediations: 1\n").unwrap();
    assert!(matches!(
        load_plan(&source, &scope, None).await.unwrap(),
        Plan::Invalid(_)
    ));
}
