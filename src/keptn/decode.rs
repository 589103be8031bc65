//! Tolerant decoding of incoming CloudEvents (docs/design.md §2).
//!
//! Accepted: CloudEvents 1.0 and 0.2 structured JSON, `datacontenttype` or the legacy
//! `contenttype`, both spellings of the problem members, scope derived from `Tags`. Unknown
//! members are ignored; an extension that is not a string, integer or boolean is dropped
//! instead of failing the event.

use super::model::*;
use super::types;
use cloudevents::{AttributesReader, Data, Event, event::ExtensionValue};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Why an incoming message could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct DecodeError {
    /// Short machine-readable reason, used as a metric label.
    pub reason: &'static str,
    /// What is wrong, in words.
    pub message: String,
    /// What is known of the event, for the log line and the error event.
    pub id: Option<String>,
    pub ty: Option<String>,
    pub keptn_context: Option<String>,
}

impl DecodeError {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        DecodeError {
            reason,
            message: message.into(),
            id: None,
            ty: None,
            keptn_context: None,
        }
    }
    fn about(mut self, meta: &Meta) -> Self {
        self.id = Some(meta.id.clone());
        self.ty = Some(meta.ty.clone());
        self.keptn_context = meta.keptn_context.clone();
        self
    }
}

/// CloudEvents 1.0 context attributes (the names the SDK reads itself in a 1.0 event). Any other
/// member is an extension candidate.
const ATTRIBUTES_V10: [&str; 10] = [
    "specversion",
    "id",
    "type",
    "source",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "data_base64",
];

/// CloudEvents 0.3 context attributes: `schemaurl` and `datacontentencoding` instead of
/// `dataschema` and `data_base64`.
const ATTRIBUTES_V03: [&str; 10] = [
    "specversion",
    "id",
    "type",
    "source",
    "datacontenttype",
    "schemaurl",
    "subject",
    "time",
    "data",
    "datacontentencoding",
];

/// Decodes a structured-mode CloudEvent (the payload of a NATS message or an HTTP body).
pub fn decode_bytes(payload: &[u8]) -> Result<Incoming, DecodeError> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| DecodeError::new("not_json", format!("payload is not JSON: {e}")))?;
    decode_value(value)
}

/// Decodes a structured-mode CloudEvent already read as JSON: what [`to_cloudevent`] and then
/// [`decode_event`] give, without building the SDK's event in between when its data is JSON.
/// Once `Envelope::of` has kept only well-formed attributes and extensions, the SDK cannot
/// refuse such an event, and building it would copy every member of the event twice over (most
/// of what an alert storm's duplicate costs).
pub fn decode_value(value: Value) -> Result<Incoming, DecodeError> {
    let envelope = Envelope::of(value)?;
    if !envelope.json_data {
        return envelope.into_event().and_then(decode_event);
    }
    let mut obj = envelope.obj;
    let mut text = |name: &str| match obj.swap_remove(name) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let (id, source, ty) = (text("id"), text("source"), text("type"));
    let meta = Meta {
        id,
        source,
        ty,
        keptn_context: extension_text(obj.get("shkeptncontext")),
        triggered_id: extension_text(obj.get("triggeredid")),
        git_commit_id: extension_text(obj.get("gitcommitid")),
    };
    decode_kind(meta, envelope.data.unwrap_or(Value::Null))
}

/// Brings a structured CloudEvent of any accepted version into a shape the SDK reads as 1.0.
pub fn to_cloudevent(value: Value) -> Result<Event, DecodeError> {
    Envelope::of(value)?.into_event()
}

/// A structured event's members once made readable: the attributes the SDK reads, each well
/// formed or left out, and the extensions it can hold; JSON data is taken out beside them.
struct Envelope {
    obj: Map<String, Value>,
    /// Whether the data is JSON (then in `data`, not in `obj`).
    json_data: bool,
    data: Option<Value>,
    /// The `id` as it came, when a new one replaced it (for a refusal).
    given_id: Option<Option<String>>,
}

