//! The seam between the orchestration and the coding agent: what kugetsu needs from an agent.
//!
//! Real agents have sharp edges (forks that hang in another directory, runs that exit 0 after a
//! rejected permission, runs that hang silently). Each driver absorbs its agent's, and its
//! crate tells them; core only sees sessions, runs, typed events and a classified
//! [`RunOutcome`]. The in-memory fake in [`crate::testing`] implements the same
//! trait for fast library-level tests.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pause::ProviderLimit;
use crate::usage::TurnUsage;
use crate::usage::Usd;
use crate::usage::budget::{BudgetKind, Exhausted};

/// An agent session id (such as `ses_...`). Validated so it is safe in an argv, a
/// file and SQL.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

/// A session id that is empty, too long, or holds characters outside `[A-Za-z0-9_-]`.
#[derive(Debug, thiserror::Error)]
#[error("invalid session id {id:?}: only letters, digits, '_' and '-' (1 to 128) are allowed")]
pub struct InvalidSessionId {
    /// The rejected text.
    pub id: String,
}

impl SessionId {
    /// Validates and wraps an id.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidSessionId> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= 128
            && !id.starts_with('-')
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok { Ok(SessionId(id)) } else { Err(InvalidSessionId { id }) }
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SessionId {
    type Error = InvalidSessionId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        SessionId::new(value)
    }
}
impl From<SessionId> for String {
    fn from(value: SessionId) -> Self {
        value.0
    }
}
impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

/// Environment variables handed to an agent process (from the env files). `Debug` masks the
/// values of sensitive keys so they cannot leak through a log line.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AgentEnv(pub BTreeMap<String, String>);

impl AgentEnv {
    /// The values to cut out of anything shown or logged (see [`crate::secrets::secret_values`]).
    pub fn secret_values(&self) -> Vec<String> {
        crate::secrets::secret_values(self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

impl fmt::Debug for AgentEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, crate::secrets::mask_value(k, v))))
            .finish()
    }
}

/// How an agent session is created at `init`.
#[derive(Debug, Clone)]
pub struct CreateSessionRequest {
    /// Session title (`kugetsu base`, `kugetsu pm-agent`).
    pub title: String,
    /// The priming prompt (the agent's instructions).
    pub prompt: String,
    /// Directory the session lives in.
    pub dir: PathBuf,
    /// Environment for the agent process.
    pub env: AgentEnv,
    /// Through the TUI on the user's terminal (the spec's way) instead of headless.
    pub interactive: bool,
    /// Limits of the priming run.
    pub limits: RunLimits,
    /// Where the run's whole output is appended.
    pub log_path: PathBuf,
}

/// How to fork the base session for an issue.
#[derive(Debug, Clone)]
pub struct ForkRequest {
    /// The session to fork.
    pub base: SessionId,
    /// Directory the fork must really run in (the worktree).
    pub dir: PathBuf,
    /// Title for the new session.
    pub title: String,
    /// Environment for any helper process the fork needs.
    pub env: AgentEnv,
}

/// Wall-clock limits of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Kill the run (its whole process group) after this long.
    pub timeout: Duration,
    /// Kill the run if, for this long, it prints nothing and its processes (the agent and every
    /// command it started) use no CPU or I/O worth counting (an agent can hang silently).
    pub idle_timeout: Duration,
    /// The most the turn may spend: what is left of the tightest budget when it starts
    /// (`None`: no budget). A driver whose agent can stop itself at a spending cap gives it
    /// this one, so that a turn whose cost is only told at its end cannot run past a budget;
    /// the orchestrator stops the others at the step whose usage reaches a budget.
    pub spend_cap: Option<crate::usage::Usd>,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            timeout: Duration::from_secs(60 * 60),
            idle_timeout: Duration::from_secs(15 * 60),
            spend_cap: None,
        }
    }
}

