//! Helper commands: the short opencode processes around a run (`session list`, `export`,
//! `import`, `db`, `session delete`), each run to its end under the helper limit with its whole
//! output captured.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitStatus;

use kugetsu_core::agent::{AgentEnv, AgentError};
use kugetsu_core::ansi;
use kugetsu_process::Io;
use kugetsu_process::supervise::{self, Ended, Limits};

use super::OpencodeDriver;

/// One helper command's result.
pub(super) struct Helper {
    pub(super) status: Option<ExitStatus>,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Helper {
    pub(super) fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The `Error:` line of stderr without colours, else its last non-empty line.
    pub(super) fn error_line(&self) -> String {
        let plain = ansi::strip(&self.stderr);
        let lines: Vec<&str> = plain.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        lines
            .iter()
            .find_map(|l| l.strip_prefix("Error:").map(str::trim))
            .or(lines.last().copied())
            .map(str::to_owned)
            .unwrap_or_else(|| match self.status.and_then(|s| s.code()) {
                Some(code) => format!("exited with code {code}"),
                None => "killed".to_owned(),
            })
    }

    /// Whether opencode said it does not know the session.
    pub(super) fn not_found(&self) -> bool {
        ansi::strip(&self.stderr).contains("Session not found")
    }

    /// The error of a helper that did not succeed: `command` failed with its error line.
    pub(super) fn failed(&self, command: &str) -> AgentError {
        AgentError::CommandFailed { command: command.to_owned(), message: self.error_line() }
    }
}

impl OpencodeDriver {
    /// Runs a helper command to its end under the helper timeout, in `cwd` or else the helper
    /// directory.
    pub(super) fn helper(
        &self,
        what: &str,
        args: &[OsString],
        cwd: Option<&Path>,
        env: Option<&AgentEnv>,
    ) -> Result<Helper, AgentError> {
        let opts = &self.opts;
        let cmd = self.command(args, cwd.or(opts.helper_dir.as_deref()), env, Io::NullStdin);
        let limits = Limits { timeout: opts.helper_timeout, idle: None, grace: opts.kill_grace };
        let (ended, out, err) = supervise::run_captured(cmd, None, limits, &opts.interrupt)
            .map_err(|e| self.spawn_error(e.into_io()))?;
        let status = match ended {
            Ended::Exited(s) => Some(s),
            Ended::Interrupted => {
                return Err(AgentError::Interrupted { signal: opts.interrupt.describe() });
            }
            Ended::Cut => {
                return Err(AgentError::CommandFailed {
                    command: what.to_owned(),
                    message: "cut short".into(),
                });
            }
            Ended::TimedOut(d) | Ended::Hung(d) => {
                return Err(AgentError::CommandFailed {
                    command: what.to_owned(),
                    message: format!("no answer after {}s, killed", d.as_secs()),
                });
            }
        };
        Ok(Helper {
            status,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    }
}

/// Arguments from string literals.
pub(super) fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}
