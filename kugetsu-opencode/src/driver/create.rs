//! `create_session`: a new session from a first prompt, headless (one turn of `opencode run`
//! with a title, its id read from the events) or interactive.
//!
//! Interactive creation starts the TUI on the user's terminal with `--prompt`. The TUI prints
//! no id, so the new session is found afterwards with `session list` (the one of this
//! directory's project that was not there before), and given the title and the deny rules a
//! later headless run needs (TUI sessions have none, and a headless run of them could hang on a
//! question).

use std::ffi::OsString;
use std::io::IsTerminal;

use kugetsu_core::agent::{
    AgentError, CreateSessionRequest, EventSink, RunOutcome, RunReport, SessionId,
};
use kugetsu_core::interrupt::Interrupt;
use kugetsu_process::{Io, supervise};

use super::OpencodeDriver;
use super::turn::Turn;

impl OpencodeDriver {
    /// One headless turn that makes the session.
    pub(super) fn create_headless(
        &self,
        req: &CreateSessionRequest,
        sink: &mut dyn EventSink,
    ) -> Result<RunReport, AgentError> {
        let args = self.run_args(None, Some(&req.title));
        let (events, outcome, exit_code) = self.turn(
            &Turn {
                args: &args,
                dir: &req.dir,
                env: &req.env,
                prompt: &req.prompt,
                limits: req.limits,
                log_path: &req.log_path,
                judge: None,
                tools_under: None,
                watch: None,
                ready: None,
            },
            sink,
        )?;
        let usage = events.usage();
        match events.session {
            Some(session) => Ok(RunReport { session, outcome, exit_code, usage }),
            None => Err(AgentError::NoSession { outcome }),
        }
    }

    /// The TUI on the user's terminal, then the session it made found and prepared.
    pub(super) fn create_interactive(
        &self,
        req: &CreateSessionRequest,
    ) -> Result<RunReport, AgentError> {
        if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
            return Err(AgentError::NeedsTerminal);
        }
        let before: Vec<SessionId> =
            self.sessions_in(&req.dir)?.into_iter().map(|s| s.id).collect();
        let mut args = vec![OsString::from(format!("--prompt={}", req.prompt))];
        args.extend(self.model_args());
        let mut cmd = self.command(&args, Some(&req.dir), Some(&req.env), Io::Terminal);
        let child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let stop = &self.opts.interrupt;
        let status = supervise::wait_foreground(child, self.opts.kill_grace, stop)
            .map_err(|e| self.spawn_error(e.into_io()))?;
        if stop.is_triggered() {
            // The TUI may have made its session (once the prompt was sent); nobody could name
            // it after this init, so it goes with it: looked up and deleted by helpers that
            // the stop already requested does not cut short (each still under its timeout).
            let cleanup = OpencodeDriver::new(self.opts.clone().interrupt(Interrupt::new()));
            let made = cleanup.sessions_in(&req.dir).unwrap_or_default();
            for new in made.iter().filter(|s| !before.contains(&s.id)) {
                if let Err(e) = cleanup.delete(&new.id) {
                    tracing::warn!(session = %new.id, error = %e, "cannot remove the session");
                }
            }
            return Err(AgentError::Interrupted { signal: stop.describe() });
        }
        // Ctrl-C is how a user leaves the TUI; pressed twice, the second can end opencode by the
        // signal while it shuts down. That is a quit, not a failed priming.
        let quit_by_user = {
            use std::os::unix::process::ExitStatusExt;
            status.signal() == Some(rustix::process::Signal::INT.as_raw())
                || status.code() == Some(130)
        };
        let outcome = if status.success() || quit_by_user {
            RunOutcome::Completed
        } else {
            RunOutcome::Failed { message: format!("the opencode TUI exited with {status}") }
        };
        let after = self.sessions_in(&req.dir)?;
        let Some(new) = after.into_iter().find(|s| !before.contains(&s.id)) else {
            return Err(AgentError::NoSession { outcome });
        };
        self.fix_permissions(&new.id)?;
        self.set_title(&new.id, &req.title)?;
        // What a TUI turn cost is not printed anywhere kugetsu reads: unknown.
        Ok(RunReport { session: new.id, outcome, exit_code: status.code(), usage: None })
    }
}