impl Envelope {
    /// The SDK's event: it reads the members again, the data put back as it would have read it.
    fn into_event(self) -> Result<Event, DecodeError> {
        let Envelope {
            obj,
            data,
            given_id,
            ..
        } = self;
        let refusal = DecodeError {
            reason: "not_cloudevent",
            message: String::new(),
            id: given_id.unwrap_or_else(|| given(&obj, "id")),
            ty: given(&obj, "type"),
            keptn_context: given(&obj, "shkeptncontext"),
        };
        let mut event =
            serde_json::from_value::<Event>(Value::Object(obj)).map_err(|e| DecodeError {
                message: format!("not a CloudEvent: {e}"),
                ..refusal
            })?;
        if let Some(data) = data {
            event.set_data_unchecked(Data::Json(data));
        }
        Ok(event)
    }

    fn of(value: Value) -> Result<Envelope, DecodeError> {
        let Value::Object(mut obj) = value else {
            return Err(DecodeError::new(
                "not_cloudevent",
                "payload is not a JSON object",
            ));
        };
        // A refusal names the event by its members as they came; nothing below changes `type`
        // or `shkeptncontext` but to drop one that is not a string, and `id` is kept aside when
        // it is replaced.
        let fail = |obj: &Map<String, Value>, given_id: Option<Option<String>>, message: String| {
            DecodeError {
                reason: "not_cloudevent",
                message,
                id: given_id.unwrap_or_else(|| given(obj, "id")),
                ty: given(obj, "type"),
                keptn_context: given(obj, "shkeptncontext"),
            }
        };
        match obj.get("type") {
            Some(Value::String(t)) if !t.is_empty() => {}
            Some(_) => {
                return Err(fail(
                    &obj,
                    None,
                    "attribute `type` must be a non-empty string".into(),
                ));
            }
            None => return Err(fail(&obj, None, "attribute `type` is missing".into())),
        }
        let version = match obj.get("specversion") {
            None => {
                obj.insert("specversion".into(), Value::String("1.0".into()));
                "1.0".to_owned()
            }
            Some(Value::String(v)) => v.clone(),
            Some(_) => {
                return Err(fail(
                    &obj,
                    None,
                    "attribute `specversion` must be a string".into(),
                ));
            }
        };
        match version.as_str() {
            "1.0" | "0.3" => {}
            "0.2" => {
                // CloudEvents 0.2 differs only in names that matter here.
                obj.insert("specversion".into(), Value::String("1.0".into()));
                if let Some(url) = obj.remove("schemaurl") {
                    obj.entry("dataschema").or_insert(url);
                }
            }
            other => {
                let message = format!("unsupported specversion {other:?}");
                return Err(fail(&obj, None, message));
            }
        }
        if !obj.contains_key("datacontenttype")
            && let Some(Value::String(ct)) = obj.get("contenttype")
        {
            let ct = ct.clone();
            obj.insert("datacontenttype".into(), Value::String(ct));
        }
        let mut given_id = None;
        if !matches!(obj.get("id"), Some(Value::String(s)) if !s.is_empty()) {
            given_id = Some(given(&obj, "id"));
            // Keptn's own decoders accept events without an id; replies still need one to point at.
            obj.insert("id".into(), Value::String(uuid::Uuid::new_v4().to_string()));
        }
        if !matches!(obj.get("source"), Some(Value::String(s)) if !s.is_empty()) {
            obj.insert("source".into(), Value::String("unknown".into()));
        }
        if let Some(t) = obj.get("time") {
            let valid = t
                .as_str()
                .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok());
            if !valid {
                obj.remove("time");
            }
        }
        let (attributes, schema_attr) = if version == "0.3" {
            (&ATTRIBUTES_V03, "schemaurl")
        } else {
            (&ATTRIBUTES_V10, "dataschema")
        };
        for attr in ["datacontenttype", schema_attr, "subject"] {
            if obj.get(attr).is_some_and(|v| !v.is_string()) {
                obj.remove(attr);
            }
        }
        if version == "0.3"
            && obj
                .get("datacontentencoding")
                .is_some_and(|v| !v.is_string())
        {
            obj.remove("datacontentencoding");
        }
        if obj
            .get(schema_attr)
            .and_then(Value::as_str)
            .is_some_and(|s| url::Url::parse(s).is_err())
        {
            obj.remove(schema_attr);
        }
        obj.retain(|name, value| {
            attributes.contains(&name.as_str()) || usable_extension(name, value)
        });
        // JSON data is moved into the event afterwards, as the SDK would have read it: the SDK
        // builds its input anew twice over, and data is most of an event.
        let json_data = version != "0.3"
            && !obj.contains_key("data_base64")
            && is_json_content_type(
                obj.get("datacontenttype")
                    .and_then(Value::as_str)
                    .unwrap_or("application/json"),
            );
        let data = if json_data { obj.remove("data") } else { None };
        Ok(Envelope {
            obj,
            json_data,
            data,
            given_id,
        })
    }
}

