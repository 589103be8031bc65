//! A problem OPEN's identity read straight from its payload, for the duplicate check that most
//! of an alert storm ends at (docs/design.md §2).
//!
//! [`open_identity`] reads only the members that [`super::decode_bytes`] would use to name the
//! event and its problem, borrowing them from the payload and skipping every other value
//! without building it. It answers only for the plain shape of an OPEN (JSON data, CloudEvents
//! 1.0 or 0.2, each member it reads given once); for anything else it answers `None`, and the
//! event is decoded in full, so that a malformed event is still refused with its reason. Where
//! it answers, the full decode gives the same id, type, scope and identity (the tests compare
//! both on every vector and on mutations of them).

use super::decode::{is_json_content_type, scope_from_tags};
use super::model::Scope;
use super::types;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// What the claim cache needs to know an OPEN for a duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenIdentity<'a> {
    /// The event's `id`.
    pub id: Cow<'a, str>,
    /// The event's `type`: [`types::PROBLEM_OPEN`] or [`types::PROBLEM`].
    pub ty: Cow<'a, str>,
    pub scope: Scope,
    /// What [`super::ProblemEvent::identity`] gives for the problem.
    pub identity: Cow<'a, str>,
}

/// The identity of the OPEN in `payload`, when it has the plain shape; `None` for anything
/// else (another type, another state, a member the full decode would refuse or rewrite).
pub fn open_identity(payload: &[u8]) -> Option<OpenIdentity<'_>> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let envelope = <Envelope as de::Deserialize>::deserialize(&mut de).ok()?;
    de.end().ok()?;
    envelope.into_identity()
}

/// A member's value, as far as the decode looks at it.
#[derive(Debug, Default)]
enum Member<'a> {
    Text(Cow<'a, str>),
    /// A number, written as the decode writes it.
    Number(String),
    Null,
    Object,
    /// Anything else: a boolean or an array.
    #[default]
    Other,
}

impl<'a> Member<'a> {
    /// A non-empty string (what `ProblemDetails` calls usable).
    fn usable(&self) -> Option<&Cow<'a, str>> {
        match self {
            Member::Text(s) if !s.is_empty() => Some(s),
            _ => None,
        }
    }
}

struct MemberVisitor;

impl<'de> Visitor<'de> for MemberVisitor {
    type Value = Member<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Member<'de>, E> {
        Ok(Member::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Member<'de>, E> {
        Ok(Member::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Member<'de>, E> {
        Ok(Member::Text(Cow::Owned(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Member<'de>, E> {
        Ok(Member::Number(serde_json::Number::from(v).to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Member<'de>, E> {
        Ok(Member::Number(serde_json::Number::from(v).to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Member<'de>, E> {
        // As `serde_json::Value` reads it (JSON has no NaN or infinity).
        Ok(serde_json::Number::from_f64(v).map_or(Member::Null, |n| Member::Number(n.to_string())))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Member<'de>, E> {
        Ok(Member::Other)
    }
    fn visit_unit<E>(self) -> Result<Member<'de>, E> {
        Ok(Member::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Member<'de>, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Member::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Member<'de>, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Member::Object)
    }
}

impl<'de> de::Deserialize<'de> for Member<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MemberVisitor)
    }
}

/// A value read and dropped. Read as `serde_json::Value` reads it (not with `IgnoredAny`, which
/// passes over numbers out of range that the full decode refuses), without keeping it.
struct Skip;

impl<'de> de::Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MemberVisitor).map(|_| Skip)
    }
}

/// A member name, borrowed from the payload when it has no escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(MemberVisitor).and_then(|m| match m {
            Member::Text(s) => Ok(Name(s)),
            _ => Err(de::Error::custom("a member name is a string")),
        })
    }
}

/// Fails the reading (and so sends the event to the full decode) when `slot` is already set:
/// the full decode keeps the last of two equal names, this reader does not try to.
fn once<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::custom("a member given twice"));
    }
    *slot = Some(value);
    Ok(())
}

/// The envelope's members that the decode reads to name an event and to find its data.
#[derive(Default)]
struct Envelope<'a> {
    specversion: Option<Member<'a>>,
    id: Option<Member<'a>>,
    ty: Option<Member<'a>>,
    datacontenttype: Option<Member<'a>>,
    contenttype: Option<Member<'a>>,
    data_base64: Option<()>,
    data: Option<Data<'a>>,
}