/// One turn of an existing session.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The session to continue.
    pub session: SessionId,
    /// The directory the session lives in.
    pub dir: PathBuf,
    /// The message, delivered byte-exact.
    pub prompt: String,
    /// Environment for the agent process.
    pub env: AgentEnv,
    /// Time limits.
    pub limits: RunLimits,
    /// Where the run's whole output is appended.
    pub log_path: PathBuf,
}

/// State of a tool call in a [`AgentEvent::ToolUse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    /// The tool ran.
    Completed,
    /// The tool failed or was refused.
    Error,
    /// Anything else the agent reports.
    Other,
}

/// A typed event from a running agent, for progress display and outcome classification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// A step began.
    StepStart,
    /// The agent said something.
    Text {
        /// The whole text.
        text: String,
    },
    /// The agent's reasoning (only when asked for).
    Reasoning {
        /// What it reasoned, as the agent printed it.
        text: String,
    },
    /// A tool call finished or failed.
    ToolUse {
        /// Tool name (`bash`, `write`, ...).
        tool: String,
        /// Its state.
        status: ToolStatus,
        /// A one-line title of the call, if given.
        title: Option<String>,
        /// The error, if it failed.
        error: Option<String>,
    },
    /// A step ended.
    StepFinish {
        /// `stop` or `tool-calls`.
        reason: String,
        /// Total tokens of the step, if reported.
        tokens: Option<u64>,
    },
    /// A permission was rejected (headless runs auto-reject asks).
    PermissionRejected {
        /// What was asked (`external_directory (/etc/*)`, or the tool name).
        permission: String,
    },
    /// The agent reported an error.
    Error {
        /// Error class (`APIError`, ...).
        name: String,
        /// Its message.
        message: String,
    },
    /// What a step just used, as the agent reported it (one event per step, not a running
    /// total): how a running turn's spend is known, and a budget enforced at the next step.
    Usage {
        /// The step's usage.
        usage: TurnUsage,
    },
    /// The model's provider refused for a rate limit or a quota (see [`crate::pause`]); the
    /// driver then stops the turn, which ends [`RunOutcome::RateLimited`].
    ProviderLimited(ProviderLimit),
}

impl AgentEvent {
    /// Every text the event can show a person (what masking must have cleaned): the words of
    /// its fields, not its kind.
    pub fn texts(&self) -> Vec<&str> {
        match self {
            AgentEvent::Text { text } | AgentEvent::Reasoning { text } => vec![text],
            AgentEvent::ToolUse { tool, title, error, .. } => {
                [Some(tool.as_str()), title.as_deref(), error.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect()
            }
            AgentEvent::StepFinish { reason, .. } => vec![reason],
            AgentEvent::PermissionRejected { permission } => vec![permission],
            AgentEvent::Error { name, message } => vec![name, message],
            AgentEvent::StepStart | AgentEvent::Usage { .. } => Vec::new(),
            AgentEvent::ProviderLimited(limit) => vec![&limit.provider, &limit.message],
        }
    }
}

/// Receives what a run does while it runs.
pub trait EventSink {
    /// The agent process started with this pid (its process group id too).
    fn spawned(&mut self, _pid: u32) {}
    /// One event.
    fn event(&mut self, _event: &AgentEvent) {}
}

/// An [`EventSink`] that ignores everything.
pub struct NoEvents;
impl EventSink for NoEvents {}

impl EventSink for Vec<AgentEvent> {
    fn event(&mut self, event: &AgentEvent) {
        self.push(event.clone());
    }
}

/// How a run ended, as recorded in the session file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RunOutcome {
    /// The turn finished normally.
    Completed,
    /// An error event or a non-zero exit.
    Failed {
        /// What went wrong.
        message: String,
    },
    /// A permission was rejected, so the work is not done even if the exit was 0.
    Blocked {
        /// Which permission.
        permission: String,
    },
    /// Killed at the wall-clock timeout.
    TimedOut {
        /// Seconds it ran.
        after_secs: u64,
    },
    /// Killed after the idle timeout with nothing to show it was working: no output and, when
    /// `processes_idle`, no CPU time or I/O worth counting in any of the agent's processes
    /// either. (An agent may print a tool's event only when the tool finishes, so silence alone
    /// can be a long build at work.)
    Hung {
        /// Seconds of silence: with `processes_idle`, the seconds in which neither output nor
        /// work was seen (the output may have stopped earlier); else seconds without output.
        silent_secs: u64,
        /// The agent's processes were watched and seen idle too. Absent from records written
        /// before kugetsu watched them, and where they cannot be measured (no `/proc`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        processes_idle: bool,
        /// The last tool call that finished before the hang, as `tool` or ``tool `title` ``
        /// (for bash, the title is the command). A tool reported only once it has finished
        /// leaves the one that was running when the run hung unknown.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_tool: Option<String>,
    },
    /// Stopped because kugetsu was asked to stop (Ctrl-C, SIGTERM, a hang-up) while the turn
    /// ran; the agent's processes were killed. `continue` resumes the session.
    Interrupted {
        /// The signal, as people read it (`SIGINT`, `SIGTERM`, `SIGHUP`).
        signal: String,
    },
    /// Stopped at a step because a budget was reached (see [`crate::usage::budget`]); the
    /// agent's processes were killed as on Ctrl-C. `continue` resumes the session once the
    /// budget allows.
    OverBudget {
        /// Which budget.
        budget: BudgetKind,
        /// Its limit.
        limit_usd: Usd,
        /// What had been spent against it.
        spent_usd: Usd,
    },
    /// Stopped because the model's provider refused for a limit (see [`crate::pause`]): not
    /// done, and not failed either. `continue` and the queue run it again once the provider's
    /// pause ends; the queue does not count the attempt.
    RateLimited(ProviderLimit),
}

