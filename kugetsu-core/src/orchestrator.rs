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
use std::sync::atomic::AtomicBool;
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
use crate::queue::{AgentSlots, QueueError};
use crate::session::{Index, LastRun, SessionFile, SessionKind, SessionState};
use crate::state::StateDir;
use crate::storage::{self, StorageError};
use crate::worktree::{
    RemoveOptions, RepoSource, WorktreeError, WorktreeProgress, WorktreeRequest, Worktrees,
};

/// Name of the PM agent's env file and session file stem.
pub const PM_AGENT: &str = "pm-agent";
/// Name used for dev agents' env file.
pub const DEFAULT_AGENT: &str = "default";

/// Why an orchestration step failed.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// No index yet.
    #[error("kugetsu is not initialized in {root}")]
    NotInitialized {
        /// The state directory.
        root: PathBuf,
    },
    /// `init` without `--force` on an initialized state directory.
    #[error("kugetsu is already initialized in {root} (base session {base})")]
    AlreadyInitialized {
        /// The state directory.
        root: PathBuf,
        /// The existing base session.
        base: String,
    },
    /// The base session is missing.
    #[error("the base session is missing")]
    BaseMissing,
    /// The PM agent session is missing (start requires it).
    #[error("the PM agent session is missing")]
    PmMissing,
    /// No session for this issue.
    #[error("no session for {issue}")]
    UnknownIssue {
        /// The issue.
        issue: String,
    },
    /// Another process is working on this issue.
    #[error("{issue} is already running in another kugetsu process")]
    AlreadyRunning {
        /// The issue.
        issue: String,
    },
    /// Two refs map to the same file name (the name's owner is `existing`).
    #[error("{issue} would share its state file name {name} with {existing}")]
    NameCollision {
        /// The new issue.
        issue: String,
        /// The name.
        name: String,
        /// The ref already using it.
        existing: String,
    },
    /// The ref differs from an existing session's only in letter case. Forges match owners and
    /// repositories case-insensitively, so both would be one issue worked twice (and, on a
    /// case-insensitive file system, one state file).
    #[error(
        "{issue} differs only in letter case from {existing}, which is the same issue; use {existing}"
    )]
    CaseVariant {
        /// The new issue, as given.
        issue: String,
        /// The ref of the existing session.
        existing: String,
    },
    /// A session file names a worktree outside the state directory's `worktrees/`.
    #[error("session file for {issue} points outside {root}: {path}")]
    UnsafePath {
        /// The issue.
        issue: String,
        /// The worktrees root.
        root: PathBuf,
        /// The offending path.
        path: PathBuf,
    },
    /// A stored session id is not valid.
    #[error("session file {path} holds an invalid session id {id:?}")]
    BadSessionId {
        /// The file.
        path: PathBuf,
        /// The id.
        id: String,
    },
    /// A base or PM agent session file that does not say which directory its session lives in
    /// (written by an older kugetsu); running it elsewhere would hang opencode.
    #[error("{path} does not record the directory its session lives in")]
    NoDirectory {
        /// The session file.
        path: PathBuf,
    },
    /// A stop was asked for (Ctrl-C, SIGTERM, a hang-up) before the agent's turn began
    /// (while waiting for a slot, for instance); nothing was left half-done.
    #[error("interrupted by {signal}")]
    Interrupted {
        /// The signal, as people read it.
        signal: String,
    },
    /// A state file problem.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A worktree problem.
    #[error(transparent)]
    Worktree(#[from] WorktreeError),
    /// An agent problem.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A slot problem.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// An env file problem.
    #[error(transparent)]
    Env(#[from] EnvFileError),
}

/// Settings resolved by the caller from the config layers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `MAX_CONCURRENT_AGENTS`.
    pub max_agents: usize,
    /// Run time limits.
    pub limits: RunLimits,
    /// How long `start`/`continue` wait for a free slot.
    pub slot_wait: Duration,
    /// Ends a wait for an agent slot when triggered. Whoever wires the orchestration hands the
    /// same request to the agent driver (so the agent's turn stops too) and its flag to
    /// [`Orchestrator::start`] (so does a checkout).
    pub interrupt: Interrupt,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_agents: 3,
            limits: RunLimits::default(),
            slot_wait: Duration::from_secs(0),
            interrupt: Interrupt::new(),
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
}

/// What `init` needs.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Re-initialize over an existing state.
    pub force: bool,
    /// Create sessions through the TUI (needs a terminal) rather than headless.
    pub interactive: bool,
    /// Directory the base and PM agent sessions live in.
    pub session_dir: PathBuf,
    /// The base session's priming prompt.
    pub base_prompt: String,
    /// The PM agent's priming prompt.
    pub pm_prompt: String,
}

