//! schemas/events/: every event this service writes validates against the strict schema of its
//! type (`#/$defs/emitted`), every consumed vector against the tolerant one
//! (`#/$defs/accepted`), and the read schemas agree with the decoder.

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use unleash_remediation_service::keptn::outgoing::{Link, Outcome};
use unleash_remediation_service::keptn::{
    ActionInfo, EventFactory, Kind, Meta, Scope, decode::to_cloudevent, decode_bytes, decode_event,
};

/// Schema files of the types read; `SEQUENCE_TRIGGER` stands for every stage's type.
const READ: [&str; 6] = [
    "sh.keptn.event.problem.open",
    "sh.keptn.events.problem",
    "sh.keptn.event.get-action.triggered",
    "sh.keptn.event.action.triggered",
    "sh.keptn.event.action.finished",
    SEQUENCE_TRIGGER,
];

/// The schema of Keptn 0.8.3+ sequence triggers, `sh.keptn.event.<stage>.remediation.triggered`
/// (read by the remediator with ACCEPT_REMEDIATION_SEQUENCES=true).
const SEQUENCE_TRIGGER: &str = "sh.keptn.event.stage.remediation.triggered";

/// The type pattern of `SEQUENCE_TRIGGER`.
const SEQUENCE_TRIGGER_PATTERN: &str = r"^sh\.keptn\.event\.[^.]+\.remediation\.triggered$";

