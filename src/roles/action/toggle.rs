//! The `toggle-feature` action's semantics: which flags to switch (parsed from the action's
//! `value`, each name checked once into a [`FlagName`]), which of them the policy allows, dry
//! run, and switching them (the first alone, the others side by side), with a report per flag
//! in the action's order (the state before and after).
//!
//! Accepted values (docs/design.md §6):
//! - a map flag → state, in the order written: `{"EnableStaticContent": "on"}`; the state is
//!   `on`/`off`/`true`/`false` in any case, or a JSON boolean (YAML 1.1 `on`/`off` arrive as
//!   booleans once remediation.yaml has been read);
//! - the Keptn 0.6 string `"EnableStaticContent:on"`.
//!
//! Everything else is refused before any flag is touched, with a message naming what is wrong.

use super::ahead::{ReadAhead, read_before};
use crate::unleash::{FlagName, UnleashClient, UnleashError, on_off};
use futures::StreamExt;
use serde_json::Value;
use std::fmt;
use std::sync::Mutex;

/// One flag and the state it should get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    pub flag: FlagName,
    pub on: bool,
}

/// The action's `value` could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid toggle-feature value: {reason}")]
pub struct ValueError {
    pub reason: String,
}

const EXPECTED: &str = r#"expected a map of flag names to "on"/"off" such as {"EnableStaticContent": "on"}, or the string "EnableStaticContent:on""#;

fn invalid<T>(reason: impl Into<String>) -> Result<T, ValueError> {
    Err(ValueError {
        reason: reason.into(),
    })
}

/// Reads the flags to switch from an action's `value`, in the order written.
pub fn parse_value(value: &Value) -> Result<Vec<FlagChange>, ValueError> {
    match value {
        Value::Object(map) => {
            if map.is_empty() {
                return invalid(format!("the map is empty; {EXPECTED}"));
            }
            map.iter()
                .map(|(flag, state)| {
                    Ok(FlagChange {
                        flag: check_name(flag)?,
                        on: parse_state(flag, state)?,
                    })
                })
                .collect()
        }
        Value::String(text) => parse_legacy(text).map(|c| vec![c]),
        Value::Null => invalid(format!("the value is missing (null); {EXPECTED}")),
        Value::Bool(b) => invalid(format!(
            "the value is the boolean {b}, without a flag name; {EXPECTED}"
        )),
        Value::Number(n) => invalid(format!("the value is the number {n}; {EXPECTED}")),
        Value::Array(_) => invalid(format!("the value is a list; {EXPECTED}")),
    }
}

fn check_name(flag: &str) -> Result<FlagName, ValueError> {
    FlagName::parse(flag).map_err(|e| ValueError {
        reason: e.to_string(),
    })
}

fn parse_state(flag: &str, state: &Value) -> Result<bool, ValueError> {
    match state {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => word(s).ok_or_else(|| ValueError {
            reason: format!(r#"flag {flag:?}: state {s:?} is not "on" or "off""#),
        }),
        other => invalid(format!(
            r#"flag {flag:?}: state must be "on" or "off", not {}"#,
            describe(other)
        )),
    }
}

fn word(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" => Some(true),
        "off" | "false" => Some(false),
        _ => None,
    }
}

/// Keptn 0.6 `featuretoggle`: `"Name:on"`.
fn parse_legacy(text: &str) -> Result<FlagChange, ValueError> {
    let Some((flag, state)) = text.split_once(':') else {
        return invalid(format!(
            r#"{text:?} names no state: write "{}:on" or "{}:off""#,
            text.trim(),
            text.trim()
        ));
    };
    let flag = flag.trim();
    let name = check_name(flag)?;
    let on = word(state).ok_or_else(|| ValueError {
        reason: format!(
            r#"flag {flag:?}: state {:?} is not "on" or "off""#,
            state.trim()
        ),
    })?;
    Ok(FlagChange { flag: name, on })
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a map".into(),
    }
}

/// What happened to one flag.
#[derive(Debug, Clone)]
pub struct FlagOutcome {
    pub flag: FlagName,
    pub on: bool,
    /// The state read just before the switch (or by a dry run); `None` when that read failed
    /// or the flag was not tried.
    pub was_on: Option<bool>,
    pub result: FlagResult,
}

