//! What the `validate` and `resolve` subcommands do (docs/design.md §9); `main.rs` only parses
//! arguments and calls these.

use crate::resources::{FileError, RemediationFile, Shipyard};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Which kind of resource a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Remediation,
    Shipyard,
}

/// Checks each file and prints one line per file: `OK <file> (<what it is>)` or
/// `<file>:<line>:<col>: <what is wrong>`. Returns `false` when any file failed.
///
/// Whether a file is a remediation file or a shipyard is read from its shape (`remediations` or
/// `stages`), else from its `kind` or `apiVersion`, else from its name.
pub fn validate(paths: &[PathBuf], out: &mut dyn Write) -> bool {
    let mut all_ok = true;
    for path in paths {
        let line = match check(path) {
            Ok(summary) => format!("OK {} ({summary})", path.display()),
            Err(message) => {
                all_ok = false;
                message
            }
        };
        if writeln!(out, "{line}").is_err() {
            return false;
        }
    }
    all_ok
}

fn check(path: &Path) -> Result<String, String> {
    let origin = path.display().to_string();
    let text = read(path)?;
    match kind_of(&text, path) {
        Some(FileKind::Remediation) => {
            let file = RemediationFile::parse(&text, &origin).map_err(|e| e.to_string())?;
            let n = file.remediations().len();
            Ok(format!(
                "remediation, {}, {n} remediation{}",
                file.format(),
                if n == 1 { "" } else { "s" }
            ))
        }
        Some(FileKind::Shipyard) => {
            let shipyard = Shipyard::parse(&text, &origin).map_err(|e| e.to_string())?;
            let enabled: Vec<&str> = shipyard
                .stages()
                .iter()
                .filter(|s| shipyard.remediation_enabled(&s.name))
                .map(|s| s.name.as_str())
                .collect();
            let stages = if enabled.is_empty() {
                "no stage remediates".to_owned()
            } else {
                format!("remediation in {}", enabled.join(", "))
            };
            Ok(format!("shipyard, {}, {stages}", shipyard.format()))
        }
        None => {
            // Let the remediation parser say what is wrong with the text itself (syntax errors);
            // a well-formed file of unknown shape is reported as such.
            if let Err(e) = RemediationFile::parse(&text, &origin)
                && !e.message.starts_with("this is not a remediation file")
            {
                return Err(e.to_string());
            }
            Err(FileError::new(
                &origin,
                1,
                1,
                "neither a remediation file (spec.remediations or remediations) nor a shipyard \
                 (spec.stages or stages)",
            )
            .to_string())
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > crate::resources::MAX_FILE_BYTES as u64 {
        return Err(format!(
            "{}: larger than {} bytes",
            path.display(),
            crate::resources::MAX_FILE_BYTES
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))
}

/// Just enough of a file to tell what it is; everything else is ignored.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Probe {
    kind: Option<Value>,
    api_version: Option<Value>,
    spec: Option<ProbeSpec>,
    stages: Option<serde::de::IgnoredAny>,
    remediations: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize, Default)]
struct ProbeSpec {
    stages: Option<serde::de::IgnoredAny>,
    remediations: Option<serde::de::IgnoredAny>,
}

fn kind_of(text: &str, path: &Path) -> Option<FileKind> {
    let probe: Probe = serde_saphyr::from_str(text).unwrap_or_default();
    // The content decides before `kind`, so that a remediation file with a wrong kind is
    // reported as exactly that.
    let spec = probe.spec.unwrap_or_default();
    if probe.remediations.is_some() || spec.remediations.is_some() {
        return Some(FileKind::Remediation);
    }
    if probe.stages.is_some() || spec.stages.is_some() {
        return Some(FileKind::Shipyard);
    }
    match probe.kind.as_ref().and_then(Value::as_str) {
        Some("Remediation") => return Some(FileKind::Remediation),
        Some("Shipyard") => return Some(FileKind::Shipyard),
        _ => {}
    }
    match probe.api_version.as_ref().and_then(Value::as_str) {
        Some(v) if v.starts_with("spec.keptn.sh/0.1.") => return Some(FileKind::Remediation),
        Some(v) if v.starts_with("spec.keptn.sh/0.2.") => return Some(FileKind::Shipyard),
        _ => {}
    }
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    if name.contains("shipyard") {
        Some(FileKind::Shipyard)
    } else if name.contains("remediation") {
        Some(FileKind::Remediation)
    } else {
        None
    }
}

/// The action a problem would get, as JSON: `name`, `action`, `description`, `value`, plus
/// `problemType`, `match` (how the problem matched), `index` and `actionsOnClose`. The error is
/// a message for a person (file:line:col for a broken file, Keptn's words for no action).
pub fn resolve(
    remediation: &Path,
    problem_title: &str,
    root_cause: Option<&str>,
    index: usize,
) -> Result<Value, String> {
    let text = read(remediation)?;
    let file = RemediationFile::parse(&text, &remediation.display().to_string())
        .map_err(|e| e.to_string())?;
    let title = Some(problem_title);
    let action = file
        .action(title, root_cause, index)
        .map_err(|e| e.to_string())?;
    let (matched, how) = file
        .find(title, root_cause)
        .ok_or_else(|| "no remediation matched".to_owned())?;
    Ok(json!({
        "name": action.name,
        "action": action.action,
        "description": action.description,
        "value": action.value,
        "problemType": matched.problem_type,
        "match": how.as_str(),
        "index": index,
        "actionsOnClose": matched.actions_on_close,
    }))
}

/// `healthcheck`: asks `GET {path}` of the service at `http_addr` (a wildcard address is asked
/// on loopback) and succeeds on a 200 answer; the error says what was wrong.
pub fn healthcheck(
    http_addr: &str,
    path: &str,
    timeout: std::time::Duration,
) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let addr = http_addr
        .trim()
        .replacen("0.0.0.0:", "127.0.0.1:", 1)
        .replacen("[::]:", "[::1]:", 1);
    let target = addr
        .to_socket_addrs()
        .map_err(|e| format!("HTTP_ADDR {addr:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("HTTP_ADDR {addr:?} names no address"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&target, timeout)
        .map_err(|e| format!("cannot connect to {target}: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("cannot send the request to {target}: {e}"))?;
    let mut answer = Vec::new();
    let _ = stream.take(64 * 1024).read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or_else(|| format!("no HTTP answer from {target}{path}"))?;
    if status == "200" {
        Ok(())
    } else {
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b.trim());
        Err(format!("{target}{path} answered {status} {body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    fn validate_text(files: &[&str]) -> (bool, String) {
        let paths: Vec<PathBuf> = files.iter().map(|f| repo(f)).collect();
        let mut out = Vec::new();
        let ok = validate(&paths, &mut out);
        (ok, String::from_utf8(out).unwrap())
    }

    #[test]
    fn repository_files_are_valid() {
        let (ok, out) = validate_text(&["remediation.yaml", "shipyard.yaml"]);
        assert!(ok, "{out}");
        assert_eq!(out.lines().count(), 2);
        assert!(out.lines().all(|l| l.starts_with("OK ")), "{out}");
        assert!(out.contains("remediation in production"), "{out}");
    }

    #[test]
    fn one_broken_file_fails_the_run_and_is_located() {
        let (ok, out) = validate_text(&[
            "remediation.yaml",
            "tests/fixtures/invalid/wrong-kind.yaml",
            "tests/fixtures/invalid/missing-file.yaml",
        ]);
        assert!(!ok);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("OK "), "{out}");
        // The content says remediation file; the kind is what is wrong.
        assert!(
            lines[1].ends_with("wrong-kind.yaml:2:7: kind is \"Shipyard\", but a remediation file has kind: Remediation"),
            "{out}"
        );
        assert!(lines[2].contains("missing-file.yaml: "), "{out}");
    }

    #[test]
    fn files_of_unknown_shape_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "name: x\n").unwrap();
        let mut out = Vec::new();
        assert!(!validate(std::slice::from_ref(&path), &mut out));
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("config.yaml:1:1: neither a remediation file"),
            "{out}"
        );
    }

    #[test]
    fn resolve_gives_action_and_match() {
        let action = resolve(&repo("remediation.yaml"), "Failure rate increase", None, 0).unwrap();
        assert_eq!(action["action"], "toggle-feature");
        assert_eq!(action["value"], json!({"EnableStaticContent": "on"}));
        assert_eq!(action["match"], "problem title");
        assert_eq!(
            action["actionsOnClose"][0]["value"]["EnableStaticContent"],
            "off"
        );

        let err = resolve(&repo("remediation.yaml"), "Memory leak", None, 5).unwrap_err();
        assert_eq!(
            err,
            "there is no action with index 5 for problem type default"
        );
        let err = resolve(
            &repo("tests/fixtures/invalid/wrong-api-version.yaml"),
            "x",
            None,
            0,
        )
        .unwrap_err();
        assert!(err.contains("wrong-api-version.yaml:1:13: "), "{err}");
    }
}
