//! Malformed input gives an error value with a clear reason, never a panic; tolerated
//! variations (docs/design.md §2) decode.

use base64::Engine as _;
use serde_json::{Value, json};
use unleash_remediation_service::keptn::{
    DecodeError, Incoming, Kind, ProblemEvent, ProblemState, decode_bytes,
};

const PROBLEM_OPEN: &str = "sh.keptn.event.problem.open";
const PROBLEM: &str = "sh.keptn.events.problem";
const ACTION_TRIGGERED: &str = "sh.keptn.event.action.triggered";
const ACTION_FINISHED: &str = "sh.keptn.event.action.finished";
const GET_ACTION_TRIGGERED: &str = "sh.keptn.event.get-action.triggered";

fn problem_data() -> Value {
    json!({
        "State": "OPEN",
        "ProblemID": "381",
        "PID": "-4349221618435898381",
        "ProblemTitle": "Failure rate increase",
        "project": "website",
        "stage": "production",
        "service": "front-end"
    })
}

/// A CloudEvents 1.0 event of type `ty` around `data`.
fn event(ty: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": "6f14d952-3729-4605-915f-12ff84f0e5f1",
        "source": "test",
        "type": ty,
        "time": "2022-06-05T08:35:18.907Z",
        "datacontenttype": "application/json",
        "shkeptncontext": "cdba1c70-e3e7-441d-8115-e6c9c2d6477b",
        "data": data
    })
}

fn with(mut v: Value, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    f(v.as_object_mut().unwrap());
    v
}

fn with_data(v: Value, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    with(v, |o| {
        f(o.get_mut("data").unwrap().as_object_mut().unwrap())
    })
}

fn decode(v: &Value) -> Result<Incoming, DecodeError> {
    decode_bytes(&serde_json::to_vec(v).unwrap())
}

fn err(v: &Value) -> DecodeError {
    match decode(v) {
        Ok(ev) => panic!("expected an error for {v}, got {ev:?}"),
        Err(e) => e,
    }
}

fn problem(v: &Value) -> ProblemEvent {
    let ev = decode(v).unwrap_or_else(|e| panic!("{v}: {e}"));
    match ev.kind {
        Kind::Problem(p) => p,
        other => panic!("expected a problem, got {other:?}"),
    }
}

/// Errors about an identified event carry its id, type and context for the log line and the
/// `sh.keptn.log.error` event.
fn assert_about_event(e: &DecodeError, ty: &str) {
    assert_eq!(
        e.id.as_deref(),
        Some("6f14d952-3729-4605-915f-12ff84f0e5f1")
    );
    assert_eq!(e.ty.as_deref(), Some(ty));
    assert_eq!(
        e.keptn_context.as_deref(),
        Some("cdba1c70-e3e7-441d-8115-e6c9c2d6477b")
    );
}

// ---------------------------------------------------------------- not an event at all

#[test]
fn not_json() {
    for raw in [
        &b"{nope"[..],
        b"",
        b"   ",
        b"\xff\xfe",
        b"{\"type\":",
        b"null null",
    ] {
        let e = decode_bytes(raw).unwrap_err();
        assert_eq!(e.reason, "not_json", "{raw:?}");
        assert!(
            e.message.starts_with("payload is not JSON: "),
            "{}",
            e.message
        );
        assert_eq!(e.to_string(), format!("not_json: {}", e.message));
        assert_eq!((e.id, e.ty, e.keptn_context), (None, None, None));
    }
}

#[test]
fn json_that_is_not_an_object() {
    for raw in [
        "[]",
        r#"[{"type":"sh.keptn.events.problem"}]"#,
        r#""sh.keptn.events.problem""#,
        "42",
        "true",
        "null",
    ] {
        let e = decode_bytes(raw.as_bytes()).unwrap_err();
        assert_eq!(e.reason, "not_cloudevent", "{raw}");
        assert_eq!(e.message, "payload is not a JSON object", "{raw}");
    }
}

