//! The `toggle-feature` action: which flags to switch (parsed from the action's `value`), and
//! switching them one by one with a report per flag.
//!
//! Accepted values (SPEC section 6):
//! - a map flag → state, in the order written: `{"EnableStaticContent": "on"}`; the state is
//!   `on`/`off`/`true`/`false` in any case, or a JSON boolean (YAML 1.1 `on`/`off` arrive as
//!   booleans once remediation.yaml has been read);
//! - the Keptn 0.6 string `"EnableStaticContent:on"`.
//!
//! Everything else is refused before any flag is touched, with a message naming what is wrong.

use super::client::{UnleashClient, UnleashError, on_off, validate_flag_name};
use serde_json::Value;
use std::fmt;

/// One flag and the state it should get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    pub flag: String,
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
                    check_name(flag)?;
                    Ok(FlagChange {
                        flag: flag.clone(),
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

fn check_name(flag: &str) -> Result<(), ValueError> {
    validate_flag_name(flag).map_err(|e| ValueError {
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
    check_name(flag)?;
    let on = word(state).ok_or_else(|| ValueError {
        reason: format!(
            r#"flag {flag:?}: state {:?} is not "on" or "off""#,
            state.trim()
        ),
    })?;
    Ok(FlagChange {
        flag: flag.to_owned(),
        on,
    })
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
    pub flag: String,
    pub on: bool,
    pub result: FlagResult,
}

#[derive(Debug, Clone)]
pub enum FlagResult {
    /// Switched and read back with the wanted state.
    Confirmed,
    Failed(UnleashError),
    /// Not tried, because an earlier flag failed in a way that every flag would (token,
    /// server, environment).
    Skipped(String),
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
        }
    }
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

    /// One line naming each flag's outcome, e.g.
    /// `EnableStaticContent: on (confirmed); EnablePromotion: failed to switch off: …`.
    pub fn message(&self) -> String {
        self.outcomes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
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
    let mut outcomes = Vec::with_capacity(changes.len());
    let mut blocker: Option<String> = None;
    for change in changes {
        let result = match &blocker {
            Some(why) => FlagResult::Skipped(why.clone()),
            None => match client.set_flag(&change.flag, environment, change.on).await {
                Ok(()) => FlagResult::Confirmed,
                Err(e) => {
                    tracing::warn!(flag = %change.flag, environment, error = %e, "switching an Unleash flag failed");
                    if e.affects_every_flag() {
                        blocker = Some(format!("{} failed the same way", change.flag));
                    }
                    FlagResult::Failed(e)
                }
            },
        };
        let result_label = match &result {
            FlagResult::Confirmed => "confirmed",
            FlagResult::Failed(_) => "failed",
            FlagResult::Skipped(_) => "skipped",
        };
        metrics::counter!(
            "flag_switches_total",
            "flag" => crate::telemetry::capped_label("flag", &change.flag),
            "environment" => crate::telemetry::capped_label("environment", environment),
            "state" => on_off(change.on),
            "result" => result_label
        )
        .increment(1);
        outcomes.push(FlagOutcome {
            flag: change.flag.clone(),
            on: change.on,
            result,
        });
    }
    ToggleReport {
        environment: environment.to_owned(),
        outcomes,
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
            .map(|c| (c.flag, c.on))
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
}
