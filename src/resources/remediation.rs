//! `remediation.yaml`: what to do about which problem (docs/design.md §3).
//!
//! Two formats are read:
//! - `apiVersion: spec.keptn.sh/0.1.4`, `kind: Remediation`, `spec.remediations[]` with
//!   `problemType` and `actionsOnOpen[]{name, action, description, value}` (Keptn 0.7 – 1.x);
//! - the Keptn 0.6 format, `remediations[]` with `name` and `actions[]{action, value}`, where
//!   `name` plays the part of `problemType` and `value` is text (`EnableStaticContent:on`).
//!
//! Both may add `actionsOnClose[]` (this service's extension, ignored by Keptn): actions run when
//! the problem closes, for example to switch a flag back.
//!
//! YAML 1.1 booleans: Keptn's parser reads an unquoted `off` as `false`, so a file that says
//! `EnablePromotion: off` reaches the action provider as `false`. Here the flag states of a
//! toggle action are written back as the text `"on"`/`"off"`, which every toggle provider
//! understands (Keptn's unleash-service refuses booleans); other actions get the value as YAML 1.1
//! reads it, like in Keptn.

use super::yaml::{self, FileError};
use crate::keptn::ActionInfo;
use crate::keptn::types::{FEATURETOGGLE, TOGGLE_FEATURE};
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;
use std::collections::HashMap;

/// The only remediation apiVersion any Keptn release accepts.
pub const API_VERSION: &str = "spec.keptn.sh/0.1.4";
/// The `problemType` used when nothing else matches.
pub const DEFAULT_PROBLEM_TYPE: &str = "default";

/// Which of the two formats a file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `remediations[].name` + `actions[]` (Keptn 0.6).
    Keptn06,
    /// `spec.keptn.sh/0.1.4` (Keptn 0.7 – 1.x).
    Spec014,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Keptn06 => "Keptn 0.6 format",
            Format::Spec014 => API_VERSION,
        })
    }
}

/// What to do about one problem type.
#[derive(Debug, Clone, PartialEq)]
pub struct Remediation {
    /// `problemType` (or `name` in the 0.6 format).
    pub problem_type: String,
    /// Tried in order while the problem is open; the next one runs when one fails.
    pub actions_on_open: Vec<ActionInfo>,
    /// Run once when the problem closes.
    pub actions_on_close: Vec<ActionInfo>,
}

/// How a problem found its remediation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// `problemType` equals the problem's root cause (Keptn 1.x).
    RootCause,
    /// `problemType` equals the problem title.
    Title,
    /// `problemType` is the longest one the title starts with (Keptn 0.6/0.7).
    TitlePrefix,
    /// Nothing else matched; `problemType: default`.
    Default,
}

impl MatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKind::RootCause => "root cause",
            MatchKind::Title => "problem title",
            MatchKind::TitlePrefix => "title prefix",
            MatchKind::Default => "default",
        }
    }
}

impl std::fmt::Display for MatchKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// No action for a problem. The messages are Keptn 1.x's, so that a Keptn user recognises them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// No remediation matches; `problem` says what was looked for ("root cause X", "problem
    /// title X" or "problem type default").
    #[error("unable to find action for {problem}")]
    NoMatch { problem: String },
    /// The matched remediation has fewer actions.
    #[error("there is no action with index {index} for problem type {problem_type}")]
    NoActionAtIndex { index: usize, problem_type: String },
}

/// A parsed and checked `remediation.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct RemediationFile {
    origin: String,
    format: Format,
    remediations: Vec<Remediation>,
}

impl RemediationFile {
    /// Parses and checks `text`; `origin` (a path or URL) names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, FileError> {
        if yaml::is_blank(text) {
            return Err(FileError::new(
                origin,
                1,
                1,
                "the file is empty; a remediation.yaml needs spec.remediations",
            ));
        }
        let raw: Spanned<RawFile> = yaml::parse(text, origin)?;
        let top = raw.referenced;
        let raw = raw.value;
        let error = |at: &serde_saphyr::Location, m: String| FileError::at(origin, at, m);

