//! Properties of the event codec: what we write survives JSON and our own decoder unchanged;
//! decoding anything never panics.

use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, Event};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use unleash_remediation_service::keptn::decode::to_cloudevent;
use unleash_remediation_service::keptn::outgoing::{Link, Outcome};
use unleash_remediation_service::keptn::{
    ActionInfo, DecodeError, EventFactory, Incoming, Kind, Scope, decode_bytes, decode_event,
};

/// 256 cases unless PROPTEST_CASES says otherwise; no regression files.
fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------- strategies

/// Numbers that survive a trip through JSON text exactly.
fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (any::<i16>(), 0..8i32).prop_map(|(n, k)| Value::from(f64::from(n) / 2f64.powi(k))),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_number(),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(any::<String>(), any::<String>(), 0..4)
}

fn arb_scope() -> impl Strategy<Value = Scope> {
    (any::<String>(), any::<String>(), any::<String>()).prop_map(|(project, stage, service)| {
        Scope {
            project,
            stage,
            service,
        }
    })
}

fn arb_action() -> impl Strategy<Value = ActionInfo> {
    (
        any::<String>(),
        any::<String>(),
        any::<String>(),
        arb_json(),
    )
        .prop_map(|(name, action, description, value)| ActionInfo {
            name,
            action,
            description,
            value,
        })
}

fn arb_outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Pass),
        Just(Outcome::SucceededFail),
        Just(Outcome::Errored)
    ]
}

fn arb_link() -> impl Strategy<Value = Link> {
    (
        any::<String>(),
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<String>()),
    )
        .prop_map(|(keptn_context, triggered_id, git_commit_id)| Link {
            keptn_context,
            triggered_id,
            git_commit_id,
        })
}

/// Every event the factory makes from the same inputs.
#[allow(clippy::too_many_arguments)]
fn outputs(
    source: &str,
    link: &Link,
    scope: &Scope,
    labels: &BTreeMap<String, String>,
    action: &ActionInfo,
    problem: &Value,
    outcome: Outcome,
    index: usize,
    message: &str,
) -> Vec<Event> {
    let f = EventFactory::new(source);
    vec![
        f.remediation_triggered(link, scope, labels, problem),
        f.remediation_status_changed(link, scope, labels, index, &action.action),
        f.remediation_finished(link, scope, labels, outcome, message),
        f.action_triggered(link, scope, labels, action, problem),
        f.action_started(link, scope, labels),
        f.action_finished(link, scope, labels, outcome, message),
        f.get_action_started(link, scope, labels),
        f.get_action_finished(link, scope, labels, action, index),
        f.get_action_failed(link, scope, labels, outcome, message),
        f.log_error(link, Some(scope), &action.name, message),
        f.log_error(link, None, &action.name, message),
    ]
}

/// The JSON of an event with `time` written one canonical way.
fn canonical(event: &Event) -> Value {
    let mut v = serde_json::to_value(event).unwrap();
    if let Some(t) = v.get("time").and_then(Value::as_str) {
        let t = chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        v["time"] = json!(t);
    }
    v
}

/// Serialize to bytes, parse, rebuild with the decoder's envelope step.
fn through_the_wire(event: &Event) -> Result<Event, TestCaseError> {
    let bytes = serde_json::to_vec(event).unwrap();
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    to_cloudevent(value).map_err(|e| TestCaseError::fail(format!("{e}")))
}

const ATTRIBUTE_NAMES: [&str; 13] = [
    "specversion",
    "id",
    "type",
    "source",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "shkeptncontext",
    "shkeptnspecversion",
    "triggeredid",
    "gitcommitid",
];

// ---------------------------------------------------------------- outgoing round trip

