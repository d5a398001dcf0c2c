//! What the config tests share: an example uncommented, refused values, where an error is.

use super::ConfigError;

/// `example` with the commented-out lines that begin with one of `keys` uncommented (tests).
pub(crate) fn uncomment(example: &str, keys: &[&str]) -> String {
    example
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(t) if keys.iter().any(|k| t.starts_with(k)) => t,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each of `cases` (a text, what its error says) fails to parse as a `T`, saying so (tests).
pub(crate) fn assert_refused<T>(cases: &[(&str, &str)])
where
    T: std::str::FromStr<Err = String>,
{
    for (text, says) in cases {
        let e = text.parse::<T>().err().expect(text);
        assert!(e.contains(says), "{text}: {e}");
    }
}

/// What the tests check of an error: where it is, what it says, how it begins when shown.
impl ConfigError {
    /// At `key` on `line`, saying `says`; `case` names the table row in a failure.
    pub(crate) fn assert_case(&self, case: &str, key: &str, line: Option<usize>, says: &str) {
        let at = (self.key.as_deref(), self.line);
        assert_eq!(at, (Some(key), line), "{case}: {self}");
        assert!(self.message.contains(says), "{case}: {self}");
    }

    /// At `key` on `line`, and shown beginning with `starts`.
    pub(crate) fn assert_shown(&self, line: Option<usize>, key: &str, starts: &str) {
        assert_eq!(
            (self.line, self.key.as_deref()),
            (line, Some(key)),
            "{self}"
        );
        assert!(self.to_string().starts_with(starts), "{self}");
    }
}
