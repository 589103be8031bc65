//! What the remediator needs before it acts: is remediation on for this stage, and which
//! `remediation.yaml` applies (SPEC sections 3 and 4).

use super::remediation::RemediationFile;
use super::shipyard::Shipyard;
use super::source::{ResourceSource, SourceError};
use super::yaml::FileError;
use crate::keptn::Scope;

/// The answer of [`load_plan`].
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// A shipyard was found and does not enable remediation for the stage: do nothing, send
    /// nothing (Keptn 0.6/0.7 behaviour). `shipyard` names the file.
    Disabled { shipyard: String },
    /// No `remediation.yaml` for the scope.
    Missing,
    /// The shipyard or the remediation file cannot be used; the error names file, line, column.
    Invalid(FileError),
    /// Remediation is on and this is the file to follow.
    Ready(RemediationFile),
}

/// Loads the shipyard, then the remediation file, for `scope`.
///
/// Without a shipyard, a found `remediation.yaml` enables remediation (the plain-VM case). A
/// shipyard is only consulted for the stage decision, so a broken shipyard is reported as
/// [`Plan::Invalid`] rather than silently ignored. `Err` means a source could not be read at all
/// (I/O error, Keptn API down); the caller decides whether to retry.
pub async fn load_plan(
    source: &ResourceSource,
    scope: &Scope,
    git_commit: Option<&str>,
) -> Result<Plan, SourceError> {
    if let Some(loaded) = source.shipyard(&scope.project, git_commit).await? {
        match Shipyard::parse(&loaded.text, &loaded.origin) {
            Err(e) => return Ok(Plan::Invalid(e)),
            Ok(shipyard) if !shipyard.remediation_enabled(&scope.stage) => {
                return Ok(Plan::Disabled {
                    shipyard: loaded.origin,
                });
            }
            Ok(_) => {}
        }
    }
    let Some(loaded) = source.remediation(scope, git_commit).await? else {
        return Ok(Plan::Missing);
    };
    Ok(match RemediationFile::parse(&loaded.text, &loaded.origin) {
        Ok(file) => Plan::Ready(file),
        Err(e) => Plan::Invalid(e),
    })
}