proptest! {
    #![proptest_config(config())]

    #[test]
    fn outgoing_events_round_trip(
        source in "[a-z][a-z0-9-]{0,30}",
        link in arb_link(),
        scope in arb_scope(),
        labels in arb_labels(),
        action in arb_action(),
        problem in arb_json(),
        outcome in arb_outcome(),
        index in 0usize..1_000_000,
        message in any::<String>(),
    ) {
        for event in outputs(&source, &link, &scope, &labels, &action, &problem, outcome, index, &message) {
            let back = through_the_wire(&event)?;
            prop_assert_eq!(canonical(&back), canonical(&event), "{}", event.ty());
            prop_assert_eq!(&back, &event);
            // serde alone reads it back the same way.
            let plain: Event = serde_json::from_slice(&serde_json::to_vec(&event).unwrap()).unwrap();
            prop_assert_eq!(&plain, &event);
            // Extensions as written.
            prop_assert_eq!(
                back.extension("shkeptncontext"),
                Some(&ExtensionValue::String(link.keptn_context.clone()))
            );
            prop_assert_eq!(
                back.extension("triggeredid").cloned(),
                link.triggered_id.clone().map(ExtensionValue::String)
            );
            prop_assert_eq!(
                back.extension("gitcommitid").cloned(),
                link.git_commit_id.clone().map(ExtensionValue::String)
            );
            prop_assert_eq!(back.source().as_str(), source.as_str());
        }
    }

    /// The two types that are both written and read decode to what was written.
    #[test]
    fn written_events_of_read_types_decode_to_their_inputs(
        link in arb_link(),
        scope in arb_scope(),
        labels in arb_labels(),
        action in arb_action(),
        problem in arb_json(),
        outcome in arb_outcome(),
        message in any::<String>(),
    ) {
        let f = EventFactory::new("unleash-remediation-service");
        let triggered = f.action_triggered(&link, &scope, &labels, &action, &problem);
        match decode_event(through_the_wire(&triggered)?) {
            Ok(ev) => {
                let Kind::ActionTriggered(a) = ev.kind else {
                    return Err(TestCaseError::fail("not decoded as action.triggered"));
                };
                prop_assert_eq!(&a.action, &action);
                prop_assert_eq!(&a.scope, &scope);
                prop_assert_eq!(&a.labels, &labels);
                prop_assert_eq!(&a.data["problem"], &problem);
                prop_assert_eq!(ev.meta.id, triggered.id());
            }
            // The only thing the decoder refuses is an action without a name.
            Err(e) => {
                prop_assert!(action.action.is_empty(), "{}", e);
                prop_assert_eq!(e.message, "`action.action` is missing");
            }
        }

        let finished = f.action_finished(&link, &scope, &labels, outcome, &message);
        match decode_event(through_the_wire(&finished)?) {
            Ok(ev) => {
                let Kind::ActionFinished(a) = ev.kind else {
                    return Err(TestCaseError::fail("not decoded as action.finished"));
                };
                prop_assert_eq!(a.status.as_str(), outcome.status());
                prop_assert_eq!(a.result.as_str(), outcome.result());
                prop_assert_eq!(&a.message, &message);
                prop_assert_eq!(&a.scope, &scope);
                prop_assert_eq!(a.succeeded(), outcome == Outcome::Pass);
                prop_assert_eq!(ev.meta.triggered_id, link.triggered_id.clone());
            }
            // Refused only without a usable triggeredid.
            Err(e) => {
                prop_assert!(link.triggered_id.as_deref().unwrap_or_default().is_empty(), "{}", e);
                prop_assert_eq!(e.message, "action.finished without `triggeredid`");
            }
        }
    }

    /// Any string in shkeptncontext, gitcommitid or any extension survives the round trip.
    #[test]
    fn string_extensions_survive(
        context in any::<String>(),
        commit in any::<String>(),
        name in "[a-z0-9]{1,20}",
        value in any::<String>(),
    ) {
        prop_assume!(!ATTRIBUTE_NAMES.contains(&name.as_str()));
        let f = EventFactory::new("unleash-remediation-service");
        let link = Link {
            keptn_context: context.clone(),
            triggered_id: Some("8c0a80b2-4a3a-4b8b-808a-c713f3c996da".into()),
            git_commit_id: Some(commit.clone()),
        };
        let scope = Scope { project: "p".into(), stage: "s".into(), service: "v".into() };
        let mut event = f.action_finished(&link, &scope, &BTreeMap::new(), Outcome::Pass, "");
        event.set_extension(&name, value.clone());

        let back = through_the_wire(&event)?;
        prop_assert_eq!(back.extension(&name), Some(&ExtensionValue::String(value.clone())));
        prop_assert_eq!(back.extension("shkeptncontext"), Some(&ExtensionValue::String(context.clone())));
        prop_assert_eq!(back.extension("gitcommitid"), Some(&ExtensionValue::String(commit.clone())));
        prop_assert_eq!(canonical(&back), canonical(&event));

        // The decoder reports them; an empty one reads as absent.
        let ev = decode_bytes(&serde_json::to_vec(&event).unwrap()).unwrap();
        prop_assert_eq!(ev.meta.keptn_context, Some(context).filter(|c| !c.is_empty()));
        prop_assert_eq!(ev.meta.git_commit_id, Some(commit).filter(|c| !c.is_empty()));
    }
}