const WRITTEN: [&str; 9] = [
    "sh.keptn.event.remediation.triggered",
    "sh.keptn.event.remediation.status.changed",
    "sh.keptn.event.remediation.finished",
    "sh.keptn.event.action.triggered",
    "sh.keptn.event.action.started",
    "sh.keptn.event.action.finished",
    "sh.keptn.event.get-action.started",
    "sh.keptn.event.get-action.finished",
    "sh.keptn.log.error",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The schema file (without `.schema.json`) of an event type: the type itself, or
/// `SEQUENCE_TRIGGER` for `sh.keptn.event.<stage>.remediation.triggered` of any one stage.
fn schema_of(ty: &str) -> &str {
    let sequence_stage = ty
        .strip_prefix("sh.keptn.event.")
        .and_then(|rest| rest.strip_suffix(".remediation.triggered"))
        .filter(|stage| !stage.is_empty() && !stage.contains('.'));
    if sequence_stage.is_some() {
        SEQUENCE_TRIGGER
    } else {
        ty
    }
}

/// Whether the service reads events of this type.
fn is_read(ty: &str) -> bool {
    READ.contains(&schema_of(ty))
}

fn schema_file(ty: &str) -> Value {
    let ty = schema_of(ty);
    let path = root().join(format!("schemas/events/{ty}.schema.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The validator for `#/$defs/{part}` of the schema of `ty`, with `format` checked.
fn validator(ty: &str, part: &str) -> jsonschema::Validator {
    let mut schema = schema_file(ty);
    assert!(
        schema["$defs"].get(part).is_some(),
        "{ty} has no $defs/{part}"
    );
    schema["$ref"] = json!(format!("#/$defs/{part}"));
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{ty}: schema does not compile: {e}"))
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("at {:?}: {e}", e.instance_path().to_string()))
        .collect()
}

fn assert_valid(ty: &str, part: &str, instance: &Value) {
    let errs = errors(&validator(ty, part), instance);
    assert!(
        errs.is_empty(),
        "{ty} ({part}) rejects\n{}\n{}",
        serde_json::to_string_pretty(instance).unwrap(),
        errs.join("\n")
    );
}

fn assert_invalid(ty: &str, part: &str, instance: &Value, path: &str) {
    let errs = errors(&validator(ty, part), instance);
    assert!(
        !errs.is_empty(),
        "{ty} ({part}) accepts what it must not:\n{}",
        serde_json::to_string_pretty(instance).unwrap()
    );
    assert!(
        errs.iter()
            .any(|e| e.contains(&format!("at \"{path}")) || path.is_empty()),
        "{ty} ({part}): expected an error at {path:?}, got\n{}",
        errs.join("\n")
    );
}

// ---------------------------------------------------------------- the files

#[test]
fn schema_files_are_complete_and_valid_draft_2020_12() {
    let dir = root().join("schemas/events");
    let mut found: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = READ
        .iter()
        .chain(WRITTEN.iter())
        .map(|ty| format!("{ty}.schema.json"))
        .collect();
    assert_eq!(expected.len(), 13);
    found.retain(|n| n.ends_with(".json"));
    assert_eq!(found, expected);

    let readme = std::fs::read_to_string(root().join("schemas/README.md")).unwrap();
    for ty in READ.iter().chain(WRITTEN.iter()) {
        let schema = schema_file(ty);
        jsonschema::meta::validate(&schema)
            .unwrap_or_else(|e| panic!("{ty}: not a valid JSON Schema: {e}"));
        assert_eq!(
            schema["$schema"],
            json!("https://json-schema.org/draft/2020-12/schema")
        );
        assert!(schema["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(
            schema["description"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
        let read = READ.contains(ty);
        let written = WRITTEN.contains(ty);
        // The root is the read schema when the type is read, else the write schema.
        let want_root = if read {
            "#/$defs/accepted"
        } else {
            "#/$defs/emitted"
        };
        assert_eq!(schema["$ref"], json!(want_root), "{ty}");
        assert_eq!(schema["$defs"].get("accepted").is_some(), read, "{ty}");
        assert_eq!(schema["$defs"].get("emitted").is_some(), written, "{ty}");
        // Type const in each part; the sequence trigger has one type per stage.
        for part in ["accepted", "emitted"] {
            if let Some(def) = schema["$defs"].get(part) {
                if *ty == SEQUENCE_TRIGGER {
                    let t = &def["properties"]["type"];
                    assert_eq!(t["pattern"], json!(SEQUENCE_TRIGGER_PATTERN), "{ty} {part}");
                    assert_eq!(t.get("const"), None, "{ty} {part}");
                } else {
                    assert_eq!(def["properties"]["type"]["const"], json!(ty), "{ty} {part}");
                }
            }
        }
        assert!(
            readme.contains(&format!("{ty}.schema.json")),
            "schemas/README.md does not list {ty}"
        );
        // The root compiles with the plain API too.
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{ty}: {e}"));
    }
}

// ---------------------------------------------------------------- what we write

fn parent(ty: &str, ctx: Option<&str>, git: Option<&str>) -> Meta {
    Meta {
        id: "d7bd10ce-b14c-4ea5-a030-a983d20125e4".into(),
        source: "shipyard-controller".into(),
        ty: ty.into(),
        keptn_context: ctx.map(str::to_owned),
        triggered_id: None,
        git_commit_id: git.map(str::to_owned),
    }
}

fn scope(service: &str) -> Scope {
    Scope {
        project: "website".into(),
        stage: "production".into(),
        service: service.into(),
    }
}

fn label_sets() -> Vec<BTreeMap<String, String>> {
    vec![
        BTreeMap::new(),
        [
            (
                "Problem URL".to_string(),
                "https://example.com/p/1".to_string(),
            ),
            ("ünïcode".to_string(), String::new()),
        ]
        .into_iter()
        .collect(),
    ]
}

fn toggle() -> ActionInfo {
    ActionInfo {
        name: "Toggle feature flag".into(),
        action: "toggle-feature".into(),
        description: "Serve the static page".into(),
        value: json!({"EnableStaticContent": "on"}),
    }
}

fn bare_action() -> ActionInfo {
    ActionInfo {
        name: String::new(),
        action: "escalate".into(),
        description: String::new(),
        value: Value::Null,
    }
}

fn problem_value() -> Value {
    json!({
        "State": "OPEN", "ProblemID": "381", "PID": "-4349221618435898381",
        "ProblemTitle": "Failure rate increase",
        "ProblemDetails": {"id": "-4349221618435898381_1588562640000V2"},
        "ImpactedEntities": [{"entity": "SERVICE-1"}]
    })
}

/// Every builder of EventFactory, in every variant that changes the output's shape.
fn all_outputs() -> Vec<(String, cloudevents::Event)> {
    let f = EventFactory::new("unleash-remediation-service");
    let mut out = Vec::new();
    let mut push = |what: String, e: cloudevents::Event| out.push((what, e));
    let links = [
        Link::reply_to(&parent(
            "sh.keptn.event.get-action.triggered",
            Some("29355a07-7b65-47fa-896e-06f656283c5d"),
            Some("64fd7e0079a5624d0e25a4dd40323342022236c7"),
        )),
        Link::reply_to(&parent("sh.keptn.event.problem.open", None, None)),
        Link {
            keptn_context: "not-a-uuid-context".into(),
            triggered_id: Some("8c0a80b2-4a3a-4b8b-808a-c713f3c996da".into()),
            git_commit_id: None,
        },
    ];
    let outcomes = [Outcome::Pass, Outcome::SucceededFail, Outcome::Errored];
    for (li, link) in links.iter().enumerate() {
        for labels in label_sets() {
            for svc in ["front-end", ""] {
                let s = scope(svc);
                let tag = format!("link {li}, {} labels, service {svc:?}", labels.len());
                push(
                    format!("remediation_triggered {tag}"),
                    f.remediation_triggered(link, &s, &labels, &problem_value()),
                );
                for (i, name) in [(0usize, "toggle-feature"), (3, "")] {
                    push(
                        format!("remediation_status_changed {i} {tag}"),
                        f.remediation_status_changed(link, &s, &labels, i, name),
                    );
                }
                for o in outcomes {
                    push(
                        format!("remediation_finished {o:?} {tag}"),
                        f.remediation_finished(
                            link,
                            &s,
                            &labels,
                            o,
                            "toggle-feature switched EnableStaticContent on",
                        ),
                    );
                    push(
                        format!("action_finished {o:?} {tag}"),
                        f.action_finished(
                            link,
                            &s,
                            &labels,
                            o,
                            "flag EnableStaticContent: on (confirmed)",
                        ),
                    );
                }
                push(
                    format!("action_finished pass without message {tag}"),
                    f.action_finished(link, &s, &labels, Outcome::Pass, ""),
                );
                for a in [toggle(), bare_action()] {
                    push(
                        format!("action_triggered {} {tag}", a.action),
                        f.action_triggered(link, &s, &labels, &a, &problem_value()),
                    );
                    push(
                        format!("get_action_finished {} {tag}", a.action),
                        f.get_action_finished(link, &s, &labels, &a, 1),
                    );
                }
                push(
                    format!("action_started {tag}"),
                    f.action_started(link, &s, &labels),
                );
                push(
                    format!("get_action_started {tag}"),
                    f.get_action_started(link, &s, &labels),
                );
                for o in [Outcome::SucceededFail, Outcome::Errored] {
                    push(
                        format!("get_action_failed {o:?} {tag}"),
                        f.get_action_failed(
                            link,
                            &s,
                            &labels,
                            o,
                            "unable to find action for problem title X",
                        ),
                    );
                }
                push(
                    format!("log_error with scope {tag}"),
                    f.log_error(
                        link,
                        Some(&s),
                        "sh.keptn.events.problem",
                        "event rejected: missing scope",
                    ),
                );
            }
        }
        push(
            format!("log_error without scope, link {li}"),
            f.log_error(
                link,
                None,
                "delivery",
                "gave up on event after 5 deliveries",
            ),
        );
        push(
            format!("log_error without triggeredid, link {li}"),
            f.log_error(
                &Link {
                    triggered_id: None,
                    ..link.clone()
                },
                None,
                "unknown",
                "payload is not JSON",
            ),
        );
    }
    out
}

#[test]
fn every_builder_output_validates_against_its_write_schema() {
    let outputs = all_outputs();
    let mut covered = BTreeSet::new();
    let validators: BTreeMap<&str, jsonschema::Validator> = WRITTEN
        .iter()
        .map(|ty| (*ty, validator(ty, "emitted")))
        .collect();
    for (what, event) in &outputs {
        let json = serde_json::to_value(event).unwrap();
        let ty = json["type"].as_str().unwrap();
        let v = validators
            .get(ty)
            .unwrap_or_else(|| panic!("{what}: no write schema for {ty}"));
        let errs = errors(v, &json);
        assert!(
            errs.is_empty(),
            "{what}: {ty} does not match its schema\n{}\n{}",
            serde_json::to_string_pretty(&json).unwrap(),
            errs.join("\n")
        );
        covered.insert(ty.to_owned());
    }
    let all: BTreeSet<String> = WRITTEN.iter().map(|s| s.to_string()).collect();
    assert_eq!(covered, all, "a written type has no builder output");
}

/// The two types that are both written and read: what we write, we can read.
#[test]
fn written_events_of_read_types_are_accepted_and_decode() {
    for (what, event) in all_outputs() {
        let json = serde_json::to_value(&event).unwrap();
        let ty = json["type"].as_str().unwrap().to_owned();
        if !is_read(&ty) {
            continue;
        }
        assert_valid(&ty, "accepted", &json);
        let back = decode_bytes(&serde_json::to_vec(&json).unwrap())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(back.meta.id, json["id"].as_str().unwrap());
        match back.kind {
            Kind::ActionTriggered(a) => {
                assert_eq!(
                    serde_json::to_value(&a.action).unwrap(),
                    json["data"]["action"],
                    "{what}"
                );
            }
            Kind::ActionFinished(f) => {
                assert_eq!(f.status, json["data"]["status"].as_str().unwrap(), "{what}");
                assert_eq!(f.result, json["data"]["result"].as_str().unwrap(), "{what}");
            }
            other => panic!("{what}: decoded as {other:?}"),
        }
    }
}

fn finished() -> Value {
    let f = EventFactory::new("unleash-remediation-service");
    let link = Link::reply_to(&parent(
        "sh.keptn.event.action.triggered",
        Some("29355a07-7b65-47fa-896e-06f656283c5d"),
        Some("64fd7e0079a5624d0e25a4dd40323342022236c7"),
    ));
    serde_json::to_value(f.action_finished(
        &link,
        &scope("carts"),
        &BTreeMap::new(),
        Outcome::Errored,
        "Unleash answered 404: flag EnableItemCache does not exist",
    ))
    .unwrap()
}

fn changed(mut v: Value, f: impl FnOnce(&mut Value)) -> Value {
    f(&mut v);
    v
}

#[test]
fn write_schemas_reject_what_we_do_not_promise() {
    const AF: &str = "sh.keptn.event.action.finished";
    assert_valid(AF, "emitted", &finished());
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "result failed (Keptn 0.7 vocabulary)",
            changed(finished(), |v| v["data"]["result"] = json!("failed")),
            "/data/result",
        ),
        (
            "status aborted",
            changed(finished(), |v| v["data"]["status"] = json!("aborted")),
            "/data/status",
        ),
        (
            "no triggeredid",
            changed(finished(), |v| {
                v.as_object_mut().unwrap().remove("triggeredid");
            }),
            "",
        ),
        (
            "fail without a message",
            changed(finished(), |v| {
                v["data"].as_object_mut().unwrap().remove("message");
            }),
            "/data",
        ),
        (
            "no shkeptncontext",
            changed(finished(), |v| {
                v.as_object_mut().unwrap().remove("shkeptncontext");
            }),
            "",
        ),
        (
            "id not a UUID",
            changed(finished(), |v| v["id"] = json!("event-1")),
            "/id",
        ),
        (
            "time not RFC 3339",
            changed(finished(), |v| v["time"] = json!("08.03.2022 09:45")),
            "/time",
        ),
        (
            "CloudEvents 0.2",
            changed(finished(), |v| v["specversion"] = json!("0.2")),
            "/specversion",
        ),
        (
            "wrong type",
            changed(finished(), |v| {
                v["type"] = json!("sh.keptn.event.action.started")
            }),
            "/type",
        ),
        (
            "other content type",
            changed(finished(), |v| v["datacontenttype"] = json!("text/plain")),
            "/datacontenttype",
        ),
        (
            "data_base64 instead of data",
            changed(finished(), |v| {
                let data = v.as_object_mut().unwrap().remove("data").unwrap();
                v["data_base64"] = json!(data.to_string());
            }),
            "",
        ),
        (
            "an extension we do not promise",
            changed(finished(), |v| v["contenttype"] = json!("application/json")),
            "",
        ),
        (
            "no project",
            changed(finished(), |v| {
                v["data"].as_object_mut().unwrap().remove("project");
            }),
            "/data",
        ),
        (
            "labels with a non-string value",
            changed(finished(), |v| v["data"]["labels"] = json!({"n": 1})),
            "/data/labels/n",
        ),
        (
            "an unknown data member",
            changed(finished(), |v| v["data"]["Result"] = json!("pass")),
            "/data",
        ),
        (
            "another spec version",
            changed(finished(), |v| v["shkeptnspecversion"] = json!("0.2.0")),
            "/shkeptnspecversion",
        ),
    ];
    for (what, instance, path) in cases {
        let errs = errors(&validator(AF, "emitted"), &instance);
        assert!(!errs.is_empty(), "accepted: {what}");
        assert!(
            path.is_empty() || errs.iter().any(|e| e.starts_with(&format!("at \"{path}"))),
            "{what}: expected an error at {path}, got {errs:?}"
        );
    }
}

#[test]
fn write_schemas_reject_type_specific_mistakes() {
    let f = EventFactory::new("unleash-remediation-service");
    let link = Link::reply_to(&parent(
        "sh.keptn.event.get-action.triggered",
        Some("29355a07-7b65-47fa-896e-06f656283c5d"),
        None,
    ));
    let s = scope("carts");
    let l = BTreeMap::new();
    let json = |e: cloudevents::Event| serde_json::to_value(e).unwrap();

    const GAF: &str = "sh.keptn.event.get-action.finished";
    let found = json(f.get_action_finished(&link, &s, &l, &toggle(), 2));
    assert_valid(GAF, "emitted", &found);
    assert_eq!(found["data"]["get-action"]["actionIndex"], json!(2));
    assert_eq!(found["data"]["ActionIndex"], json!(2));
    let failed = json(f.get_action_failed(&link, &s, &l, Outcome::SucceededFail, "no action"));
    assert_valid(GAF, "emitted", &failed);
    assert_invalid(
        GAF,
        "emitted",
        &changed(found.clone(), |v| {
            v["data"].as_object_mut().unwrap().remove("ActionIndex");
        }),
        "/data",
    );
    assert_invalid(
        GAF,
        "emitted",
        &changed(found.clone(), |v| {
            v["data"]["get-action"]["actionIndex"] = json!(0)
        }),
        "/data/get-action/actionIndex",
    );
    assert_invalid(
        GAF,
        "emitted",
        &changed(found.clone(), |v| v["data"]["action"]["action"] = json!("")),
        "/data/action/action",
    );
    assert_invalid(
        GAF,
        "emitted",
        &changed(failed.clone(), |v| {
            v["data"]["action"] = serde_json::to_value(toggle()).unwrap()
        }),
        "/data",
    );
    assert_invalid(
        GAF,
        "emitted",
        &changed(failed, |v| {
            v["data"].as_object_mut().unwrap().remove("message");
        }),
        "/data",
    );

    const RF: &str = "sh.keptn.event.remediation.finished";
    let done = json(f.remediation_finished(&link, &s, &l, Outcome::Pass, "flag switched"));
    assert_valid(RF, "emitted", &done);
    let silent = json(f.remediation_finished(&link, &s, &l, Outcome::Pass, ""));
    assert_invalid(RF, "emitted", &silent, "/data");
    assert_invalid(
        RF,
        "emitted",
        &changed(done, |v| v["data"]["stage"] = json!("")),
        "/data/stage",
    );

    const RSC: &str = "sh.keptn.event.remediation.status.changed";
    let st = json(f.remediation_status_changed(&link, &s, &l, 1, "toggle-feature"));
    assert_valid(RSC, "emitted", &st);
    assert_eq!(
        st["data"]["remediation"],
        json!({"actionIndex": 1, "actionName": "toggle-feature"})
    );
    assert_invalid(
        RSC,
        "emitted",
        &changed(st, |v| v["data"]["remediation"]["actionIndex"] = json!(-1)),
        "/data/remediation/actionIndex",
    );

    const AT: &str = "sh.keptn.event.action.triggered";
    let at = json(f.action_triggered(&link, &s, &l, &toggle(), &problem_value()));
    assert_valid(AT, "emitted", &at);
    assert_invalid(
        AT,
        "emitted",
        &changed(at.clone(), |v| {
            v["data"].as_object_mut().unwrap().remove("action");
        }),
        "/data",
    );
    assert_invalid(
        AT,
        "emitted",
        &changed(at, |v| {
            v["data"]["problem"] = json!("Failure rate increase")
        }),
        "/data/problem",
    );

    const AS: &str = "sh.keptn.event.action.started";
    let started = json(f.action_started(&link, &s, &l));
    assert_valid(AS, "emitted", &started);
    assert_invalid(
        AS,
        "emitted",
        &changed(started, |v| v["data"]["status"] = json!("succeeded")),
        "/data",
    );

    const LE: &str = "sh.keptn.log.error";
    let le = json(f.log_error(&link, None, "delivery", "gave up"));
    assert_valid(LE, "emitted", &le);
    assert_invalid(
        LE,
        "emitted",
        &changed(le, |v| v["data"]["message"] = json!("")),
        "/data/message",
    );
}

// ---------------------------------------------------------------- what we read

fn vectors_dir() -> PathBuf {
    root().join("tests/vectors")
}

/// Every CloudEvent in tests/vectors, with its file (and index in the trace).
fn vector_events() -> Vec<(String, Value)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "json") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&vectors_dir(), &mut files);
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let name = path
            .strip_prefix(vectors_dir())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        match v.get("events").and_then(Value::as_array) {
            Some(events) => {
                for (i, e) in events.iter().enumerate() {
                    out.push((format!("{name}#{i}"), e.clone()));
                }
            }
            None => out.push((name, v)),
        }
    }
    out
}