impl<'de> de::Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a CloudEvent")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
                let mut e = Envelope::default();
                while let Some(Name(name)) = map.next_key::<Name>()? {
                    match name.as_ref() {
                        "specversion" => once(&mut e.specversion, map.next_value()?)?,
                        "id" => once(&mut e.id, map.next_value()?)?,
                        "type" => once(&mut e.ty, map.next_value()?)?,
                        "datacontenttype" => once(&mut e.datacontenttype, map.next_value()?)?,
                        "contenttype" => once(&mut e.contenttype, map.next_value()?)?,
                        "data_base64" => {
                            map.next_value::<Skip>()?;
                            once(&mut e.data_base64, ())?
                        }
                        "data" => once(&mut e.data, map.next_value_seed(DataSeed)?)?,
                        _ => {
                            map.next_value::<Skip>()?;
                        }
                    }
                }
                Ok(e)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Envelope<'a> {
    fn into_identity(self) -> Option<OpenIdentity<'a>> {
        let ty = match self.ty? {
            Member::Text(t) if t == types::PROBLEM_OPEN || t == types::PROBLEM => t,
            _ => return None,
        };
        // 0.3 data is read by the SDK; 1.0 and 0.2 (absent: 1.0) as JSON.
        match self.specversion {
            None => {}
            Some(Member::Text(v)) if v == "1.0" || v == "0.2" => {}
            Some(_) => return None,
        }
        let content_type = match (&self.datacontenttype, &self.contenttype) {
            (Some(Member::Text(ct)), _) => ct.as_ref(),
            // A content type that is not a string is dropped, and the default taken.
            (Some(_), _) => "application/json",
            (None, Some(Member::Text(ct))) => ct.as_ref(),
            (None, _) => "application/json",
        };
        if !is_json_content_type(content_type) || self.data_base64.is_some() {
            return None;
        }
        // Without an id the decode makes one up; left to it.
        let id = match self.id? {
            Member::Text(id) if !id.is_empty() => id,
            _ => return None,
        };
        let (scope, identity) = self.data?.problem(&ty)?;
        Some(OpenIdentity {
            id,
            ty,
            scope,
            identity,
        })
    }
}

/// A name the problem's members are looked up by in any ASCII case (`ProblemTitle`,
/// `problemTitle`): the member of the exact name, the first usable string of any case and the
/// first number of any case.
#[derive(Default)]
struct AnyCase<'a> {
    exact: Option<Member<'a>>,
    first_usable: Option<Cow<'a, str>>,
    first_number: Option<String>,
}

impl<'a> AnyCase<'a> {
    fn add<E: de::Error>(&mut self, exact: bool, member: Member<'a>) -> Result<(), E> {
        if self.first_usable.is_none()
            && let Some(s) = member.usable()
        {
            self.first_usable = Some(s.clone());
        }
        if self.first_number.is_none()
            && let Member::Number(n) = &member
        {
            self.first_number = Some(n.clone());
        }
        if exact {
            once(&mut self.exact, member)?;
        }
        Ok(())
    }

    /// `ProblemDetails::get_str`: the exact name's usable string, else the first usable one.
    fn text(&self) -> Option<Cow<'a, str>> {
        self.exact
            .as_ref()
            .and_then(Member::usable)
            .or(self.first_usable.as_ref())
            .cloned()
    }

    /// `ProblemDetails::get_id`: the text, else the exact name's number, else the first one.
    fn id(&self) -> Option<Cow<'a, str>> {
        self.text().or_else(|| match &self.exact {
            Some(Member::Number(n)) => Some(Cow::Owned(n.clone())),
            _ => self.first_number.clone().map(Cow::Owned),
        })
    }
}

/// The members of a problem's data that its scope, state and identity come from.
#[derive(Default)]
struct Data<'a> {
    project: Option<Member<'a>>,
    stage: Option<Member<'a>>,
    service: Option<Member<'a>>,
    labels: Option<Member<'a>>,
    keptn_project: Option<Member<'a>>,
    keptn_stage: Option<Member<'a>>,
    keptn_service: Option<Member<'a>>,
    tags: AnyCase<'a>,
    /// The first member named `State` in any case, which decides, as in the decode.
    state: Option<Member<'a>>,
    title: AnyCase<'a>,
    root_cause: AnyCase<'a>,
    problem_id: AnyCase<'a>,
    pid: AnyCase<'a>,
}