// ---------------------------------------------------------------- decoding never panics

use unleash_remediation_service::keptn::types::CONSUMED;

/// Member names the decoder looks at, in data and in nested objects.
const DATA_KEYS: [&str; 24] = [
    "project",
    "stage",
    "service",
    "labels",
    "State",
    "state",
    "ProblemID",
    "PID",
    "ProblemTitle",
    "problemTitle",
    "rootCause",
    "Tags",
    "KeptnProject",
    "KeptnStage",
    "KeptnService",
    "problem",
    "action",
    "name",
    "value",
    "get-action",
    "actionIndex",
    "status",
    "result",
    "message",
];

const ENVELOPE_KEYS: [&str; 16] = [
    "id",
    "source",
    "time",
    "contenttype",
    "datacontenttype",
    "dataschema",
    "schemaurl",
    "subject",
    "datacontentencoding",
    "data_base64",
    "shkeptncontext",
    "triggeredid",
    "gitcommitid",
    "shkeptnspecversion",
    "Upper",
    "label",
];

fn plausible_string() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        "OPEN",
        "closed",
        "RESOLVED",
        "keptn_project:a, keptn_stage:b, keptn_service:c",
        "keptn_project:, keptn_stage:",
        "toggle-feature",
        "succeeded",
        "errored",
        "pass",
        "fail",
        "application/json",
        "text/plain",
        "base64",
        "https://example.com/x",
        "2022-03-08T09:45:42.997Z",
        "",
        "1",
    ])
    .prop_map(|s| json!(s))
}

fn arb_member() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![3 => plausible_string(), 2 => arb_json()];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop::collection::btree_map(prop::sample::select(DATA_KEYS.to_vec()), inner, 0..6)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
    })
}

/// Objects shaped like Keptn events, with every member possibly wrong.
fn arb_event_like() -> impl Strategy<Value = Value> {
    let ty = prop_oneof![
        4 => prop::sample::select(CONSUMED.to_vec()).prop_map(|t| json!(t)),
        1 => arb_json(),
    ];
    let spec = prop_oneof![
        6 => Just(json!("1.0")),
        3 => Just(json!("0.2")),
        1 => Just(json!("0.3")),
        1 => arb_json()
    ];
    let data = prop_oneof![
        4 => prop::collection::btree_map(prop::sample::select(DATA_KEYS.to_vec()), arb_member(), 0..10)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        1 => arb_json(),
    ];
    let envelope = prop::collection::btree_map(
        prop::sample::select(ENVELOPE_KEYS.to_vec()),
        arb_member(),
        0..5,
    );
    (
        proptest::option::weighted(0.95, ty),
        proptest::option::weighted(0.9, spec),
        proptest::option::weighted(0.95, data),
        envelope,
    )
        .prop_map(|(ty, spec, data, envelope)| {
            let mut obj: Map<String, Value> = envelope
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            if let Some(t) = ty {
                obj.insert("type".into(), t);
            }
            if let Some(s) = spec {
                obj.insert("specversion".into(), s);
            }
            if let Some(d) = data {
                obj.insert("data".into(), d);
            }
            Value::Object(obj)
        })
}

