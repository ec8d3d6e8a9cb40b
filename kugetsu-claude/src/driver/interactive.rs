//! Priming a session in Claude Code's TUI on the user's terminal: `claude --session-id NEW
//! PROMPT` with the permission flags of headless runs (so what the user allows there is what
//! later headless turns get). The TUI's prompt is an argument: it is the priming prompt, which
//! kugetsu writes, not a message of the user's. On a first run the TUI asks the user to accept the
//! API key of the environment and to trust the directory: the user answers, as with any TUI.

use std::ffi::OsString;
use std::io::IsTerminal;

use kugetsu_core::agent::{AgentError, CreateSessionRequest, RunOutcome, RunReport};
use kugetsu_process::{Io, supervise};

use super::ClaudeDriver;
use crate::args::{Start, permission_args, session_args};
use crate::store::Record;

impl ClaudeDriver {
    /// The TUI on the user's terminal, with the session's id chosen here.
    pub(super) fn create_interactive(
        &self,
        req: &CreateSessionRequest,
    ) -> Result<RunReport, AgentError> {
        if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
            return Err(AgentError::NeedsTerminal);
        }
        let id = self.new_id()?;
        let mut args = session_args(Start::New(&id));
        args.extend(permission_args());
        if let Some(model) = &self.opts.model {
            args.extend([OsString::from("--model"), model.into()]);
        }
        // `--disallowedTools` takes every word up to the next option: without `--` the prompt
        // would be read as more tool names, and the TUI would open with no prompt.
        args.extend([OsString::from("--"), req.prompt.clone().into()]);
        let mut cmd = self.command(&args, &req.dir, &req.env, Io::Terminal);
        let child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let stop = &self.opts.interrupt;
        let status = supervise::wait_foreground(child, self.opts.kill_grace, stop)
            .map_err(|e| self.spawn_error(e.into_io()))?;
        if stop.is_triggered() {
            return Err(AgentError::Interrupted { signal: stop.describe() });
        }
        // Ctrl-C (twice) is how a user leaves the TUI: a quit, not a failed priming.
        let quit_by_user = {
            use std::os::unix::process::ExitStatusExt;
            status.signal() == Some(2) || status.code() == Some(130)
        };
        let outcome = if status.success() || quit_by_user {
            RunOutcome::Completed
        } else {
            RunOutcome::Failed { message: format!("the claude TUI exited with {status}") }
        };
        if crate::store::transcript(&self.config_dir()?, &id).is_none() {
            return Err(AgentError::NoSession { outcome });
        }
        let record = Record {
            title: req.title.clone(),
            dir: req.dir.clone(),
            fork_of: None,
            total_cost_usd: None,
        };
        self.records().put(&id, &record)?;
        Ok(RunReport { session: id, outcome, exit_code: status.code(), usage: None })
    }
}
