//! One headless turn, the heart of `create_session` and `run`: `claude -p` with the prompt on
//! stdin, its events parsed and streamed, its output appended to the run log with secrets
//! masked, its end classified ([`crate::outcome`]).
//!
//! Each Bash tool command runs in a session of its own (`setsid`), so neither a signal to
//! Claude Code's process group nor a SIGKILL of `claude` reaches it; the supervision of
//! [`kugetsu_process::supervise`] follows every descendant through `/proc` and signals their
//! own process groups along with Claude Code's, at a limit, a stop request and after the run.

use std::ffi::OsString;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use kugetsu_core::agent::{
    AgentEnv, AgentError, AgentEvent, CreateSessionRequest, EventSink, RunLimits, RunOutcome,
    RunReport, RunRequest, SessionId,
};
use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::run_log::RunLog;
use kugetsu_core::secrets::redact_line;
use kugetsu_core::usage::TurnUsage;
use kugetsu_process::Io;
use kugetsu_process::supervise::{self, Limits, Seen, Stream};

use kugetsu_core::agent::AgentDriver;

use super::ClaudeDriver;
use crate::args::{Start, new_session_id, turn_args};
use crate::events::{EventLog, Spend};
use crate::outcome::classify;
use crate::store::Record;

/// What one headless turn needs.
struct Turn<'a> {
    start: Start<'a>,
    dir: &'a Path,
    env: &'a AgentEnv,
    prompt: &'a str,
    limits: RunLimits,
    log_path: &'a Path,
    /// What the session had cost before this turn, if known.
    spent_before: Option<f64>,
}

impl ClaudeDriver {
    /// A new session, made by its first (priming) turn.
    pub(super) fn create_headless(
        &self,
        req: &CreateSessionRequest,
        sink: &mut dyn EventSink,
    ) -> Result<RunReport, AgentError> {
        let id = self.new_id()?;
        let mut record = Record {
            title: req.title.clone(),
            dir: req.dir.clone(),
            fork_of: None,
            total_cost_usd: None,
        };
        self.records().put(&id, &record)?;
        let turn = Turn {
            start: Start::New(&id),
            dir: &req.dir,
            env: &req.env,
            prompt: &req.prompt,
            limits: req.limits,
            log_path: &req.log_path,
            spent_before: None,
        };
        let (events, outcome, exit_code, usage) = self.turn(&turn, sink)?;
        if events.session.as_ref() != Some(&id) {
            // Claude Code refused the run before it began: there is no session.
            self.records().remove(&id)?;
            return Err(AgentError::NoSession { outcome });
        }
        if let Some(total) = events.result.as_ref().and_then(|r| r.cost_usd) {
            record.total_cost_usd = Some(total);
            self.records().put(&id, &record)?;
        }
        Ok(RunReport { session: id, outcome, exit_code, usage })
    }

    /// One turn of a session: its fork's first turn if the driver recorded a fork not yet
    /// made, else a resume.
    pub(super) fn run_session(
        &self,
        req: &RunRequest,
        sink: &mut dyn EventSink,
    ) -> Result<RunReport, AgentError> {
        let id = &req.session;
        let record = self.records().get(id)?;
        let made = crate::store::transcript(&self.config_dir()?, id).is_some();
        let start = match record.as_ref().and_then(|r| r.fork_of.as_ref()) {
            Some(base) if !made => Start::Fork { base, new: id },
            _ if made => Start::Resume(id),
            _ => return Err(AgentError::SessionNotFound { id: id.clone() }),
        };
        let turn = Turn {
            start,
            dir: &req.dir,
            env: &req.env,
            prompt: &req.prompt,
            limits: req.limits,
            log_path: &req.log_path,
            spent_before: record.as_ref().and_then(|r| r.total_cost_usd),
        };
        let (events, outcome, exit_code, usage) = self.turn(&turn, sink)?;
        let total = events.result.as_ref().and_then(|r| r.cost_usd);
        if let Some(record) = &record
            && events.session.as_ref() == Some(id)
            && (matches!(start, Start::Fork { .. }) || total.is_some())
        {
            // A made fork is resumed from now on; the session's total is the next turn's base.
            let record = Record {
                fork_of: None,
                total_cost_usd: total.or(record.total_cost_usd),
                ..record.clone()
            };
            self.records().put(id, &record)?;
        }
        Ok(RunReport { session: id.clone(), outcome, exit_code, usage })
    }

