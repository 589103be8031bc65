//! Binary-mode CloudEvents over HTTP: the context attributes travel as `ce-*` headers and the
//! body is the data. The headers are turned into the structured JSON object that
//! [`super::decode_bytes`] reads, so both modes go through one tolerant decoder.
//!
//! Header values are percent-decoded as the CloudEvents HTTP binding asks (a sender encodes
//! `%`, `"`, controls and non-ASCII); `Content-Type` is the `datacontenttype`.

use super::decode::{DecodeError, decode_value};
use super::model::Incoming;
use base64::Engine;
use serde_json::{Map, Value};

/// Attributes a binary-mode event must carry.
const REQUIRED: [&str; 4] = ["specversion", "id", "type", "source"];

/// Decodes a binary-mode CloudEvent from its headers (name, raw value) and body.
pub fn decode_binary<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    body: &[u8],
) -> Result<Incoming, DecodeError> {
    decode_value(Value::Object(structured(headers, body)?))
}

/// The structured-mode object equivalent to a binary-mode message.
pub(crate) fn structured<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    body: &[u8],
) -> Result<Map<String, Value>, DecodeError> {
    let mut obj = Map::new();
    let mut content_type = None;
    let mut problems = Vec::new();
    for (name, raw) in headers {
        let name = name.to_ascii_lowercase();
        if name == "content-type" {
            content_type = Some(String::from_utf8_lossy(raw).into_owned());
            continue;
        }
        let Some(attr) = name.strip_prefix("ce-") else {
            continue;
        };
        // The data is the body; a header cannot replace it.
        if attr.is_empty() || attr == "data" || attr == "data_base64" {
            continue;
        }
        let value = match percent_encoding::percent_decode(raw).decode_utf8() {
            Ok(v) => v.into_owned(),
            Err(_) => {
                problems.push(format!(
                    "header `{name}` is not UTF-8 after percent-decoding"
                ));
                continue;
            }
        };
        if obj.insert(attr.to_owned(), Value::String(value)).is_some() {
            problems.push(format!("header `{name}` is given more than once"));
        }
    }
    let missing: Vec<String> = REQUIRED
        .iter()
        .filter(|a| !matches!(obj.get(**a), Some(Value::String(s)) if !s.is_empty()))
        .map(|a| format!("`ce-{a}`"))
        .collect();
    if !missing.is_empty() {
        problems.insert(
            0,
            format!(
                "binary-mode CloudEvent without required header {}",
                missing.join(", ")
            ),
        );
    }
    let known = |attr: &str| obj.get(attr).and_then(Value::as_str).map(str::to_owned);
    let (id, ty, keptn_context) = (known("id"), known("type"), known("shkeptncontext"));
    let fail = |reason: &'static str, message: String| DecodeError {
        reason,
        message,
        id: id.clone(),
        ty: ty.clone(),
        keptn_context: keptn_context.clone(),
    };
    if !problems.is_empty() {
        return Err(fail("not_cloudevent", problems.join("; ")));
    }
    if let Some(ct) = &content_type {
        obj.insert("datacontenttype".into(), Value::String(ct.clone()));
    }
    if !body.is_empty() {
        let json = content_type.as_deref().is_some_and(is_json);
        if json {
            let data: Value = serde_json::from_slice(body)
                .map_err(|e| fail("invalid_data", format!("data is not JSON: {e}")))?;
            obj.insert("data".into(), data);
        } else if let Ok(text) = std::str::from_utf8(body) {
            obj.insert("data".into(), Value::String(text.to_owned()));
        } else {
            let encoded = base64::engine::general_purpose::STANDARD.encode(body);
            obj.insert("data_base64".into(), Value::String(encoded));
        }
    }
    Ok(obj)
}