#[test]
fn missing_type() {
    let e = err(&with(event(PROBLEM, problem_data()), |o| {
        o.remove("type");
    }));
    assert_eq!(e.reason, "not_cloudevent");
    assert_eq!(e.message, "attribute `type` is missing");
    // What is known is kept.
    assert_eq!(
        e.id.as_deref(),
        Some("6f14d952-3729-4605-915f-12ff84f0e5f1")
    );
    assert_eq!(e.ty, None);
}

#[test]
fn type_not_a_string() {
    for ty in [json!(42), json!(null), json!(["x"]), json!({}), json!("")] {
        let e = err(&with(event(PROBLEM, problem_data()), |o| {
            o.insert("type".into(), ty.clone());
        }));
        assert_eq!(e.reason, "not_cloudevent", "{ty}");
        assert_eq!(
            e.message, "attribute `type` must be a non-empty string",
            "{ty}"
        );
    }
}

#[test]
fn unsupported_specversion() {
    for (v, msg) in [
        (json!("2.0"), r#"unsupported specversion "2.0""#),
        (json!("0.1"), r#"unsupported specversion "0.1""#),
        (json!(""), r#"unsupported specversion """#),
        (json!(1.0), "attribute `specversion` must be a string"),
    ] {
        let e = err(&with(event(PROBLEM, problem_data()), |o| {
            o.insert("specversion".into(), v.clone());
        }));
        assert_eq!(e.reason, "not_cloudevent", "{v}");
        assert_eq!(e.message, msg);
        assert_about_event(&e, PROBLEM);
    }
}

#[test]
fn unsupported_type_is_not_an_error_of_the_sender() {
    let e = err(&event("sh.keptn.event.evaluation.triggered", json!({})));
    assert_eq!(e.reason, "unsupported_type");
    assert_eq!(
        e.message,
        r#"event type "sh.keptn.event.evaluation.triggered" is not handled by this service"#
    );
    assert_about_event(&e, "sh.keptn.event.evaluation.triggered");
}

// ---------------------------------------------------------------- data

#[test]
fn data_not_an_object() {
    for ty in [PROBLEM_OPEN, PROBLEM, ACTION_TRIGGERED] {
        for (data, what) in [
            (json!("text"), "a string"),
            (json!([1, 2]), "an array"),
            (json!(7), "a number"),
            (json!(false), "a boolean"),
        ] {
            let e = err(&event(ty, data.clone()));
            assert_eq!(e.reason, "invalid_data", "{ty} {data}");
            assert_eq!(e.message, format!("data must be a JSON object, not {what}"));
            assert_about_event(&e, ty);
        }
        let e = err(&with(event(ty, json!({})), |o| {
            o.remove("data");
        }));
        assert_eq!(
            (e.reason, e.message.as_str()),
            ("invalid_data", "data is missing")
        );
    }
}

#[test]
fn problem_without_scope() {
    let e = err(&event(
        PROBLEM_OPEN,
        json!({"ProblemTitle": "Failure rate increase", "Tags": "env:prod, team:web"}),
    ));
    assert_eq!(e.reason, "missing_scope");
    assert_eq!(
        e.message,
        "problem has no project and stage (not in data, nor in Tags as keptn_project:/keptn_stage:)"
    );
    assert_about_event(&e, PROBLEM_OPEN);

    // Only the stage missing: the message says so.
    let e = err(&with_data(event(PROBLEM, problem_data()), |d| {
        d.remove("stage");
    }));
    assert_eq!(e.reason, "missing_scope");
    assert!(
        e.message.starts_with("problem has no stage "),
        "{}",
        e.message
    );

    // An empty tag value is no scope.
    let e = err(&event(
        PROBLEM,
        json!({"State": "OPEN", "PID": "1", "Tags": "keptn_project:, keptn_stage: "}),
    ));
    assert_eq!(e.reason, "missing_scope");

    // A service alone is not enough; a missing service is fine.
    let p = problem(&with_data(event(PROBLEM, problem_data()), |d| {
        d.remove("service");
    }));
    assert_eq!(p.scope.service, "");
}

#[test]
fn scope_from_tags_and_dynatrace_members() {
    let p = problem(&event(
        PROBLEM_OPEN,
        json!({
            "ProblemTitle": "Failure rate increase",
            "Tags": "keptn_service:front-end, keptn_project:website, keptn_stage:production"
        }),
    ));
    assert_eq!(
        (
            p.scope.project.as_str(),
            p.scope.stage.as_str(),
            p.scope.service.as_str()
        ),
        ("website", "production", "front-end")
    );
    // Explicit members first, then tags, then KeptnProject/KeptnStage/KeptnService.
    let p = problem(&event(
        PROBLEM_OPEN,
        json!({
            "ProblemTitle": "t",
            "project": "explicit",
            "Tags": "keptn_project:tagged, keptn_stage:tagged-stage",
            "KeptnProject": "raw", "KeptnStage": "raw-stage", "KeptnService": "raw-service"
        }),
    ));
    assert_eq!(
        (
            p.scope.project.as_str(),
            p.scope.stage.as_str(),
            p.scope.service.as_str()
        ),
        ("explicit", "tagged-stage", "raw-service")
    );
}

#[test]
fn wrong_member_types() {
    let cases = [
        (
            "project",
            json!(42),
            "`project` must be a string, not a number",
        ),
        (
            "stage",
            json!(true),
            "`stage` must be a string, not a boolean",
        ),
        (
            "service",
            json!({"a": 1}),
            "`service` must be a string, not an object",
        ),
        (
            "labels",
            json!(["a", "b"]),
            "`labels` must be an object, not an array",
        ),
        (
            "labels",
            json!("a=b"),
            "`labels` must be an object, not a string",
        ),
        ("State", json!(1), "`State` must be a string, not a number"),
        (
            "State",
            json!("SLEEPING"),
            r#"unknown problem State "SLEEPING" (expected OPEN, RESOLVED or CLOSED)"#,
        ),
    ];
    for (member, value, message) in cases {
        for ty in [PROBLEM_OPEN, PROBLEM] {
            let e = err(&with_data(event(ty, problem_data()), |d| {
                d.insert(member.into(), value.clone());
            }));
            assert_eq!(e.reason, "invalid_data", "{ty} {member}={value}");
            assert_eq!(e.message, message);
            assert_about_event(&e, ty);
        }
    }
}

#[test]
fn problem_state() {
    for (state, want) in [
        ("OPEN", ProblemState::Open),
        ("open", ProblemState::Open),
        ("Resolved", ProblemState::Resolved),
        ("RESOLVED", ProblemState::Resolved),
        ("closed", ProblemState::Closed),
        ("CLOSED", ProblemState::Closed),
    ] {
        let p = problem(&with_data(event(PROBLEM, problem_data()), |d| {
            d.insert("State".into(), json!(state));
        }));
        assert_eq!(p.state, want, "{state}");
    }
    // problem.open without a State is open; the generic problem event needs one.
    let p = problem(&with_data(event(PROBLEM_OPEN, problem_data()), |d| {
        d.remove("State");
    }));
    assert_eq!(p.state, ProblemState::Open);
    let e = err(&with_data(event(PROBLEM, problem_data()), |d| {
        d.insert("State".into(), Value::Null);
    }));
    assert_eq!(
        (e.reason, e.message.as_str()),
        ("invalid_data", "problem event has no `State`")
    );
}

#[test]
fn problem_needs_a_title_or_an_id() {
    let e = err(&event(
        PROBLEM_OPEN,
        json!({"project": "p", "stage": "s", "ProblemTitle": "", "ProblemDetails": {}}),
    ));
    assert_eq!(e.reason, "invalid_data");
    assert_eq!(
        e.message,
        "problem has neither ProblemTitle, ProblemID nor PID"
    );
    // Any one of them is enough; the identity falls back in the order ProblemID, PID, title.
    for (member, value) in [
        ("ProblemID", "P-1"),
        ("PID", "pid-1"),
        ("ProblemTitle", "t"),
        ("problemTitle", "t"),
    ] {
        let p = problem(&event(
            PROBLEM_OPEN,
            json!({"project": "p", "stage": "s", member: value}),
        ));
        assert_eq!(p.identity(), value);
    }
}

#[test]
fn action_triggered_without_action() {
    let base = json!({"project": "sockshop", "stage": "staging", "service": "carts"});
    let e = err(&event(ACTION_TRIGGERED, base.clone()));
    assert_eq!(
        (e.reason, e.message.as_str()),
        ("invalid_data", "`action` is missing")
    );
    assert_about_event(&e, ACTION_TRIGGERED);

    let e = err(&with_data(event(ACTION_TRIGGERED, base.clone()), |d| {
        d.insert("action".into(), json!("toggle-feature"));
    }));
    assert_eq!(e.message, "`action` must be an object, not a string");

    let e = err(&with_data(event(ACTION_TRIGGERED, base.clone()), |d| {
        d.insert("action".into(), json!({"name": "x", "value": {"F": "on"}}));
    }));
    assert_eq!(e.message, "`action.action` is missing");

    let e = err(&with_data(event(ACTION_TRIGGERED, base), |d| {
        d.insert("action".into(), json!({"action": 5}));
    }));
    assert_eq!(e.message, "`action` must be a string, not a number");
}

#[test]
fn action_finished_without_triggeredid() {
    let data = json!({"project": "p", "stage": "s", "service": "v", "status": "succeeded", "result": "pass"});
    for tid in [
        None,
        Some(json!("")),
        Some(json!({"id": "x"})),
        Some(json!(null)),
    ] {
        let v = with(event(ACTION_FINISHED, data.clone()), |o| {
            if let Some(t) = tid.clone() {
                o.insert("triggeredid".into(), t);
            }
        });
        let e = err(&v);
        assert_eq!(e.reason, "invalid_data", "{tid:?}");
        assert_eq!(e.message, "action.finished without `triggeredid`");
        assert_about_event(&e, ACTION_FINISHED);
    }
    // With one it decodes, also without data and with Keptn 0.7's nested status and result.
    let ok = |v: &Value| match decode(v).unwrap().kind {
        Kind::ActionFinished(f) => f,
        other => panic!("expected action.finished, got {other:?}"),
    };
    let f = ok(&with(event(ACTION_FINISHED, data.clone()), |o| {
        o.insert("triggeredid".into(), json!("t-1"));
    }));
    assert_eq!(
        (f.status.as_str(), f.result.as_str()),
        ("succeeded", "pass")
    );
    let f = ok(&with(event(ACTION_FINISHED, Value::Null), |o| {
        o.insert("triggeredid".into(), json!("t-1"));
    }));
    assert_eq!((f.status.as_str(), f.result.as_str()), ("", ""));
    let f = ok(&with(
        event(
            ACTION_FINISHED,
            json!({"project": "p", "action": {"status": "errored", "result": "failed"}}),
        ),
        |o| {
            o.insert("triggeredid".into(), json!("t-1"));
        },
    ));
    assert_eq!(
        (f.status.as_str(), f.result.as_str()),
        ("errored", "failed")
    );
    assert!(!f.succeeded());
    let e = err(&with(event(ACTION_FINISHED, json!({"status": 3})), |o| {
        o.insert("triggeredid".into(), json!("t-1"));
    }));
    assert_eq!(e.message, "`status` must be a string, not a number");
}

#[test]
fn get_action_triggered_with_bad_data_is_answered() {
    let base =
        json!({"project": "p", "stage": "s", "service": "v", "problem": {"problemTitle": "t"}});
    let cases = [
        (
            "get-action",
            json!("1"),
            "`get-action` must be an object, not a string",
        ),
        (
            "get-action",
            json!({"actionIndex": -1}),
            "`actionIndex` must be a non-negative integer, not -1",
        ),
        (
            "get-action",
            json!({"actionIndex": "1"}),
            "`actionIndex` must be an integer, not a string",
        ),
        (
            "actionIndex",
            json!(1.5),
            "`actionIndex` must be a non-negative integer, not 1.5",
        ),
        (
            "problem",
            json!([1]),
            "`problem` must be an object, not an array",
        ),
        (
            "labels",
            json!(3),
            "`labels` must be an object, not a number",
        ),
        ("project", json!(""), "`project` and `stage` are required"),
    ];
    for (member, value, reason) in cases {
        let ev = decode(&with_data(event(GET_ACTION_TRIGGERED, base.clone()), |d| {
            d.insert(member.into(), value.clone());
        }))
        .unwrap();
        let Kind::GetActionTriggered(g) = ev.kind else {
            panic!("expected get-action.triggered")
        };
        assert_eq!(g.data.as_ref().unwrap_err(), reason, "{member}={value}");
    }
    // Not even an object: still a get-action.triggered, scope unknown.
    let ev = decode(&event(GET_ACTION_TRIGGERED, json!("x"))).unwrap();
    let Kind::GetActionTriggered(g) = ev.kind else {
        panic!("expected get-action.triggered")
    };
    assert_eq!(
        g.data.unwrap_err(),
        "data must be a JSON object, not a string"
    );
    assert_eq!(g.scope.project, "");
    // Index: nested first, then top level (Keptn 0.8.3 - 0.11), absent or null is 0.
    for (data, index) in [
        (
            json!({"get-action": {"actionIndex": 3}, "actionIndex": 1}),
            3,
        ),
        (json!({"actionIndex": 2}), 2),
        (json!({"get-action": null, "actionIndex": 1}), 1),
        (json!({"get-action": {}}), 0),
        (json!({}), 0),
    ] {
        let mut d = base.clone();
        d.as_object_mut()
            .unwrap()
            .extend(data.as_object().unwrap().clone());
        let ev = decode(&event(GET_ACTION_TRIGGERED, d)).unwrap();
        let Kind::GetActionTriggered(g) = ev.kind else {
            panic!("expected get-action.triggered")
        };
        assert_eq!(g.data.unwrap().action_index, index, "{data}");
    }
}

// ---------------------------------------------------------------- tolerated variations

#[test]
fn cloudevents_02_with_contenttype() {
    let v = json!({
        "specversion": "0.2",
        "contenttype": "application/json",
        "id": "b33aa879-ddfd-4aec-82f7-5da2097320e1",
        "source": "dynatrace",
        "time": "2020-05-04T03:32:37.423Z",
        "type": PROBLEM_OPEN,
        "schemaurl": "https://example.com/schema.json",
        "shkeptncontext": "2d343334-3932-4231-b631-383433353839",
        "data": problem_data()
    });
    let ev = decode(&v).unwrap();
    assert_eq!(ev.meta.id, "b33aa879-ddfd-4aec-82f7-5da2097320e1");
    assert_eq!(
        ev.meta.keptn_context.as_deref(),
        Some("2d343334-3932-4231-b631-383433353839")
    );
    let Kind::Problem(p) = ev.kind else {
        panic!("expected a problem")
    };
    assert_eq!(p.problem.title(), Some("Failure rate increase"));
    assert_eq!(p.scope.project, "website");
}

#[test]
fn cloudevents_10_with_datacontenttype_or_contenttype() {
    let p = problem(&event(PROBLEM, problem_data()));
    assert_eq!(p.identity(), "381");
    // Keptn's KeptnContextExtendedCE writes `contenttype` in 1.0 events too.
    let v = with(event(PROBLEM, problem_data()), |o| {
        let ct = o.remove("datacontenttype").unwrap();
        o.insert("contenttype".into(), ct);
    });
    assert_eq!(problem(&v).identity(), "381");
    // No content type at all: JSON is assumed.
    let v = with(event(PROBLEM, problem_data()), |o| {
        o.remove("datacontenttype");
    });
    assert_eq!(problem(&v).identity(), "381");
    // CloudEvents 0.3 is read too.
    let v = with(event(PROBLEM, problem_data()), |o| {
        o.insert("specversion".into(), json!("0.3"));
    });
    assert_eq!(problem(&v).identity(), "381");
}

#[test]
fn data_base64_with_json_content() {
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(&problem_data()).unwrap());
    let v = with(event(PROBLEM, Value::Null), |o| {
        o.remove("data");
        o.insert("data_base64".into(), json!(encoded));
    });
    let p = problem(&v);
    assert_eq!(p.identity(), "381");
    assert_eq!(p.scope.stage, "production");
}

#[test]
fn problem_lower_camel_case_spelling() {
    let p = problem(&event(
        PROBLEM_OPEN,
        json!({
            "project": "p", "stage": "s",
            "problemTitle": "Response time degradation",
            "rootCause": "Response time degradation",
            "state": "resolved"
        }),
    ));
    assert_eq!(p.problem.title(), Some("Response time degradation"));
    assert_eq!(p.problem.root_cause(), Some("Response time degradation"));
    assert_eq!(p.state, ProblemState::Resolved);
}

#[test]
fn both_spellings_present() {
    // An empty or non-string member in one spelling does not hide the other one.
    let p = problem(&event(
        PROBLEM_OPEN,
        json!({"project": "p", "stage": "s", "ProblemTitle": null, "problemTitle": "Response time degradation"}),
    ));
    assert_eq!(p.problem.title(), Some("Response time degradation"));
    let p = problem(&event(
        PROBLEM_OPEN,
        json!({"project": "p", "stage": "s", "problemtitle": "", "ProblemTitle": "Failure rate increase"}),
    ));
    assert_eq!(p.problem.title(), Some("Failure rate increase"));
    // With two usable values, the documented spelling wins, whatever the order.
    let p = problem(&event(
        PROBLEM_OPEN,
        json!({"project": "p", "stage": "s", "problemTitle": "lower", "ProblemTitle": "upper", "pid": 7, "PID": "x"}),
    ));
    assert_eq!(p.problem.title(), Some("upper"));
    assert_eq!(p.problem.pid(), Some("x"));
}

#[test]
fn unknown_members_anywhere_are_ignored() {
    let v = with(event(ACTION_TRIGGERED, json!({})), |o| {
        o.insert("Unknown".into(), json!({"deep": [1, {"x": null}]}));
        o.insert("extensions".into(), json!({"a": 1}));
        o.insert("x-custom".into(), json!("dash is not an extension name"));
        o.insert("label".into(), json!("Problem open"));
        o.insert(
            "data".into(),
            json!({
                "project": "sockshop", "stage": "staging", "service": "carts",
                "labels": {"a": "1", "n": 2, "b": true, "z": null},
                "temporaryData": {"distributor": {"subscriptionID": "x"}},
                "problem": {"ProblemTitle": "t", "Whatever": [1, 2]},
                "action": {
                    "name": "n", "action": "toggle-feature", "extra": {"k": "v"},
                    "value": {"EnableItemCache": "on"}
                }
            }),
        );
    });
    let ev = decode(&v).unwrap();
    let Kind::ActionTriggered(a) = ev.kind else {
        panic!("expected action.triggered")
    };
    assert_eq!(a.action.action, "toggle-feature");
    assert_eq!(a.action.value, json!({"EnableItemCache": "on"}));
    assert_eq!(
        a.labels.into_iter().collect::<Vec<_>>(),
        vec![
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "true".to_string()),
            ("n".to_string(), "2".to_string())
        ]
    );
    assert_eq!(
        a.data["temporaryData"]["distributor"]["subscriptionID"],
        json!("x")
    );

    let p = problem(&with_data(event(PROBLEM, problem_data()), |d| {
        d.insert("ImpactedEntities".into(), json!([{"entity": "HOST-1"}]));
        d.insert("ProblemDetails".into(), json!("a string this time"));
        d.insert("something_else".into(), json!(1.5));
    }));
    assert_eq!(p.identity(), "381");
    assert_eq!(p.problem.0["ProblemDetails"], json!("a string this time"));
}

#[test]
fn non_string_extensions_do_not_sink_the_event() {
    let v = with(event(PROBLEM, problem_data()), |o| {
        o.insert("shkeptncontext".into(), json!({"not": "a string"}));
        o.insert("gitcommitid".into(), json!(["a", "b"]));
        o.insert("triggeredid".into(), json!(12345));
        o.insert("ratio".into(), json!(0.5));
        o.insert("huge".into(), json!(u64::MAX));
        o.insert("flag".into(), json!(true));
        o.insert("nested".into(), json!({"a": {"b": [1]}}));
        o.insert("shkeptnspecversion".into(), json!(2.3));
    });
    let ev = decode(&v).unwrap();
    assert_eq!(ev.meta.keptn_context, None);
    assert_eq!(ev.meta.git_commit_id, None);
    assert_eq!(ev.meta.triggered_id.as_deref(), Some("12345"));
    let Kind::Problem(p) = ev.kind else {
        panic!("expected a problem")
    };
    assert_eq!(p.identity(), "381");
}

#[test]
fn cloudevents_03_names_in_a_10_event_are_extensions() {
    // `schemaurl` and `datacontentencoding` are attributes only in CloudEvents 0.3; in a 1.0
    // event they are extensions, and one that is not a string is dropped like any other.
    let v = with(event(PROBLEM, problem_data()), |o| {
        o.insert("schemaurl".into(), json!({"not": "a url"}));
        o.insert("datacontentencoding".into(), json!(["base64"]));
    });
    assert_eq!(problem(&v).identity(), "381");
    // In a 0.3 event they are attributes; unusable values are dropped, not fatal.
    let v = with(v, |o| {
        o.insert("specversion".into(), json!("0.3"));
    });
    assert_eq!(problem(&v).identity(), "381");
    let v = with(v, |o| {
        o.insert("schemaurl".into(), json!("not a url"));
        o.insert("datacontentencoding".into(), json!(7));
    });
    assert_eq!(problem(&v).identity(), "381");
}

#[test]
fn event_without_id_gets_one() {
    for id in [None, Some(json!("")), Some(json!(17)), Some(json!(null))] {
        let v = with(event(PROBLEM, problem_data()), |o| match id.clone() {
            None => {
                o.remove("id");
            }
            Some(i) => {
                o.insert("id".into(), i);
            }
        });
        let a = decode(&v).unwrap();
        let b = decode(&v).unwrap();
        assert!(
            uuid::Uuid::parse_str(&a.meta.id).is_ok(),
            "{id:?}: {}",
            a.meta.id
        );
        assert_ne!(a.meta.id, b.meta.id, "a new id each time");
    }
}

#[test]
fn missing_or_odd_envelope_members_are_tolerated() {
    // No specversion: read as 1.0.
    let v = with(event(PROBLEM, problem_data()), |o| {
        o.remove("specversion");
    });
    assert_eq!(problem(&v).identity(), "381");
    // No source, a time that does not parse, non-string optional attributes.
    let v = with(event(PROBLEM, problem_data()), |o| {
        o.remove("source");
        o.insert("time".into(), json!("yesterday"));
        o.insert("subject".into(), json!(5));
        o.insert("dataschema".into(), json!("not a url"));
        o.insert("datacontenttype".into(), json!(7));
    });
    let ev = decode(&v).unwrap();
    assert_eq!(ev.meta.source, "unknown");
    let v = with(event(PROBLEM, problem_data()), |o| {
        o.insert("time".into(), json!(1588562640000u64));
    });
    assert_eq!(problem(&v).identity(), "381");
}