/// A member's text, when it is a string.
fn given(obj: &Map<String, Value>, name: &str) -> Option<String> {
    obj.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// Whether the SDK reads `data` of this content type as JSON (its own test, which it does
/// not export).
pub(super) fn is_json_content_type(ct: &str) -> bool {
    ct.starts_with("application/json") || ct.starts_with("text/json") || ct.ends_with("+json")
}

/// CloudEvents extension names are lower-case letters and digits; values are strings, integers
/// or booleans. Anything else is dropped.
fn usable_extension(name: &str, value: &Value) -> bool {
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let value_ok = match value {
        Value::String(_) | Value::Bool(_) => true,
        Value::Number(n) => n.is_i64(),
        _ => false,
    };
    name_ok && value_ok
}

fn extension_string(event: &Event, name: &str) -> Option<String> {
    match event.extension(name)? {
        ExtensionValue::String(s) if !s.is_empty() => Some(s.clone()),
        ExtensionValue::String(_) => None,
        ExtensionValue::Integer(i) => Some(i.to_string()),
        ExtensionValue::Boolean(b) => Some(b.to_string()),
    }
}

/// [`extension_string`] of a member that [`usable_extension`] kept.
fn extension_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => n.as_i64().map(|i| i.to_string()),
        _ => None,
    }
}

/// Reads the envelope attributes that replies need.
pub fn meta_of(event: &Event) -> Meta {
    Meta {
        id: event.id().to_owned(),
        source: event.source().to_string(),
        ty: event.ty().to_owned(),
        keptn_context: extension_string(event, "shkeptncontext"),
        triggered_id: extension_string(event, "triggeredid"),
        git_commit_id: extension_string(event, "gitcommitid"),
    }
}

/// The event's data as JSON, taken out of it (the rest of the event is not needed again).
fn take_data_value(event: &mut Event) -> Result<Value, String> {
    match event.take_data().2 {
        None => Ok(Value::Null),
        Some(Data::Json(v)) => Ok(v),
        Some(Data::String(s)) => {
            serde_json::from_str(&s).map_err(|e| format!("data is not JSON: {e}"))
        }
        Some(Data::Binary(b)) => {
            serde_json::from_slice(&b).map_err(|e| format!("data is not JSON: {e}"))
        }
    }
}

/// Converts a CloudEvent into a typed Keptn event.
pub fn decode_event(mut event: Event) -> Result<Incoming, DecodeError> {
    let meta = meta_of(&event);
    let data = take_data_value(&mut event)
        .map_err(|m| DecodeError::new("invalid_data", m).about(&meta))?;
    decode_kind(meta, data)
}

