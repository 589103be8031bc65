//! Names that go into Unleash URLs, checked once.
//!
//! A [`FlagName`] exists only once its text passed [`FlagName::parse`]: Unleash names are
//! URL-friendly (letters, digits, `-`, `_`, `.`, `~`), at most [`MAX_FLAG_NAME_LEN`] long. The
//! toggle action parses the names when it reads an action's `value`; the client then takes them
//! as they are. Environment and project names may be anything printable (they are
//! percent-encoded) except what would change the URL's path structure.

use super::UnleashError;
use std::borrow::Cow;
use std::fmt;

/// Longest flag name accepted. Unleash itself allows 100 characters.
pub const MAX_FLAG_NAME_LEN: usize = 100;

/// A flag name that can go into a URL path as one segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct FlagName(String);

impl FlagName {
    /// Checks `name`: not empty, not `.` or `..`, at most [`MAX_FLAG_NAME_LEN`] characters, only
    /// letters, digits, `-`, `_`, `.` and `~`.
    pub fn parse(name: &str) -> Result<FlagName, UnleashError> {
        let fail = |reason: String| {
            Err(UnleashError::InvalidFlagName {
                name: name.to_owned(),
                reason,
            })
        };
        if name.is_empty() {
            return fail("the name is empty".into());
        }
        let len = name.chars().count();
        if len > MAX_FLAG_NAME_LEN {
            return fail(format!(
                "it is {len} characters long; Unleash allows at most {MAX_FLAG_NAME_LEN}"
            ));
        }
        if name == "." || name == ".." {
            return fail("\".\" and \"..\" cannot be used as a path segment".into());
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~')))
        {
            return fail(format!(
                "character {c:?} is not allowed; use letters, digits, '-', '_', '.' and '~'"
            ));
        }
        Ok(FlagName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for FlagName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for FlagName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FlagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for FlagName {
    type Err = UnleashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FlagName::parse(s)
    }
}

impl From<FlagName> for String {
    fn from(name: FlagName) -> String {
        name.0
    }
}

impl PartialEq<str> for FlagName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for FlagName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// What the client's flag operations take: a [`FlagName`], used as it is, or text, parsed
/// first (so that an invalid name fails before any request, with the same error).
pub trait AsFlagName {
    fn as_flag_name(&self) -> Result<Cow<'_, FlagName>, UnleashError>;
}

impl AsFlagName for FlagName {
    fn as_flag_name(&self) -> Result<Cow<'_, FlagName>, UnleashError> {
        Ok(Cow::Borrowed(self))
    }
}

impl AsFlagName for str {
    fn as_flag_name(&self) -> Result<Cow<'_, FlagName>, UnleashError> {
        FlagName::parse(self).map(Cow::Owned)
    }
}

impl AsFlagName for String {
    fn as_flag_name(&self) -> Result<Cow<'_, FlagName>, UnleashError> {
        self.as_str().as_flag_name()
    }
}

impl<T: AsFlagName + ?Sized> AsFlagName for &T {
    fn as_flag_name(&self) -> Result<Cow<'_, FlagName>, UnleashError> {
        (**self).as_flag_name()
    }
}

/// Checks an environment or project name: anything printable goes (it is percent-encoded),
/// except what would change the URL's path structure.
pub(super) fn validate_name(what: &'static str, value: &str) -> Result<(), UnleashError> {
    let reason = if value.is_empty() {
        Some("it is empty")
    } else if value.chars().count() > MAX_FLAG_NAME_LEN {
        Some("it is longer than 100 characters")
    } else if value == "." || value == ".." {
        Some("\".\" and \"..\" cannot be used as a path segment")
    } else if value.chars().any(char::is_control) {
        Some("it contains control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(UnleashError::InvalidName {
            what,
            value: value.to_owned(),
            reason: reason.into(),
        }),
        None => Ok(()),
    }
}

/// `on` or `off`.
pub fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names() {
        for ok in ["EnableStaticContent", "a", "a-b_c.d~e", &"x".repeat(100)] {
            assert_eq!(FlagName::parse(ok).unwrap().as_str(), ok);
        }
        for (bad, why) in [
            ("", "empty"),
            (".", "path segment"),
            ("..", "path segment"),
            ("a/b", "'/'"),
            ("a b", "' '"),
            ("a?b", "'?'"),
            ("Flag:on", "':'"),
            ("é", "'é'"),
        ] {
            let e = FlagName::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = FlagName::parse(&"x".repeat(101)).unwrap_err().to_string();
        assert!(e.contains("101 characters"), "{e}");
    }

    #[test]
    fn text_is_parsed_a_flag_name_is_not() {
        let name = FlagName::parse("Promo").unwrap();
        assert!(matches!(name.as_flag_name(), Ok(Cow::Borrowed(_))));
        assert!(matches!("Promo".as_flag_name(), Ok(Cow::Owned(_))));
        assert!("a/b".as_flag_name().is_err());
        assert!(String::from("a b").as_flag_name().is_err());
    }
}