impl RunOutcome {
    /// Whether the turn did what was asked.
    pub fn is_success(&self) -> bool {
        matches!(self, RunOutcome::Completed)
    }
    /// A one-line description.
    pub fn describe(&self) -> String {
        match self {
            RunOutcome::Completed => "completed".into(),
            RunOutcome::Failed { message } => format!("failed: {message}"),
            RunOutcome::Blocked { permission } => {
                format!("blocked: permission rejected: {permission}")
            }
            RunOutcome::TimedOut { after_secs } => format!("timed out after {after_secs}s"),
            RunOutcome::Hung { silent_secs, processes_idle, last_tool } => {
                let what = if *processes_idle {
                    "no output and no CPU or I/O in the agent's processes"
                } else {
                    "no output"
                };
                // Seconds up to two minutes, then minutes (and the odd seconds).
                let span = match (silent_secs / 60, silent_secs % 60) {
                    _ if *silent_secs < 120 => format!("{silent_secs}s"),
                    (m, 0) => format!("{m} min"),
                    (m, s) => format!("{m} min {s}s"),
                };
                let mut line = format!("hung: {what} for {span}");
                if let Some(tool) = last_tool {
                    line.push_str("; last finished tool: ");
                    line.push_str(tool);
                } else if *processes_idle {
                    line.push_str("; no tool call finished in this run");
                }
                line
            }
            RunOutcome::Interrupted { signal } => format!("interrupted by {signal}"),
            RunOutcome::OverBudget { budget, limit_usd, spent_usd } => {
                let spent =
                    Exhausted { budget: *budget, limit_usd: *limit_usd, spent_usd: *spent_usd };
                format!("over budget: {spent}")
            }
            RunOutcome::RateLimited(limit) => limit.describe(),
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The session the run drove (for a created session, its new id).
    pub session: SessionId,
    /// How it ended.
    pub outcome: RunOutcome,
    /// The process's exit code, if it exited by itself.
    pub exit_code: Option<i32>,
    /// What the turn used, as the agent reported it; `None` when it reported nothing (unknown,
    /// which is not 0).
    pub usage: Option<TurnUsage>,
}

/// A session as the agent lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSessionInfo {
    /// Its id.
    pub id: SessionId,
    /// Its title.
    pub title: String,
    /// The directory it runs in.
    pub directory: PathBuf,
}

/// Why the driver could not do what was asked (as opposed to a run that ended badly, which is a
/// [`RunOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent program could not be found or started.
    #[error("cannot run the agent program {program}")]
    Spawn {
        /// The program as configured or found on `PATH`.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The agent does not know this session.
    #[error("agent session {id} not found")]
    SessionNotFound {
        /// The session asked for.
        id: SessionId,
    },
    /// An interactive session needs a terminal.
    #[error("creating a session interactively needs a terminal")]
    NeedsTerminal,
    /// The agent printed something the driver could not understand.
    #[error("unexpected output from `{command}`: {detail}")]
    Protocol {
        /// The agent subcommand.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// An agent command failed.
    #[error("`{command}` failed: {message}")]
    CommandFailed {
        /// The agent subcommand.
        command: String,
        /// Its error output, first line.
        message: String,
    },
    /// A run could not produce a session (for `create_session`: no session id was printed).
    #[error("the agent run did not produce a session: {}", .outcome.describe())]
    NoSession {
        /// How the run ended.
        outcome: RunOutcome,
    },
    /// A stop was asked for (see [`crate::interrupt`]) while a helper command ran; what it
    /// was doing was stopped.
    #[error("interrupted by {signal}")]
    Interrupted {
        /// The signal, as people read it.
        signal: String,
    },
    /// An I/O error on a path the driver manages (a log file, a temp file).
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The run log or temp file it is about.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What [`AgentDriver::repair_session`] found and did, in the driver's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// What was wrong, completing "session <id> ...".
    pub problem: String,
    /// What was done about it.
    pub done: String,
}

/// What [`AgentDriver::keep_warm`] started (its `Drop` stops it).
pub trait Warm: Send {
    /// When a fork last used it (or when it started, if none has), `None` once it is gone:
    /// whoever keeps it only for a while stops it after a time unused.
    fn last_used(&self) -> Option<std::time::SystemTime>;
}

/// What [`AgentDriver::keep_warm`] started, stopped when dropped. Opaque: only the driver
/// knows what it holds.
pub struct WarmGuard(Box<dyn Warm>);

impl WarmGuard {
    /// Holds `what` until the guard is dropped.
    pub fn new(what: impl Warm + 'static) -> Self {
        WarmGuard(Box::new(what))
    }

    /// See [`Warm::last_used`].
    pub fn last_used(&self) -> Option<std::time::SystemTime> {
        self.0.last_used()
    }
}

impl fmt::Debug for WarmGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WarmGuard")
    }
}

