//! Config errors, and their translation from the TOML deserializer's errors.

use std::ops::Range;
use std::path::PathBuf;

use serde_path_to_error::Segment;

/// Why a config file was refused. `Display` is the whole message for the operator, naming the
/// file, the line and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("{origin} line {line}, column {column}: invalid TOML: {message}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A key is unknown, has a value of the wrong type, or a value that is out of range or
    /// inconsistent with another key. `key` is its dotted path, e.g. `listener[0].bind`.
    #[error("{origin}{}: {key}: {message}", line_suffix(*.line))]
    Invalid {
        origin: String,
        line: Option<usize>,
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// The key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The 1-based line of the file the error is about, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Syntax { line, .. } => Some(*line),
            ConfigError::Invalid { line, .. } => *line,
            ConfigError::Read { .. } => None,
        }
    }
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

/// The text being parsed and its name: turns spans into line numbers in errors.
pub(super) struct Source<'a> {
    pub text: &'a str,
    pub origin: &'a str,
}

impl Source<'_> {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// An `Invalid` error about `key` at `span`.
    pub fn invalid(
        &self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            line: span.map(|s| self.position(s.start).0),
            key: key.into(),
            message: message.into(),
        }
    }

    /// Translates a TOML syntax error.
    pub fn syntax(&self, err: toml::de::Error) -> ConfigError {
        let (line, column) = err.span().map_or((1, 1), |s| self.position(s.start));
        ConfigError::Syntax {
            origin: self.origin.to_string(),
            line,
            column,
            message: one_line(err.message()),
        }
    }

    /// Translates an error from deserializing the (syntactically valid) document.
    pub fn deserialize(&self, err: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
        let mut key = key_path(err.path());
        let inner = err.into_inner();
        let message = one_line(inner.message());
        let message = if let Some(rest) = message.strip_prefix("unknown field ") {
            let mut names = backticked(rest);
            let unknown = if names.is_empty() {
                String::new()
            } else {
                names.remove(0)
            };
            // The path usually ends with the unknown key already.
            if key != unknown && !key.ends_with(&format!(".{unknown}")) {
                key = join_key(&key, &unknown);
            }
            unknown_key_message(&unknown, &names)
        } else if let Some(rest) = message.strip_prefix("missing field ") {
            let missing = backticked(rest).into_iter().next().unwrap_or_default();
            format!("missing required key `{missing}`")
        } else {
            message
        };
        if key.is_empty() {
            key = "(top level)".to_string();
        }
        self.invalid(inner.span(), key, message)
    }
}

/// A dotted key path from the deserializer's path, without the internals of `toml::Spanned`.
fn key_path(path: &serde_path_to_error::Path) -> String {
    let mut key = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: k } if !k.starts_with("$__") => key = join_key(&key, k),
            Segment::Enum { variant } => key = join_key(&key, variant),
            _ => {}
        }
    }
    key
}

fn join_key(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_string(),
        (false, true) => parent.to_string(),
        (false, false) => format!("{parent}.{child}"),
    }
}

/// The strings between backticks in serde's messages ("expected one of `a`, `b`").
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn unknown_key_message(unknown: &str, expected: &[String]) -> String {
    let mut message = "unknown key".to_string();
    if let Some(close) = expected
        .iter()
        .filter(|e| edit_distance(unknown, e) <= 1 + e.len() / 4)
        .min_by_key(|e| edit_distance(unknown, e))
    {
        message.push_str(&format!(" (did you mean `{close}`?)"));
    }
    if expected.is_empty() {
        message.push_str("; this table takes no keys");
    } else {
        message.push_str("; expected one of: ");
        message.push_str(&expected.join(", "));
    }
    message
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// toml's messages can span lines ("invalid key\nexpected `=`"): fold them into one.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