impl FlagOutcome {
    /// The flag as `action.finished` data lists it: `{"flag", "from", "to", "result", "reason"}`.
    pub fn to_json(&self) -> Value {
        let (result, reason) = match &self.result {
            FlagResult::Confirmed => ("confirmed", None),
            FlagResult::Failed(e) => ("failed", Some(e.to_string())),
            FlagResult::Skipped(why) => ("skipped", Some(why.clone())),
            FlagResult::Refused(why) => ("refused", Some(why.clone())),
            FlagResult::WouldSwitch { .. } => ("dry_run", None),
        };
        serde_json::json!({
            "flag": self.flag,
            "from": self.was_on.map(on_off),
            "to": on_off(self.on),
            "result": result,
            "reason": reason,
        })
    }
}

#[derive(Debug, Clone)]
pub enum FlagResult {
    /// Switched and read back with the wanted state.
    Confirmed,
    Failed(UnleashError),
    /// Not tried, because an earlier flag failed in a way that every flag would (token,
    /// server, environment).
    Skipped(String),
    /// Not tried: `ALLOWED_FLAGS` does not name it.
    Refused(String),
    /// Dry run: the flag was read (its current state), nothing was written.
    WouldSwitch {
        currently_on: bool,
    },
}

impl fmt::Display for FlagOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            FlagResult::Confirmed => write!(f, "{}: {} (confirmed)", self.flag, on_off(self.on)),
            FlagResult::Failed(e) => write!(
                f,
                "{}: failed to switch {}: {e}",
                self.flag,
                on_off(self.on)
            ),
            FlagResult::Skipped(why) => {
                write!(f, "{}: not switched {} ({why})", self.flag, on_off(self.on))
            }
            FlagResult::Refused(why) => {
                write!(
                    f,
                    "{}: refused, not switched {} ({why})",
                    self.flag,
                    on_off(self.on)
                )
            }
            FlagResult::WouldSwitch { currently_on } => write!(
                f,
                "{}: would switch {} (now {})",
                self.flag,
                on_off(self.on),
                on_off(*currently_on)
            ),
        }
    }
}

/// Flags an action may name by default before it is refused as a whole
/// (`MAX_FLAGS_PER_ACTION`).
pub const DEFAULT_MAX_FLAGS: usize = 100;

/// Per-flag lines a message lists before it summarises the rest.
const MESSAGE_FLAGS: usize = 50;

/// Which flags an action may switch, how many at once, and whether anything is written.
#[derive(Debug, Clone)]
pub struct FlagPolicy {
    /// `ALLOWED_FLAGS` glob patterns; `None` allows every flag.
    allowed: Option<Vec<String>>,
    max_flags: usize,
    dry_run: bool,
    /// Whether each flag is read just before its switch, for the report (`READ_BEFORE_SWITCH`).
    read_before: bool,
}

impl Default for FlagPolicy {
    fn default() -> Self {
        FlagPolicy {
            allowed: None,
            max_flags: DEFAULT_MAX_FLAGS,
            dry_run: false,
            read_before: true,
        }
    }
}

impl FlagPolicy {
    /// Checks the patterns: each non-empty, made of flag-name characters and the wildcards `*`
    /// (any run of characters) and `?` (one character).
    pub fn new(
        allowed: Option<Vec<String>>,
        max_flags: usize,
        dry_run: bool,
    ) -> Result<Self, String> {
        if let Some(patterns) = &allowed {
            if patterns.is_empty() {
                return Err("ALLOWED_FLAGS is set but names no pattern: unset it to allow every flag, or list patterns such as EnableStaticContent,Promo-*".into());
            }
            for p in patterns {
                if p.is_empty() {
                    return Err("ALLOWED_FLAGS has an empty pattern (two commas in a row?)".into());
                }
                if let Some(c) = p.chars().find(|c| {
                    !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '*' | '?'))
                }) {
                    return Err(format!(
                        "ALLOWED_FLAGS pattern {p:?}: character {c:?} cannot be in a flag name (use letters, digits, '-', '_', '.', '~' and the wildcards '*' and '?')"
                    ));
                }
            }
        }
        if max_flags == 0 {
            return Err("MAX_FLAGS_PER_ACTION must be at least 1".into());
        }
        Ok(FlagPolicy {
            allowed,
            max_flags,
            dry_run,
            read_before: true,
        })
    }

    /// The same policy, reading each flag before its switch or not (`READ_BEFORE_SWITCH`).
    /// Without the read, the state before is reported unknown and the switch is one Unleash
    /// request sooner. A dry run reads either way: the read is all it does.
    pub fn with_read_before(mut self, read_before: bool) -> Self {
        self.read_before = read_before;
        self
    }

    /// Whether each flag is read before its switch (`READ_BEFORE_SWITCH`).
    pub fn reads_before(&self) -> bool {
        self.read_before
    }

    pub fn max_flags(&self) -> usize {
        self.max_flags
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The same policy, as a dry run when `dry_run` (a dry run is never turned off here).
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run |= dry_run;
        self
    }

    /// Whether `flag` may be switched.
    pub fn allows(&self, flag: &str) -> bool {
        match &self.allowed {
            None => true,
            Some(patterns) => patterns.iter().any(|p| glob_match(p, flag)),
        }
    }

    fn refusal(&self) -> String {
        let list = self.allowed.as_deref().unwrap_or_default().join(",");
        format!("not in ALLOWED_FLAGS={list}")
    }
}

