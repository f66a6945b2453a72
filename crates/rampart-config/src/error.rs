//! Configuration errors: every error names the file, the position when known, the dotted key
//! path, what is wrong and what is allowed.

use std::fmt;
use std::ops::Range;

/// What kind of mistake an error reports (stable; tests and tools match on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not valid TOML.
    Syntax,
    /// A key that the schema does not have.
    UnknownKey,
    /// A value of the wrong TOML type (string where a number belongs, ...).
    WrongType,
    /// A required key is absent.
    Missing,
    /// A value that does not parse (unknown keyword, bad address, bad duration, ...).
    InvalidValue,
    /// A number, duration, size or length outside its allowed range.
    OutOfRange,
    /// A value that must be unique appears twice.
    Duplicate,
    /// Two keys that contradict each other (psk and psk_file, overlapping domains, ...).
    Conflict,
}

/// One configuration error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: ErrorKind,
    /// The file name as given to [`crate::load`] or [`crate::parse`].
    pub file: String,
    /// 1-based line and column (in characters) of the offending key or value, when known.
    pub position: Option<(usize, usize)>,
    /// Dotted key path, e.g. `peer[0].esp_proposals[1]`; empty for whole-file errors.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What is allowed instead, when that can be said briefly.
    pub allowed: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(allowed) = &self.allowed {
            write!(f, "; allowed: {allowed}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// All errors found in one file, in the order they appear in it. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// One error per line, no trailing newline.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors for one file; turns byte spans into line:column.
pub(crate) struct Sink<'a> {
    file: &'a str,
    text: &'a str,
    /// (byte offset for ordering, error)
    errors: Vec<(usize, ConfigError)>,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(file: &'a str, text: &'a str) -> Sink<'a> {
        Sink {
            file,
            text,
            errors: Vec::new(),
        }
    }

    pub(crate) fn push(
        &mut self,
        kind: ErrorKind,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
        allowed: Option<String>,
    ) {
        let offset = span.as_ref().map_or(usize::MAX, |s| s.start);
        let position = span.map(|s| line_col(self.text, s.start));
        self.errors.push((
            offset,
            ConfigError {
                kind,
                file: self.file.to_string(),
                position,
                key: key.into(),
                message: message.into(),
                allowed,
            },
        ));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors sorted by position (stable: same-position errors keep their order); errors
    /// without a position come last.
    pub(crate) fn finish(mut self) -> Vec<ConfigError> {
        self.errors.sort_by_key(|(offset, _)| *offset);
        self.errors.into_iter().map(|(_, e)| e).collect()
    }
}

/// 1-based line and column (counted in characters) of a byte offset; offsets past the end or
/// inside a character clamp to the nearest valid position.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 4), (1, 5));
        assert_eq!(line_col(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col(text, 9), (2, 3));
        assert_eq!(line_col(text, 1000), (3, 1));
        // Inside a multi-byte character: clamps back.
        assert_eq!(line_col(text, 8), (2, 2));
    }

    #[test]
    fn display_formats_one_line() {
        let e = ConfigError {
            kind: ErrorKind::InvalidValue,
            file: "gw.toml".into(),
            position: Some((23, 18)),
            key: "peer[0].start_action".into(),
            message: "unknown value \"sometimes\"".into(),
            allowed: Some("none, on-traffic, always".into()),
        };
        assert_eq!(
            e.to_string(),
            "gw.toml:23:18: peer[0].start_action: unknown value \"sometimes\"; allowed: none, on-traffic, always"
        );
        let e = ConfigError {
            position: None,
            key: String::new(),
            allowed: None,
            ..e
        };
        assert_eq!(e.to_string(), "gw.toml: unknown value \"sometimes\"");
    }
}
