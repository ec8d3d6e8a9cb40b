//! Priming a session in Claude Code's TUI on the user's terminal: `claude --session-id NEW --
//! PROMPT` with the permission flags of headless runs (so what the user allows there is what
//! later headless turns get). The TUI's prompt is an argument: it is the priming prompt, which
//! kugetsu writes, not a message of the user's; the TUI sends it once its dialogs are answered.
//!
//! A first run asks the user, as with any TUI: on a new configuration, Claude Code's onboarding
//! (a theme, and a check that Anthropic's own hosts answer, whatever `ANTHROPIC_BASE_URL` says:
//! offline it exits 1), then whether to use the API key of the environment (the default answer
//! is No, which leaves the TUI unable to call the API; headless runs use the key either way),
//! and whether to trust the directory (No exits 1). The user leaves the TUI with `/exit` or
//! Ctrl-C twice (both exit 0).
//!
//! The session is kept only if the model answered its priming prompt: Claude Code writes the
//! transcript when the prompt is sent, so a TUI left before the answer, or whose API call was
//! refused, leaves a session that was never primed. An init stopped by a signal removes it too.

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
            // The TUI may have begun the session (its file is written once the prompt is
            // sent); nobody will know its id, so it goes with the interrupted init.
            match self.delete(&id) {
                Ok(()) | Err(AgentError::SessionNotFound { .. }) => {}
                Err(e) => tracing::warn!(session = %id, error = %e, "cannot remove the session"),
            }
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
        let Some(transcript) = crate::store::transcript(&self.config_dir()?, &id) else {
            let outcome = match outcome {
                RunOutcome::Completed => RunOutcome::Failed {
                    message: "the claude TUI was left before it sent the priming prompt".into(),
                },
                failed => failed,
            };
            return Err(AgentError::NoSession { outcome });
        };
        // Recorded even when unprimed: the caller deletes a session whose priming failed.
        let record = Record {
            title: req.title.clone(),
            dir: req.dir.clone(),
            fork_of: None,
            total_cost_usd: None,
        };
        self.records().put(&id, &record)?;
        let outcome = match outcome {
            RunOutcome::Completed if !crate::store::answered(&transcript) => RunOutcome::Failed {
                message: "the priming prompt got no answer in the claude TUI (it was left \
                          first, or the API call failed as the TUI showed)"
                    .into(),
            },
            outcome => outcome,
        };
        Ok(RunReport { session: id, outcome, exit_code: status.code(), usage: None })
    }
}
