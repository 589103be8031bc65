//! Reading YAML resource files with errors a person can act on.
//!
//! Every error names the file, the line and the column, and says what is wrong in the words of
//! the file format ("`remediations` should be a list"), not in the words of the parser
//! ("expected sequence start"). The parser reports where a wrong value starts; the key that owns
//! it is found by a light scan of the text around that place.

use serde::de::DeserializeOwned;
use serde_saphyr::{Location, Options};

/// Largest resource file accepted. Real remediation and shipyard files are a few kilobytes; the
/// limit keeps a wrong or hostile resource from costing memory and time.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// A resource file that cannot be used: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {message}")]
pub struct FileError {
    /// File path or URL the text came from.
    pub origin: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// What is wrong, in words.
    pub message: String,
}

impl FileError {
    pub(crate) fn new(origin: &str, line: u64, column: u64, message: impl Into<String>) -> Self {
        FileError {
            origin: origin.to_owned(),
            line: line.max(1),
            column: column.max(1),
            message: message.into(),
        }
    }

    /// An error about the value found at `at`.
    pub(crate) fn at(origin: &str, at: &Location, message: impl Into<String>) -> Self {
        FileError::new(origin, at.line(), at.column(), message)
    }
}

/// Parses `text` into `T`, turning parser errors into [`FileError`]s.
///
/// YAML 1.1 booleans (`on`, `off`, `yes`, `no`) stay booleans where the target type is open
/// (as Keptn's own Go parser reads them); numbers with leading zeros stay text, so that an
/// identifier such as `0755` is not silently turned into a number.
pub(crate) fn parse<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, FileError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(FileError::new(
            origin,
            1,
            1,
            format!(
                "the file is {} bytes long; files over {} bytes are refused",
                text.len(),
                MAX_FILE_BYTES
            ),
        ));
    }
    let mut options = Options::default();
    options.leading_zero_numbers_as_strings = true;
    options.with_snippet = false;
    serde_saphyr::from_str_with_options(text, options).map_err(|e| explain(&e, text, origin))
}

/// Whether `text` holds nothing but blank lines and comments.
pub(crate) fn is_blank(text: &str) -> bool {
    text.lines()
        .map(|l| l.trim_start_matches('\u{feff}').trim())
        .all(|l| l.is_empty() || l.starts_with('#') || l == "---" || l == "...")
}

/// Words for the parser's terse expectations.
fn plain_expectation(message: &str) -> Option<&'static str> {
    Some(match message {
        "expected string scalar" => "text",
        "expected sequence start" => "a list (lines starting with `- `)",
        "expected mapping start" => "a mapping (`key: value` lines)",
        _ => return None,
    })
}

fn explain(err: &serde_saphyr::Error, text: &str, origin: &str) -> FileError {
    let (line, column) = err
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    let raw = err
        .without_snippet()
        .render_with_formatter(&serde_saphyr::UserMessageFormatter);
    // The formatter appends the location; the FileError carries it already.
    let suffix = format!(" at line {line}, column {column}");
    let bare = raw.strip_suffix(&suffix).unwrap_or(&raw).trim().to_owned();
    let message = match plain_expectation(&bare) {
        Some(expected) => {
            let found = found_at(text, line, column);
            match (owner_at(text, line, column), found) {
                (Some(owner), Some(found)) => {
                    format!("{owner} should be {expected}, not `{found}`")
                }
                (Some(owner), None) => format!("{owner} should be {expected}"),
                (None, _) if line == 1 && column == 1 => {
                    format!("the file should be {expected} at the top level")
                }
                (None, Some(found)) => format!("expected {expected} here, not `{found}`"),
                (None, None) => format!("expected {expected} here"),
            }
        }
        None => bare,
    };
    FileError::new(origin, line, column, message)
}

/// The line `line` (1-based) of `text`.
fn line_of(text: &str, line: u64) -> Option<&str> {
    text.lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)
}

