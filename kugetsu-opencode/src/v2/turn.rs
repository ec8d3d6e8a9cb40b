//! Turns: `opencode run --server URL -s ID --format json`, the prompt on stdin, supervised like
//! a 1.x run ([`crate::driver`]'s turn). The session's tools get the environment a 1.x run
//! would have: it is set on the session before each turn, since a run through a serve does not
//! hand its own to a session made over HTTP (its tools saw the serve's: checked on 2.1.2). The
//! tools run under the serve, whose descendants therefore count in the idle judgement.
//!
//! opencode 2's stream is lossy at its end: the last `step_finish` is usually missing, so the
//! end of a turn is read from the session once the run has exited (`outcome`: `succeeded`,
//! `failed` or `interrupted`). A run killed by kugetsu (stop, hang, timeout) leaves the turn
//! running in the serve (only SIGINT of the client interrupts it there), so the session is
//! interrupted over HTTP. `-s ID` of an unknown session makes a new empty one instead of
//! failing, so the session is looked up before the run.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use kugetsu_core::agent::{
    AgentEnv, AgentError, AgentEvent, CreateSessionRequest, EventSink, RunLimits, RunOutcome,
    RunReport, RunRequest, SessionId,
};
use kugetsu_core::pause::ProviderLimit;
use kugetsu_core::usage::{Tokens, TurnUsage, Usd};
use kugetsu_process::Io;
use kugetsu_process::supervise::{self, Ended};
use serde_json::{Value, json};

use super::OpencodeV2Driver;
use super::http::Client;
use super::serve::Registration;
use super::sessions::{Stored, http_error, session_path};
use crate::driver::turn::Turn;
use crate::events::EventLog;
use crate::outcome::classify;

/// How long a run's turn may take to be seen idle by the serve after the run exited.
const SETTLE: Duration = Duration::from_secs(10);

/// One turn's request, whatever made it.
struct TurnOf<'a> {
    session: &'a SessionId,
    dir: &'a Path,
    env: &'a AgentEnv,
    prompt: &'a str,
    limits: RunLimits,
    log_path: &'a Path,
    /// Whether the session is one kugetsu recorded (looked up and checked before the prompt
    /// goes, and what it had used read then), not one just made with nothing used yet.
    recorded: bool,
}

impl OpencodeV2Driver {
    /// A session made over HTTP, then its first turn.
    pub(super) fn create_headless(
        &self,
        req: &CreateSessionRequest,
        sink: &mut dyn EventSink,
    ) -> Result<RunReport, AgentError> {
        let session = self.new_session(&req.dir, &req.title)?;
        let t = TurnOf {
            session: &session,
            dir: &req.dir,
            env: &req.env,
            prompt: &req.prompt,
            limits: req.limits,
            log_path: &req.log_path,
            recorded: false,
        };
        let (outcome, exit_code, usage) = self.turn(&t, sink)?;
        Ok(RunReport { session, outcome, exit_code, usage })
    }

    /// One more turn of a session kugetsu recorded in `req.dir`.
    pub(super) fn run_session(
        &self,
        req: &RunRequest,
        sink: &mut dyn EventSink,
    ) -> Result<RunReport, AgentError> {
        let t = TurnOf {
            session: &req.session,
            dir: &req.dir,
            env: &req.env,
            prompt: &req.prompt,
            limits: req.limits,
            log_path: &req.log_path,
            recorded: true,
        };
        let (outcome, exit_code, usage) = self.turn(&t, sink)?;
        Ok(RunReport { session: req.session.clone(), outcome, exit_code, usage })
    }

    /// Session `id` as stored, once it is where kugetsu recorded it (`dir`): an unknown session
    /// is not run (`-s ID` of one would make a new empty session), nor one elsewhere.
    fn recorded(&self, id: &SessionId, dir: &Path) -> Result<Stored, AgentError> {
        let Some(stored) = self.stored(id)? else {
            return Err(AgentError::SessionNotFound { id: id.clone() });
        };
        if !same_dir(&stored.directory, dir) {
            return Err(AgentError::CommandFailed {
                command: "run".into(),
                message: format!(
                    "session {id} lives in {}, not in {}; opencode runs a session only in its own \
                     directory",
                    stored.directory.display(),
                    dir.display()
                ),
            });
        }
        Ok(stored)
    }

    /// The environment of an opencode client of `reg`: the agent's, and the serve's password.
    fn client_env(reg: &Registration, env: &AgentEnv) -> AgentEnv {
        let mut env = env.clone();
        env.0.insert("OPENCODE_PASSWORD".into(), reg.password.clone());
        env
    }

