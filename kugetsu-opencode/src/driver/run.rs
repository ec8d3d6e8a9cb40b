//! `run`: one more turn of an existing session, in the directory kugetsu recorded for it.
//!
//! Nothing is looked up before the run (kugetsu runs a session in the directory it imported it
//! into; see the [`super`] docs for why that holds). A run that printed no event at all is
//! explained afterwards with one look at its stored row: opencode did not know the session
//! (`Session not found` on stderr), or the session lives in another directory, where opencode
//! prints nothing and never ends (the directory trap, [`crate::command`]).

use std::path::Path;

use kugetsu_core::agent::{AgentError, EventSink, RunOutcome, RunReport, RunRequest};

use super::OpencodeDriver;
use super::turn::Turn;

impl OpencodeDriver {
    /// The turn, and the explanation of a silent one.
    pub(super) fn run_session(
        &self,
        req: &RunRequest,
        sink: &mut dyn EventSink,
    ) -> Result<RunReport, AgentError> {
        let args = self.run_args(Some(&req.session), None);
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
        if events.events.is_empty()
            && matches!(
                outcome,
                RunOutcome::Failed { .. } | RunOutcome::Hung { .. } | RunOutcome::TimedOut { .. }
            )
        {
            self.explain_silent_run(req)?;
        }
        Ok(RunReport { session: req.session.clone(), outcome, exit_code, usage: events.usage() })
    }

    /// Explains a run that printed no event at all. Anything but an unknown session or one of
    /// another directory keeps the run's own outcome.
    fn explain_silent_run(&self, req: &RunRequest) -> Result<(), AgentError> {
        match self.session_row(&req.session) {
            Ok(None) => Err(AgentError::SessionNotFound { id: req.session.clone() }),
            Ok(Some((stored, _))) if !same_dir(Path::new(&stored), &req.dir) => {
                Err(AgentError::CommandFailed {
                    command: "run".into(),
                    message: format!(
                        "session {} lives in {stored}, not in {}; opencode runs a session only in \
                         its own directory and would hang running it there",
                        req.session,
                        req.dir.display()
                    ),
                })
            }
            Ok(Some(_)) => Ok(()),
            Err(e) => {
                tracing::warn!(session = %req.session, error = %e, "cannot look up a silent run's session");
                Ok(())
            }
        }
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let ca = a.canonicalize().unwrap_or_else(|_| a.to_owned());
    let cb = b.canonicalize().unwrap_or_else(|_| b.to_owned());
    ca == cb
}
