//! Keeping secrets and forged lines out of what the service writes.
//!
//! - [`Scrubber`]: every configured secret (tokens, passwords, the nkey seed, passwords written
//!   into URLs), replaced by `***` in outgoing events and in every log line.
//! - [`EscapedFields`]: the text log's field formatter; control characters from input (a newline
//!   that would start a forged log line, a terminal escape code) are written escaped.
//! - [`scrub_log_line`]: the scrubber applied to every log line, whatever the format and
//!   whichever library logged it.

use serde_json::Value;
use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::{Arc, RwLock};
use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;

/// Shorter secrets are not searched for: replacing two or three common characters everywhere
/// would garble every text without protecting anything.
const MIN_SECRET_LEN: usize = 4;

/// Replaces every configured secret, in the forms it can take in text (as is, percent-encoded
/// as in a URL, JSON-escaped), by `***`.
#[derive(Clone, Default)]
pub struct Scrubber {
    needles: Vec<String>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} patterns)", self.needles.len())
    }
}

impl Scrubber {
    pub fn new<I, S>(secrets: I) -> Scrubber
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut needles: Vec<String> = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.chars().count() < MIN_SECRET_LEN {
                continue;
            }
            let encoded =
                percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            let quoted = serde_json::to_string(secret).unwrap_or_default();
            let json = quoted[1..quoted.len() - 1].to_owned();
            for form in [secret.to_owned(), encoded, json] {
                if !needles.contains(&form) {
                    needles.push(form);
                }
            }
        }
        // Longest first, so that a secret containing another is replaced whole.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Scrubber { needles }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every secret replaced by `***`.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = Cow::Owned(out.replace(needle.as_str(), "***"));
            }
        }
        out
    }

    /// Scrubs every string (and member name) in a JSON value.
    pub fn scrub_value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Cow::Owned(clean) = self.scrub(s) {
                    *s = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_value(v)),
            Value::Object(map) => {
                let dirty = map.keys().any(|k| matches!(self.scrub(k), Cow::Owned(_)));
                if dirty {
                    let old = std::mem::take(map);
                    for (k, v) in old {
                        map.insert(self.scrub(&k).into_owned(), v);
                    }
                }
                map.values_mut().for_each(|v| self.scrub_value(v));
            }
            _ => {}
        }
    }
}

/// The credentials written into a URL (`scheme://user:password@host`), decoded. For NATS a user
/// without a password is a token (`nats://token@host`), so it is a secret too.
pub fn url_secrets(raw: &str, user_is_token: bool) -> Vec<String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let Ok(url) = url::Url::parse(raw) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    match url.password() {
        Some(p) => out.push(decode(p)),
        None if user_is_token && !url.username().is_empty() => out.push(decode(url.username())),
        None => {}
    }
    out
}

/// `url` without the user and password, for logs and messages; unchanged when it is not a URL.
pub fn without_userinfo(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

static LOG_SCRUBBER: RwLock<Option<Arc<Scrubber>>> = RwLock::new(None);

/// From now on, every log line is scrubbed with `scrubber`.
pub fn scrub_logs_with(scrubber: Arc<Scrubber>) {
    *LOG_SCRUBBER.write().unwrap_or_else(|e| e.into_inner()) = Some(scrubber);
}

/// One formatted log line with the secrets installed by [`scrub_logs_with`] taken out.
pub fn scrub_log_line(line: &[u8]) -> Cow<'_, [u8]> {
    let scrubber = LOG_SCRUBBER
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match scrubber.filter(|s| !s.is_empty()) {
        Some(s) => match s.scrub(&String::from_utf8_lossy(line)) {
            Cow::Owned(clean) => Cow::Owned(clean.into_bytes()),
            Cow::Borrowed(_) => Cow::Borrowed(line),
        },
        None => Cow::Borrowed(line),
    }
}

/// `text` with control characters (and the invisible characters that reorder or break lines)
/// written as escapes: `\n`, `\r`, `\t`, `\u{1b}`, …
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Field formatter of the text log: like tracing-subscriber's default (`message`, then
/// `name=value` pairs), with every value escaped by [`escape_controls`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'a> MakeVisitor<Writer<'a>> for EscapedFields {
    type Visitor = EscapedVisitor<'a>;
    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        EscapedVisitor {
            writer: target,
            empty: true,
            result: Ok(()),
        }
    }
}

pub struct EscapedVisitor<'a> {
    writer: Writer<'a>,
    empty: bool,
    result: fmt::Result,
}

impl Visit for EscapedVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"))
        } else {
            self.record_debug(field, &value)
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        if name.starts_with("log.") {
            return;
        }
        let text = format!("{value:?}");
        let text = escape_controls(&text);
        let pad = if self.empty { "" } else { " " };
        self.empty = false;
        self.result = match name {
            "message" => write!(self.writer, "{pad}{text}"),
            name => {
                let name = name.strip_prefix("r#").unwrap_or(name);
                write!(self.writer, "{pad}{name}={text}")
            }
        };
    }
}

impl VisitOutput<fmt::Result> for EscapedVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for EscapedVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_every_form_of_a_secret() {
        let s = Scrubber::new(["p@ss:w\"rd", "abc", "s3cret-token"]);
        assert_eq!(s.scrub("x s3cret-token y"), "x *** y");
        assert_eq!(s.scrub("nats://u:p%40ss%3Aw%22rd@h"), "nats://u:***@h");
        assert_eq!(s.scrub(r#"{"m":"p@ss:w\"rd"}"#), r#"{"m":"***"}"#);
        // Too short to be searched for.
        assert_eq!(s.scrub("abc"), "abc");
        let mut v = serde_json::json!({"message": "token s3cret-token", "labels": {"s3cret-token": ["s3cret-token"]}});
        s.scrub_value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"message": "token ***", "labels": {"***": ["***"]}})
        );
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            without_userinfo("http://user:pass@keptn:8080/api"),
            "http://keptn:8080/api"
        );
        assert_eq!(without_userinfo("http://keptn/api"), "http://keptn/api");
        assert_eq!(without_userinfo("not a url"), "not a url");
    }

    #[test]
    fn text_log_fields_are_escaped() {
        #[derive(Clone, Default)]
        struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(EscapedFields)
            .with_writer(move || sink.clone())
            .finish();
        let forged = "front-end\n2026-01-01T00:00:00Z  INFO forged line\u{1b}[2J\u{202e}";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("event", scope = %forged);
            let _g = span.enter();
            tracing::warn!(service = %forged, plain = forged, "got {forged}");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{202e}'),
            "{out}"
        );
        assert!(
            out.contains(r"front-end\n2026-01-01T00:00:00Z  INFO forged line\u{1b}[2J\u{202e}"),
            "{out}"
        );
        assert!(out.contains("service=front-end\\n"), "{out}");
        assert!(out.contains("got front-end\\n"), "{out}");
    }

    #[test]
    fn escaping_leaves_plain_text_alone() {
        assert!(matches!(escape_controls("plain text ü"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\r\n\tb\u{7f}"), r"a\r\n\tb\u{7f}");
    }
}
