//! Real payloads from the Keptn ecosystem (tests/vectors/; each test names the repository the
//! payload comes from), read the way their producers meant them.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use unleash_remediation_service::keptn::{
    DecodeError, Incoming, Kind, ProblemEvent, ProblemState, decode_bytes,
};

/// Every JSON file under tests/vectors/. A new file must be added here and read by a test.
const VECTORS: [&str; 23] = [
    "dynatrace-service/closed_problem/expected_emitted_ce.json",
    "dynatrace-service/closed_problem/received_ce.json",
    "dynatrace-service/closed_problem_existing_labels/expected_emitted_ce.json",
    "dynatrace-service/closed_problem_existing_labels/received_ce.json",
    "dynatrace-service/open_problem/expected_emitted_ce.json",
    "dynatrace-service/open_problem/received_ce.json",
    "dynatrace-service/open_problem_no_stage/received_ce.json",
    "dynatrace-service/open_problem_with_tags/expected_emitted_ce.json",
    "dynatrace-service/open_problem_with_tags/received_ce.json",
    "keptn-0.7/problem-payload.json",
    "keptn-0.8/problem-open-event.json",
    "keptn-0.8/remediation-triggered-event.json",
    "keptn-1.x/get-action.triggered-0.json",
    "keptn-1.x/get-action.triggered-1.json",
    "keptn-1.x/get-action.triggered-2.json",
    "keptn-1.x/get-action.triggered-malformed.json",
    "keptn-1.x/remediation-trace.json",
    "prometheus-service/prometheus-firing.json",
    "prometheus-service/prometheus_alert.json",
    "prometheus-service/trigger_remediation.json",
    "tutorial/problemopen.json",
    "unleash-service/action_triggered.json",
    "unleash-service/remediation-triggered.json",
];

