//! One headless turn, the heart of `create_session` and `run`: `opencode run --format json`
//! with the prompt on stdin (a positional message with spaces would be wrapped in quotes), its
//! events parsed and streamed, its output appended to the run log with secrets masked, its end
//! classified ([`crate::outcome`]).
//!
//! The log is private from creation, like every state file (it holds what the agent printed),
//! and framed by a header (time, argv, directory) and a footer (time, outcome).

use std::ffi::OsString;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use kugetsu_core::agent::{
    AgentEnv, AgentError, AgentEvent, EventSink, RunLimits, RunOutcome, SessionId,
};
use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::pause::ProviderLimit;
use kugetsu_core::run_log::RunLog;
use kugetsu_core::secrets::redact_line;
use kugetsu_process::Io;
use kugetsu_process::supervise::{self, Ended, Limits, Seen, Stdin, Stream};

use super::OpencodeDriver;
use super::helper::os;
use super::options::OpencodeOptions;
use crate::events::EventLog;
use crate::outcome::classify;

/// Says how a turn ended from how its process ended and what it printed: [`classify`] for
/// 1.x; the 2.x driver reads the session afterwards.
pub(crate) type Judge<'a> = &'a dyn Fn(Ended, &EventLog) -> (RunOutcome, Option<i32>);

/// What one headless turn needs.
#[derive(Clone, Copy)]
pub(crate) struct Turn<'a> {
    pub(crate) args: &'a [OsString],
    pub(crate) dir: &'a Path,
    pub(crate) env: &'a AgentEnv,
    pub(crate) prompt: &'a str,
    pub(crate) limits: RunLimits,
    pub(crate) log_path: &'a Path,
    /// How the end is judged; `None` is [`classify`].
    pub(crate) judge: Option<Judge<'a>>,
    /// A process whose descendants run the turn's tools, when not the run's own (2.x's serve):
    /// their work counts as the run's in the idle judgement.
    pub(crate) tools_under: Option<u32>,
    /// Asked every few seconds while the turn runs (from another thread) whether the
    /// provider refuses it (2.x reads its session); a refusal cuts the run.
    pub(crate) watch: Option<Watch<'a>>,
    /// What must be done before the prompt is sent, done while the run's process starts (2.x:
    /// the session's move, rules and environment on the serve, while its client boots). The
    /// prompt is written once it succeeded; an error ends the run before any prompt, and is
    /// the turn's.
    pub(crate) ready: Option<Ready<'a>>,
}

/// See [`Turn::ready`].
pub(crate) type Ready<'a> = &'a (dyn Fn() -> Result<(), AgentError> + Sync);

/// See [`Turn::watch`].
pub(crate) type Watch<'a> = &'a (dyn Fn() -> Option<ProviderLimit> + Sync);

/// How often [`Turn::watch`] is asked: soon enough that a refused turn holds its slot a few
/// seconds only, rarely enough that reading a long session's messages costs nothing to speak of.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The stream seen, the outcome, the exit code.
pub(crate) type TurnResult = (EventLog, RunOutcome, Option<i32>);

impl OpencodeDriver {
    /// The arguments of `opencode run` for an existing session or a new titled one.
    pub(super) fn run_args(
        &self,
        session: Option<&SessionId>,
        title: Option<&str>,
    ) -> Vec<OsString> {
        // The logs show a provider's refusals, which stdout does not (see `crate::limits`).
        let mut args = os(&["run", "--format", "json", "--print-logs", "--log-level", "ERROR"]);
        if let Some(id) = session {
            args.push(format!("--session={id}").into());
        }
        if let Some(title) = title {
            args.push(format!("--title={title}").into());
        }
        args.extend(self.model_args());
        args
    }

