//! The orchestration behind every session command: init, start, continue, list, destroy,
//! prune, status and doctor, written once over the [`Worktrees`], [`AgentDriver`] and
//! [`AgentSlots`] seams so the CLI, the daemon and embedding programs share it.
//!
//! Concurrency rules, which hold across processes because they rest on kernel-released locks:
//! - one `start`/`continue`/`destroy` per issue at a time (a per-issue lock; a second one gets
//!   [`OrchestratorError::AlreadyRunning`] at once instead of racing);
//! - at most `max_agents` dev agents at once (the slots; the PM agent takes none);
//! - the index is only rewritten under its lock, so concurrent starts on different issues never
//!   lose each other's entries.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::agent::{
    AgentDriver, AgentEnv, AgentError, CreateSessionRequest, EventSink, ForkRequest, RunLimits,
    RunOutcome, RunRequest, SessionId,
};
use crate::clock::Clock;
use crate::env_file::{EnvFileError, EnvFiles};
use crate::interrupt::Interrupt;
use crate::issue_ref::IssueRef;
use crate::process::Liveness;
use crate::queue::{AgentSlots, QueueError};
use crate::session::{Index, LastRun, SessionFile, SessionKind, SessionState};
use crate::state::StateDir;
use crate::storage::{self, StorageError};
use crate::worktree::{
    RemoveOptions, RepoSource, WorktreeError, WorktreeProgress, WorktreeRequest, Worktrees,
};

mod budget;
mod destroy;
mod doctor;
mod error;
mod init;
mod list;
mod moved;
mod observer;
mod paused;
mod prune;
mod run;

pub use destroy::DestroyReport;
pub use doctor::Finding;
pub use error::OrchestratorError;
pub use init::{InitOptions, InitReport};
pub use list::{ListEntry, SessionView};
pub use moved::MovedHistory;
pub use observer::{TurnEnd, TurnObserver};
pub use prune::PruneReport;
pub use run::{RunSummary, StartOptions};

pub use crate::env_file::{DEFAULT_AGENT, PM_AGENT};

/// Settings resolved by the caller from the config layers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `MAX_CONCURRENT_AGENTS`, asked again while a run waits for a slot.
    pub max_agents: AgentLimit,
    /// Run time limits.
    pub limits: RunLimits,
    /// How long `start`/`continue` wait for a free slot.
    pub slot_wait: Duration,
    /// Ends a wait for an agent slot when triggered. Whoever wires the orchestration hands the
    /// same request to the agent driver (so the agent's turn stops too) and its flag to
    /// [`Orchestrator::start`] (so does a checkout).
    pub interrupt: Interrupt,
    /// Whether a pid recorded in the state directory still runs: an agent's (a run marked
    /// `running` whose agent is gone was abandoned), or a temp file's writer's (`prune` sweeps
    /// the temp files of dead writers).
    pub liveness: Arc<dyn Liveness>,
    /// The `KUGETSU_AGENT` name of the driver handed in: recorded in every session file made,
    /// and a session another driver made is refused ([`OrchestratorError::OtherDriver`]).
    pub driver: String,
    /// `KUGETSU_ISSUE_BUDGET_USD` and `KUGETSU_DAILY_BUDGET_USD` (default: none).
    pub budgets: crate::usage::budget::Budgets,
}

impl Settings {
    /// The default settings (3 agents, default limits, no wait for a slot, a fresh stop
    /// request) with `liveness` judging pids: core reads no `/proc`, so the caller hands it
    /// (`kugetsu_process::SystemLiveness` where agents are real processes).
    pub fn new(liveness: Arc<dyn Liveness>) -> Self {
        Settings {
            max_agents: AgentLimit::Fixed(3),
            limits: RunLimits::default(),
            slot_wait: Duration::from_secs(0),
            interrupt: Interrupt::new(),
            liveness,
            driver: crate::config::DEFAULT_DRIVER.into(),
            budgets: Default::default(),
        }
    }
}

/// How many dev agents may run at once: a number, or a source asked again every time (the CLI
/// re-reads the config, so that raising the limit frees a `start` that waits for a slot).
#[derive(Clone)]
pub enum AgentLimit {
    /// This many.
    Fixed(usize),
    /// Whatever the function says now.
    Live(Arc<dyn Fn() -> usize + Send + Sync>),
}

impl AgentLimit {
    /// The limit now.
    pub fn get(&self) -> usize {
        match self {
            AgentLimit::Fixed(n) => *n,
            AgentLimit::Live(f) => f(),
        }
    }
}

impl From<usize> for AgentLimit {
    fn from(n: usize) -> Self {
        AgentLimit::Fixed(n)
    }
}