    fn turn(
        &self,
        t: &TurnOf<'_>,
        sink: &mut dyn EventSink,
    ) -> Result<(RunOutcome, Option<i32>, Option<TurnUsage>), AgentError> {
        let reg = self.serve()?;
        let client = reg.client(self.options().helper_timeout);
        let mut args: Vec<OsString> = ["run", "--server", &reg.url, "-s", t.session.as_str()]
            .iter()
            .map(OsString::from)
            .collect();
        args.extend(["--format", "json"].map(OsString::from));
        args.extend(self.model_args());
        let env = Self::client_env(&reg, t.env);
        // Done while the client starts (its boot is about as long as a turn on a warm serve).
        let before = std::sync::Mutex::new(None);
        let ready = || {
            if t.recorded {
                let stored = self.recorded(t.session, t.dir)?;
                *before.lock().unwrap_or_else(|e| e.into_inner()) = Some(stored.raw);
            }
            self.set_environment(&client, t.session, t.dir, t.env)
        };
        let stop = &self.options().interrupt;
        let after = std::cell::RefCell::new(None);
        let since_ms =
            i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
                .unwrap_or(0);
        let judge = |ended: Ended, events: &EventLog| {
            judge(&client, t.session, ended, events, stop, &mut after.borrow_mut(), since_ms)
        };
        let watch_client = reg.client(self.options().helper_timeout);
        let watch = || refusal(&watch_client, t.session, since_ms);
        let (events, outcome, code) = self.v1.turn(
            &Turn {
                args: &args,
                dir: t.dir,
                env: &env,
                prompt: t.prompt,
                limits: t.limits,
                log_path: t.log_path,
                judge: Some(&judge),
                tools_under: Some(reg.pid),
                watch: Some(&watch),
                ready: Some(&ready),
            },
            sink,
        )?;
        // The session's totals say what the whole turn used; a turn killed before they were
        // read has only its stream's steps.
        let usage = match after.into_inner() {
            Some(after) => {
                let before = before.into_inner().unwrap_or_else(|e| e.into_inner());
                let usage = usage_between(before.as_ref(), &after);
                note_usage(t.log_path, &usage);
                Some(usage)
            }
            None => events.usage(),
        };
        Ok((outcome, code, usage))
    }

    /// Gives the session exactly the environment a 1.x run of it would have (the base env and
    /// the agent's, as the run's command gets them), without the serve's password: a run
    /// through a serve does not hand its own environment to a session made over HTTP, whose
    /// tools would see the serve's instead.
    fn set_environment(
        &self,
        client: &Client,
        session: &SessionId,
        dir: &Path,
        env: &AgentEnv,
    ) -> Result<(), AgentError> {
        let cmd = self.v1.command(&[], Some(dir), Some(env), Io::PipedStdin);
        let variables: serde_json::Map<String, Value> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), Value::from(v?.to_str()?))))
            .collect();
        let body = json!({"variables": variables});
        client
            .put(&format!("{}/environment", session_path(session)), &body)
            .map_err(|e| http_error(e, Some(session)))?;
        Ok(())
    }

    /// `-m` and `--agent`, when set.
    fn model_args(&self) -> Vec<OsString> {
        let opts = self.options();
        let mut args = Vec::new();
        if let Some(model) = &opts.model {
            args.extend([OsString::from("-m"), model.into()]);
        }
        if let Some(agent) = &opts.agent {
            args.extend([OsString::from("--agent"), agent.into()]);
        }
        args
    }

    /// The session made over HTTP (title, deny rules, directory), then the TUI attached to
    /// it on the serve (`--server URL -s ID --prompt`).
    pub(super) fn create_interactive(
        &self,
        req: &CreateSessionRequest,
    ) -> Result<RunReport, AgentError> {
        if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
            return Err(AgentError::NeedsTerminal);
        }
        let session = self.new_session(&req.dir, &req.title)?;
        let reg = self.serve()?;
        let args: Vec<OsString> =
            ["--server", &reg.url, "-s", session.as_str(), &format!("--prompt={}", req.prompt)]
                .iter()
                .map(OsString::from)
                .collect();
        let client = reg.client(self.options().helper_timeout);
        self.set_environment(&client, &session, &req.dir, &req.env)?;
        let env = Self::client_env(&reg, &req.env);
        let mut cmd = self.v1.command(&args, Some(&req.dir), Some(&env), Io::Terminal);
        let child = cmd.spawn().map_err(|e| self.v1.spawn_error(e))?;
        let opts = self.options();
        let status = supervise::wait_foreground(child, opts.kill_grace, &opts.interrupt)
            .map_err(|e| self.v1.spawn_error(e.into_io()))?;
        if opts.interrupt.is_triggered() {
            let _ = client.post(&format!("{}/interrupt", session_path(&session)), &json!({}));
            // Made for this init, whose caller never learns its id: it goes with the init.
            if let Err(e) = self.delete(&session) {
                tracing::warn!(session = %session, error = %e, "cannot remove the session");
            }
            return Err(AgentError::Interrupted { signal: opts.interrupt.describe() });
        }
        // Ctrl-C is how a user leaves the TUI: a quit, not a failed priming.
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
        // What a TUI turn cost is not read: unknown.
        Ok(RunReport { session, outcome, exit_code: status.code(), usage: None })
    }
}