/// A Keptn 0.8.3+ sequence trigger (read with ACCEPT_REMEDIATION_SEQUENCES=true), one type per
/// stage; its schema is that of every stage.
const SEQUENCE_TRIGGER: &str = "sh.keptn.event.production.remediation.triggered";
const SEQUENCE_TRIGGER_SCHEMA: &str = "sh.keptn.event.stage.remediation.triggered";

fn envelope(ty: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0", "id": "6f14d952-3729-4605-915f-12ff84f0e5f1", "source": "test",
        "type": ty, "datacontenttype": "application/json", "time": "2022-06-05T08:35:18.907Z",
        "shkeptncontext": "cdba1c70-e3e7-441d-8115-e6c9c2d6477b", "triggeredid": "t-1",
        "data": data
    })
}

/// A valid event of each consumed type.
fn templates() -> Vec<Value> {
    let problem = json!({"State": "OPEN", "ProblemID": "381", "ProblemTitle": "Failure rate increase",
        "project": "website", "stage": "production", "service": "front-end", "labels": {"a": "b"}});
    vec![
        envelope(CONSUMED[0], problem.clone()),
        envelope(CONSUMED[1], problem),
        envelope(
            CONSUMED[2],
            json!({"project": "p", "stage": "s", "service": "v",
            "problem": {"problemTitle": "t", "rootCause": "r"}, "get-action": {"actionIndex": 1}}),
        ),
        envelope(
            CONSUMED[3],
            json!({"project": "p", "stage": "s", "service": "v",
            "action": {"name": "n", "action": "toggle-feature", "value": {"F": "on"}},
            "problem": {"ProblemTitle": "t"}}),
        ),
        envelope(
            CONSUMED[4],
            json!({"project": "p", "stage": "s", "service": "v",
            "status": "succeeded", "result": "pass"}),
        ),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    SetData(&'static str, Value),
    RemoveData(&'static str),
    SetEnvelope(&'static str, Value),
    RemoveEnvelope(&'static str),
}

/// A valid event with a few members changed, removed or added.
fn arb_near_valid() -> impl Strategy<Value = Value> {
    let mutation = prop_oneof![
        3 => (prop::sample::select(DATA_KEYS.to_vec()), arb_member())
            .prop_map(|(k, v)| Mutation::SetData(k, v)),
        2 => prop::sample::select(DATA_KEYS.to_vec()).prop_map(Mutation::RemoveData),
        1 => (prop::sample::select(ENVELOPE_KEYS.to_vec()), arb_member())
            .prop_map(|(k, v)| Mutation::SetEnvelope(k, v)),
        1 => prop::sample::select(ENVELOPE_KEYS.to_vec()).prop_map(Mutation::RemoveEnvelope),
    ];
    (
        prop::sample::select(templates()),
        prop::collection::vec(mutation, 0..4),
    )
        .prop_map(|(mut v, mutations)| {
            for m in mutations {
                let obj = v.as_object_mut().unwrap();
                match m {
                    Mutation::SetData(k, x) => {
                        obj["data"][k] = x;
                    }
                    Mutation::RemoveData(k) => {
                        obj["data"].as_object_mut().unwrap().remove(k);
                    }
                    Mutation::SetEnvelope(k, x) => {
                        obj.insert(k.into(), x);
                    }
                    Mutation::RemoveEnvelope(k) => {
                        obj.remove(k);
                    }
                }
            }
            v
        })
}

/// A valid event whose envelope members (attributes and the extensions read) take values of
/// every JSON kind.
fn arb_odd_envelope() -> impl Strategy<Value = Value> {
    let value = prop_oneof![
        plausible_string(),
        Just(json!(null)),
        any::<bool>().prop_map(|b| json!(b)),
        any::<i64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        Just(json!(1.5)),
        Just(json!({"a": 1})),
        Just(json!(["x"])),
        Just(json!("aGVsbG8=")),
        Just(json!("{\"a\": 1}")),
    ];
    let key = prop::sample::select(
        ENVELOPE_KEYS
            .iter()
            .copied()
            .chain(["specversion", "type", "data"])
            .collect::<Vec<_>>(),
    );
    (
        prop::sample::select(templates()),
        prop::collection::vec((key, value), 1..5),
    )
        .prop_map(|(mut v, members)| {
            let obj = v.as_object_mut().unwrap();
            for (k, x) in members {
                obj.insert(k.into(), x);
            }
            v
        })
}

/// `templates()` and a sequence trigger: a valid event of each type that has a read schema.
fn read_templates() -> Vec<Value> {
    let mut all = templates();
    all.push(envelope(
        SEQUENCE_TRIGGER,
        json!({"project": "website", "stage": "production", "service": "front-end",
            "labels": {"a": "b"},
            "problem": {"problemTitle": "Failure rate increase", "rootCause": "r", "PID": "1"}}),
    ));
    all
}

/// Data-only changes, with one spelling per member, for comparing the decoder with the read
/// schemas. Integral floats (`4.0`) become fractional: JSON Schema counts them as integers,
/// the decoder does not.
fn arb_near_valid_data() -> impl Strategy<Value = Value> {
    fn fractional(v: Value) -> Value {
        match v {
            Value::Number(n) if n.is_f64() && n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
                json!(n.as_f64().unwrap() + 0.5)
            }
            Value::Array(a) => Value::Array(a.into_iter().map(fractional).collect()),
            Value::Object(o) => {
                Value::Object(o.into_iter().map(|(k, v)| (k, fractional(v))).collect())
            }
            other => other,
        }
    }
    let keys: Vec<&'static str> = DATA_KEYS
        .iter()
        .copied()
        .filter(|k| *k != "state")
        .collect();
    let mutation = prop_oneof![
        3 => (prop::sample::select(keys.clone()), arb_member())
            .prop_map(|(k, v)| Mutation::SetData(k, v)),
        2 => prop::sample::select(keys).prop_map(Mutation::RemoveData),
    ];
    (
        prop::sample::select(read_templates()),
        prop::collection::vec(mutation, 0..4),
    )
        .prop_map(|(mut v, mutations)| {
            for m in mutations {
                let data = v["data"].as_object_mut().unwrap();
                match m {
                    Mutation::SetData(k, x) => {
                        data.insert(k.into(), fractional(x));
                    }
                    Mutation::RemoveData(k) => {
                        data.remove(k);
                    }
                    _ => unreachable!("data mutations only"),
                }
            }
            v
        })
}

/// The read part (`#/$defs/accepted`) of each consumed type's schema.
fn read_validators() -> &'static BTreeMap<&'static str, jsonschema::Validator> {
    static VALIDATORS: std::sync::OnceLock<BTreeMap<&'static str, jsonschema::Validator>> =
        std::sync::OnceLock::new();
    VALIDATORS.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        CONSUMED
            .iter()
            .map(|ty| (*ty, *ty))
            .chain([(SEQUENCE_TRIGGER, SEQUENCE_TRIGGER_SCHEMA)])
            .map(|(ty, file)| {
                let path = root.join(format!("schemas/events/{file}.schema.json"));
                let mut schema: Value =
                    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
                schema["$ref"] = json!("#/$defs/accepted");
                let v = jsonschema::options()
                    .should_validate_formats(true)
                    .build(&schema)
                    .unwrap();
                (ty, v)
            })
            .collect()
    })
}

/// Every reason a rejection can give (the metric label values).
const REASONS: [&str; 5] = [
    "not_json",
    "not_cloudevent",
    "invalid_data",
    "missing_scope",
    "unsupported_type",
];

/// A decoding's result as text, with the id the decoder makes up for an event without one
/// left out (each decoding makes its own).
fn comparable(input: &Value, mut result: Result<Incoming, DecodeError>) -> String {
    let made_up = !matches!(input.get("id"), Some(Value::String(s)) if !s.is_empty());
    if made_up {
        match &mut result {
            Ok(ev) => ev.meta.id.clear(),
            Err(e) => {
                if e.id
                    .as_deref()
                    .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok())
                {
                    e.id = None;
                }
            }
        }
    }
    format!("{result:?}")
}

/// What an accepted event guarantees; what a rejected one says.
fn check(result: Result<Incoming, DecodeError>) -> Result<(), TestCaseError> {
    match result {
        Ok(ev) => {
            prop_assert!(!ev.meta.id.is_empty());
            prop_assert!(CONSUMED.contains(&ev.meta.ty.as_str()));
            match &ev.kind {
                Kind::Problem(p) => {
                    prop_assert!(!p.scope.project.is_empty() && !p.scope.stage.is_empty());
                    prop_assert!(!p.identity().is_empty());
                }
                Kind::GetActionTriggered(g) => {
                    if g.data.is_ok() {
                        prop_assert!(!g.scope.project.is_empty() && !g.scope.stage.is_empty());
                    }
                }
                Kind::ActionTriggered(a) => prop_assert!(!a.action.action.is_empty()),
                Kind::ActionFinished(_) => prop_assert!(ev.meta.triggered_id.is_some()),
            }
        }
        Err(e) => {
            prop_assert!(REASONS.contains(&e.reason), "unknown reason {}", e.reason);
            prop_assert!(!e.message.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(decode_bytes(&bytes))?;
    }

    #[test]
    fn decoding_arbitrary_json_never_panics(value in arb_json()) {
        check(decode_bytes(&serde_json::to_vec(&value).unwrap()))?;
        check(to_cloudevent(value).and_then(decode_event))?;
    }

    #[test]
    fn decoding_event_like_objects_never_panics(value in arb_event_like()) {
        check(decode_bytes(&serde_json::to_vec(&value).unwrap()))?;
    }

    #[test]
    fn decoding_nearly_valid_events_never_panics(value in arb_near_valid()) {
        check(decode_bytes(&serde_json::to_vec(&value).unwrap()))?;
    }

    /// The read schemas accept exactly what the decoder can use.
    #[test]
    fn read_schemas_agree_with_the_decoder(value in arb_near_valid_data()) {
        let ty = value["type"].as_str().unwrap();
        let usable = match decode_bytes(&serde_json::to_vec(&value).unwrap()) {
            Ok(ev) => match ev.kind {
                Kind::GetActionTriggered(g) => g.data.map(|_| ()),
                _ => Ok(()),
            },
            Err(e) => Err(e.to_string()),
        };
        let errors: Vec<String> = read_validators()[ty]
            .iter_errors(&value)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        prop_assert_eq!(
            usable.is_ok(),
            errors.is_empty(),
            "{}\ndecoder: {:?}\nschema: {:?}",
            serde_json::to_string(&value["data"]).unwrap(),
            usable,
            errors
        );
    }

    /// The decoder reads an event whose data is JSON without the SDK's event in between: it
    /// accepts, refuses and reports exactly what the way through the SDK does.
    #[test]
    fn the_direct_decoding_is_the_decoding_through_the_sdk(
        value in prop_oneof![arb_event_like(), arb_near_valid(), arb_json(), arb_odd_envelope()],
    ) {
        let direct = decode_bytes(&serde_json::to_vec(&value).unwrap());
        let through_sdk = to_cloudevent(value.clone()).and_then(decode_event);
        prop_assert_eq!(
            comparable(&value, direct),
            comparable(&value, through_sdk),
            "{}",
            value
        );
    }

    /// A truncated event is an error, not a panic.
    #[test]
    fn truncated_events_never_panic(value in arb_event_like(), cut in any::<prop::sample::Index>()) {
        let text = serde_json::to_vec_pretty(&value).unwrap();
        let n = cut.index(text.len() + 1);
        check(decode_bytes(&text[..n]))?;
    }
}