/// `*` matches any run of characters (also none), `?` exactly one; everything else itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The result of one toggle action, flag by flag, in the order applied.
#[derive(Debug, Clone)]
pub struct ToggleReport {
    pub environment: String,
    pub outcomes: Vec<FlagOutcome>,
}

impl ToggleReport {
    /// True when every flag was switched and confirmed.
    pub fn succeeded(&self) -> bool {
        !self.outcomes.is_empty()
            && self
                .outcomes
                .iter()
                .all(|o| matches!(o.result, FlagResult::Confirmed))
    }

    /// True when every flag would be switched (a dry run found nothing in the way).
    pub fn would_succeed(&self) -> bool {
        !self.outcomes.is_empty()
            && self.outcomes.iter().all(|o| {
                matches!(
                    o.result,
                    FlagResult::Confirmed | FlagResult::WouldSwitch { .. }
                )
            })
    }

    /// One line naming each flag's outcome, e.g.
    /// `EnableStaticContent: on (confirmed); EnablePromotion: failed to switch off: …`.
    /// Beyond 50 flags: the counts, then the first 50 outcomes, those that did not succeed first.
    pub fn message(&self) -> String {
        if self.outcomes.len() <= MESSAGE_FLAGS {
            return self
                .outcomes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
        }
        let count =
            |f: fn(&FlagResult) -> bool| self.outcomes.iter().filter(|o| f(&o.result)).count();
        let mut counts = Vec::new();
        for (n, what) in [
            (count(|r| matches!(r, FlagResult::Confirmed)), "confirmed"),
            (
                count(|r| matches!(r, FlagResult::WouldSwitch { .. })),
                "would be switched",
            ),
            (count(|r| matches!(r, FlagResult::Failed(_))), "failed"),
            (count(|r| matches!(r, FlagResult::Refused(_))), "refused"),
            (count(|r| matches!(r, FlagResult::Skipped(_))), "not tried"),
        ] {
            if n > 0 {
                counts.push(format!("{n} {what}"));
            }
        }
        let listed: Vec<String> = self.listed().map(ToString::to_string).collect();
        format!(
            "{} flags: {}; {}; … and {} more",
            self.outcomes.len(),
            counts.join(", "),
            listed.join("; "),
            self.outcomes.len() - listed.len()
        )
    }
}

impl ToggleReport {
    /// At most 50 outcomes: all of them in order, or beyond 50 those that did not succeed
    /// first (as [`ToggleReport::message`] lists them).
    fn listed(&self) -> impl Iterator<Item = &FlagOutcome> {
        let good = |o: &&FlagOutcome| {
            matches!(
                o.result,
                FlagResult::Confirmed | FlagResult::WouldSwitch { .. }
            )
        };
        let many = self.outcomes.len() > MESSAGE_FLAGS;
        let first: Box<dyn Iterator<Item = &FlagOutcome>> = if many {
            Box::new(
                self.outcomes
                    .iter()
                    .filter(move |o| !good(o))
                    .chain(self.outcomes.iter().filter(good)),
            )
        } else {
            Box::new(self.outcomes.iter())
        };
        first.take(MESSAGE_FLAGS)
    }

    /// The flags for `action.finished` data (the same ones the message lists, at most 50) and
    /// how many were left out.
    pub fn flags_json(&self) -> (Vec<Value>, usize) {
        let listed: Vec<Value> = self.listed().map(FlagOutcome::to_json).collect();
        let left_out = self.outcomes.len() - listed.len();
        (listed, left_out)
    }
}

/// Switches the flags in order, each confirmed by a read-back. A failure of one flag does not
/// stop the others (an operator wants as much of the remediation applied as possible), except
/// when the failure would repeat for every flag (wrong token, server unreachable, unknown
/// environment): the rest are then reported as not switched instead of waiting for the same
/// retries again.
pub async fn apply(
    client: &UnleashClient,
    environment: &str,
    changes: &[FlagChange],
) -> ToggleReport {
    apply_with(client, environment, changes, &FlagPolicy::default()).await
}