/// Reads `data`. Data that is not an object fails the reading, and the event goes to the full
/// decode, which refuses it.
struct DataSeed;

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = Data<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Data<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the event's data")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut d = Data::default();
                // The names read so far of those looked up in any case: the decode keeps the
                // last value of a name given twice, in the place of the first, which this
                // reader does not follow.
                let mut seen: Vec<Cow<'de, str>> = Vec::new();
                while let Some(Name(name)) = map.next_key::<Name>()? {
                    let n = name.as_ref();
                    let slot = match n {
                        "project" => Some(&mut d.project),
                        "stage" => Some(&mut d.stage),
                        "service" => Some(&mut d.service),
                        "labels" => Some(&mut d.labels),
                        "KeptnProject" => Some(&mut d.keptn_project),
                        "KeptnStage" => Some(&mut d.keptn_stage),
                        "KeptnService" => Some(&mut d.keptn_service),
                        _ => None,
                    };
                    if let Some(slot) = slot {
                        once(slot, map.next_value()?)?;
                        continue;
                    }
                    let any_case = [
                        ("Tags", &mut d.tags),
                        ("ProblemTitle", &mut d.title),
                        ("rootCause", &mut d.root_cause),
                        ("ProblemID", &mut d.problem_id),
                        ("PID", &mut d.pid),
                    ]
                    .into_iter()
                    .find(|(canonical, _)| n.eq_ignore_ascii_case(canonical));
                    let state = n.eq_ignore_ascii_case("State");
                    if any_case.is_none() && !state {
                        map.next_value::<Skip>()?;
                        continue;
                    }
                    if seen.iter().any(|s| s == n) {
                        return Err(de::Error::custom("a member given twice"));
                    }
                    let member = map.next_value()?;
                    match any_case {
                        Some((canonical, slot)) => slot.add(n == canonical, member)?,
                        None if d.state.is_none() => d.state = Some(member),
                        None => {}
                    }
                    seen.push(name);
                }
                Ok(d)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Data<'a> {
    /// The scope and identity of an OPEN, as the decode's `problem` finds them; `None` when it
    /// would refuse the event or the problem is not open.
    fn problem(self, ty: &str) -> Option<(Scope, Cow<'a, str>)> {
        // `opt_str`: absent, null and "" are none; any other type is refused.
        fn opt_str(m: &Option<Member>) -> Option<String> {
            match m {
                None | Some(Member::Null) => Some(String::new()),
                Some(Member::Text(s)) => Some(s.as_ref().to_owned()),
                Some(_) => None,
            }
        }
        // The Dynatrace members are taken as strings, anything else as empty.
        fn raw(m: &Option<Member>) -> String {
            match m {
                Some(Member::Text(s)) => s.as_ref().to_owned(),
                _ => String::new(),
            }
        }
        let mut scope = Scope {
            project: opt_str(&self.project)?,
            stage: opt_str(&self.stage)?,
            service: opt_str(&self.service)?,
        };
        if !matches!(self.labels, None | Some(Member::Null | Member::Object)) {
            return None;
        }
        let tagged = self
            .tags
            .text()
            .map(|t| scope_from_tags(&t))
            .unwrap_or_default();
        for (field, from_tag, from_raw) in [
            (&mut scope.project, tagged.project, &self.keptn_project),
            (&mut scope.stage, tagged.stage, &self.keptn_stage),
            (&mut scope.service, tagged.service, &self.keptn_service),
        ] {
            if field.is_empty() {
                *field = if from_tag.is_empty() {
                    raw(from_raw)
                } else {
                    from_tag
                };
            }
        }
        if scope.project.is_empty() || scope.stage.is_empty() {
            return None;
        }
        let open = match &self.state {
            None | Some(Member::Null) => ty == types::PROBLEM_OPEN,
            Some(Member::Text(s)) => s.eq_ignore_ascii_case("OPEN"),
            Some(_) => false,
        };
        if !open {
            return None;
        }
        let identity = self
            .problem_id
            .id()
            .or_else(|| self.pid.id())
            .or_else(|| self.title.text())
            .or_else(|| self.root_cause.text())?;
        // The decode refuses a problem with neither title, ProblemID nor PID as text; one named
        // only by its root cause or by a number is left to it.
        if self.title.text().is_none()
            && self.problem_id.text().is_none()
            && self.pid.text().is_none()
        {
            return None;
        }
        Some((scope, identity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keptn::{Kind, ProblemState, decode_bytes};
    use serde_json::{Value, json};

    /// What the full decode says of `payload`, for an OPEN: its id, type, scope and identity.
    fn full(payload: &[u8]) -> Option<(String, String, Scope, String)> {
        let incoming = decode_bytes(payload).ok()?;
        match incoming.kind {
            Kind::Problem(p) if p.state == ProblemState::Open => Some((
                incoming.meta.id,
                incoming.meta.ty,
                p.scope.clone(),
                p.identity(),
            )),
            _ => None,
        }
    }

    /// Checks that where the quick reading answers, the full decode gives the same; returns
    /// whether it answered.
    fn agrees(payload: &[u8]) -> bool {
        let Some(quick) = open_identity(payload) else {
            return false;
        };
        let text = String::from_utf8_lossy(payload);
        let Some((id, ty, scope, identity)) = full(payload) else {
            panic!("read as an OPEN, which the full decode refuses or reads otherwise: {text}");
        };
        assert_eq!(quick.id, id, "{text}");
        assert_eq!(quick.ty, ty, "{text}");
        assert_eq!(quick.scope, scope, "{text}");
        assert_eq!(quick.identity, identity, "{text}");
        true
    }

    /// A JSON object written member by member, so that a name can be given twice.
    fn object(members: &[(String, String)]) -> String {
        let inner: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
            .collect();
        format!("{{{}}}", inner.join(","))
    }

    fn members(v: &Value) -> Vec<(String, String)> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect()
    }

    /// Every way tried of changing one member list: each member left out, given twice, renamed
    /// into another case, and set to each of `values`; and `extra` members added.
    fn variants(
        base: &[(String, String)],
        values: &[&str],
        extra: &[(&str, &str)],
    ) -> Vec<Vec<(String, String)>> {
        let mut out = vec![base.to_vec()];
        for i in 0..base.len() {
            let (name, value) = &base[i];
            let mut without = base.to_vec();
            without.remove(i);
            out.push(without);
            let mut twice = base.to_vec();
            twice.push((name.clone(), value.clone()));
            out.push(twice);
            for renamed in [name.to_lowercase(), name.to_uppercase()] {
                let mut r = base.to_vec();
                r[i].0 = renamed.clone();
                out.push(r.clone());
                // Both spellings, in both orders.
                r.insert(i, base[i].clone());
                out.push(r.clone());
                r.swap(i, i + 1);
                out.push(r);
                // The other spelling alone, given twice with different values.
                let mut r = base.to_vec();
                r[i].0 = renamed.clone();
                r.push((renamed, r#""again""#.to_owned()));
                out.push(r);
            }
            for v in values {
                let mut changed = base.to_vec();
                changed[i].1 = (*v).to_owned();
                out.push(changed);
            }
        }
        for (name, value) in extra {
            let mut more = base.to_vec();
            more.insert(0, ((*name).to_owned(), (*value).to_owned()));
            out.push(more.clone());
            more.rotate_left(1);
            out.push(more);
        }
        out
    }

    const VALUES: [&str; 13] = [
        "null",
        r#""""#,
        "42",
        "-7",
        "4.5",
        "1e400",
        "true",
        "[]",
        "{}",
        r#""x""#,
        r#""open""#,
        r#""RESOLVED""#,
        r#""keptn_project:p, keptn_stage:s""#,
    ];

    #[test]
    fn agrees_with_the_full_decode_on_every_change_of_an_open() {
        let base = json!({
            "specversion": "1.0",
            "id": "e-1",
            "source": "loadgen",
            "type": "sh.keptn.event.problem.open",
            "datacontenttype": "application/json",
            "shkeptncontext": "c-1",
            "data": {
                "State": "OPEN",
                "ProblemID": "P-1",
                "PID": "pid-1",
                "ProblemTitle": "Failure rate increase",
                "rootCause": "cause",
                "project": "website",
                "stage": "production",
                "service": "front-end",
                "labels": {"a": "b"},
                "Tags": "keptn_project:tagged, keptn_stage:tagstage, keptn_service:tagsvc",
                "KeptnProject": "raw-p",
                "KeptnStage": "raw-s",
                "KeptnService": "raw-svc",
                "ImpactedEntities": [{"entity": "x"}],
            }
        });
        let data_extra = [
            ("state", r#""closed""#),
            ("problemTitle", r#""other title""#),
            ("problemId", "17"),
            ("pid", "18.25"),
            ("TAGS", r#""keptn_project:upper""#),
            ("Project", r#""ignored""#),
        ];
        let data_base = members(&base["data"]);
        let mut answered = 0;
        let mut tried = 0;
        let mut envelope: Vec<(String, String)> = members(&base)
            .into_iter()
            .filter(|(k, _)| k != "data")
            .collect();
        for data in variants(&data_base, &VALUES, &data_extra) {
            // Two changes at once: every data variant, and with each scope member also gone.
            for cut in [None, Some("project"), Some("stage"), Some("ProblemID")] {
                let data: Vec<_> = data
                    .iter()
                    .filter(|(k, _)| Some(k.as_str()) != cut)
                    .cloned()
                    .collect();
                envelope.push(("data".into(), object(&data)));
                tried += 1;
                answered += usize::from(agrees(object(&envelope).as_bytes()));
                envelope.pop();
            }
        }
        let data = object(&data_base);
        let envelope_values = [
            "null",
            r#""""#,
            "5",
            r#""0.2""#,
            r#""0.3""#,
            r#""2.0""#,
            r#""text/plain""#,
            r#""application/cloudevents+json""#,
            r#""sh.keptn.events.problem""#,
            r#""sh.keptn.event.action.triggered""#,
        ];
        let envelope_extra = [
            ("data_base64", r#""e30=""#),
            ("contenttype", r#""text/plain""#),
            ("data", r#""not an object""#),
            ("data", "[1]"),
            ("time", r#""yesterday""#),
        ];
        for mut e in variants(&envelope, &envelope_values, &envelope_extra) {
            e.push(("data".into(), data.clone()));
            tried += 1;
            answered += usize::from(agrees(object(&e).as_bytes()));
        }
        for broken in [
            "",
            "{",
            "[]",
            "null",
            r#"{"data":{}} x"#,
            "{\"id\":\"\\ud800\"}",
        ] {
            assert!(open_identity(broken.as_bytes()).is_none(), "{broken}");
        }
        // The check means something only when the quick reading answers often.
        assert!(tried > 500 && answered * 3 > tried, "{answered} of {tried}");
    }

    /// `v` as JSON text with every `e` in its names and strings written `\u0065`.
    fn escaped(v: &Value) -> String {
        let text = |s: &str| {
            let chars: Vec<String> = s
                .chars()
                .map(|c| match c {
                    'e' => "\\u0065".to_owned(),
                    c => {
                        let quoted = Value::String(c.to_string()).to_string();
                        quoted[1..quoted.len() - 1].to_owned()
                    }
                })
                .collect();
            format!("\"{}\"", chars.concat())
        };
        match v {
            Value::String(s) => text(s),
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(escaped).collect();
                format!("[{}]", items.join(","))
            }
            Value::Object(m) => {
                let members: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{}:{}", text(k), escaped(v)))
                    .collect();
                format!("{{{}}}", members.join(","))
            }
            other => other.to_string(),
        }
    }

    #[test]
    fn reads_the_opens_of_the_vectors_as_the_full_decode_does() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
        let mut files = vec![];
        for family in std::fs::read_dir(&dir).unwrap() {
            for f in std::fs::read_dir(family.unwrap().path()).unwrap() {
                let path = f.unwrap().path();
                if path.is_dir() {
                    files.extend(std::fs::read_dir(&path).unwrap().map(|f| f.unwrap().path()));
                } else {
                    files.push(path);
                }
            }
        }
        let mut opens = vec![];
        for path in files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
        {
            let bytes = std::fs::read(path).unwrap();
            if agrees(&bytes) {
                opens.push(path.strip_prefix(&dir).unwrap().display().to_string());
            }
            // Every `e` of every name and string escaped: they are no longer borrowed, and are
            // read the same.
            if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                let plain = agrees(v.to_string().as_bytes());
                let escaped = escaped(&v);
                assert_eq!(agrees(escaped.as_bytes()), plain, "{escaped}");
            }
        }
        opens.sort();
        for plain in [
            "keptn-0.8/problem-open-event.json",
            "tutorial/problemopen.json",
            "dynatrace-service/open_problem/received_ce.json",
        ] {
            assert!(
                opens.iter().any(|o| o == plain),
                "{plain} not read: {opens:?}"
            );
        }
    }

    #[test]
    fn an_escaped_open_is_read_like_a_plain_one() {
        let plain = br#"{"id":"e","type":"sh.keptn.event.problem.open","data":{"ProblemID":"P","project":"p","stage":"s"}}"#;
        let escaped = br#"{"i\u0064":"e","type":"sh.keptn.event.problem.open","data":{"ProblemID":"\u0050","project":"p","stage":"s"}}"#;
        let (a, b) = (
            open_identity(plain).unwrap(),
            open_identity(escaped).unwrap(),
        );
        assert_eq!((a.id, a.identity), (b.id, b.identity));
        assert!(agrees(escaped));
    }
}