/// Drives the coding agent.
pub trait AgentDriver: Send + Sync {
    /// The major version of the agent this driver speaks. Recorded in the session files of the
    /// sessions it runs: an agent's newer major may continue an older one's sessions, and a
    /// session last run by a newer major is refused (the older agent would not see its newer
    /// turns). Default: 1.
    fn agent_major(&self) -> u32 {
        1
    }

    /// Creates a session (base or PM agent) by running its priming prompt, through the TUI when
    /// `req.interactive`, else headless. Returns the new session's id in the report.
    fn create_session(
        &self,
        req: &CreateSessionRequest,
        sink: &mut dyn EventSink,
    ) -> Result<RunReport, AgentError>;

    /// Makes a new session with `req.base`'s whole history that really runs in `req.dir`, with
    /// the base's permission rules kept.
    fn fork_session(&self, req: &ForkRequest) -> Result<SessionId, AgentError>;

    /// Runs one turn of a session, streaming events into `sink`, under `req.limits`.
    fn run(&self, req: &RunRequest, sink: &mut dyn EventSink) -> Result<RunReport, AgentError>;

    /// Deletes a session; [`AgentError::SessionNotFound`] if it does not exist.
    fn delete_session(&self, id: &SessionId) -> Result<(), AgentError>;

    /// Whether the agent knows the session.
    fn session_exists(&self, id: &SessionId) -> Result<bool, AgentError>;