/// Every vector, and every event of the Keptn 1.x trace, decodes directly as it does through
/// the SDK's event.
#[test]
fn vectors_decode_directly_as_through_the_sdk() {
    use unleash_remediation_service::keptn::decode::to_cloudevent;
    use unleash_remediation_service::keptn::decode_event;
    let mut events = Vec::new();
    for rel in VECTORS {
        let v: Value = serde_json::from_slice(&bytes(rel)).unwrap();
        match v.get("events").and_then(Value::as_array) {
            Some(list) => events.extend(list.iter().cloned()),
            None => events.push(v),
        }
    }
    assert!(events.len() > VECTORS.len(), "the trace's events are read");
    for v in events {
        // Each decoding makes up its own id for an event without one.
        let made_up = !matches!(v.get("id"), Some(Value::String(s)) if !s.is_empty());
        let text = |mut r: Result<Incoming, DecodeError>| {
            if made_up {
                match &mut r {
                    Ok(ev) => ev.meta.id.clear(),
                    Err(e) => e.id = e.id.take().filter(|id| !is_uuid(id)),
                }
            }
            format!("{r:?}")
        };
        let direct = text(decode_bytes(&serde_json::to_vec(&v).unwrap()));
        let through_sdk = text(to_cloudevent(v.clone()).and_then(decode_event));
        assert_eq!(direct, through_sdk, "{v}");
    }
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn bytes(rel: &str) -> Vec<u8> {
    let path = vectors_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn decode(rel: &str) -> Result<Incoming, DecodeError> {
    decode_bytes(&bytes(rel))
}

fn problem(rel: &str) -> (Incoming, ProblemEvent) {
    let ev = decode(rel).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let Kind::Problem(p) = ev.kind.clone() else {
        panic!("{rel}: expected a problem, got {:?}", ev.kind)
    };
    (ev, p)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn assert_scope(p: &ProblemEvent, project: &str, stage: &str, service: &str) {
    assert_eq!(
        (
            p.scope.project.as_str(),
            p.scope.stage.as_str(),
            p.scope.service.as_str()
        ),
        (project, stage, service)
    );
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

fn assert_unsupported(err: &DecodeError, ty: &str) {
    assert_eq!(err.reason, "unsupported_type", "{err}");
    assert_eq!(err.ty.as_deref(), Some(ty));
    assert!(err.message.contains(ty), "{}", err.message);
}

fn assert_not_cloudevent(rel: &str) {
    let err = decode(rel).expect_err(rel);
    assert_eq!(err.reason, "not_cloudevent", "{rel}: {err}");
    assert_eq!(err.message, "attribute `type` is missing", "{rel}");
    assert_eq!((err.id, err.ty, err.keptn_context), (None, None, None));
}

const WEBHOOK_DIRS: [&str; 3] = ["alertmanager", "grafana", "dynatrace-notification"];

#[test]
fn every_vector_file_is_listed() {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                // Monitoring webhook bodies, not CloudEvents: tests/events/webhooks.rs reads every one.
                if WEBHOOK_DIRS.iter().any(|d| path.ends_with(d)) {
                    continue;
                }
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                let rel = path.strip_prefix(base).unwrap().to_string_lossy();
                out.push(rel.replace('\\', "/"));
            }
        }
    }
    let mut found = Vec::new();
    walk(&vectors_dir(), &vectors_dir(), &mut found);
    found.sort();
    assert_eq!(found, VECTORS.to_vec());
    for rel in VECTORS {
        let v: Value = serde_json::from_slice(&bytes(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(v.is_object(), "{rel}");
    }
}

// ---------------------------------------------------------------- Keptn 0.6 tutorial

/// Dynatrace-Adam-Gardner/UnleashKubernetesTutorial debug/problemopen.json: CloudEvents 0.2,
/// `contenttype`, `labels: null`, an extra top-level `label` member.
#[test]
fn tutorial_problem_open() {
    let (ev, p) = problem("tutorial/problemopen.json");
    assert_eq!(ev.meta.ty, "sh.keptn.event.problem.open");
    assert_eq!(ev.meta.id, "b33aa879-ddfd-4aec-82f7-5da2097320e1");
    assert_eq!(ev.meta.source, "dynatrace");
    assert_eq!(
        ev.meta.keptn_context.as_deref(),
        Some("2d343334-3932-4231-b631-383433353839")
    );
    assert_eq!(ev.meta.triggered_id, None);
    assert_eq!(ev.meta.git_commit_id, None);
    assert_scope(&p, "website", "production", "front-end");
    assert_eq!(p.state, ProblemState::Open);
    assert_eq!(p.problem.title(), Some("Failure rate increase"));
    assert_eq!(p.problem.root_cause(), None);
    assert_eq!(p.problem.problem_id(), Some("381"));
    assert_eq!(p.problem.pid(), Some("-4349221618435898381"));
    assert_eq!(p.identity(), "381");
    assert!(p.labels.is_empty());
    // The details are kept as received, to be passed on.
    assert_eq!(
        p.problem.0["ProblemDetails"]["id"],
        json!("-4349221618435898381_1588562640000V2")
    );
    assert_eq!(
        p.problem.0["ImpactedEntity"],
        json!("Failure rate increase on Web request service unleash-demo:80")
    );
}

#[test]
fn tutorial_problem_open_keeps_its_string_extension() {
    let value: Value = serde_json::from_slice(&bytes("tutorial/problemopen.json")).unwrap();
    let event = unleash_remediation_service::keptn::decode::to_cloudevent(value).unwrap();
    use cloudevents::AttributesReader;
    assert_eq!(event.specversion().as_str(), "1.0");
    assert_eq!(event.datacontenttype(), Some("application/json"));
    assert_eq!(
        event.extension("label"),
        Some(&cloudevents::event::ExtensionValue::String(
            "Problem open".into()
        ))
    );
}

// ---------------------------------------------------------------- Keptn 0.7 / 0.8

/// keptn/keptn 0.8.0 test/assets/self_healing_problem_open_event.json: CE 0.2, no
/// shkeptncontext.
#[test]
fn keptn_08_problem_open() {
    let (ev, p) = problem("keptn-0.8/problem-open-event.json");
    assert_eq!(ev.meta.ty, "sh.keptn.event.problem.open");
    assert_eq!(ev.meta.id, "f2b878d3-03c0-4e8f-bc3f-454bc1b3d79d");
    assert_eq!(
        ev.meta.source,
        "https://github.com/keptn/keptn/dynatrace-service"
    );
    assert_eq!(ev.meta.keptn_context, None);
    assert_scope(&p, "self-healing-project", "production", "frontend");
    assert_eq!(p.state, ProblemState::Open);
    assert_eq!(p.problem.title(), Some("Response time degradation"));
    assert_eq!(p.problem.root_cause(), None);
    assert_eq!(p.identity(), "ab81-941c-1245");
}

/// The Alertmanager webhook that prometheus-service turns into a problem: not a CloudEvent.
#[test]
fn alertmanager_payloads_are_not_cloudevents() {
    assert_not_cloudevent("keptn-0.7/problem-payload.json");
    assert_not_cloudevent("prometheus-service/prometheus_alert.json");
    assert_not_cloudevent("prometheus-service/prometheus-firing.json");
}

/// Keptn 0.8.3+ sequence triggers, `sh.keptn.event.<stage>.remediation.triggered`: decoded as
/// an open problem (the remediator acts on them only with ACCEPT_REMEDIATION_SEQUENCES, since a
/// shipyard-controller owns them otherwise).
#[test]
fn sequence_remediation_triggers_decode_as_open_problems() {
    for (rel, title, root_cause, project, service) in [
        (
            "keptn-0.8/remediation-triggered-event.json",
            "Response time degradation",
            "Response time degradation",
            "self-healing-project",
            "frontend",
        ),
        (
            "prometheus-service/trigger_remediation.json",
            "response_time_p90",
            "Response time degradation",
            "sockshop",
            "carts",
        ),
        (
            "unleash-service/remediation-triggered.json",
            "failure_rate_increase",
            "Failure rate increase",
            "sockshop",
            "carts",
        ),
    ] {
        let (ev, p) = problem(rel);
        assert_eq!(
            ev.meta.ty,
            "sh.keptn.event.production.remediation.triggered"
        );
        assert_eq!(ev.meta.id, "f2b878d3-03c0-4e8f-bc3f-454bc1b3d79d", "{rel}");
        assert_eq!(p.state, ProblemState::Open, "{rel}");
        assert_scope(&p, project, "production", service);
        assert_eq!(p.problem.title(), Some(title), "{rel}");
        assert_eq!(p.problem.root_cause(), Some(root_cause), "{rel}");
        assert_eq!(p.identity(), title, "{rel}");
    }
}

// ---------------------------------------------------------------- unleash-service

/// keptn-contrib/unleash-service pkg/event_handler/test/events/action_triggered.json.
#[test]
fn unleash_service_action_triggered() {
    let ev = decode("unleash-service/action_triggered.json").unwrap();
    assert_eq!(ev.meta.ty, "sh.keptn.event.action.triggered");
    assert_eq!(ev.meta.id, "6f14d952-3729-4605-915f-12ff84f0e5f1");
    assert_eq!(ev.meta.source, "shipyard-controller");
    assert_eq!(
        ev.meta.keptn_context.as_deref(),
        Some("cdba1c70-e3e7-441d-8115-e6c9c2d6477b")
    );
    assert_eq!(
        ev.meta.git_commit_id.as_deref(),
        Some("fcd887b60ab61467f58071fd1718c8d70e7246a4")
    );
    let Kind::ActionTriggered(a) = &ev.kind else {
        panic!("expected action.triggered, got {:?}", ev.kind)
    };
    assert_eq!(a.scope.project, "sockshop");
    assert_eq!(a.scope.stage, "staging");
    assert_eq!(a.scope.service, "carts");
    assert_eq!(
        a.labels,
        labels(&[
            ("buildnr", "build17"),
            ("runby", "JohnDoe"),
            ("testid", "12345")
        ])
    );
    assert_eq!(a.action.name, "FeatureToggle");
    assert_eq!(a.action.action, "toggle-feature");
    assert_eq!(a.action.description, "toggle a feature");
    assert_eq!(a.action.value, json!({"EnableItemCache": "on"}));
    assert_eq!(
        a.data["problem"]["ProblemTitle"],
        json!("cpu_usage_sockshop_carts")
    );
    assert_eq!(a.data["problem"]["PID"], json!("93a5-3fas-a09d-8ckf"));
}

// ---------------------------------------------------------------- Keptn 1.x get-action

/// keptn/keptn 1.4.5 remediation-service/handler/test/events/get-action.triggered-{0,1,2}.json.
#[test]
fn get_action_triggered_indexes() {
    for (n, git) in [(0usize, Some("1234")), (1, None), (2, None)] {
        let rel = format!("keptn-1.x/get-action.triggered-{n}.json");
        let ev = decode(&rel).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(ev.meta.ty, "sh.keptn.event.get-action.triggered");
        assert_eq!(ev.meta.id, "f2b878d3-03c0-4e8f-bc3f-454bc1b3d79d");
        assert_eq!(
            ev.meta.keptn_context.as_deref(),
            Some("08735340-6f9e-4b32-97ff-3b6c292bc50f")
        );
        assert_eq!(ev.meta.git_commit_id.as_deref(), git, "{rel}");
        let Kind::GetActionTriggered(g) = &ev.kind else {
            panic!("{rel}: expected get-action.triggered, got {:?}", ev.kind)
        };
        assert_eq!(g.scope.project, "myproject");
        assert_eq!(g.scope.stage, "mystage");
        assert_eq!(g.scope.service, "myservice");
        assert!(g.labels.is_empty());
        let req = g.data.as_ref().unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(req.action_index, n, "{rel}");
        assert_eq!(req.problem.title(), Some("Response time degradation"));
        assert_eq!(req.problem.root_cause(), Some("Response time degradation"));
    }
}

/// get-action.triggered-malformed.json: no id, no scope, `get-action` a string (twice). It is
/// still a get-action.triggered (Keptn answers it with an errored finished event), with the
/// reason in `data`.
#[test]
fn get_action_triggered_malformed() {
    let ev = decode("keptn-1.x/get-action.triggered-malformed.json").unwrap();
    assert_eq!(ev.meta.ty, "sh.keptn.event.get-action.triggered");
    assert!(is_uuid(&ev.meta.id), "generated id {:?}", ev.meta.id);
    assert_eq!(ev.meta.source, "test");
    assert_eq!(
        ev.meta.keptn_context.as_deref(),
        Some("f90c939d-8803-4e73-9720-9c969e9d2b46")
    );
    let Kind::GetActionTriggered(g) = &ev.kind else {
        panic!("expected get-action.triggered, got {:?}", ev.kind)
    };
    assert_eq!(g.scope.project, "");
    let reason = g
        .data
        .as_ref()
        .expect_err("malformed data must be an error");
    assert_eq!(reason, "`project` and `stage` are required");
}

// ---------------------------------------------------------------- Keptn 1.x trace

/// keptn/keptn 1.4.5 bridge fixture: every event of one remediation, newest first.
#[test]
fn remediation_trace_1x() {
    let trace: Value = serde_json::from_slice(&bytes("keptn-1.x/remediation-trace.json")).unwrap();
    let events = trace["events"].as_array().unwrap();
    assert_eq!(events.len(), 10);
    let decoded: Vec<Result<Incoming, DecodeError>> = events
        .iter()
        .map(|e| decode_bytes(&serde_json::to_vec(e).unwrap()))
        .collect();
    let ctx = "29355a07-7b65-47fa-896e-06f656283c5d";
    let scope_ok = |ev: &Incoming| {
        let s = ev.scope().unwrap();
        assert_eq!(
            (s.project.as_str(), s.stage.as_str(), s.service.as_str()),
            ("sockshop", "production", "carts")
        );
    };

    // What this service does not consume is rejected as such, with what is known of it.
    for (i, ty) in [
        (0, "sh.keptn.event.production.remediation.finished"),
        (2, "sh.keptn.event.action.started"),
        (4, "sh.keptn.event.action.started"),
        (6, "sh.keptn.event.get-action.finished"),
        (7, "sh.keptn.event.get-action.started"),
    ] {
        let err = decoded[i].as_ref().expect_err(ty);
        assert_unsupported(err, ty);
        assert_eq!(err.id.as_deref(), events[i]["id"].as_str());
        assert_eq!(err.keptn_context.as_deref(), Some(ctx));
    }

    // webhook-service's action.finished: errored / fail.
    let ev = decoded[1].as_ref().unwrap();
    assert_eq!(ev.meta.source, "webhook-service");
    assert_eq!(
        ev.meta.triggered_id.as_deref(),
        Some("cbb743f1-1f03-4655-bb27-4598e0965b29")
    );
    scope_ok(ev);
    let Kind::ActionFinished(f) = &ev.kind else {
        panic!("expected action.finished, got {:?}", ev.kind)
    };
    assert_eq!((f.status.as_str(), f.result.as_str()), ("errored", "fail"));
    assert_eq!(
        f.message,
        "could not retrieve Webhook config: no webhook config found"
    );
    assert!(!f.succeeded());

    // unleash-service's action.finished: succeeded / pass, with an empty `action` member.
    let ev = decoded[3].as_ref().unwrap();
    assert_eq!(ev.meta.source, "unleash-service");
    assert_eq!(
        ev.meta.triggered_id.as_deref(),
        Some("cbb743f1-1f03-4655-bb27-4598e0965b29")
    );
    scope_ok(ev);
    let Kind::ActionFinished(f) = &ev.kind else {
        panic!("expected action.finished, got {:?}", ev.kind)
    };
    assert_eq!(
        (f.status.as_str(), f.result.as_str()),
        ("succeeded", "pass")
    );
    assert_eq!(f.message, "");
    assert!(f.succeeded());

    // shipyard-controller's action.triggered, carrying the merged sequence payload.
    let ev = decoded[5].as_ref().unwrap();
    assert_eq!(ev.meta.id, "cbb743f1-1f03-4655-bb27-4598e0965b29");
    assert_eq!(
        ev.meta.git_commit_id.as_deref(),
        Some("64fd7e0079a5624d0e25a4dd40323342022236c7")
    );
    scope_ok(ev);
    let Kind::ActionTriggered(a) = &ev.kind else {
        panic!("expected action.triggered, got {:?}", ev.kind)
    };
    assert_eq!(a.action.name, "Toogle feature flag");
    assert_eq!(a.action.action, "toggle-feature");
    assert_eq!(
        a.action.description,
        "Toogle feature flag EnableItemCache to ON"
    );
    assert_eq!(a.action.value, json!({"EnableItemCache": "on"}));
    assert_eq!(a.labels, labels(&[("Problem URL", "https://myURL.com")]));
    assert_eq!(a.data["get-action"], json!({"actionIndex": 1}));

    // shipyard-controller's get-action.triggered: `get-action: null` means index 0.
    let ev = decoded[8].as_ref().unwrap();
    assert_eq!(ev.meta.id, "d7bd10ce-b14c-4ea5-a030-a983d20125e4");
    assert_eq!(ev.meta.keptn_context.as_deref(), Some(ctx));
    assert_eq!(
        ev.meta.git_commit_id.as_deref(),
        Some("64fd7e0079a5624d0e25a4dd40323342022236c7")
    );
    scope_ok(ev);
    let Kind::GetActionTriggered(g) = &ev.kind else {
        panic!("expected get-action.triggered, got {:?}", ev.kind)
    };
    assert_eq!(g.labels, labels(&[("Problem URL", "https://myURL.com")]));
    let req = g.data.as_ref().unwrap();
    assert_eq!(req.action_index, 0);
    assert_eq!(req.problem.title(), Some("Response time degradation"));
    assert_eq!(req.problem.root_cause(), None);
    assert_eq!(req.problem.problem_id(), Some("P-21127"));
}

// ---------------------------------------------------------------- dynatrace-service

const DT_OPEN_ID: &str = "343cd015-72ac-4e10-b241-1136a22e4cd0";
const DT_OPEN_CTX: &str = "39393939-3920-4020-a020-202020202020";
const DT_CLOSED_CTX: &str = "2d363437-3830-4137-b832-353132303331";
const DT_CLOSED_URL: &str =
    "https://test.com/#problems/problemdetails;pid=-6478017825120311599_1641223491837V2";

/// Scope from Dynatrace's KeptnProject/KeptnStage/KeptnService.
#[test]
fn dynatrace_open_problem() {
    let (ev, p) = problem("dynatrace-service/open_problem/received_ce.json");
    assert_eq!(ev.meta.ty, "sh.keptn.events.problem");
    assert_eq!(ev.meta.id, DT_OPEN_ID);
    assert_eq!(ev.meta.keptn_context.as_deref(), Some(DT_OPEN_CTX));
    assert_scope(&p, "shop", "production", "carts");
    assert_eq!(p.state, ProblemState::Open);
    assert_eq!(
        p.problem.title(),
        Some("Dynatrace problem notification test run")
    );
    assert_eq!(p.problem.root_cause(), None);
    assert_eq!(p.problem.url(), Some("https://example.com"));
    assert_eq!(p.problem.tags(), Some("testtag1, testtag2"));
    assert_eq!(p.problem.pid(), Some("99999"));
    assert_eq!(p.identity(), "999");
    assert!(p.labels.is_empty());
    assert_eq!(
        p.problem.0["ImpactedEntities"][1]["name"],
        json!("MyService1")
    );
}

/// `keptn_*` tags win over KeptnProject/KeptnStage/KeptnService, as in dynatrace-service, whose
/// expected output for this input is project shop2, stage production2, service carts2.
#[test]
fn dynatrace_open_problem_with_tags() {
    let (ev, p) = problem("dynatrace-service/open_problem_with_tags/received_ce.json");
    assert_eq!(ev.meta.id, DT_OPEN_ID);
    assert_scope(&p, "shop2", "production2", "carts2");
    assert_eq!(p.state, ProblemState::Open);
    assert_eq!(p.identity(), "999");

    let emitted: Value = serde_json::from_slice(&bytes(
        "dynatrace-service/open_problem_with_tags/expected_emitted_ce.json",
    ))
    .unwrap();
    assert_eq!(
        (
            emitted["data"]["project"].as_str(),
            emitted["data"]["stage"].as_str(),
            emitted["data"]["service"].as_str()
        ),
        (
            Some(p.scope.project.as_str()),
            Some(p.scope.stage.as_str()),
            Some(p.scope.service.as_str())
        )
    );
}

/// dynatrace-service drops a problem without a stage; here it is rejected as missing_scope.
#[test]
fn dynatrace_open_problem_without_stage() {
    let err = decode("dynatrace-service/open_problem_no_stage/received_ce.json").unwrap_err();
    assert_eq!(err.reason, "missing_scope", "{err}");
    assert!(
        err.message.starts_with("problem has no stage "),
        "{}",
        err.message
    );
    assert_eq!(err.id.as_deref(), Some(DT_OPEN_ID));
    assert_eq!(err.ty.as_deref(), Some("sh.keptn.events.problem"));
    assert_eq!(err.keptn_context.as_deref(), Some(DT_OPEN_CTX));
}

/// What dynatrace-service emits for an open problem is a sequence trigger whose `problem` is the
/// raw Dynatrace object; its scope comes from the data, else from the stage in the type.
#[test]
fn dynatrace_emitted_remediation_triggers_decode_as_open_problems() {
    for (rel, stage) in [
        (
            "dynatrace-service/open_problem/expected_emitted_ce.json",
            "production",
        ),
        (
            "dynatrace-service/open_problem_with_tags/expected_emitted_ce.json",
            "production2",
        ),
    ] {
        let (ev, p) = problem(rel);
        // The file has `"id": ""`; a generated id stands in.
        assert!(is_uuid(&ev.meta.id), "{rel}: {:?}", ev.meta.id);
        assert_eq!(ev.meta.keptn_context.as_deref(), Some(DT_OPEN_CTX));
        assert_eq!(p.scope.stage, stage, "{rel}");
        assert_eq!(
            p.problem.title(),
            Some("Dynatrace problem notification test run")
        );
        assert_eq!(p.identity(), "999");
    }
}

/// The problem as Dynatrace reports it resolved.
#[test]
fn dynatrace_resolved_problems() {
    for rel in [
        "dynatrace-service/closed_problem/received_ce.json",
        "dynatrace-service/closed_problem_existing_labels/received_ce.json",
    ] {
        let (ev, p) = problem(rel);
        assert_eq!(ev.meta.ty, "sh.keptn.events.problem");
        assert_eq!(ev.meta.id, "ed5566ef-8c28-4b23-ad3e-03fc5ee41688");
        assert_eq!(ev.meta.keptn_context.as_deref(), Some(DT_CLOSED_CTX));
        assert_scope(&p, "shop", "production", "carts");
        assert_eq!(p.state, ProblemState::Resolved, "{rel}");
        assert_eq!(p.problem.title(), Some("Browser monitor global outage"));
        assert_eq!(p.problem.root_cause(), None);
        assert_eq!(p.problem.url(), Some(DT_CLOSED_URL));
        assert_eq!(p.identity(), "P-22013994");
    }
    let (_, p) = problem("dynatrace-service/closed_problem/received_ce.json");
    assert!(p.labels.is_empty());
    // A label that is not a string is kept as its JSON text.
    let (_, p) = problem("dynatrace-service/closed_problem_existing_labels/received_ce.json");
    assert_eq!(
        p.labels,
        labels(&[("key", "value"), ("structure_key", r#"{"key":"value"}"#)])
    );
}

/// What dynatrace-service emits for a resolved problem: `sh.keptn.events.problem` with State
/// CLOSED, explicit scope, label `Problem URL`, and `"id": ""`.
#[test]
fn dynatrace_emitted_closed_problems() {
    for (rel, extra) in [
        (
            "dynatrace-service/closed_problem/expected_emitted_ce.json",
            vec![],
        ),
        (
            "dynatrace-service/closed_problem_existing_labels/expected_emitted_ce.json",
            vec![("key", "value"), ("structure_key", r#"{"key":"value"}"#)],
        ),
    ] {
        let (ev, p) = problem(rel);
        assert!(is_uuid(&ev.meta.id), "{rel}: generated id {:?}", ev.meta.id);
        assert_eq!(ev.meta.source, "dynatrace-service");
        assert_eq!(ev.meta.keptn_context.as_deref(), Some(DT_CLOSED_CTX));
        assert_scope(&p, "shop", "production", "carts");
        assert_eq!(p.state, ProblemState::Closed, "{rel}");
        assert_eq!(p.identity(), "P-22013994");
        let mut want = labels(&[("Problem URL", DT_CLOSED_URL)]);
        want.extend(labels(&extra));
        assert_eq!(p.labels, want, "{rel}");
    }
}

/// The same problem, open then closed, has the same identity and scope.
#[test]
fn problem_identity_is_stable_across_notifications() {
    let (_, open) = problem("dynatrace-service/closed_problem/received_ce.json");
    let (_, closed) = problem("dynatrace-service/closed_problem/expected_emitted_ce.json");
    assert_eq!(open.identity(), closed.identity());
    assert_eq!(open.scope, closed.scope);
    assert_ne!(open.state, closed.state);
}
