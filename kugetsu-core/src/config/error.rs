//! Why the settings could not be resolved, and where a value came from.

use std::fmt;
use std::path::PathBuf;

use super::settings::SETTINGS;
use crate::storage::StorageError;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Source {
    /// Built-in default.
    #[default]
    Default,
    /// A line of the `config` file.
    File {
        /// The `config` file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
    },
    /// The environment variable of the same name (or of an older name of it).
    Env,
    /// A command-line flag.
    CommandLine,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Env => f.write_str("environment"),
            Source::CommandLine => f.write_str("command line"),
        }
    }
}

/// Why the settings could not be resolved. Every message names the file and line, or the
/// environment variable or flag, that holds the wrong thing.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `config` file is not in the accepted shell subset.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The `config` file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A key kugetsu does not know.
    #[error("{origin}: unknown setting {key} (known: {})", known_keys())]
    UnknownKey {
        /// Where it was set.
        origin: Source,
        /// The key as written.
        key: String,
    },
    /// A value of the wrong kind or out of range.
    #[error("{origin}: {key}={value:?} {problem}")]
    BadValue {
        /// Where it was set.
        origin: Source,
        /// The key as written.
        key: String,
        /// The value as given (masked, for a secret).
        value: String,
        /// What is wrong ("is not a whole number", ...).
        problem: String,
    },
    /// The file is not UTF-8 text.
    #[error("{}: not UTF-8 text (line {line})", path.display())]
    NotUtf8 {
        /// The `config` file.
        path: PathBuf,
        /// The first line with invalid bytes.
        line: usize,
    },
    /// The file could not be read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ConfigError {
    /// The setting a wrong value was given for, if the error is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::BadValue { key, .. } => Some(key),
            _ => None,
        }
    }
}

fn known_keys() -> String {
    SETTINGS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}
