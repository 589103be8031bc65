//! What the remediator needs before it acts: is remediation on for this stage, and which
//! `remediation.yaml` applies (docs/design.md §3 and §4).

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
    let (shipyard, remediation) = source.shipyard_and_remediation(scope, git_commit).await;
    if let Some(loaded) = shipyard? {
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
    let remediation = match remediation {
        Some(read) => read,
        None => source.remediation(scope, git_commit).await,
    };
    let Some(loaded) = remediation? else {
        return Ok(Plan::Missing);
    };
    Ok(match parsed(&loaded) {
        Ok(file) => Plan::Ready(file),
        Err(e) => Plan::Invalid(e),
    })
}

/// Parsed remediation files by origin, with the text they were parsed from: the file is read on
/// every event (so a change applies at once) but parsed again only when its text changed.
pub(crate) fn parsed(loaded: &super::source::Loaded) -> Result<RemediationFile, FileError> {
    type Cache = std::collections::HashMap<String, (String, RemediationFile)>;
    static CACHE: std::sync::Mutex<Option<Cache>> = std::sync::Mutex::new(None);
    {
        let cache = CACHE.lock().expect("parse cache lock");
        if let Some((text, file)) = cache.as_ref().and_then(|c| c.get(&loaded.origin))
            && *text == loaded.text
        {
            return Ok(file.clone());
        }
    }
    let file = RemediationFile::parse(&loaded.text, &loaded.origin)?;
    let mut cache = CACHE.lock().expect("parse cache lock");
    let cache = cache.get_or_insert_with(Cache::new);
    if cache.len() >= 256 {
        cache.clear();
    }
    cache.insert(loaded.origin.clone(), (loaded.text.clone(), file.clone()));
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::DirSource;

    fn file(action: &str) -> String {
        format!(
            "apiVersion: spec.keptn.sh/0.1.4\nkind: Remediation\nspec:\n  remediations:\n    - problemType: default\n      actionsOnOpen:\n        - action: {action}\n"
        )
    }

    #[tokio::test]
    async fn a_changed_file_is_used_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let source = ResourceSource::Dir(DirSource::new(dir.path()));
        let scope = Scope {
            project: "p".into(),
            stage: "s".into(),
            service: "v".into(),
        };
        for action in ["first", "second", "first"] {
            std::fs::write(dir.path().join("remediation.yaml"), file(action)).unwrap();
            let Ok(Plan::Ready(parsed)) = load_plan(&source, &scope, None).await else {
                panic!("expected a plan");
            };
            let (remediation, _) = parsed.find(Some("anything"), None).unwrap();
            assert_eq!(remediation.actions_on_open[0].action, action);
        }
    }
}