    /// `--model` and `--agent`, when set.
    pub(super) fn model_args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        if let Some(model) = &self.opts.model {
            args.push(format!("--model={model}").into());
        }
        if let Some(agent) = &self.opts.agent {
            args.push(format!("--agent={agent}").into());
        }
        args
    }

    /// Runs one headless turn: prompt on stdin, events parsed and streamed, output appended to
    /// the log, the end classified.
    pub(crate) fn turn(
        &self,
        t: &Turn<'_>,
        sink: &mut dyn EventSink,
    ) -> Result<TurnResult, AgentError> {
        let Turn { args, dir, env, prompt, limits, log_path, judge, tools_under, watch, ready } =
            *t;
        // Checked here: a missing cwd would otherwise look like a missing opencode program.
        if !dir.is_dir() {
            return Err(AgentError::Io {
                action: "run opencode in",
                path: dir.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let mut log = RunLog::open(log_path)?;
        let header = format!(
            "=== {} opencode {} (in {})\n",
            unix_now(),
            args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
            dir.display()
        );
        log.line(&header);
        let cmd = self.command(args, Some(dir), Some(env), Io::PipedStdin);
        let secret_values = sensitive_values(&self.opts, env);
        let secrets: Vec<&str> = secret_values.iter().map(String::as_str).collect();
        let mut events = EventLog::default();
        let plimits = Limits {
            timeout: limits.timeout,
            idle: Some(limits.idle_timeout),
            grace: self.opts.kill_grace,
        };
        let stop = &self.opts.interrupt;
        let prompt = prompt.as_bytes().to_vec();
        // Cut by a refusal seen in the output, or by the watcher, or by a failed `ready`.
        let cut = Interrupt::new();
        let (send_prompt, prompt_later) = std::sync::mpsc::channel();
        // A failed `ready` keeps the prompt's pipe open here until the run is over, so that the
        // agent never reads an empty prompt before it is stopped.
        let unready: std::sync::Mutex<Option<(AgentError, _)>> = std::sync::Mutex::new(None);
        let watched: std::sync::Mutex<Option<ProviderLimit>> = std::sync::Mutex::new(None);
        let done = std::sync::atomic::AtomicBool::new(false);
        let ended = std::thread::scope(|scope| {
            let watcher = watch.map(|watch| {
                scope.spawn(|| {
                    // Not at once: there is nothing to see before the turn has begun, and a
                    // read then competes with the turn's setup on a serve still warming up.
                    loop {
                        std::thread::park_timeout(WATCH_EVERY);
                        if done.load(std::sync::atomic::Ordering::SeqCst) {
                            return;
                        }
                        if let Some(limit) = watch() {
                            *watched.lock().unwrap_or_else(|e| e.into_inner()) = Some(limit);
                            cut.trigger(0);
                            return;
                        }
                    }
                })
            });
            let stdin = match ready {
                None => Stdin::Now(Some(prompt)),
                Some(ready) => {
                    let (cut, unready) = (&cut, &unready);
                    scope.spawn(move || match ready() {
                        Ok(()) => drop(send_prompt.send(prompt)),
                        Err(e) => {
                            *unready.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some((e, send_prompt));
                            cut.trigger(0);
                        }
                    });
                    Stdin::Later(prompt_later)
                }
            };
            let ended = self.supervised(cmd, stdin, plimits, tools_under, &cut, &mut |seen| {
                let (stream, bytes) = match seen {
                    Seen::Spawned(pid) => return sink.spawned(pid),
                    Seen::Line(stream, bytes) => (stream, bytes),
                };
                // Secrets never reach the log or the caller, even when the agent prints them
                // (masked on the decoded JSON, so no escape hides one).
                let line = redact_line(&String::from_utf8_lossy(bytes), &secrets);
                log.line(&line);
                match stream {
                    Stream::Stdout => {
                        for ev in events.stdout_line(&line) {
                            sink.event(&ev);
                        }
                    }
                    Stream::Stderr => {
                        if let Some(ev) = events.stderr_line(&line) {
                            sink.event(&ev);
                            if matches!(ev, AgentEvent::ProviderLimited(_)) {
                                cut.trigger(0);
                            }
                        }
                    }
                }
            });
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            // The turn is over: the watcher must not hold it up for its next look.
            if let Some(w) = &watcher {
                w.thread().unpark();
            }
            ended
        })
        .map_err(|e| self.spawn_error(e.into_io()))?;
        if let Some((e, _pipe)) = unready.into_inner().unwrap_or_else(|e| e.into_inner()) {
            log.line(&format!("=== {} not run: {e}\n", unix_now()));
            log.finish()?;
            return Err(e);
        }
        if let Some(limit) = watched.into_inner().unwrap_or_else(|e| e.into_inner()) {
            let ev = events.limited(limit);
            sink.event(&ev);
        }
        let (outcome, code) = match judge {
            Some(judge) => judge(ended, &events),
            None => classify(ended, &events, stop),
        };
        let footer = format!("=== {} {}\n", unix_now(), outcome.describe());
        log.line(&footer);
        log.finish()?;
        Ok((events, outcome, code))
    }
}

impl OpencodeDriver {
    /// [`supervise::run_cut`] with the driver's stop request.
    fn supervised(
        &self,
        cmd: std::process::Command,
        stdin: Stdin,
        limits: Limits,
        tools_under: Option<u32>,
        cut: &Interrupt,
        seen: &mut dyn FnMut(Seen<'_>),
    ) -> Result<supervise::Ended, supervise::Error> {
        supervise::run_cut(cmd, stdin, limits, tools_under, &self.opts.interrupt, cut, seen)
    }
}

/// The secret values of the base env and the agent's env, by the one rule of
/// [`kugetsu_core::secrets::secret_values`], and the values the driver was told to mask too.
pub(crate) fn sensitive_values(opts: &OpencodeOptions, env: &AgentEnv) -> Vec<String> {
    kugetsu_core::run_log::sensitive_values(&opts.base_env, env, &opts.also_mask)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