/// What `init` did.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    /// The base session.
    pub base: SessionId,
    /// The PM agent session.
    pub pm_agent: SessionId,
}

/// What `start` needs.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// The issue.
    pub issue: IssueRef,
    /// The first message to its agent.
    pub message: String,
    /// Where its repository comes from.
    pub source: RepoSource,
    /// Branch from this ref instead of the default branch.
    pub base_ref: Option<String>,
    /// Recreate the worktree even if that loses work.
    pub force: bool,
}

/// What `start` and `continue` report.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The issue.
    pub issue_ref: String,
    /// Its agent session.
    pub session_id: SessionId,
    /// Its worktree.
    pub worktree_path: PathBuf,
    /// How the run ended.
    pub outcome: RunOutcome,
    /// The run's log file.
    pub log_path: PathBuf,
}

/// One row of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListEntry {
    /// The issue, or `(base)` / `(pm-agent)`.
    pub issue_ref: String,
    /// `base`, `pm_agent` or `forked`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The agent session id.
    pub session_id: String,
    /// The worktree, if any.
    pub worktree: Option<PathBuf>,
    /// The session state (`idle`, `running`, ...), if its file could be read.
    pub state: Option<String>,
    /// A problem with this entry (missing or corrupt session file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
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

/// What `prune` found (and removed, with `force`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Session files no index entry refers to.
    pub session_files: Vec<PathBuf>,
    /// Worktree directories no session refers to.
    pub worktrees: Vec<PathBuf>,
    /// Orphans kept because removing them would lose work (with the reason).
    pub kept: Vec<(PathBuf, String)>,
    /// Stale worktree registrations dropped from mirrors.
    pub registrations: Vec<PathBuf>,
    /// Temp files left by writers that were killed mid-write.
    pub temp_files: Vec<PathBuf>,
    /// Whether anything was actually removed.
    pub removed: bool,
}

/// One problem `doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What it is about (a path, an issue, a session).
    pub subject: String,
    /// The problem, in a sentence.
    pub problem: String,
    /// What `--fix` did, or would do.
    pub remedy: String,
    /// Whether it was fixed in this run.
    pub fixed: bool,
}

/// What destroy removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DestroyReport {
    /// Agent sessions deleted.
    pub sessions: Vec<String>,
    /// Worktrees removed.
    pub worktrees: Vec<PathBuf>,
    /// Session files removed.
    pub files: Vec<PathBuf>,
}

/// One turn of an issue's session, for [`Orchestrator::run_turn`].
struct Turn<'a> {
    issue: &'a IssueRef,
    session: &'a SessionId,
    dir: &'a Path,
    session_path: &'a Path,
    message: &'a str,
    env: AgentEnv,
}

/// Forwards events to the caller's sink and records the agent pid in the session file.
struct RecordingSink<'a> {
    inner: &'a mut dyn EventSink,
    orch: &'a Orchestrator,
    session_path: PathBuf,
}