/// The provider's refusal of the turn that began at `since_ms`, as the session's newest
/// messages show it (see [`crate::limits`]); `None` also when they cannot be read.
fn refusal(client: &Client, session: &SessionId, since_ms: i64) -> Option<ProviderLimit> {
    let messages = client.get(&format!("{}/message", session_path(session))).ok()?;
    crate::limits::from_v2_messages(&messages, since_ms)
}

/// The outcome of a turn from how its run ended and the session afterwards.
fn judge(
    client: &Client,
    session: &SessionId,
    ended: Ended,
    events: &EventLog,
    stop: &kugetsu_core::interrupt::Interrupt,
    after: &mut Option<Value>,
    since_ms: i64,
) -> (RunOutcome, Option<i32>) {
    let Ended::Exited(status) = ended else {
        // The run was killed; its turn goes on in the serve unless interrupted there.
        if let Err(e) = client.post(&format!("{}/interrupt", session_path(session)), &json!({})) {
            tracing::warn!(%session, error = %e, "cannot interrupt the session on the serve");
        }
        return classify(ended, events, stop);
    };
    let code = status.code();
    let rejected = events.rejected_permissions();
    if !rejected.is_empty() {
        return (RunOutcome::Blocked { permission: rejected.join(", ") }, code);
    }
    if !status.success() {
        // A quota error fails the turn at once (2.x does not retry it): the session says
        // which provider.
        let refused = events.events.iter().any(
            |e| matches!(e, AgentEvent::Error { name, .. } if crate::limits::is_v2_limit_type(name)),
        );
        if let Some(limit) = refused.then(|| refusal(client, session, since_ms)).flatten() {
            return (RunOutcome::RateLimited(limit), code);
        }
        return (crate::outcome::classify_exit(status, events), code);
    }
    settle(client, session);
    let stored = match client.get(&session_path(session)) {
        Ok(v) => Stored::parse_value(v),
        Err(e) => {
            let e = http_error(e, Some(session));
            return (RunOutcome::Failed { message: format!("cannot read the session: {e}") }, code);
        }
    };
    let outcome = match stored.as_ref().ok().and_then(|s| s.outcome.as_deref()) {
        Some("succeeded") => match events.first_error() {
            Some(message) => RunOutcome::Failed { message },
            None => RunOutcome::Completed,
        },
        Some("failed") => RunOutcome::Failed {
            message: events.first_error().unwrap_or_else(|| "the session's turn failed".into()),
        },
        Some("interrupted") => {
            RunOutcome::Failed { message: "the turn was interrupted on the serve".into() }
        }
        other => RunOutcome::Failed {
            message: format!("the session recorded no outcome of the turn ({other:?})"),
        },
    };
    *after = stored.ok().map(|s| s.raw);
    (outcome, code)
}

/// Waits (a little) until the serve no longer lists the session as running: the run can exit
/// before the serve has recorded the turn's end.
fn settle(client: &Client, session: &SessionId) {
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        match client.get("/api/session/active") {
            Ok(Value::Object(active)) if active.contains_key(session.as_str()) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => return,
        }
    }
}

/// What the turn used: the session's totals after it less those before (opencode 2 keeps
/// totals only, and its stream usually lacks the last `step_finish`). A session without a
/// `cost` says nothing of it: unknown.
fn usage_between(before: Option<&Value>, after: &Value) -> TurnUsage {
    let f = |v: Option<&Value>, ptr: &str| v.and_then(|v| v.pointer(ptr)).and_then(Value::as_f64);
    let used =
        |ptr: &str| (f(Some(after), ptr).unwrap_or(0.0) - f(before, ptr).unwrap_or(0.0)).max(0.0);
    // Token counts are whole numbers: the difference of two is one too.
    let n = |ptr: &str| used(ptr) as u64;
    let cost_usd = f(Some(after), "/cost").and_then(|_| Usd::new(used("/cost")));
    let tokens = after.get("tokens").filter(|t| t.is_object()).map(|_| Tokens {
        input: n("/tokens/input"),
        output: n("/tokens/output").saturating_add(n("/tokens/reasoning")),
        cache_read: n("/tokens/cache/read"),
        cache_write: n("/tokens/cache/write"),
    });
    TurnUsage { cost_usd, tokens }
}

/// Appends what the turn cost to the run log.
fn note_usage(log: &Path, usage: &TurnUsage) {
    let line = format!("=== turn usage: {}\n", usage.describe());
    let written =
        kugetsu_core::storage::open_private(log, kugetsu_core::storage::PrivateOpen::Append)
            .map_err(std::io::Error::other)
            .and_then(|mut file| std::io::Write::write_all(&mut file, line.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(log = %log.display(), error = %e, "cannot note the turn's usage");
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let ca = a.canonicalize().unwrap_or_else(|_| a.to_owned());
    let cb = b.canonicalize().unwrap_or_else(|_| b.to_owned());
    ca == cb
}