/// Whether the decoder can use an event: for get-action.triggered, whether its data is usable.
fn usable(v: &Value) -> bool {
    match to_cloudevent(v.clone()).and_then(decode_event) {
        Ok(ev) => match ev.kind {
            Kind::GetActionTriggered(g) => g.data.is_ok(),
            _ => true,
        },
        Err(_) => false,
    }
}

#[test]
fn consumed_vectors_validate_against_their_read_schema() {
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    let mut sequence = Vec::new();
    for (name, v) in vector_events() {
        let Some(ty) = v["type"].as_str() else {
            continue;
        };
        if !is_read(ty) {
            continue;
        }
        let errs = errors(&validator(ty, "accepted"), &v);
        // The schema and the decoder agree on every real payload.
        assert_eq!(errs.is_empty(), usable(&v), "{name}: {errs:?}");
        if schema_of(ty) == SEQUENCE_TRIGGER {
            sequence.push(name.clone());
        }
        if errs.is_empty() {
            accepted.push(name);
        } else {
            rejected.push(name);
        }
    }
    assert_eq!(
        rejected,
        vec![
            "dynatrace-service/open_problem_no_stage/received_ce.json",
            "keptn-1.x/get-action.triggered-malformed.json",
        ]
    );
    assert_eq!(accepted.len(), 22, "{accepted:#?}");
    // The sequence triggers of dynatrace-service >= 0.14, prometheus-service >= 0.7 and Keptn 1.x.
    assert_eq!(
        sequence,
        vec![
            "dynatrace-service/open_problem/expected_emitted_ce.json",
            "dynatrace-service/open_problem_with_tags/expected_emitted_ce.json",
            "keptn-0.8/remediation-triggered-event.json",
            "keptn-1.x/remediation-trace.json#9",
            "prometheus-service/trigger_remediation.json",
            "unleash-service/remediation-triggered.json",
        ]
    );
}

