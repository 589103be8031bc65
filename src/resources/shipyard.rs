//! `shipyard.yaml`: which stages of a project remediate (docs/design.md §3).
//!
//! Two formats are read:
//! - 0.1.x (Keptn 0.6/0.7), no apiVersion: `stages[]` with `remediation_strategy: automated`
//!   turning remediation on;
//! - `spec.keptn.sh/0.2.x` (Keptn 0.8 – 1.x): `spec.stages[].sequences[]`, where a sequence named
//!   `remediation` turns it on.
//!
//! Only what decides remediation is kept; deployment strategies, triggers and task properties
//! are the shipyard-controller's business and are read only far enough to check their shape.

use super::yaml::{self, FileError};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;
use std::collections::HashMap;

/// The 0.1.x value that turns remediation on for a stage.
pub const AUTOMATED: &str = "automated";
/// The 0.2.x sequence that turns remediation on for a stage.
pub const REMEDIATION_SEQUENCE: &str = "remediation";

/// Which format a shipyard is written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShipyardFormat {
    /// No apiVersion, `stages[]` at the top (Keptn 0.6/0.7).
    V01,
    /// `spec.keptn.sh/0.2.x`; holds the apiVersion as written.
    V02(String),
}

impl std::fmt::Display for ShipyardFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShipyardFormat::V01 => f.write_str("shipyard 0.1.x"),
            ShipyardFormat::V02(api) => f.write_str(api),
        }
    }
}

/// One stage, reduced to what decides remediation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    /// 0.1.x `remediation_strategy`.
    pub remediation_strategy: Option<String>,
    /// 0.2.x sequence names.
    pub sequences: Vec<String>,
}

/// A parsed and checked `shipyard.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipyard {
    origin: String,
    format: ShipyardFormat,
    stages: Vec<Stage>,
}