/// The typed event of `meta`'s type from its data.
fn decode_kind(meta: Meta, data: Value) -> Result<Incoming, DecodeError> {
    let kind = match meta.ty.as_str() {
        types::PROBLEM_OPEN | types::PROBLEM => Kind::Problem(
            problem(&meta.ty, data).map_err(|(r, m)| DecodeError::new(r, m).about(&meta))?,
        ),
        ty if types::remediation_sequence_stage(ty).is_some() => {
            let stage = types::remediation_sequence_stage(ty).unwrap_or_default();
            Kind::Problem(
                sequence_trigger(stage, data)
                    .map_err(|(r, m)| DecodeError::new(r, m).about(&meta))?,
            )
        }
        types::GET_ACTION_TRIGGERED => Kind::GetActionTriggered(get_action(data)),
        types::ACTION_TRIGGERED => Kind::ActionTriggered(
            action_triggered(data).map_err(|m| DecodeError::new("invalid_data", m).about(&meta))?,
        ),
        types::ACTION_FINISHED => {
            if meta.triggered_id.is_none() {
                return Err(DecodeError::new(
                    "invalid_data",
                    "action.finished without `triggeredid`",
                )
                .about(&meta));
            }
            Kind::ActionFinished(
                action_finished(data)
                    .map_err(|m| DecodeError::new("invalid_data", m).about(&meta))?,
            )
        }
        other => {
            return Err(DecodeError::new(
                "unsupported_type",
                format!("event type {other:?} is not handled by this service"),
            )
            .about(&meta));
        }
    };
    Ok(Incoming { meta, kind })
}

fn object(data: Value) -> Result<Map<String, Value>, String> {
    match data {
        Value::Object(m) => Ok(m),
        Value::Null => Err("data is missing".into()),
        other => Err(format!(
            "data must be a JSON object, not {}",
            kind_of(&other)
        )),
    }
}

/// How a JSON value is named in an error ("a string", "an array").
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A string member; absent, null and "" all read as `None`; any other type is an error.
fn opt_str(map: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("`{name}` must be a string, not {}", kind_of(other))),
    }
}

/// `labels`: a map of strings; numbers and booleans are written as text.
fn labels(map: &Map<String, Value>) -> Result<BTreeMap<String, String>, String> {
    match map.get("labels") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => Ok(m
            .iter()
            .filter_map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => return None,
                    other => other.to_string(),
                };
                Some((k.clone(), text))
            })
            .collect()),
        Some(other) => Err(format!(
            "`labels` must be an object, not {}",
            kind_of(other)
        )),
    }
}

fn scope_members(map: &Map<String, Value>) -> Result<Scope, String> {
    Ok(Scope {
        project: opt_str(map, "project")?.unwrap_or_default(),
        stage: opt_str(map, "stage")?.unwrap_or_default(),
        service: opt_str(map, "service")?.unwrap_or_default(),
    })
}

/// Reads `keptn_project:x, keptn_stage:y, keptn_service:z` from a Dynatrace tag list.
pub fn scope_from_tags(tags: &str) -> Scope {
    let mut scope = Scope::default();
    for tag in tags.split(',') {
        let Some((key, value)) = tag.trim().split_once(':') else {
            continue;
        };
        let value = value.trim().to_owned();
        match key.trim() {
            "keptn_project" => scope.project = value,
            "keptn_stage" => scope.stage = value,
            "keptn_service" => scope.service = value,
            _ => {}
        }
    }
    scope
}