fn ev(ty: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0", "id": "6f14d952-3729-4605-915f-12ff84f0e5f1", "source": "test",
        "type": ty, "datacontenttype": "application/json",
        "shkeptncontext": "cdba1c70-e3e7-441d-8115-e6c9c2d6477b", "data": data
    })
}

fn set(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn unset(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

/// The read schemas say what the decoder accepts: each sample is valid exactly when it decodes.
#[test]
fn read_schemas_agree_with_the_decoder() {
    const PO: &str = "sh.keptn.event.problem.open";
    const P: &str = "sh.keptn.events.problem";
    const AT: &str = "sh.keptn.event.action.triggered";
    const AF: &str = "sh.keptn.event.action.finished";
    const GA: &str = "sh.keptn.event.get-action.triggered";
    let problem = json!({"State": "OPEN", "ProblemID": "1", "ProblemTitle": "t", "project": "p", "stage": "s"});
    let with = |k: &str, v: Value| set(problem.clone(), k, v);
    let without = |k: &str| unset(problem.clone(), k);
    let action = json!({"project": "p", "stage": "s", "service": "v",
        "action": {"name": "n", "action": "toggle-feature", "value": {"F": "on"}}});
    let finished = json!({"project": "p", "status": "succeeded", "result": "pass"});
    let get_action = json!({"project": "p", "stage": "s", "problem": {"problemTitle": "t"},
        "get-action": {"actionIndex": 1}});
    let tid = |v: Value| set(v, "triggeredid", json!("t-1"));
    const ST: &str = "sh.keptn.event.production.remediation.triggered";
    let sequence = json!({"project": "p", "stage": "production", "service": "v",
        "labels": {"Problem URL": "https://example.com"},
        "problem": {"problemTitle": "t", "rootCause": "r"}});
    let seq_with = |k: &str, v: Value| set(sequence.clone(), k, v);
    let seq_problem = |p: Value| set(sequence.clone(), "problem", p);

    let samples: Vec<(&str, Value, bool)> = vec![
        ("problem", ev(P, problem.clone()), true),
        ("problem.open", ev(PO, problem.clone()), true),
        (
            "CE 0.2",
            set(
                set(ev(PO, problem.clone()), "specversion", json!("0.2")),
                "contenttype",
                json!("application/json"),
            ),
            true,
        ),
        (
            "no specversion",
            unset(ev(P, problem.clone()), "specversion"),
            true,
        ),
        (
            "specversion 2.0",
            set(ev(P, problem.clone()), "specversion", json!("2.0")),
            false,
        ),
        ("no type", unset(ev(P, problem.clone()), "type"), false),
        ("no id", unset(ev(P, problem.clone()), "id"), true),
        (
            "object extension",
            set(ev(P, problem.clone()), "shkeptncontext", json!({"a": 1})),
            true,
        ),
        (
            "unknown members",
            set(ev(P, with("Foo", json!([{}]))), "Bar", json!({"x": 1})),
            true,
        ),
        ("data missing", unset(ev(P, problem.clone()), "data"), false),
        ("data a string", ev(P, json!("x")), false),
        ("data an array", ev(PO, json!([problem.clone()])), false),
        (
            "state lower case",
            ev(P, with("State", json!("closed"))),
            true,
        ),
        (
            "state resolved",
            ev(P, with("State", json!("Resolved"))),
            true,
        ),
        (
            "state SLEEPING",
            ev(P, with("State", json!("SLEEPING"))),
            false,
        ),
        ("state a number", ev(P, with("State", json!(1))), false),
        ("state missing", ev(P, without("State")), false),
        (
            "state missing, problem.open",
            ev(PO, without("State")),
            true,
        ),
        (
            "state null, problem.open",
            ev(PO, with("State", Value::Null)),
            true,
        ),
        ("project a number", ev(P, with("project", json!(42))), false),
        ("service null", ev(P, with("service", Value::Null)), true),
        (
            "labels an array",
            ev(P, with("labels", json!(["a"]))),
            false,
        ),
        ("labels null", ev(P, with("labels", Value::Null)), true),
        (
            "labels with numbers",
            ev(P, with("labels", json!({"n": 1}))),
            true,
        ),
        ("no scope", ev(P, unset(without("project"), "stage")), false),
        ("no stage", ev(P, without("stage")), false),
        ("empty project", ev(P, with("project", json!(""))), false),
        (
            "scope from tags",
            ev(
                P,
                set(
                    unset(without("project"), "stage"),
                    "Tags",
                    json!("keptn_project:a, keptn_stage:b"),
                ),
            ),
            true,
        ),
        (
            "empty tag values",
            ev(
                P,
                set(
                    unset(without("project"), "stage"),
                    "Tags",
                    json!("keptn_project:, keptn_stage: "),
                ),
            ),
            false,
        ),
        (
            "scope from Keptn* members",
            ev(
                P,
                set(
                    set(
                        unset(without("project"), "stage"),
                        "KeptnProject",
                        json!("a"),
                    ),
                    "KeptnStage",
                    json!("b"),
                ),
            ),
            true,
        ),
        (
            "no title, id or PID",
            ev(P, unset(without("ProblemID"), "ProblemTitle")),
            false,
        ),
        (
            "PID only",
            ev(
                P,
                set(
                    unset(without("ProblemID"), "ProblemTitle"),
                    "PID",
                    json!("x"),
                ),
            ),
            true,
        ),
        (
            "problemTitle only",
            ev(
                P,
                set(
                    unset(without("ProblemID"), "ProblemTitle"),
                    "problemTitle",
                    json!("x"),
                ),
            ),
            true,
        ),
        ("action", ev(AT, action.clone()), true),
        (
            "action missing",
            ev(AT, unset(action.clone(), "action")),
            false,
        ),
        (
            "action a string",
            ev(AT, set(action.clone(), "action", json!("toggle-feature"))),
            false,
        ),
        (
            "action.action missing",
            ev(AT, set(action.clone(), "action", json!({"name": "n"}))),
            false,
        ),
        (
            "action.action empty",
            ev(AT, set(action.clone(), "action", json!({"action": ""}))),
            false,
        ),
        (
            "action.name a number",
            ev(
                AT,
                set(action.clone(), "action", json!({"action": "a", "name": 1})),
            ),
            false,
        ),
        (
            "action, no scope",
            ev(AT, unset(unset(action.clone(), "project"), "stage")),
            true,
        ),
        ("finished", tid(ev(AF, finished.clone())), true),
        (
            "finished without triggeredid",
            ev(AF, finished.clone()),
            false,
        ),
        (
            "finished, triggeredid an object",
            set(ev(AF, finished.clone()), "triggeredid", json!({})),
            false,
        ),
        (
            "finished, triggeredid empty",
            set(ev(AF, finished.clone()), "triggeredid", json!("")),
            false,
        ),
        (
            "finished, no data",
            tid(unset(ev(AF, finished.clone()), "data")),
            true,
        ),
        ("finished, data null", tid(ev(AF, Value::Null)), true),
        (
            "finished, status a number",
            tid(ev(AF, set(finished.clone(), "status", json!(1)))),
            false,
        ),
        (
            "finished, 0.7 nested",
            tid(ev(
                AF,
                json!({"action": {"status": "errored", "result": "failed"}}),
            )),
            true,
        ),
        (
            "finished, nested result a number",
            tid(ev(AF, json!({"action": {"result": 1}}))),
            false,
        ),
        ("get-action", ev(GA, get_action.clone()), true),
        (
            "get-action null",
            ev(GA, set(get_action.clone(), "get-action", Value::Null)),
            true,
        ),
        (
            "top-level actionIndex",
            ev(
                GA,
                set(
                    unset(get_action.clone(), "get-action"),
                    "actionIndex",
                    json!(2),
                ),
            ),
            true,
        ),
        (
            "get-action a string",
            ev(GA, set(get_action.clone(), "get-action", json!("1"))),
            false,
        ),
        (
            "actionIndex negative",
            ev(
                GA,
                set(get_action.clone(), "get-action", json!({"actionIndex": -1})),
            ),
            false,
        ),
        (
            "actionIndex a string",
            ev(
                GA,
                set(
                    unset(get_action.clone(), "get-action"),
                    "actionIndex",
                    json!("1"),
                ),
            ),
            false,
        ),
        (
            "actionIndex a fraction",
            ev(
                GA,
                set(
                    unset(get_action.clone(), "get-action"),
                    "actionIndex",
                    json!(1.5),
                ),
            ),
            false,
        ),
        (
            "get-action without project",
            ev(GA, unset(get_action.clone(), "project")),
            false,
        ),
        (
            "get-action, problem an array",
            ev(GA, set(get_action.clone(), "problem", json!([]))),
            false,
        ),
        ("get-action, data a string", ev(GA, json!("x")), false),
        ("sequence trigger", ev(ST, sequence.clone()), true),
        (
            "sequence trigger, another stage",
            ev(
                "sh.keptn.event.hardening-2.remediation.triggered",
                sequence.clone(),
            ),
            true,
        ),
        (
            "sequence trigger, CE 0.2",
            set(
                set(
                    unset(ev(ST, sequence.clone()), "datacontenttype"),
                    "specversion",
                    json!("0.2"),
                ),
                "contenttype",
                json!("application/json"),
            ),
            true,
        ),
        (
            "sequence trigger, CE 0.3",
            set(ev(ST, sequence.clone()), "specversion", json!("0.3")),
            true,
        ),
        (
            "sequence trigger, no specversion",
            unset(ev(ST, sequence.clone()), "specversion"),
            true,
        ),
        (
            "sequence trigger, specversion 2.0",
            set(ev(ST, sequence.clone()), "specversion", json!("2.0")),
            false,
        ),
        (
            "sequence trigger, no id, object extension",
            set(
                unset(ev(ST, sequence.clone()), "id"),
                "shkeptncontext",
                json!({"a": 1}),
            ),
            true,
        ),
        (
            "sequence trigger, unknown members",
            set(
                ev(
                    ST,
                    set(
                        seq_with("Foo", json!([{}])),
                        "problem",
                        json!({"problemTitle": "t", "ImpactedEntities": [{"entity": "HOST-1"}]}),
                    ),
                ),
                "Bar",
                json!({"x": 1}),
            ),
            true,
        ),
        (
            "sequence trigger, no stage in data",
            ev(ST, unset(sequence.clone(), "stage")),
            true,
        ),
        (
            "sequence trigger, stage null",
            ev(ST, seq_with("stage", Value::Null)),
            true,
        ),
        (
            "sequence trigger, stage empty",
            ev(ST, seq_with("stage", json!(""))),
            true,
        ),
        (
            "sequence trigger, stage other than the type's",
            ev(ST, seq_with("stage", json!("hardening"))),
            true,
        ),
        (
            "sequence trigger, stage a number",
            ev(ST, seq_with("stage", json!(1))),
            false,
        ),
        (
            "sequence trigger, service null",
            ev(ST, seq_with("service", Value::Null)),
            true,
        ),
        (
            "sequence trigger, service an object",
            ev(ST, seq_with("service", json!({}))),
            false,
        ),
        (
            "sequence trigger, no project",
            ev(ST, unset(sequence.clone(), "project")),
            false,
        ),
        (
            "sequence trigger, project empty",
            ev(ST, seq_with("project", json!(""))),
            false,
        ),
        (
            "sequence trigger, project null",
            ev(ST, seq_with("project", Value::Null)),
            false,
        ),
        (
            "sequence trigger, project a number",
            ev(ST, seq_with("project", json!(42))),
            false,
        ),
        (
            "sequence trigger, project only in problem.KeptnProject",
            ev(
                ST,
                set(
                    unset(sequence.clone(), "project"),
                    "problem",
                    json!({"ProblemTitle": "t", "KeptnProject": "p",
                        "Tags": "keptn_project:p, keptn_stage:production"}),
                ),
            ),
            false,
        ),
        (
            "sequence trigger, labels null",
            ev(ST, seq_with("labels", Value::Null)),
            true,
        ),
        (
            "sequence trigger, labels with numbers",
            ev(
                ST,
                seq_with("labels", json!({"n": 1, "b": true, "x": null})),
            ),
            true,
        ),
        (
            "sequence trigger, labels an array",
            ev(ST, seq_with("labels", json!(["a"]))),
            false,
        ),
        (
            "sequence trigger, no problem",
            ev(ST, unset(sequence.clone(), "problem")),
            false,
        ),
        (
            "sequence trigger, problem null",
            ev(ST, seq_problem(Value::Null)),
            false,
        ),
        (
            "sequence trigger, problem a string",
            ev(ST, seq_problem(json!("Response time degradation"))),
            false,
        ),
        (
            "sequence trigger, problem an array",
            ev(ST, seq_problem(json!([{"problemTitle": "t"}]))),
            false,
        ),
        (
            "sequence trigger, problem empty",
            ev(ST, seq_problem(json!({}))),
            false,
        ),
        (
            "sequence trigger, problemTitle only",
            ev(ST, seq_problem(json!({"problemTitle": "t"}))),
            true,
        ),
        (
            "sequence trigger, ProblemTitle only",
            ev(ST, seq_problem(json!({"ProblemTitle": "t"}))),
            true,
        ),
        (
            "sequence trigger, PROBLEMTITLE only",
            ev(ST, seq_problem(json!({"PROBLEMTITLE": "t"}))),
            true,
        ),
        (
            "sequence trigger, rootCause only",
            ev(ST, seq_problem(json!({"rootCause": "r"}))),
            true,
        ),
        (
            "sequence trigger, ProblemID only",
            ev(ST, seq_problem(json!({"ProblemID": "P-1"}))),
            true,
        ),
        (
            "sequence trigger, problemId only",
            ev(ST, seq_problem(json!({"problemId": "P-1"}))),
            true,
        ),
        (
            "sequence trigger, PID only",
            ev(ST, seq_problem(json!({"PID": "-4349221618435898381"}))),
            false,
        ),
        (
            "sequence trigger, title empty, no rootCause or id",
            ev(ST, seq_problem(json!({"problemTitle": "", "PID": "1"}))),
            false,
        ),
        (
            "sequence trigger, title a number, no rootCause or id",
            ev(ST, seq_problem(json!({"problemTitle": 1, "State": "OPEN"}))),
            false,
        ),
        (
            "sequence trigger, title empty, other spelling set",
            ev(
                ST,
                seq_problem(json!({"problemTitle": "", "ProblemTitle": "t"})),
            ),
            true,
        ),
        (
            "sequence trigger, title a number, rootCause set",
            ev(
                ST,
                seq_problem(json!({"problemTitle": 1, "rootCause": "r"})),
            ),
            true,
        ),
        (
            "sequence trigger, problem State CLOSED (still read as open)",
            ev(
                ST,
                seq_problem(json!({"ProblemTitle": "t", "State": "CLOSED"})),
            ),
            true,
        ),
        (
            "sequence trigger, data missing",
            unset(ev(ST, sequence.clone()), "data"),
            false,
        ),
        ("sequence trigger, data null", ev(ST, Value::Null), false),
        ("sequence trigger, data a string", ev(ST, json!("x")), false),
    ];
    for (what, v, want) in samples {
        let ty = v["type"].as_str().unwrap_or(P).to_owned();
        let errs = errors(&validator(&ty, "accepted"), &v);
        assert_eq!(usable(&v), want, "decoder on {what}");
        assert_eq!(errs.is_empty(), want, "schema on {what}: {errs:?}");
    }

    // The sequence trigger's schema matches the type the way the decoder does; a type it does
    // not match is not a sequence trigger (another schema's, or unsupported).
    let seq = validator(SEQUENCE_TRIGGER, "accepted");
    for (ty, want) in [
        ("sh.keptn.event.production.remediation.triggered", true),
        ("sh.keptn.event.stage.remediation.triggered", true),
        ("sh.keptn.event.dev_1-a.remediation.triggered", true),
        ("sh.keptn.event.Ünï code.remediation.triggered", true),
        ("sh.keptn.event.remediation.remediation.triggered", true),
        ("sh.keptn.event..remediation.triggered", false),
        ("sh.keptn.event.a.b.remediation.triggered", false),
        ("sh.keptn.event.remediation.triggered", false),
        ("sh.keptn.event.production.remediation.started", false),
        ("sh.keptn.event.production.remediation.finished", false),
        ("sh.keptn.event.production.remediation.triggered.x", false),
        ("xsh.keptn.event.production.remediation.triggered", false),
        ("sh.keptn.event.production.remediation.triggered\n", false),
        ("sh.keptn.events.production.remediation.triggered", false),
        ("sh.keptn.event.problem.open.remediation.triggered", false),
    ] {
        let v = ev(ty, sequence.clone());
        assert_eq!(usable(&v), want, "decoder on type {ty:?}");
        assert_eq!(
            errors(&seq, &v).is_empty(),
            want,
            "{SEQUENCE_TRIGGER} on type {ty:?}"
        );
        assert_eq!(schema_of(ty) == SEQUENCE_TRIGGER, want, "schema_of({ty:?})");
    }
    let numeric_type = set(ev(ST, sequence.clone()), "type", json!(7));
    assert!(!usable(&numeric_type));
    assert!(!errors(&seq, &numeric_type).is_empty());
}
