//! The run log a driver appends one turn's output to (`logs/<time>-<issue>.log`), and the
//! secret values it masks there.
//!
//! The log is created `0600` with its directory. A failed write does not stop the turn: the
//! first error is kept and reported when the turn ends ([`RunLog::finish`]), so the agent's work
//! is never lost to a full disk, and nothing is written half-masked.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::agent::{AgentEnv, AgentError};
use crate::secrets::secret_values;
use crate::storage::{self, PrivateOpen};

/// An open run log.
#[derive(Debug)]
pub struct RunLog {
    path: PathBuf,
    file: File,
    error: Option<std::io::Error>,
}

impl RunLog {
    /// Opens `path` for appending (creating it `0600`, and its directory).
    pub fn open(path: &Path) -> Result<RunLog, AgentError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| AgentError::Io {
                action: "create the directory of the run log",
                path: parent.to_owned(),
                source,
            })?;
        }
        let file =
            storage::open_private(path, PrivateOpen::Append).map_err(|e| AgentError::Io {
                action: "open the run log",
                path: path.to_owned(),
                source: std::io::Error::other(e),
            })?;
        Ok(RunLog { path: path.to_owned(), file, error: None })
    }

    /// Appends `bytes`; after a failure, nothing more is written.
    pub fn write(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            self.error = self.file.write_all(bytes).err();
        }
    }

    /// Appends `line`, ended by a newline if it has none.
    pub fn line(&mut self, line: &str) {
        self.write(line.as_bytes());
        if !line.ends_with('\n') {
            self.write(b"\n");
        }
    }

    /// The first write that failed, if any.
    pub fn finish(self) -> Result<(), AgentError> {
        match self.error {
            None => Ok(()),
            Some(source) => {
                Err(AgentError::Io { action: "append to the run log", path: self.path, source })
            }
        }
    }
}

/// The secret values a driver masks in what it writes and reports: those of the environment
/// it starts the agent with (`base_env`, then the agent's `env`), and the values it was told to
/// mask besides (`also`: such as the queue's password, which the agent never gets).
pub fn sensitive_values(
    base_env: &[(OsString, OsString)],
    env: &AgentEnv,
    also: &[String],
) -> Vec<String> {
    let from_base = base_env.iter().filter_map(|(k, v)| Some((k.to_str()?, v.to_str()?)));
    let from_env = env.0.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let mut values = secret_values(from_base.chain(from_env));
    values.extend(also.iter().filter(|v| !v.is_empty()).cloned());
    values
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lines_end_in_a_newline_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/a.log");
        let mut log = RunLog::open(&path).unwrap();
        log.line("one");
        log.line("two\n");
        log.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn secrets_of_both_environments_and_the_extra_ones_are_masked() {
        let base = vec![(OsString::from("GITHUB_TOKEN"), OsString::from("ghp_base"))];
        let mut env = AgentEnv::default();
        env.0.insert("OPENAI_API_KEY".into(), "sk-agent".into());
        env.0.insert("EDITOR".into(), "vi".into());
        let values = sensitive_values(&base, &env, &["queue-pass".into(), String::new()]);
        for v in ["ghp_base", "sk-agent", "queue-pass"] {
            assert!(values.iter().any(|x| x == v), "{v} in {values:?}");
        }
        assert!(!values.iter().any(|x| x == "vi" || x.is_empty()), "{values:?}");
    }
}