    /// Sessions of the project that `dir` belongs to.
    fn list_sessions(&self, dir: &Path) -> Result<Vec<AgentSessionInfo>, AgentError>;

    /// Repairs what would make a headless run of session `id` hang and that the agent's own
    /// tools may have broken (such as a fork that lost the permission rules that deny its
    /// interactive tools). `doctor --fix-permissions` calls it for every session.
    /// Returns what was wrong and done, or `None` when nothing needed it; an unknown session is
    /// [`AgentError::SessionNotFound`]. Default: an agent with nothing to repair.
    fn repair_session(&self, id: &SessionId) -> Result<Option<Repair>, AgentError> {
        let _ = id;
        Ok(None)
    }

    /// Gets ready to fork `base` with the agent's environment `env`: what every fork of it
    /// needs may be done here, ahead of [`AgentDriver::fork_session`] (an export of the base,
    /// made once and kept). `refresh` asks to do it anew even if it
    /// was done before (the base may have changed). `init` calls it with `refresh` once the base
    /// exists, `start` while the worktree is being made, `doctor` with `refresh`.
    /// Default: nothing.
    fn prepare_fork(
        &self,
        base: &SessionId,
        env: &AgentEnv,
        refresh: bool,
    ) -> Result<(), AgentError> {
        let _ = (base, env, refresh);
        Ok(())
    }

    /// Keeps the agent warm for forks while the returned guard lives, if the driver can (a server of
    /// the agent that makes forks without a process of their own). The queue daemon holds one while it runs; dropping the guard stops what it
    /// started. `env` is the agent's environment. Default: nothing to keep warm.
    fn keep_warm(&self, env: &AgentEnv) -> Result<Option<WarmGuard>, AgentError> {
        let _ = env;
        Ok(None)
    }

    /// What the agent knows of session `id`, `None` if it does not know it. `doctor` compares
    /// its `directory` (where the agent would run it) with the directory kugetsu recorded; an
    /// empty `directory` means the driver cannot tell. The default answers from
    /// [`AgentDriver::session_exists`] and cannot tell.
    fn session_info(&self, id: &SessionId) -> Result<Option<AgentSessionInfo>, AgentError> {
        Ok(self.session_exists(id)?.then(|| AgentSessionInfo {
            id: id.clone(),
            title: String::new(),
            directory: PathBuf::new(),
        }))
    }

    /// Session `id` whole, as a document another host's agent can make a session of again
    /// ([`AgentDriver::import_session`]): how an issue's history leaves a lost host. The values
    /// of sensitive keys of `env` (and of the driver's own environment) are masked in it, as in
    /// everything kugetsu keeps. Default: an agent that cannot.
    fn export_session(&self, id: &SessionId, env: &AgentEnv) -> Result<String, AgentError> {
        let _ = (id, env);
        Err(AgentError::CommandFailed {
            command: "export".into(),
            message: "this agent cannot export a session".into(),
        })
    }

    /// Makes a new session from `export` (made by [`AgentDriver::export_session`], possibly on
    /// another host) with its whole history, really running in `req.dir` and titled
    /// `req.title`; `req.base` is not used. Returns the new session's id. Default: an agent that
    /// cannot.
    fn import_session(&self, export: &str, req: &ForkRequest) -> Result<SessionId, AgentError> {
        let _ = (export, req);
        Err(AgentError::CommandFailed {
            command: "import".into(),
            message: "this agent cannot import a session".into(),
        })
    }
    /// The model's provider that turns will use, in the words the driver reports a refusal
    /// with ([`AgentEvent::ProviderLimited`]), when it is known before a turn (a model set in
    /// the configuration). A turn whose provider is not known waits on every provider pause
    /// (see [`crate::pause`]). Default: not known.
    fn provider(&self) -> Option<String> {
        None
    }
}