fn problem(ty: &str, data: Value) -> Result<ProblemEvent, (&'static str, String)> {
    let invalid = |m: String| ("invalid_data", m);
    let map = object(data).map_err(invalid)?;
    let mut scope = scope_members(&map).map_err(invalid)?;
    let labels = labels(&map).map_err(invalid)?;
    let details = ProblemDetails(map);
    // Precedence: explicit members, then keptn_* tags, then Dynatrace's KeptnProject/... members.
    let tagged = details.tags().map(scope_from_tags).unwrap_or_default();
    let raw = |name: &str| {
        details
            .0
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    for (field, from_tag, from_raw) in [
        (&mut scope.project, tagged.project, raw("KeptnProject")),
        (&mut scope.stage, tagged.stage, raw("KeptnStage")),
        (&mut scope.service, tagged.service, raw("KeptnService")),
    ] {
        if field.is_empty() {
            *field = if from_tag.is_empty() {
                from_raw
            } else {
                from_tag
            };
        }
    }
    let missing: Vec<&str> = [("project", &scope.project), ("stage", &scope.stage)]
        .into_iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(n, _)| n)
        .collect();
    if !missing.is_empty() {
        return Err((
            "missing_scope",
            format!(
                "problem has no {} (not in data, nor in Tags as keptn_project:/keptn_stage:)",
                missing.join(" and ")
            ),
        ));
    }
    let state = match details
        .0
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("State"))
    {
        None | Some((_, Value::Null)) if ty == types::PROBLEM_OPEN => ProblemState::Open,
        None | Some((_, Value::Null)) => {
            return Err(invalid("problem event has no `State`".into()));
        }
        Some((_, Value::String(s))) => match s.to_ascii_uppercase().as_str() {
            "OPEN" => ProblemState::Open,
            "RESOLVED" => ProblemState::Resolved,
            "CLOSED" => ProblemState::Closed,
            other => {
                return Err(invalid(format!(
                    "unknown problem State {other:?} (expected OPEN, RESOLVED or CLOSED)"
                )));
            }
        },
        Some((_, other)) => {
            return Err(invalid(format!(
                "`State` must be a string, not {}",
                kind_of(other)
            )));
        }
    };
    if details.title().is_none() && details.problem_id().is_none() && details.pid().is_none() {
        return Err(invalid(
            "problem has neither ProblemTitle, ProblemID nor PID".into(),
        ));
    }
    Ok(ProblemEvent {
        scope,
        state,
        labels,
        problem: details,
    })
}

/// `sh.keptn.event.<stage>.remediation.triggered` (dynatrace-service ≥ 0.14,
/// prometheus-service ≥ 0.7): an open problem in `data.problem`, for standalone use.
fn sequence_trigger(stage: &str, data: Value) -> Result<ProblemEvent, (&'static str, String)> {
    let invalid = |m: String| ("invalid_data", m);
    let map = object(data).map_err(invalid)?;
    let mut scope = scope_members(&map).map_err(invalid)?;
    if scope.stage.is_empty() {
        scope.stage = stage.to_owned();
    }
    if scope.project.is_empty() {
        return Err((
            "missing_scope",
            "remediation trigger has no `project`".to_owned(),
        ));
    }
    let labels = labels(&map).map_err(invalid)?;
    let problem = match map.get("problem") {
        Some(Value::Object(p)) => ProblemDetails(p.clone()),
        None | Some(Value::Null) => {
            return Err(invalid("remediation trigger has no `problem`".into()));
        }
        Some(other) => {
            return Err(invalid(format!(
                "`problem` must be an object, not {}",
                kind_of(other)
            )));
        }
    };
    if problem.title().is_none() && problem.root_cause().is_none() && problem.problem_id().is_none()
    {
        return Err(invalid(
            "problem has neither problemTitle, rootCause nor ProblemID".into(),
        ));
    }
    Ok(ProblemEvent {
        scope,
        state: ProblemState::Open,
        labels,
        problem,
    })
}

fn get_action(data: Value) -> GetActionTriggered {
    let map = match object(data) {
        Ok(m) => m,
        Err(e) => {
            return GetActionTriggered {
                scope: Scope::default(),
                labels: BTreeMap::new(),
                data: Err(e),
            };
        }
    };
    let scope = scope_members(&map).unwrap_or_default();
    let labels = labels(&map).unwrap_or_default();
    let data = get_action_request(&map);
    GetActionTriggered {
        scope,
        labels,
        data,
    }
}