impl Shipyard {
    /// Parses and checks `text`; `origin` (a path or URL) names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, FileError> {
        if yaml::is_blank(text) {
            return Err(FileError::new(
                origin,
                1,
                1,
                "the file is empty; a shipyard.yaml lists stages",
            ));
        }
        let raw: Spanned<RawShipyard> = yaml::parse(text, origin)?;
        let top = raw.referenced;
        let raw = raw.value;
        if let Some(v) = &raw.api_version
            && !is_v02(&v.value)
        {
            return Err(FileError::at(
                origin,
                &v.referenced,
                format!(
                    "apiVersion is \"{}\", but a shipyard must say apiVersion: \
                     spec.keptn.sh/0.2.x (for example spec.keptn.sh/0.2.2), or have no \
                     apiVersion and list `stages` at the top (the 0.1.x format)",
                    v.value
                ),
            ));
        }
        if let Some(k) = &raw.kind
            && k.value != "Shipyard"
        {
            return Err(FileError::at(
                origin,
                &k.referenced,
                format!("kind is \"{}\", but a shipyard has kind: Shipyard", k.value),
            ));
        }
        let v02 = raw.api_version.is_some() || raw.kind.is_some() || raw.spec.is_some();
        let (format, stages) = match (v02, raw.stages) {
            (true, Some(stages)) => {
                return Err(FileError::at(
                    origin,
                    &stages.referenced,
                    "top-level `stages` belongs to the 0.1.x format, but this file has \
                     apiVersion/kind/spec of spec.keptn.sh/0.2.x: move the stages under spec",
                ));
            }
            (true, None) => {
                let spec = raw.spec.ok_or_else(|| {
                    FileError::at(
                        origin,
                        &top,
                        "`spec` is missing: a spec.keptn.sh/0.2.x shipyard lists its stages \
                         under spec.stages",
                    )
                })?;
                let list = spec.value.stages.ok_or_else(|| {
                    FileError::at(origin, &spec.referenced, "`spec` has no `stages` list")
                })?;
                let api = raw
                    .api_version
                    .map(|v| v.value)
                    .unwrap_or_else(|| "spec.keptn.sh/0.2.x".into());
                (ShipyardFormat::V02(api), v02_stages(list, origin)?)
            }
            (false, Some(list)) => (ShipyardFormat::V01, v01_stages(list.value, origin)?),
            (false, None) => {
                return Err(FileError::at(
                    origin,
                    &top,
                    "this is not a shipyard: expected spec.stages (apiVersion \
                     spec.keptn.sh/0.2.x) or stages (0.1.x format)",
                ));
            }
        };
        Ok(Shipyard {
            origin: origin.to_owned(),
            format,
            stages,
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn format(&self) -> &ShipyardFormat {
        &self.format
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Whether problems in `stage` are remediated: 0.1.x needs `remediation_strategy:
    /// automated`, 0.2.x a sequence named `remediation`. A stage the shipyard does not list is
    /// not remediated.
    pub fn remediation_enabled(&self, stage: &str) -> bool {
        self.stages
            .iter()
            .filter(|s| s.name == stage)
            .any(|s| match self.format {
                ShipyardFormat::V01 => s.remediation_strategy.as_deref() == Some(AUTOMATED),
                ShipyardFormat::V02(_) => s.sequences.iter().any(|q| q == REMEDIATION_SEQUENCE),
            })
    }
}

/// `spec.keptn.sh/0.2.<n>`: the versions whose layout this parser knows. Keptn's controller
/// also takes later minor versions, but none was ever published.
fn is_v02(api: &str) -> bool {
    api.strip_prefix("spec.keptn.sh/0.2.")
        .is_some_and(|patch| !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawShipyard {
    api_version: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    spec: Option<Spanned<RawSpec>>,
    stages: Option<Spanned<Vec<Spanned<RawV01Stage>>>>,
}

#[derive(Deserialize)]
struct RawSpec {
    stages: Option<Vec<Spanned<RawV02Stage>>>,
}

#[derive(Deserialize)]
struct RawV01Stage {
    name: Option<Spanned<String>>,
    remediation_strategy: Option<String>,
}

#[derive(Deserialize)]
struct RawV02Stage {
    name: Option<Spanned<String>>,
    sequences: Option<Vec<Spanned<RawSequence>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSequence {
    name: Option<String>,
    #[allow(dead_code)] // read to check its shape
    triggered_on: Option<Vec<IgnoredAny>>,
    tasks: Option<Vec<Spanned<RawTask>>>,
}

#[derive(Deserialize)]
struct RawTask {
    name: Option<String>,
}

fn stage_name(
    name: Option<Spanned<String>>,
    n: usize,
    at: &serde_saphyr::Location,
    seen: &mut HashMap<String, u64>,
    origin: &str,
) -> Result<String, FileError> {
    let name = match name {
        Some(v) if !v.value.trim().is_empty() => v,
        Some(v) => {
            return Err(FileError::at(
                origin,
                &v.referenced,
                "the stage `name` is empty",
            ));
        }
        None => {
            return Err(FileError::at(
                origin,
                at,
                format!("stage #{} has no `name`", n + 1),
            ));
        }
    };
    if let Some(first) = seen.insert(name.value.clone(), name.referenced.line()) {
        return Err(FileError::at(
            origin,
            &name.referenced,
            format!("stage \"{}\" is already listed on line {first}", name.value),
        ));
    }
    Ok(name.value)
}

fn v01_stages(list: Vec<Spanned<RawV01Stage>>, origin: &str) -> Result<Vec<Stage>, FileError> {
    let mut seen = HashMap::new();
    list.into_iter()
        .enumerate()
        .map(|(n, s)| {
            Ok(Stage {
                name: stage_name(s.value.name, n, &s.referenced, &mut seen, origin)?,
                remediation_strategy: s.value.remediation_strategy,
                sequences: Vec::new(),
            })
        })
        .collect()
}

fn v02_stages(list: Vec<Spanned<RawV02Stage>>, origin: &str) -> Result<Vec<Stage>, FileError> {
    let mut seen = HashMap::new();
    list.into_iter()
        .enumerate()
        .map(|(n, s)| {
            let name = stage_name(s.value.name, n, &s.referenced, &mut seen, origin)?;
            let sequences = s
                .value
                .sequences
                .unwrap_or_default()
                .into_iter()
                .map(|q| {
                    let seq = q.value;
                    let seq_name = seq.name.filter(|x| !x.trim().is_empty()).ok_or_else(|| {
                        FileError::at(
                            origin,
                            &q.referenced,
                            format!("a sequence of stage \"{name}\" has no `name`"),
                        )
                    })?;
                    if let Some(task) = seq
                        .tasks
                        .unwrap_or_default()
                        .into_iter()
                        .find(|t| t.value.name.as_deref().is_none_or(|x| x.trim().is_empty()))
                    {
                        return Err(FileError::at(
                            origin,
                            &task.referenced,
                            format!("a task of sequence \"{seq_name}\" in stage \"{name}\" has no `name`"),
                        ));
                    }
                    Ok(seq_name)
                })
                .collect::<Result<Vec<_>, FileError>>()?;
            Ok(Stage {
                name,
                remediation_strategy: None,
                sequences,
            })
        })
        .collect()
}