/// [`apply`] under a policy: flags outside `ALLOWED_FLAGS` are refused (the others still run);
/// in a dry run every flag is only read, to report what would change.
pub async fn apply_with(
    client: &UnleashClient,
    environment: &str,
    changes: &[FlagChange],
    policy: &FlagPolicy,
) -> ToggleReport {
    apply_reading_ahead(client, environment, changes, policy, None).await
}

/// [`apply_with`], each flag's state before its switch taken from `ahead` when it was read
/// there (see [`super::ahead`]).
pub(super) async fn apply_reading_ahead(
    client: &UnleashClient,
    environment: &str,
    changes: &[FlagChange],
    policy: &FlagPolicy,
    ahead: Option<&ReadAhead>,
) -> ToggleReport {
    let blocker: Mutex<Option<String>> = Mutex::new(None);
    let mut outcomes = Vec::with_capacity(changes.len());
    let mut rest = changes.iter();
    // Until one flag has been asked of the server, one at a time: a failure that would repeat
    // for every flag (wrong token, server unreachable) is found by the first request, and the
    // others are reported as not switched rather than all failing the same way.
    for change in rest.by_ref() {
        let outcome = switch_one(client, environment, change, policy, &blocker, ahead).await;
        let asked = !matches!(outcome.result, FlagResult::Refused(_));
        outcomes.push(outcome);
        if asked {
            break;
        }
    }
    // The other flags are independent of each other: switched side by side, reported in the
    // order of the action. A flag named twice keeps them in order, one at a time.
    let distinct = changes
        .iter()
        .map(|c| c.flag.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len()
        == changes.len();
    let width = if distinct { CONCURRENT_FLAGS } else { 1 };
    // Built here, started by `buffered` at most `width` at a time.
    let pending: Vec<_> = rest
        .map(|change| switch_one(client, environment, change, policy, &blocker, ahead))
        .collect();
    let others: Vec<FlagOutcome> = futures::stream::iter(pending)
        .buffered(width)
        .collect()
        .await;
    outcomes.extend(others);
    ToggleReport {
        environment: environment.to_owned(),
        outcomes,
    }
}

/// How many flags of one action are switched at once.
const CONCURRENT_FLAGS: usize = 8;

/// One flag of an action: refused, skipped (an earlier flag failed in a way every flag would),
/// read (dry run), or read, switched and confirmed.
async fn switch_one(
    client: &UnleashClient,
    environment: &str,
    change: &FlagChange,
    policy: &FlagPolicy,
    blocker: &Mutex<Option<String>>,
    ahead: Option<&ReadAhead>,
) -> FlagOutcome {
    let block = |e: &crate::unleash::UnleashError| {
        if e.affects_every_flag() {
            let mut b = blocker.lock().expect("blocker lock");
            b.get_or_insert_with(|| format!("{} failed the same way", change.flag));
        }
    };
    let mut was_on = None;
    let blocked = blocker.lock().expect("blocker lock").clone();
    let result = match blocked {
        _ if !policy.allows(&change.flag) => {
            tracing::warn!(flag = %change.flag, "flag refused: not in ALLOWED_FLAGS");
            FlagResult::Refused(policy.refusal())
        }
        Some(why) => FlagResult::Skipped(why),
        None if policy.dry_run => match read_before(ahead, client, environment, &change.flag).await
        {
            Ok(currently_on) => {
                was_on = Some(currently_on);
                FlagResult::WouldSwitch { currently_on }
            }
            Err(e) => {
                block(&e);
                FlagResult::Failed(e)
            }
        },
        None => {
            // Read once for the report only: a failed read leaves the state unknown and
            // does not stop the switch.
            if policy.read_before {
                was_on = match read_before(ahead, client, environment, &change.flag).await {
                    Ok(on) => Some(on),
                    Err(e) => {
                        tracing::debug!(flag = %change.flag, environment, error = %e, "reading a flag's state before the switch failed");
                        None
                    }
                };
            }
            match client.set_flag(&change.flag, environment, change.on).await {
                Ok(()) => FlagResult::Confirmed,
                Err(e) => {
                    tracing::warn!(flag = %change.flag, environment, error = %e, "switching an Unleash flag failed");
                    block(&e);
                    FlagResult::Failed(e)
                }
            }
        }
    };
    let result_label = match &result {
        FlagResult::Confirmed => "confirmed",
        FlagResult::Failed(_) => "failed",
        FlagResult::Skipped(_) => "skipped",
        FlagResult::Refused(_) => "refused",
        FlagResult::WouldSwitch { .. } => "dry_run",
    };
    metrics::counter!(
        "flag_switches_total",
        "flag" => crate::telemetry::capped_label("flag", &change.flag),
        "environment" => crate::telemetry::capped_label("environment", environment),
        "state" => on_off(change.on),
        "result" => result_label
    )
    .increment(1);
    FlagOutcome {
        flag: change.flag.clone(),
        on: change.on,
        was_on,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn changes(v: Value) -> Vec<(String, bool)> {
        parse_value(&v)
            .unwrap()
            .into_iter()
            .map(|c| (c.flag.into(), c.on))
            .collect()
    }

    #[test]
    fn maps_keep_their_order_and_accept_words_and_booleans() {
        assert_eq!(
            changes(json!({"Zeta": "ON", "Alpha": false, "Mid": "Off", "Last": true, "T": "true"})),
            vec![
                ("Zeta".into(), true),
                ("Alpha".into(), false),
                ("Mid".into(), false),
                ("Last".into(), true),
                ("T".into(), true),
            ]
        );
    }

    #[test]
    fn legacy_string() {
        assert_eq!(
            changes(json!("EnableStaticContent:on")),
            vec![("EnableStaticContent".into(), true)]
        );
        assert_eq!(
            changes(json!("EnableStaticContent:OFF")),
            vec![("EnableStaticContent".into(), false)]
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        for (value, needle) in [
            (json!(null), "null"),
            (json!(42), "number 42"),
            (json!(["A"]), "list"),
            (json!({}), "empty"),
            (json!(true), "boolean"),
            (json!("Flag"), r#""Flag:on""#),
            (json!("Flag:maybe"), r#"state "maybe""#),
            (json!({"F": "sideways"}), r#"state "sideways""#),
            (json!({"F": 1}), "number 1"),
            (json!({"F": null}), "null"),
            (json!({"bad name": "on"}), "' '"),
            (json!("a/b:on"), "'/'"),
            (json!(":on"), "empty"),
        ] {
            let e = parse_value(&value).unwrap_err().to_string();
            assert!(e.contains(needle), "{value}: {e}");
            assert!(e.starts_with("invalid toggle-feature value"), "{e}");
        }
    }

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("Enable*", "EnableStaticContent", true),
            ("Enable*", "Enable", true),
            ("Enable*", "DisableX", false),
            ("*Content", "EnableStaticContent", true),
            ("E?able*t", "EnableStaticContent", true),
            ("E?able", "Eable", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*", "", true),
            ("exact", "exact", true),
            ("exact", "Exact", false),
            ("**x", "yyx", true),
        ] {
            assert_eq!(glob_match(p, t), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn policy_patterns_are_checked() {
        let p = FlagPolicy::new(Some(vec!["Promo-*".into(), "Exact".into()]), 100, false).unwrap();
        assert!(p.allows("Promo-1") && p.allows("Exact") && !p.allows("Other"));
        assert!(FlagPolicy::default().allows("anything"));
        assert!(
            FlagPolicy::new(Some(vec![]), 100, false)
                .unwrap_err()
                .contains("names no pattern")
        );
        assert!(FlagPolicy::new(Some(vec!["a b".into()]), 100, false).is_err());
        assert!(FlagPolicy::new(None, 0, false).is_err());
    }

    #[test]
    fn long_reports_are_summarised_failures_first() {
        let mut outcomes: Vec<FlagOutcome> = (0..300)
            .map(|i| FlagOutcome {
                flag: FlagName::parse(&format!("F{i}")).unwrap(),
                on: true,
                was_on: Some(false),
                result: FlagResult::Confirmed,
            })
            .collect();
        outcomes[250].result = FlagResult::Refused("not in ALLOWED_FLAGS=F1*".into());
        let report = ToggleReport {
            environment: "production".into(),
            outcomes,
        };
        let m = report.message();
        assert!(
            m.starts_with("300 flags: 299 confirmed, 1 refused; F250: refused"),
            "{m}"
        );
        assert!(m.ends_with("… and 250 more"), "{m}");
        let (flags, left_out) = report.flags_json();
        assert_eq!((flags.len(), left_out), (50, 250));
        assert_eq!(flags[0]["flag"], "F250");
        assert_eq!(flags[0]["result"], "refused");
        assert_eq!(flags[1]["from"], "off");
        assert_eq!(flags[1]["to"], "on");
    }
}