fn get_action_request(map: &Map<String, Value>) -> Result<GetActionRequest, String> {
    let scope = scope_members(map)?;
    if scope.project.is_empty() || scope.stage.is_empty() {
        return Err("`project` and `stage` are required".into());
    }
    labels(map)?;
    let problem = match map.get("problem") {
        None | Some(Value::Null) => ProblemDetails::default(),
        Some(Value::Object(p)) => ProblemDetails(p.clone()),
        Some(other) => {
            return Err(format!(
                "`problem` must be an object, not {}",
                kind_of(other)
            ));
        }
    };
    let index = match map.get("get-action") {
        None | Some(Value::Null) => map.get("actionIndex"),
        Some(Value::Object(g)) => g.get("actionIndex"),
        Some(other) => {
            return Err(format!(
                "`get-action` must be an object, not {}",
                kind_of(other)
            ));
        }
    };
    let action_index = match index {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| format!("`actionIndex` must be a non-negative integer, not {n}"))?,
        Some(other) => {
            return Err(format!(
                "`actionIndex` must be an integer, not {}",
                kind_of(other)
            ));
        }
    };
    Ok(GetActionRequest {
        problem,
        action_index,
    })
}

fn action_triggered(data: Value) -> Result<ActionTriggered, String> {
    let map = object(data)?;
    let scope = scope_members(&map)?;
    let labels = labels(&map)?;
    let action = match map.get("action") {
        Some(Value::Object(a)) => a,
        None | Some(Value::Null) => return Err("`action` is missing".into()),
        Some(other) => {
            return Err(format!(
                "`action` must be an object, not {}",
                kind_of(other)
            ));
        }
    };
    let text = |name: &str| opt_str(action, name).map(Option::unwrap_or_default);
    let info = ActionInfo {
        name: text("name")?,
        action: text("action")?,
        description: text("description")?,
        value: action.get("value").cloned().unwrap_or(Value::Null),
    };
    if info.action.is_empty() {
        return Err("`action.action` is missing".into());
    }
    Ok(ActionTriggered {
        scope,
        labels,
        action: info,
        data: map,
    })
}

fn action_finished(data: Value) -> Result<ActionFinished, String> {
    let map = match data {
        Value::Null => Map::new(),
        other => object(other)?,
    };
    let scope = scope_members(&map)?;
    let text = |name: &str| opt_str(&map, name).map(Option::unwrap_or_default);
    // Keptn 0.7 nested status and result in `action`.
    let nested = match map.get("action") {
        Some(Value::Object(a)) => a.clone(),
        _ => Map::new(),
    };
    let pick = |name: &str| -> Result<String, String> {
        let top = text(name)?;
        if !top.is_empty() {
            return Ok(top);
        }
        Ok(opt_str(&nested, name)?.unwrap_or_default())
    };
    Ok(ActionFinished {
        scope,
        status: pick("status")?,
        result: pick("result")?,
        message: text("message")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_give_scope() {
        let s =
            scope_from_tags("keptn_project:shop2,keptn_stage:production2, keptn_service:carts2");
        assert_eq!(s.project, "shop2");
        assert_eq!(s.stage, "production2");
        assert_eq!(s.service, "carts2");
    }

    #[test]
    fn float_and_object_extensions_do_not_sink_the_event() {
        let raw = br#"{"specversion":"1.0","id":"1","source":"x","type":"sh.keptn.event.action.finished",
            "triggeredid":"t","weird":{"a":1},"ratio":0.5,"Upper":"x",
            "data":{"project":"p","stage":"s","service":"v","status":"succeeded","result":"pass"}}"#;
        let ev = decode_bytes(raw).unwrap();
        assert!(matches!(ev.kind, Kind::ActionFinished(ref f) if f.succeeded()));
    }

    #[test]
    fn not_json_is_a_clear_error() {
        let err = decode_bytes(b"{nope").unwrap_err();
        assert_eq!(err.reason, "not_json");
    }
}