impl EventSink for RecordingSink<'_> {
    fn spawned(&mut self, pid: u32) {
        let _ = self.orch.update_session(&self.session_path, |s| s.agent_pid = Some(pid));
        self.inner.spawned(pid);
    }
    fn event(&mut self, event: &crate::agent::AgentEvent) {
        self.inner.event(event);
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
        Orchestrator { state, worktrees, agent, slots, env, clock, settings }
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
        let now = self.clock.now();
        self.state.logs_dir().join(format!(
            "{stem}-{:04}{:02}{:02}T{:02}{:02}{:02}Z.log",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        ))
    }

    /// `init`: creates the base and PM agent sessions and records them in the index.
    pub fn init(
        &self,
        opts: &InitOptions,
        sink: &mut dyn EventSink,
    ) -> Result<InitReport, OrchestratorError> {
        self.state.ensure()?;
        if let Some(index) = self.read_index()?
            && let Some(base) = index.base
            && !opts.force
        {
            return Err(OrchestratorError::AlreadyInitialized {
                root: self.state.root().into(),
                base,
            });
        }
        let now = self.clock.now();
        let mut create = |title: &str, prompt: &str, agent: &str| {
            let req = CreateSessionRequest {
                title: title.into(),
                prompt: prompt.into(),
                dir: opts.session_dir.clone(),
                env: self.env.agent_env(agent)?,
                interactive: opts.interactive,
                limits: self.settings.limits,
                log_path: self.run_log_path(agent),
            };
            let report = self.agent.create_session(&req, sink)?;
            if !report.outcome.is_success() {
                // The session exists but its priming failed: report it rather than keep a
                // half-primed base that every issue would inherit.
                let _ = self.agent.delete_session(&report.session);
                return Err(OrchestratorError::Agent(AgentError::NoSession {
                    outcome: report.outcome,
                }));
            }
            Ok::<_, OrchestratorError>(report.session)
        };
        let base = create("kugetsu base", &opts.base_prompt, DEFAULT_AGENT)?;
        let pm = create("kugetsu pm-agent", &opts.pm_prompt, PM_AGENT)?;
        let file = |kind: SessionKind, id: &SessionId| SessionFile {
            kind,
            issue_ref: None,
            opencode_session_id: id.to_string(),
            worktree_path: None,
            created_at: now,
            state: SessionState::Idle,
            directory: Some(opts.session_dir.clone()),
            branch: None,
            agent_pid: None,
            last_run: None,
            extra: Default::default(),
        };
        self.write_session(&self.state.base_session_path(), &file(SessionKind::Base, &base))?;
        self.write_session(&self.state.pm_session_path(), &file(SessionKind::PmAgent, &pm))?;
        self.update_index(|index| {
            index.base = Some(base.to_string());
            index.pm_agent = Some(pm.to_string());
            Ok(())
        })?;
        Ok(InitReport { base, pm_agent: pm })
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
        let id = index.base.clone().ok_or(OrchestratorError::BaseMissing)?;
        SessionId::new(id.clone())
            .map_err(|_| OrchestratorError::BadSessionId { path: self.state.index_path(), id })
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

    /// `start`: a fresh worktree and a fork of the base session for the issue, then the first
    /// agent turn with `message`, inside a concurrency slot.
    pub fn start(
        &self,
        opts: &StartOptions,
        progress: &mut dyn WorktreeProgress,
        interrupt: &AtomicBool,
        sink: &mut dyn EventSink,
    ) -> Result<RunSummary, OrchestratorError> {
        let index = self.index_or_err()?;
        let base = self.base_session(&index)?;
        if index.pm_agent.is_none() {
            return Err(OrchestratorError::PmMissing);
        }
        let issue = &opts.issue;
        let key = issue.to_string();
        let name = format!("{}.json", issue.file_name());
        self.with_issue_lock(issue, || {
            // Refuse a name already owned by another ref (the mapping is injective; this guards
            // against hash collisions and hand-edited indexes).
            let index = self.index_or_err()?;
            // Only the repository part folds: an id like `#-Discuss` is the user's own word.
            let same_issue = |r: &str| match (r.rsplit_once('#'), key.rsplit_once('#')) {
                (Some((repo, id)), Some((key_repo, key_id))) => {
                    id == key_id && repo.eq_ignore_ascii_case(key_repo)
                }
                _ => false,
            };
            if let Some(other) = index.issues.keys().find(|r| **r != key && same_issue(r)) {
                return Err(OrchestratorError::CaseVariant {
                    issue: key.clone(),
                    existing: other.clone(),
                });
            }
            if let Some((other, _)) = index.issues.iter().find(|(r, f)| **f == name && **r != key) {
                return Err(OrchestratorError::NameCollision {
                    issue: key.clone(),
                    name: name.clone(),
                    existing: other.clone(),
                });
            }
            // The slot first: with every slot busy and no wait allowed, nothing is changed (the
            // caller may queue the whole `start` for the daemon instead).
            let _slot = self.acquire_slot()?;
            let wt_path = self.state.worktree_path(issue);
            let info = self.worktrees.create(
                &WorktreeRequest {
                    source: opts.source.clone(),
                    path: wt_path.clone(),
                    branch: issue.branch(),
                    base_ref: opts.base_ref.clone(),
                    force: opts.force,
                },
                progress,
                interrupt,
            )?;
            let env = self.env.agent_env(DEFAULT_AGENT)?;
            let session = self.agent.fork_session(&ForkRequest {
                base: base.clone(),
                dir: info.path.clone(),
                title: key.clone(),
                env: env.clone(),
            })?;
            let session_path = self.state.session_path(&name);
            let file = SessionFile {
                kind: SessionKind::Forked,
                issue_ref: Some(key.clone()),
                opencode_session_id: session.to_string(),
                worktree_path: Some(info.path.clone()),
                created_at: self.clock.now(),
                state: SessionState::Idle,
                directory: None,
                branch: Some(issue.branch()),
                agent_pid: None,
                last_run: None,
                extra: Default::default(),
            };
            self.write_session(&session_path, &file)?;
            self.update_index(|index| {
                index.issues.insert(key.clone(), name.clone());
                Ok(())
            })?;
            self.run_turn(
                &Turn {
                    issue,
                    session: &session,
                    dir: &info.path,
                    session_path: &session_path,
                    message: &opts.message,
                    env,
                },
                sink,
            )
        })
    }

    /// `continue`: one more turn of the issue's existing session.
    pub fn continue_issue(
        &self,
        issue: &IssueRef,
        message: &str,
        sink: &mut dyn EventSink,
    ) -> Result<RunSummary, OrchestratorError> {
        self.with_issue_lock(issue, || {
            let (session_path, file) = self.issue_session(issue)?;
            let session = SessionId::new(file.opencode_session_id.clone()).map_err(|_| {
                OrchestratorError::BadSessionId {
                    path: session_path.clone(),
                    id: file.opencode_session_id.clone(),
                }
            })?;
            let dir = self.checked_worktree(issue, &file)?;
            let env = self.env.agent_env(DEFAULT_AGENT)?;
            let _slot = self.acquire_slot()?;
            self.run_turn(
                &Turn {
                    issue,
                    session: &session,
                    dir: &dir,
                    session_path: &session_path,
                    message,
                    env,
                },
                sink,
            )
        })
    }

    /// Whether the issue has a session (for the daemon's start-or-continue choice).
    pub fn has_session(&self, issue: &IssueRef) -> Result<bool, OrchestratorError> {
        let index = self.index_or_err()?;
        Ok(index.issues.contains_key(&issue.to_string()))
    }

    /// Settles a turn nobody supervises any more: `issue`'s session says `running`, but its
    /// agent process is gone (the kugetsu or daemon running the turn was killed; the agent ran
    /// on or died with it). Nobody read the turn's outcome, so the session becomes `failed`,
    /// which `continue` resumes. Returns whether it did; a turn still supervised (its issue
    /// lock is held) or a session not marked running is left alone.
    pub fn settle_abandoned_run(&self, issue: &IssueRef) -> Result<bool, OrchestratorError> {
        let (path, _) = self.issue_session(issue)?;
        let settled = self.with_issue_lock(issue, || {
            let mut settled = false;
            self.update_session(&path, |s| {
                if s.state == SessionState::Running && s.agent_pid.is_none_or(|pid| !pid_alive(pid))
                {
                    s.state = SessionState::Failed;
                    s.agent_pid = None;
                    settled = true;
                }
            })?;
            Ok(settled)
        });
        match settled {
            Err(OrchestratorError::AlreadyRunning { .. }) => Ok(false),
            other => other,
        }
    }

    /// Sends a message to the PM agent (the daemon's dispatch of a queue item without an issue
    /// ref). Takes no slot: the PM agent does not count against `MAX_CONCURRENT_AGENTS`.
    pub fn message_pm(
        &self,
        message: &str,
        sink: &mut dyn EventSink,
    ) -> Result<RunOutcome, OrchestratorError> {
        let index = self.index_or_err()?;
        let id = index.pm_agent.clone().ok_or(OrchestratorError::PmMissing)?;
        let path = self.state.pm_session_path();
        let session = SessionId::new(id.clone())
            .map_err(|_| OrchestratorError::BadSessionId { path: path.clone(), id })?;
        let lock = self.state.lock_path("pm-agent");
        let file: SessionFile = storage::read_json(&path)?.ok_or(OrchestratorError::PmMissing)?;
        let dir = file
            .directory
            .clone()
            .or_else(|| file.worktree_path.clone())
            .ok_or_else(|| OrchestratorError::NoDirectory { path: path.clone() })?;
        storage::with_exclusive_lock(&lock, || {
            let report = self.agent.run(
                &RunRequest {
                    session,
                    dir,
                    prompt: message.into(),
                    env: self.env.agent_env(PM_AGENT)?,
                    limits: self.settings.limits,
                    log_path: self.run_log_path(PM_AGENT),
                },
                sink,
            )?;
            Ok(report.outcome)
        })
    }

    /// Runs one turn of an issue's session (the caller holds the issue lock and a slot) and
    /// records how it went in the session file.
    fn run_turn(
        &self,
        turn: &Turn<'_>,
        sink: &mut dyn EventSink,
    ) -> Result<RunSummary, OrchestratorError> {
        let Turn { issue, session, dir, session_path, message, ref env } = *turn;
        let started = self.clock.now();
        self.update_session(session_path, |s| {
            s.state = SessionState::Running;
            s.agent_pid = None;
        })?;
        let log_path = self.run_log_path(&issue.file_name());
        let mut recording =
            RecordingSink { inner: sink, orch: self, session_path: session_path.to_path_buf() };
        let result = self.agent.run(
            &RunRequest {
                session: session.clone(),
                dir: dir.to_path_buf(),
                prompt: message.into(),
                env: env.clone(),
                limits: self.settings.limits,
                log_path: log_path.clone(),
            },
            &mut recording,
        );
        let finished = self.clock.now();
        let (outcome, exit_code) = match &result {
            Ok(report) => (report.outcome.clone(), report.exit_code),
            Err(e) => (RunOutcome::Failed { message: e.to_string() }, None),
        };
        self.update_session(session_path, |s| {
            s.state = SessionState::after(&outcome);
            s.agent_pid = None;
            s.last_run = Some(LastRun {
                outcome: outcome.clone(),
                started_at: started,
                finished_at: finished,
                exit_code,
            });
        })?;
        result?;
        Ok(RunSummary {
            issue_ref: issue.to_string(),
            session_id: session.clone(),
            worktree_path: dir.to_path_buf(),
            outcome,
            log_path,
        })
    }

    /// Waits for an agent slot as long as the settings allow, in short steps so that a stop
    /// request ends the wait at once.
    fn acquire_slot(&self) -> Result<Box<dyn crate::queue::SlotGuard>, OrchestratorError> {
        const STEP: Duration = Duration::from_millis(250);
        let interrupt = &self.settings.interrupt;
        let limit = self.settings.max_agents;
        let deadline = Instant::now().checked_add(self.settings.slot_wait);
        loop {
            if interrupt.is_triggered() {
                return Err(OrchestratorError::Interrupted { signal: interrupt.describe() });
            }
            let left = deadline.map_or(STEP, |d| d.saturating_duration_since(Instant::now()));
            match self.slots.acquire(limit, left.min(STEP)) {
                Ok(slot) => return Ok(slot),
                Err(QueueError::NoSlot { .. }) if left > STEP => {}
                Err(QueueError::NoSlot { limit, .. }) => {
                    return Err(
                        QueueError::NoSlot { limit, waited: self.settings.slot_wait }.into()
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
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

    /// `list`: base, PM agent, then every issue, reading each session file.
    pub fn list(&self) -> Result<Vec<ListEntry>, OrchestratorError> {
        let index = self.index_or_err()?;
        let mut out = Vec::with_capacity(index.issues.len() + 2);
        let state_of = |path: &Path| match storage::read_json::<SessionFile>(path) {
            Ok(Some(f)) => (Some(f), None),
            Ok(None) => (None, Some("session file missing".to_string())),
            Err(e) => (None, Some(e.to_string())),
        };
        for (label, kind, id, path) in [
            ("(base)", "base", &index.base, self.state.base_session_path()),
            ("(pm-agent)", "pm_agent", &index.pm_agent, self.state.pm_session_path()),
        ] {
            if let Some(id) = id {
                let (file, problem) = state_of(&path);
                out.push(ListEntry {
                    issue_ref: label.into(),
                    kind: kind.into(),
                    session_id: id.clone(),
                    worktree: None,
                    state: file.map(|f| f.state.to_string()),
                    problem,
                });
            }
        }
        for (issue, name) in &index.issues {
            let (file, problem) = match IssueRef::parse(issue) {
                Ok(r) => match self.checked_session_path(&r, name) {
                    Ok(path) => {
                        let (file, problem) = state_of(&path);
                        // A turn whose kugetsu was killed outright says `running` forever:
                        // show (and record) what it is, as every reader of the session does.
                        if file.as_ref().is_some_and(|f| f.state == SessionState::Running)
                            && self.settle_abandoned_run(&r).unwrap_or(false)
                        {
                            state_of(&path)
                        } else {
                            (file, problem)
                        }
                    }
                    Err(e) => (None, Some(e.to_string())),
                },
                Err(e) => (None, Some(e.to_string())),
            };
            out.push(ListEntry {
                issue_ref: issue.clone(),
                kind: file.as_ref().map_or("forked", |f| f.kind.as_str()).into(),
                session_id: file
                    .as_ref()
                    .map(|f| f.opencode_session_id.clone())
                    .unwrap_or_default(),
                worktree: file.as_ref().and_then(|f| f.worktree_path.clone()),
                state: file.map(|f| f.state.to_string()),
                problem,
            });
        }
        Ok(out)
    }

    /// `destroy <ref>`: removes the issue's worktree (refusing unsaved work unless `force`), its
    /// agent session, its session file and its index entry.
    pub fn destroy_issue(
        &self,
        issue: &IssueRef,
        force: bool,
    ) -> Result<DestroyReport, OrchestratorError> {
        self.with_issue_lock(issue, || {
            let (path, file) = self.issue_session(issue)?;
            let mut report = DestroyReport::default();
            let dir = self.checked_worktree(issue, &file)?;
            match self.worktrees.remove(&dir, RemoveOptions { force, delete_branch: false }) {
                Ok(()) => report.worktrees.push(dir),
                Err(WorktreeError::NoSuchWorktree { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            if let Ok(id) = SessionId::new(file.opencode_session_id.clone()) {
                match self.agent.delete_session(&id) {
                    Ok(()) => report.sessions.push(id.to_string()),
                    Err(AgentError::SessionNotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            self.update_index(|index| {
                index.issues.remove(&issue.to_string());
                Ok(())
            })?;
            if storage::remove_file(&path)? {
                report.files.push(path);
            }
            Ok(report)
        })
    }

    /// `destroy --pm-agent`.
    pub fn destroy_pm(&self) -> Result<DestroyReport, OrchestratorError> {
        self.destroy_special(SessionKind::PmAgent)
    }

    /// `destroy --base`: also destroys the PM agent, which depends on it.
    pub fn destroy_base(&self) -> Result<DestroyReport, OrchestratorError> {
        let mut report = self.destroy_special(SessionKind::PmAgent)?;
        let base = self.destroy_special(SessionKind::Base)?;
        report.sessions.extend(base.sessions);
        report.files.extend(base.files);
        Ok(report)
    }

    fn destroy_special(&self, kind: SessionKind) -> Result<DestroyReport, OrchestratorError> {
        let index = self.index_or_err()?;
        let (id, path) = match kind {
            SessionKind::Base => (index.base.clone(), self.state.base_session_path()),
            _ => (index.pm_agent.clone(), self.state.pm_session_path()),
        };
        let mut report = DestroyReport::default();
        if let Some(id) = id.and_then(|id| SessionId::new(id).ok()) {
            match self.agent.delete_session(&id) {
                Ok(()) => report.sessions.push(id.to_string()),
                Err(AgentError::SessionNotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.update_index(|index| {
            match kind {
                SessionKind::Base => index.base = None,
                _ => index.pm_agent = None,
            }
            Ok(())
        })?;
        if storage::remove_file(&path)? {
            report.files.push(path);
        }
        Ok(report)
    }

    /// `prune`: session files and worktrees no index entry refers to (always keeping base and
    /// PM agent), plus stale worktree registrations. Only reports unless `force`.
    pub fn prune(&self, force: bool) -> Result<PruneReport, OrchestratorError> {
        let index = self.index_or_err()?;
        let mut report = PruneReport::default();
        let known_files: BTreeSet<&str> = index.issues.values().map(String::as_str).collect();
        let mut known_worktrees = BTreeSet::new();
        for name in index.issues.values() {
            if let Ok(Some(f)) = storage::read_json::<SessionFile>(&self.state.session_path(name))
                && let Some(p) = f.worktree_path
            {
                known_worktrees.insert(p);
            }
            if let Some(stem) = name.strip_suffix(".json") {
                known_worktrees.insert(self.state.worktrees_dir().join(stem));
            }
        }
        for entry in read_dir_sorted(&self.state.sessions_dir())? {
            let name =
                entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let keep = name == "base.json"
                || name == "pm-agent.json"
                || name.starts_with('.')
                || !name.ends_with(".json")
                || known_files.contains(name.as_str());
            if !keep {
                report.session_files.push(entry);
            }
        }
        for entry in read_dir_sorted(&self.state.worktrees_dir())? {
            let is_dir = entry.symlink_metadata().map(|m| m.is_dir()).unwrap_or(false);
            if !known_worktrees.contains(&entry) && (is_dir || entry.symlink_metadata().is_ok()) {
                report.worktrees.push(entry);
            }
        }
        if !force {
            return Ok(report);
        }
        for path in &report.session_files {
            storage::remove_file(path)?;
        }
        let mut removed_worktrees = Vec::new();
        for path in std::mem::take(&mut report.worktrees) {
            match self.remove_orphan_worktree(&path) {
                Ok(()) => removed_worktrees.push(path),
                Err(reason) => report.kept.push((path, reason)),
            }
        }
        report.worktrees = removed_worktrees;
        report.registrations = self.worktrees.prune()?;
        for dir in [
            self.state.root().to_path_buf(),
            self.state.sessions_dir(),
            self.state.queue_items_dir(),
            self.state.env_dir(),
        ] {
            report.temp_files.extend(storage::remove_stale_temp_files(&dir)?);
        }
        report.removed = true;
        Ok(report)
    }

    fn remove_orphan_worktree(&self, path: &Path) -> Result<(), String> {
        let meta = path.symlink_metadata().map_err(|e| e.to_string())?;
        if !meta.is_dir() {
            // A symlink or file planted in worktrees/: remove the entry itself, never its target.
            return std::fs::remove_file(path).map_err(|e| e.to_string());
        }
        match self.worktrees.remove(path, RemoveOptions::default()) {
            Ok(()) => Ok(()),
            Err(WorktreeError::NoSuchWorktree { .. }) => {
                // Not a registered worktree: a leftover directory. remove_dir_all does not
                // follow symlinks inside it.
                std::fs::remove_dir_all(path).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// `doctor`: cross-checks the index, session files, worktrees and agent sessions, explains
    /// each problem, and with `fix` repairs what it safely can.
    pub fn doctor(
        &self,
        fix: bool,
        fix_permissions: bool,
    ) -> Result<Vec<Finding>, OrchestratorError> {
        let mut findings = Vec::new();
        let index = match self.read_index() {
            Ok(Some(i)) => i,
            Ok(None) => {
                findings.push(Finding {
                    subject: self.state.index_path().display().to_string(),
                    problem: "no index: kugetsu is not initialized".into(),
                    remedy: "run `kugetsu init`".into(),
                    fixed: false,
                });
                return Ok(findings);
            }
            Err(e) => {
                findings.push(Finding {
                    subject: self.state.index_path().display().to_string(),
                    problem: e.to_string(),
                    remedy: "inspect the kept copy; run `kugetsu init --force` to start over"
                        .into(),
                    fixed: false,
                });
                return Ok(findings);
            }
        };
        for (label, id, path) in [
            ("base session", &index.base, self.state.base_session_path()),
            ("PM agent session", &index.pm_agent, self.state.pm_session_path()),
        ] {
            match id {
                None => findings.push(Finding {
                    subject: label.into(),
                    problem: format!("the {label} is not recorded in the index"),
                    remedy: "run `kugetsu init --force`".into(),
                    fixed: false,
                }),
                Some(id) => {
                    if let Err(e) = storage::read_json::<SessionFile>(&path).and_then(|f| {
                        f.ok_or_else(|| StorageError::Io {
                            action: "read",
                            path: path.clone(),
                            source: std::io::ErrorKind::NotFound.into(),
                        })
                    }) {
                        findings.push(Finding {
                            subject: path.display().to_string(),
                            problem: format!("the {label} file is unusable: {e}"),
                            remedy: "run `kugetsu init --force`".into(),
                            fixed: false,
                        });
                    }
                    self.check_agent_session(label, id, fix_permissions, &mut findings);
                }
            }
        }
        for (issue, name) in &index.issues {
            let Ok(r) = IssueRef::parse(issue) else {
                findings.push(Finding {
                    subject: issue.clone(),
                    problem: "the index holds an invalid issue ref".into(),
                    remedy: "remove it with `kugetsu destroy` or edit index.json".into(),
                    fixed: false,
                });
                continue;
            };
            let file = match self.checked_session_path(&r, name).map(|p| {
                let f = storage::read_json::<SessionFile>(&p);
                (p, f)
            }) {
                Ok((_, Ok(Some(f)))) => f,
                Ok((p, Ok(None))) => {
                    let fixed = fix
                        && self
                            .update_index(|i| {
                                i.issues.remove(issue);
                                Ok(())
                            })
                            .is_ok();
                    findings.push(Finding {
                        subject: issue.clone(),
                        problem: format!("its session file {} is missing", p.display()),
                        remedy: "drop the index entry".into(),
                        fixed,
                    });
                    continue;
                }
                Ok((_, Err(e))) => {
                    findings.push(Finding {
                        subject: issue.clone(),
                        problem: e.to_string(),
                        remedy: "inspect the kept copy, then `kugetsu destroy` and start again"
                            .into(),
                        fixed: false,
                    });
                    continue;
                }
                Err(e) => {
                    findings.push(Finding {
                        subject: issue.clone(),
                        problem: e.to_string(),
                        remedy: "edit index.json".into(),
                        fixed: false,
                    });
                    continue;
                }
            };
            match self.checked_worktree(&r, &file) {
                Ok(dir) if !dir.is_dir() => findings.push(Finding {
                    subject: issue.clone(),
                    problem: format!("its worktree {} is missing", dir.display()),
                    remedy: "run `kugetsu start` again to recreate it".into(),
                    fixed: false,
                }),
                Ok(_) => {}
                Err(e) => findings.push(Finding {
                    subject: issue.clone(),
                    problem: e.to_string(),
                    remedy: "destroy the issue and start it again".into(),
                    fixed: false,
                }),
            }
            if file.state == SessionState::Running
                && file.agent_pid.is_none_or(|pid| !pid_alive(pid))
            {
                // A run whose process is gone (killed with its kugetsu): it is not running.
                let fixed = fix && self.settle_abandoned_run(&r).unwrap_or(false);
                findings.push(Finding {
                    subject: issue.clone(),
                    problem: "marked running, but no agent process is alive".into(),
                    remedy: "mark it failed so it can be continued".into(),
                    fixed,
                });
            }
            self.check_agent_session(
                issue,
                &file.opencode_session_id,
                fix_permissions,
                &mut findings,
            );
        }
        // A sessions/ or worktrees/ that cannot be listed (a planted symlink, a file in its
        // place) is one more finding: doctor reports everything it can rather than stopping.
        let orphans = match self.prune(false) {
            Ok(orphans) => orphans,
            Err(e) => {
                findings.push(Finding {
                    subject: self.state.root().display().to_string(),
                    problem: e.to_string(),
                    remedy:
                        "replace it with the real directory (kugetsu never follows links there)"
                            .into(),
                    fixed: false,
                });
                PruneReport::default()
            }
        };
        for p in orphans.session_files.iter().chain(&orphans.worktrees) {
            findings.push(Finding {
                subject: p.display().to_string(),
                problem: "orphaned: no index entry refers to it".into(),
                remedy: "run `kugetsu prune --force`".into(),
                fixed: false,
            });
        }
        if fix {
            for p in self.worktrees.prune()? {
                findings.push(Finding {
                    subject: p.display().to_string(),
                    problem: "a stale worktree registration (its directory is gone)".into(),
                    remedy: "dropped the registration".into(),
                    fixed: true,
                });
            }
        }
        Ok(findings)
    }

    fn check_agent_session(
        &self,
        subject: &str,
        id: &str,
        fix_permissions: bool,
        findings: &mut Vec<Finding>,
    ) {
        let Ok(sid) = SessionId::new(id) else {
            findings.push(Finding {
                subject: subject.into(),
                problem: format!("invalid session id {id:?}"),
                remedy: "destroy and recreate it".into(),
                fixed: false,
            });
            return;
        };
        match self.agent.session_exists(&sid) {
            Ok(true) => {
                if fix_permissions {
                    match self.agent.fix_permissions(&sid) {
                        Ok(true) => findings.push(Finding {
                            subject: subject.into(),
                            problem: format!("session {sid} lacked the permission rules that keep headless runs from hanging"),
                            remedy: "re-applied them".into(),
                            fixed: true,
                        }),
                        Ok(false) => {}
                        Err(e) => findings.push(Finding {
                            subject: subject.into(),
                            problem: format!("cannot check permissions of {sid}: {e}"),
                            remedy: "check the opencode installation".into(),
                            fixed: false,
                        }),
                    }
                }
            }
            Ok(false) => findings.push(Finding {
                subject: subject.into(),
                problem: format!("opencode has no session {sid}"),
                remedy: "destroy and recreate it (`kugetsu destroy`, then `init` or `start`)"
                    .into(),
                fixed: false,
            }),
            Err(e) => findings.push(Finding {
                subject: subject.into(),
                problem: format!("cannot ask opencode about {sid}: {e}"),
                remedy: "check the opencode installation (`KUGETSU_OPENCODE_BIN`)".into(),
                fixed: false,
            }),
        }
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let mut out = Vec::new();
    // A state sub-directory planted as a symlink would make prune list, and delete, entries of
    // whatever it points to.
    if dir.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(StorageError::Symlink { path: dir.into() });
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(StorageError::Io { action: "list", path: dir.into(), source }),
    };
    for entry in entries {
        let entry = entry.map_err(|source| StorageError::Io {
            action: "list",
            path: dir.into(),
            source,
        })?;
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

/// Whether a process with this pid exists and has not exited (see [`crate::process`]).
pub fn pid_alive(pid: u32) -> bool {
    crate::process::is_running(pid)
}