impl std::fmt::Debug for AgentLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentLimit::Fixed(n) => write!(f, "Fixed({n})"),
            AgentLimit::Live(_) => write!(f, "Live({})", self.get()),
        }
    }
}

/// Loads the environment an agent gets (env files merged); injected so core never reads the
/// process environment.
pub trait EnvSource: Send + Sync {
    /// Variables for `agent` (`default` for dev agents, `pm-agent` for the PM agent).
    fn agent_env(&self, agent: &str) -> Result<AgentEnv, EnvFileError>;
}

impl EnvSource for EnvFiles {
    fn agent_env(&self, agent: &str) -> Result<AgentEnv, EnvFileError> {
        self.merged(agent)
    }
}

/// The orchestration over its backends. Cheap to clone (everything is shared).
#[derive(Clone)]
pub struct Orchestrator {
    state: StateDir,
    worktrees: Arc<dyn Worktrees>,
    agent: Arc<dyn AgentDriver>,
    slots: Arc<dyn AgentSlots>,
    env: Arc<dyn EnvSource>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    observer: Option<Arc<dyn TurnObserver>>,
    pauses: Arc<dyn crate::pause::Pauses>,
}

/// `status` words, as the spec defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// No index file.
    KugetsuNotInitialized,
    /// Base session not found.
    BaseSessionMissing,
    /// PM agent not found.
    PmAgentMissing,
    /// Everything is initialized.
    Ok,
}

impl Status {
    /// The spec's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::KugetsuNotInitialized => "kugetsu_not_initialized",
            Status::BaseSessionMissing => "base_session_missing",
            Status::PmAgentMissing => "pm_agent_missing",
            Status::Ok => "ok",
        }
    }
}