/// `application/json`, `text/json` or any `…+json`, parameters aside.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keptn::Kind;
    use serde_json::json;

    fn problem_headers(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, Vec<u8>)> {
        let mut h: Vec<(&'static str, Vec<u8>)> = vec![
            ("ce-specversion", b"1.0".to_vec()),
            ("ce-id", b"e-1".to_vec()),
            ("ce-type", b"sh.keptn.event.problem.open".to_vec()),
            ("ce-source", b"dynatrace".to_vec()),
            ("content-type", b"application/json".to_vec()),
        ];
        h.extend(extra.iter().map(|(n, v)| (*n, v.as_bytes().to_vec())));
        h
    }

    fn view<'a>(h: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'static str, &'a [u8])> {
        h.iter().map(|(n, v)| (*n, v.as_slice())).collect()
    }

    fn problem_body() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "State": "OPEN", "ProblemID": "P-1", "ProblemTitle": "Slow",
            "project": "shop", "stage": "prod", "service": "cart"
        }))
        .unwrap()
    }

    #[test]
    fn same_event_as_structured_mode() {
        let h = problem_headers(&[
            ("ce-shkeptncontext", "ctx-1"),
            ("ce-time", "2024-01-02T03:04:05Z"),
        ]);
        let binary = decode_binary(view(&h), &problem_body()).unwrap();
        let structured = crate::keptn::decode_bytes(
            &serde_json::to_vec(&json!({
                "specversion": "1.0", "id": "e-1", "type": "sh.keptn.event.problem.open",
                "source": "dynatrace", "shkeptncontext": "ctx-1",
                "time": "2024-01-02T03:04:05Z", "datacontenttype": "application/json",
                "data": serde_json::from_slice::<Value>(&problem_body()).unwrap()
            }))
            .unwrap(),
        )
        .unwrap();
        // Incoming has no PartialEq; its Debug form shows every member.
        assert_eq!(format!("{binary:?}"), format!("{structured:?}"));
        assert_eq!(binary.meta.keptn_context.as_deref(), Some("ctx-1"));
        assert!(matches!(binary.kind, Kind::Problem(_)));
    }

    #[test]
    fn a_missing_required_header_is_named() {
        for missing in REQUIRED {
            let h: Vec<_> = problem_headers(&[])
                .into_iter()
                .filter(|(n, _)| *n != format!("ce-{missing}"))
                .collect();
            let e = decode_binary(view(&h), &problem_body()).unwrap_err();
            assert_eq!(e.reason, "not_cloudevent");
            assert!(
                e.message.contains(&format!("`ce-{missing}`")),
                "{missing}: {}",
                e.message
            );
        }
        let h = vec![("ce-specversion", b"1.0".to_vec())];
        let e = decode_binary(view(&h), b"").unwrap_err();
        assert!(
            e.message.contains("`ce-id`, `ce-type`, `ce-source`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn what_is_known_goes_into_the_error() {
        let h: Vec<_> = problem_headers(&[("ce-shkeptncontext", "ctx-9")])
            .into_iter()
            .filter(|(n, _)| *n != "ce-source")
            .collect();
        let e = decode_binary(view(&h), &problem_body()).unwrap_err();
        assert_eq!(e.id.as_deref(), Some("e-1"));
        assert_eq!(e.ty.as_deref(), Some("sh.keptn.event.problem.open"));
        assert_eq!(e.keptn_context.as_deref(), Some("ctx-9"));
    }

    #[test]
    fn other_ce_headers_are_extensions() {
        let h = problem_headers(&[
            ("ce-shkeptncontext", "ctx-2"),
            ("ce-triggeredid", "t-1"),
            ("ce-gitcommitid", "abc"),
            ("x-token", "not-an-attribute"),
        ]);
        let obj = structured(view(&h), &problem_body()).unwrap();
        assert_eq!(obj["shkeptncontext"], "ctx-2");
        assert_eq!(obj["triggeredid"], "t-1");
        assert!(!obj.contains_key("x-token") && !obj.contains_key("token"));
        let incoming = decode_binary(view(&h), &problem_body()).unwrap();
        assert_eq!(incoming.meta.triggered_id.as_deref(), Some("t-1"));
        assert_eq!(incoming.meta.git_commit_id.as_deref(), Some("abc"));
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let h = vec![
            ("CE-SpecVersion", b"1.0".to_vec()),
            ("Ce-Id", b"e-1".to_vec()),
            ("ce-TYPE", b"t".to_vec()),
            ("Ce-Source", b"s".to_vec()),
            ("Content-Type", b"application/json".to_vec()),
        ];
        let obj = structured(view(&h), b"{}").unwrap();
        assert_eq!(obj["type"], "t");
        assert_eq!(obj["datacontenttype"], "application/json");
    }

    #[test]
    fn values_are_percent_decoded() {
        let h = problem_headers(&[
            ("ce-subject", "Caf%C3%A9 %22prod%22 100%25"),
            ("ce-shkeptncontext", "a%20b"),
        ]);
        let obj = structured(view(&h), &problem_body()).unwrap();
        assert_eq!(obj["subject"], "Café \"prod\" 100%");
        assert_eq!(obj["shkeptncontext"], "a b");

        let h = problem_headers(&[("ce-subject", "%FF%FE")]);
        let e = structured(view(&h), &problem_body()).unwrap_err();
        assert!(
            e.message.contains("`ce-subject` is not UTF-8"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_repeated_header_is_refused() {
        let h = problem_headers(&[("ce-id", "e-2")]);
        let e = structured(view(&h), &problem_body()).unwrap_err();
        assert!(
            e.message.contains("`ce-id` is given more than once"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_header_cannot_replace_the_body() {
        let h = problem_headers(&[("ce-data", "{}")]);
        let obj = structured(view(&h), &problem_body()).unwrap();
        assert_eq!(obj["data"]["ProblemID"], "P-1");
    }

    #[test]
    fn json_body_that_does_not_parse_is_invalid_data() {
        let h = problem_headers(&[]);
        let e = decode_binary(view(&h), b"{not json").unwrap_err();
        assert_eq!(e.reason, "invalid_data");
        assert!(e.message.contains("data is not JSON"), "{}", e.message);
        assert_eq!(e.id.as_deref(), Some("e-1"));
    }

    #[test]
    fn non_json_body_is_text_or_base64() {
        let mut h = problem_headers(&[]);
        h.retain(|(n, _)| *n != "content-type");
        h.push(("content-type", b"text/plain; charset=utf-8".to_vec()));
        let obj = structured(view(&h), b"hello").unwrap();
        assert_eq!(obj["data"], "hello");
        assert_eq!(obj["datacontenttype"], "text/plain; charset=utf-8");
        let obj = structured(view(&h), &[0xff, 0x00]).unwrap();
        assert_eq!(obj["data_base64"], "/wA=");
        assert!(!obj.contains_key("data"));
        // A problem needs a JSON object: the text is reported as such, not as a crash.
        let e = decode_binary(view(&h), b"hello").unwrap_err();
        assert_eq!(e.reason, "invalid_data");
    }

    #[test]
    fn empty_body_is_no_data() {
        let h = problem_headers(&[]);
        let obj = structured(view(&h), b"").unwrap();
        assert!(!obj.contains_key("data"));
        let e = decode_binary(view(&h), b"").unwrap_err();
        assert!(e.message.contains("data is missing"), "{}", e.message);
    }

    #[test]
    fn json_content_types() {
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "text/json",
            "application/cloudevents+json",
        ] {
            assert!(is_json(ct), "{ct}");
        }
        for ct in [
            "text/plain",
            "application/jsonx",
            "application/octet-stream",
        ] {
            assert!(!is_json(ct), "{ct}");
        }
    }
}