    pub(super) fn new_id(&self) -> Result<SessionId, AgentError> {
        new_session_id().map_err(|e| AgentError::CommandFailed {
            command: "make a session id".into(),
            message: e.to_string(),
        })
    }

    /// Runs one headless turn: prompt on stdin, events parsed and streamed, output appended to
    /// the log, the end classified, what it used reported.
    ///
    /// Claude Code prices a turn only in its final `result`, so the turn's usage reaches the
    /// sink once, at the end: a budget is checked against a Claude Code turn when it ends, not
    /// at each of its steps.
    fn turn(
        &self,
        t: &Turn<'_>,
        sink: &mut dyn EventSink,
    ) -> Result<(EventLog, RunOutcome, Option<i32>, Option<TurnUsage>), AgentError> {
        // Checked here: a missing cwd would otherwise look like a missing program.
        if !t.dir.is_dir() {
            return Err(AgentError::Io {
                action: "run claude in",
                path: t.dir.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let tmp = self.opts.state_dir.join("tmp");
        kugetsu_core::storage::ensure_dir(&tmp).map_err(|e| AgentError::Io {
            action: "create",
            path: tmp.clone(),
            source: std::io::Error::other(e),
        })?;
        let args = turn_args(t.start, self.opts.model.as_deref(), t.limits.spend_cap);
        let mut log = RunLog::open(t.log_path)?;
        let header =
            format!("=== {} claude {} (in {})\n", unix_now(), shown(&args), t.dir.display());
        log.line(&header);
        let cmd = self.command(&args, t.dir, t.env, Io::PipedStdin);
        let secret_values = self.sensitive_values(t.env);
        let secrets: Vec<&str> = secret_values.iter().map(String::as_str).collect();
        let mut events = EventLog::for_provider(self.provider().unwrap_or_default());
        let limits = Limits {
            timeout: t.limits.timeout,
            idle: Some(t.limits.idle_timeout.max(self.opts.min_idle)),
            grace: self.opts.kill_grace,
        };
        let stop = &self.opts.interrupt;
        let prompt = Some(t.prompt.as_bytes().to_vec());
        // Cut at the provider's first refusal: Claude Code would retry a 429 for six minutes,
        // holding a slot while every other turn is refused alike.
        let cut = Interrupt::new();
        let ended = supervise::run_cut(cmd, prompt, limits, None, stop, &cut, &mut |seen| {
            let (stream, bytes) = match seen {
                Seen::Spawned(pid) => return sink.spawned(pid),
                Seen::Line(stream, bytes) => (stream, bytes),
            };
            // Secrets never reach the log or the caller, even when the agent prints them.
            let line = redact_line(&String::from_utf8_lossy(bytes), &secrets);
            log.line(&line);
            match stream {
                Stream::Stdout => {
                    for ev in events.stdout_line(&line) {
                        if matches!(ev, AgentEvent::ProviderLimited(_)) {
                            cut.trigger(0);
                        }
                        sink.event(&ev);
                    }
                }
                Stream::Stderr => events.stderr_line(&line),
            }
        })
        .map_err(|e| self.spawn_error(e.into_io()))?;
        let (outcome, code) = classify(ended, &events, stop);
        let spend = events.turn_spend(t.spent_before);
        let usage = spend.map(|s| s.turn_usage());
        if let Some(usage) = usage {
            sink.event(&AgentEvent::Usage { usage });
        }
        let spent = match spend {
            Some(Spend { cost_usd, usage }) => format!(
                " (tokens {}{})",
                usage.total(),
                cost_usd.map(|c| format!(", ${c:.4}")).unwrap_or_default()
            ),
            None => String::new(),
        };
        let footer = format!("=== {} {}{spent}\n", unix_now(), outcome.describe());
        log.line(&footer);
        log.finish()?;
        Ok((events, outcome, code, usage))
    }

    /// The secret values of the driver's env and the agent's env, and the values it was told
    /// to mask too.
    pub(super) fn sensitive_values(&self, env: &AgentEnv) -> Vec<String> {
        kugetsu_core::run_log::sensitive_values(&self.env, env, &self.opts.also_mask)
    }
}

fn shown(args: &[OsString]) -> String {
    args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