        if let Some(v) = &raw.api_version
            && v.value != API_VERSION
        {
            return Err(error(
                &v.referenced,
                format!(
                    "apiVersion is \"{}\", but a remediation file must say apiVersion: {API_VERSION} \
                     (the only remediation format Keptn defines)",
                    v.value
                ),
            ));
        }
        if let Some(k) = &raw.kind
            && k.value != "Remediation"
        {
            return Err(error(
                &k.referenced,
                format!(
                    "kind is \"{}\", but a remediation file has kind: Remediation",
                    k.value
                ),
            ));
        }
        let spec_style = raw.api_version.is_some() || raw.kind.is_some() || raw.spec.is_some();
        let (format, remediations) = match (spec_style, raw.remediations) {
            (true, Some(legacy)) => {
                return Err(error(
                    &legacy.referenced,
                    "top-level `remediations` belongs to the Keptn 0.6 format, but this file has \
                     apiVersion/kind/spec of spec.keptn.sh/0.1.4: move the remediations under \
                     spec, or drop apiVersion, kind and spec"
                        .into(),
                ));
            }
            (true, None) => {
                let spec = raw.spec.ok_or_else(|| {
                    error(
                        &top,
                        "`spec` is missing: a spec.keptn.sh/0.1.4 remediation file lists its \
                         remediations under spec.remediations"
                            .into(),
                    )
                })?;
                let list = spec.value.remediations.ok_or_else(|| {
                    error(
                        &spec.referenced,
                        "`spec` has no `remediations` list (each entry: problemType and \
                         actionsOnOpen)"
                            .into(),
                    )
                })?;
                (Format::Spec014, spec_remediations(list, origin)?)
            }
            (false, Some(list)) => (Format::Keptn06, legacy_remediations(list.value, origin)?),
            (false, None) => {
                return Err(error(
                    &top,
                    "this is not a remediation file: expected spec.remediations (apiVersion \
                     spec.keptn.sh/0.1.4) or remediations (Keptn 0.6 format)"
                        .into(),
                ));
            }
        };
        Ok(RemediationFile {
            origin: origin.to_owned(),
            format,
            remediations,
        })
    }

    /// The path or URL the file was read from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn remediations(&self) -> &[Remediation] {
        &self.remediations
    }

    /// The remediation for a problem: exact root cause, then exact title, then the longest
    /// `problemType` the title starts with, then `default`. Empty strings count as absent.
    pub fn find(
        &self,
        title: Option<&str>,
        root_cause: Option<&str>,
    ) -> Option<(&Remediation, MatchKind)> {
        let title = title.filter(|t| !t.is_empty());
        let root_cause = root_cause.filter(|r| !r.is_empty());
        let exact = |wanted: &str| self.remediations.iter().find(|r| r.problem_type == wanted);
        if let Some(r) = root_cause.and_then(exact) {
            return Some((r, MatchKind::RootCause));
        }
        if let Some(r) = title.and_then(exact) {
            return Some((r, MatchKind::Title));
        }
        if let Some(title) = title {
            // `default` is the fallback below, not a prefix of titles that happen to start with it.
            let prefix = self
                .remediations
                .iter()
                .filter(|r| r.problem_type != DEFAULT_PROBLEM_TYPE)
                .filter(|r| title.starts_with(r.problem_type.as_str()))
                .fold(None::<&Remediation>, |best, r| match best {
                    Some(b) if b.problem_type.len() >= r.problem_type.len() => Some(b),
                    _ => Some(r),
                });
            if let Some(r) = prefix {
                return Some((r, MatchKind::TitlePrefix));
            }
        }
        exact(DEFAULT_PROBLEM_TYPE).map(|r| (r, MatchKind::Default))
    }

    /// The action at `index` of the remediation [`find`](Self::find) picks.
    pub fn action(
        &self,
        title: Option<&str>,
        root_cause: Option<&str>,
        index: usize,
    ) -> Result<&ActionInfo, SelectError> {
        let (remediation, _) = self.find(title, root_cause).ok_or_else(|| {
            // Keptn names what it looked for first.
            let problem = match (
                root_cause.filter(|r| !r.is_empty()),
                title.filter(|t| !t.is_empty()),
            ) {
                (Some(r), _) => format!("root cause {r}"),
                (None, Some(t)) => format!("problem title {t}"),
                (None, None) => format!("problem type {DEFAULT_PROBLEM_TYPE}"),
            };
            SelectError::NoMatch { problem }
        })?;
        remediation
            .actions_on_open
            .get(index)
            .ok_or_else(|| SelectError::NoActionAtIndex {
                index,
                problem_type: remediation.problem_type.clone(),
            })
    }

    /// The actions to run when the problem closes; empty when none match.
    pub fn actions_on_close(&self, title: Option<&str>, root_cause: Option<&str>) -> &[ActionInfo] {
        self.find(title, root_cause)
            .map(|(r, _)| r.actions_on_close.as_slice())
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFile {
    api_version: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    spec: Option<Spanned<RawSpec>>,
    remediations: Option<Spanned<Vec<Spanned<RawLegacyRemediation>>>>,
}

#[derive(Deserialize)]
struct RawSpec {
    remediations: Option<Vec<Spanned<RawRemediation>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRemediation {
    problem_type: Option<Spanned<String>>,
    actions_on_open: Option<Vec<Spanned<RawAction>>>,
    actions_on_close: Option<Vec<Spanned<RawAction>>>,
}

#[derive(Deserialize)]
struct RawAction {
    name: Option<String>,
    action: Option<String>,
    description: Option<String>,
    value: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLegacyRemediation {
    name: Option<Spanned<String>>,
    actions: Option<Vec<Spanned<RawLegacyAction>>>,
    actions_on_close: Option<Vec<Spanned<RawLegacyAction>>>,
}

/// A 0.6 action. Keptn 0.6 read `value` as text, so it is read as text here too: `+1` stays
/// `+1` and `EnableStaticContent:on` stays as written.
#[derive(Deserialize)]
struct RawLegacyAction {
    name: Option<String>,
    action: Option<String>,
    description: Option<String>,
    value: Option<String>,
}

fn spec_remediations(
    list: Vec<Spanned<RawRemediation>>,
    origin: &str,
) -> Result<Vec<Remediation>, FileError> {
    let mut seen = HashMap::new();
    let mut out = Vec::with_capacity(list.len());
    for (n, entry) in list.into_iter().enumerate() {
        let at = entry.referenced;
        let raw = entry.value;
        let problem_type = checked_problem_type(raw.problem_type, "problemType", n, &at, origin)?;
        if let Some(line) = seen.insert(problem_type.value.clone(), problem_type.referenced.line())
        {
            return Err(duplicate(origin, &problem_type, line));
        }
        let open = raw.actions_on_open.ok_or_else(|| {
            FileError::at(
                origin,
                &at,
                format!(
                    "the remediation for problemType \"{}\" has no `actionsOnOpen` list \
                     (the actions to run when the problem opens)",
                    problem_type.value
                ),
            )
        })?;
        let actions_on_open = actions(open, &problem_type.value, "actionsOnOpen", origin)?;
        let actions_on_close = actions(
            raw.actions_on_close.unwrap_or_default(),
            &problem_type.value,
            "actionsOnClose",
            origin,
        )?;
        out.push(Remediation {
            problem_type: problem_type.value,
            actions_on_open,
            actions_on_close,
        });
    }
    Ok(out)
}

fn legacy_remediations(
    list: Vec<Spanned<RawLegacyRemediation>>,
    origin: &str,
) -> Result<Vec<Remediation>, FileError> {
    let mut seen = HashMap::new();
    let mut out = Vec::with_capacity(list.len());
    for (n, entry) in list.into_iter().enumerate() {
        let at = entry.referenced;
        let raw = entry.value;
        let name = checked_problem_type(raw.name, "name", n, &at, origin)?;
        if let Some(line) = seen.insert(name.value.clone(), name.referenced.line()) {
            return Err(duplicate(origin, &name, line));
        }
        let open = raw.actions.ok_or_else(|| {
            FileError::at(
                origin,
                &at,
                format!(
                    "the remediation named \"{}\" has no `actions` list",
                    name.value
                ),
            )
        })?;
        let legacy = |list: Vec<Spanned<RawLegacyAction>>, field: &str| {
            let converted = list
                .into_iter()
                .map(|a| Spanned {
                    value: RawAction {
                        name: a.value.name,
                        action: a.value.action,
                        description: a.value.description,
                        value: a.value.value.map(Value::String),
                    },
                    referenced: a.referenced,
                    defined: a.defined,
                })
                .collect();
            actions(converted, &name.value, field, origin)
        };
        let actions_on_open = legacy(open, "actions")?;
        let actions_on_close = legacy(raw.actions_on_close.unwrap_or_default(), "actionsOnClose")?;
        out.push(Remediation {
            problem_type: name.value,
            actions_on_open,
            actions_on_close,
        });
    }
    Ok(out)
}

fn checked_problem_type(
    value: Option<Spanned<String>>,
    field: &str,
    n: usize,
    at: &serde_saphyr::Location,
    origin: &str,
) -> Result<Spanned<String>, FileError> {
    let hint = "the problem title or root cause it handles, or `default`";
    match value {
        None => Err(FileError::at(
            origin,
            at,
            format!("remediation #{} has no `{field}` ({hint})", n + 1),
        )),
        Some(v) if v.value.trim().is_empty() => Err(FileError::at(
            origin,
            &v.referenced,
            format!("`{field}` is empty; write {hint}"),
        )),
        Some(v) => Ok(v),
    }
}

fn duplicate(origin: &str, problem_type: &Spanned<String>, first_line: u64) -> FileError {
    FileError::at(
        origin,
        &problem_type.referenced,
        format!(
            "\"{}\" is already listed on line {first_line}; only the first entry would ever be used",
            problem_type.value
        ),
    )
}

fn actions(
    list: Vec<Spanned<RawAction>>,
    problem_type: &str,
    field: &str,
    origin: &str,
) -> Result<Vec<ActionInfo>, FileError> {
    list.into_iter()
        .enumerate()
        .map(|(n, a)| {
            let raw = a.value;
            let action = raw.action.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                FileError::at(
                    origin,
                    &a.referenced,
                    format!(
                        "action #{} in `{field}` of \"{problem_type}\" has no `action` \
                         (what to run, for example toggle-feature)",
                        n + 1
                    ),
                )
            })?;
            let value = raw.value.unwrap_or(Value::Null);
            let value = if action == TOGGLE_FEATURE || action == FEATURETOGGLE {
                flag_states_as_text(value)
            } else {
                value
            };
            Ok(ActionInfo {
                // Every reported step needs a readable name; the action says what it is.
                name: raw
                    .name
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| action.clone()),
                action,
                description: raw.description.unwrap_or_default(),
                value,
            })
        })
        .collect()
}

/// `{Flag: false}` → `{Flag: "off"}`: YAML 1.1 read the unquoted `off` as a boolean; the flag
/// state it means is written back as text.
fn flag_states_as_text(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(flag, state)| match state {
                    Value::Bool(on) => (flag, Value::String(if on { "on" } else { "off" }.into())),
                    other => (flag, other),
                })
                .collect(),
        ),
        other => other,
    }
}