/// Characters of `line_text` before the 1-based `column`.
fn before_column(line_text: &str, column: u64) -> &str {
    let take = usize::try_from(column)
        .unwrap_or(usize::MAX)
        .saturating_sub(1);
    match line_text.char_indices().nth(take) {
        Some((i, _)) => &line_text[..i],
        None => line_text,
    }
}

/// What is written at a place: the rest of the line, shortened.
fn found_at(text: &str, line: u64, column: u64) -> Option<String> {
    let l = line_of(text, line)?;
    let rest = &l[before_column(l, column).len()..];
    let rest = rest.split(" #").next().unwrap_or(rest).trim();
    if rest.is_empty() {
        return None;
    }
    let mut shown: String = rest.chars().take(40).collect();
    if rest.chars().count() > 40 {
        shown.push('…');
    }
    Some(shown)
}

/// Which key a value at (`line`, `column`) belongs to, as words: "`spec`", or "an item of
/// `actionsOnOpen`". Only block-style YAML is understood; `None` when unsure.
pub(crate) fn owner_at(text: &str, line: u64, column: u64) -> Option<String> {
    let l = line_of(text, line)?;
    let before = before_column(l, column);
    let trimmed = before.trim_end();
    if let Some(key_part) = trimmed.strip_suffix(':') {
        let key = key_part.trim_start().trim_start_matches("- ").trim();
        let key = key.trim_matches(|c| c == '"' || c == '\'');
        if !key.is_empty() && !key.contains(':') {
            return Some(format!("`{key}`"));
        }
        return None;
    }
    let is_item = trimmed.trim_start() == "-";
    if !trimmed.trim_start().is_empty() && !is_item {
        return None;
    }
    // The value starts its line (or a list item): its owner is the nearest line above that is
    // indented less and ends in `key:`.
    let indent = if is_item {
        trimmed.len() - trimmed.trim_start().len()
    } else {
        before.chars().count()
    };
    let first = usize::try_from(line).ok()?.checked_sub(1)?;
    for above in text
        .lines()
        .take(first)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let content = above.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let above_indent = above.len() - content.len();
        let is_parent = above_indent < indent || (is_item && above_indent == indent);
        if !is_parent {
            continue;
        }
        let content = content.split(" #").next().unwrap_or(content).trim_end();
        if is_item && content.starts_with("- ") && above_indent == indent {
            // A sibling item: keep looking for the key that owns the list.
            continue;
        }
        let key = content.strip_suffix(':')?.trim_start_matches("- ").trim();
        let key = key.trim_matches(|c| c == '"' || c == '\'');
        if key.is_empty() {
            return None;
        }
        return Some(if is_item {
            format!("an item of `{key}`")
        } else {
            format!("`{key}`")
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_of_a_value_on_the_key_line() {
        let text = "spec:\n  remediations: foo\n";
        assert_eq!(owner_at(text, 2, 17).as_deref(), Some("`remediations`"));
    }

    #[test]
    fn owner_of_a_list_item() {
        let text = "spec:\n  remediations:\n  - a\n  - b\n";
        assert_eq!(
            owner_at(text, 4, 5).as_deref(),
            Some("an item of `remediations`")
        );
    }

    #[test]
    fn owner_of_a_block_value() {
        let text = "spec:\n  remediations:\n    x: 1\n";
        assert_eq!(owner_at(text, 3, 5).as_deref(), Some("`remediations`"));
    }

    #[test]
    fn parser_words_become_plain_words() {
        let err = parse::<std::collections::BTreeMap<String, Vec<String>>>(
            "remediations: foo\n",
            "r.yaml",
        )
        .unwrap_err();
        assert_eq!(err.line, 1);
        assert_eq!(err.column, 15);
        assert!(
            err.message.contains("`remediations` should be a list"),
            "{err}"
        );
        assert!(err.message.contains("not `foo`"), "{err}");
    }

    #[test]
    fn oversized_input_is_refused() {
        let text = "a: b\n".repeat(MAX_FILE_BYTES / 4);
        let err = parse::<serde_json::Value>(&text, "big.yaml").unwrap_err();
        assert!(err.message.contains("bytes"), "{err}");
    }
}