impl Orchestrator {
    /// Wires the orchestration to its state directory and backends.
    pub fn new(
        state: StateDir,
        worktrees: Arc<dyn Worktrees>,
        agent: Arc<dyn AgentDriver>,
        slots: Arc<dyn AgentSlots>,
        env: Arc<dyn EnvSource>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Self {
        let pauses = Arc::new(crate::pause::FilePauses::new(&state));
        Orchestrator {
            state,
            worktrees,
            agent,
            slots,
            env,
            clock,
            settings,
            observer: None,
            pauses,
        }
    }

    /// Tells `observer` of every turn's start and end.
    pub fn with_observer(mut self, observer: Arc<dyn TurnObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Keeps provider pauses in `pauses` instead of the state directory's `pause.json` (a
    /// shared queue's server, or a wrapper that tells someone).
    pub fn with_pauses(mut self, pauses: Arc<dyn crate::pause::Pauses>) -> Self {
        self.pauses = pauses;
        self
    }

    /// Where provider pauses are kept.
    pub fn pauses(&self) -> &dyn crate::pause::Pauses {
        self.pauses.as_ref()
    }

    /// The state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// The agent driver (for commands that talk to it directly).
    pub fn agent(&self) -> &dyn AgentDriver {
        self.agent.as_ref()
    }

    /// Reads the index, `None` when kugetsu is not initialized.
    pub fn read_index(&self) -> Result<Option<Index>, StorageError> {
        storage::read_json(&self.state.index_path())
    }

    fn index_or_err(&self) -> Result<Index, OrchestratorError> {
        self.read_index()?
            .ok_or_else(|| OrchestratorError::NotInitialized { root: self.state.root().into() })
    }

    fn update_index<R>(
        &self,
        f: impl FnOnce(&mut Index) -> Result<R, OrchestratorError>,
    ) -> Result<R, OrchestratorError> {
        storage::update_json(
            &self.state.index_path(),
            &self.state.lock_path("index"),
            Index::default,
            f,
        )
    }

    fn update_session(
        &self,
        path: &Path,
        f: impl FnOnce(&mut SessionFile),
    ) -> Result<(), OrchestratorError> {
        let lock = self.state.lock_path("sessions");
        storage::with_exclusive_lock(&lock, || {
            let Some(mut s) = storage::read_json::<SessionFile>(path)? else {
                return Ok(());
            };
            f(&mut s);
            storage::write_json(path, &s)?;
            Ok(())
        })
    }

    fn write_session(&self, path: &Path, s: &SessionFile) -> Result<(), OrchestratorError> {
        let lock = self.state.lock_path("sessions");
        storage::with_exclusive_lock(&lock, || storage::write_json(path, s).map_err(Into::into))
    }

    fn run_log_path(&self, stem: &str) -> PathBuf {
        let stamp = crate::clock::compact(self.clock.now());
        // Named like every log (see [`crate::logs`]): the time first, so `ls` sorts by it.
        self.state.logs_dir().join(format!("{stamp}-{stem}.log"))
    }

    /// `status`: the spec's four words, from the state files alone (fast, no agent calls).
    pub fn status(&self) -> Result<Status, OrchestratorError> {
        let Some(index) = self.read_index()? else { return Ok(Status::KugetsuNotInitialized) };
        if index.base.is_none() || storage::read_bytes(&self.state.base_session_path())?.is_none() {
            return Ok(Status::BaseSessionMissing);
        }
        if index.pm_agent.is_none() || storage::read_bytes(&self.state.pm_session_path())?.is_none()
        {
            return Ok(Status::PmAgentMissing);
        }
        Ok(Status::Ok)
    }

    fn base_session(&self, index: &Index) -> Result<SessionId, OrchestratorError> {
        let id = index.base.as_ref().ok_or(OrchestratorError::BaseMissing)?;
        agent_session_id(id, &self.state.index_path())
    }

    /// Runs `f` holding the issue's lock, or fails at once with
    /// [`OrchestratorError::AlreadyRunning`].
    fn with_issue_lock<R>(
        &self,
        issue: &IssueRef,
        f: impl FnOnce() -> Result<R, OrchestratorError>,
    ) -> Result<R, OrchestratorError> {
        let lock = self.state.lock_path(&format!("issue-{}", issue.file_name()));
        match storage::try_with_exclusive_lock(&lock, f) {
            Err(OrchestratorError::Storage(StorageError::WouldBlock { .. })) => {
                Err(OrchestratorError::AlreadyRunning { issue: issue.to_string() })
            }
            other => other,
        }
    }

    /// Refuses a session another driver made: its id means nothing to the driver handed in,
    /// or worse, names another session of it. `subject` says which session, for the message.
    fn check_driver(
        &self,
        subject: &str,
        path: &Path,
        file: &SessionFile,
    ) -> Result<(), OrchestratorError> {
        if file.agent() == self.settings.driver {
            let major = self.agent.agent_major();
            if file.agent_major() > major {
                return Err(OrchestratorError::NewerAgent {
                    subject: subject.to_string(),
                    path: path.to_path_buf(),
                    agent: file.agent().to_string(),
                    ran_with: file.agent_major(),
                    configured: major,
                });
            }
            return Ok(());
        }
        Err(OrchestratorError::OtherDriver {
            subject: subject.to_string(),
            path: path.to_path_buf(),
            made_by: file.agent().to_string(),
            configured: self.settings.driver.clone(),
        })
    }

    fn issue_session(&self, issue: &IssueRef) -> Result<(PathBuf, SessionFile), OrchestratorError> {
        let index = self.index_or_err()?;
        let unknown = || OrchestratorError::UnknownIssue { issue: issue.to_string() };
        let name = index.issues.get(&issue.to_string()).ok_or_else(unknown)?;
        let path = self.checked_session_path(issue, name)?;
        let file = storage::read_json::<SessionFile>(&path)?.ok_or_else(unknown)?;
        Ok((path, file))
    }

    /// An index entry names a file: it must be a plain `*.json` name inside `sessions/`.
    fn checked_session_path(
        &self,
        issue: &IssueRef,
        name: &str,
    ) -> Result<PathBuf, OrchestratorError> {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && !name.contains('/')
            && !name.contains('\0')
            && name.ends_with(".json");
        if !plain {
            return Err(OrchestratorError::UnsafePath {
                issue: issue.to_string(),
                root: self.state.sessions_dir(),
                path: PathBuf::from(name),
            });
        }
        Ok(self.state.session_path(name))
    }

    /// The session's worktree, which must be a direct child of `worktrees/`: a tampered session
    /// file can never make kugetsu run in, or delete, anything else.
    fn checked_worktree(
        &self,
        issue: &IssueRef,
        file: &SessionFile,
    ) -> Result<PathBuf, OrchestratorError> {
        let root = self.state.worktrees_dir();
        let path = file.worktree_path.clone().unwrap_or_else(|| self.state.worktree_path(issue));
        let inside = path.parent() == Some(root.as_path())
            && path
                .file_name()
                .is_some_and(|n| n != ".." && n != "." && !n.to_string_lossy().starts_with('.'));
        if !inside {
            return Err(OrchestratorError::UnsafePath { issue: issue.to_string(), root, path });
        }
        Ok(path)
    }
}

/// The id to hand the agent for a session recorded in `path`; a file holding anything but a
/// session id is refused here, the one place that decides it.
fn agent_session_id(
    id: &crate::session::RecordedSessionId,
    path: &Path,
) -> Result<SessionId, OrchestratorError> {
    id.valid()
        .cloned()
        .map_err(|e| OrchestratorError::BadSessionId { path: path.to_path_buf(), id: e.id })
}
