//! In-memory fakes of every seam (worktrees, agent driver, queue, slots, env), so the
//! orchestration and its callers are tested at library level, fast, without git or an agent.
//!
//! Enabled by the `testing` feature (and in this crate's own tests). The fakes are scriptable
//! where tests need failures and record what they were asked to do.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use time::OffsetDateTime;

use crate::agent::{
    AgentDriver, AgentEnv, AgentError, AgentEvent, AgentSessionInfo, CreateSessionRequest,
    EventSink, ForkRequest, Repair, RunOutcome, RunReport, RunRequest, SessionId,
};
use crate::orchestrator::EnvSource;
use crate::process::Liveness;
use crate::queue::{
    AgentSlots, Claim, ClaimLane, NewTask, QueueError, QueueItem, QueueListing, QueueStats,
    QueueStatus, SlotGuard, TaskQueue,
};
use crate::worktree::{
    RemoveOptions, UnsavedWork, WorktreeError, WorktreeInfo, WorktreeProgress, WorktreeRequest,
    Worktrees,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Worktrees that exist as real (empty) directories but no git: enough for the orchestration to
/// run agents "inside" them. Unsaved work can be scripted per path.
#[derive(Default)]
pub struct FakeWorktrees {
    trees: Mutex<BTreeMap<PathBuf, WorktreeInfo>>,
    unsaved: Mutex<BTreeMap<PathBuf, UnsavedWork>>,
    /// Every create request, in order.
    pub created: Mutex<Vec<WorktreeRequest>>,
}

impl FakeWorktrees {
    /// Declares that the worktree at `path` holds work that removing it would lose.
    pub fn set_unsaved(&self, path: &Path, unsaved: UnsavedWork) {
        lock(&self.unsaved).insert(path.to_path_buf(), unsaved);
    }
}

impl Worktrees for FakeWorktrees {
    fn create(
        &self,
        req: &WorktreeRequest,
        progress: &mut dyn WorktreeProgress,
        interrupt: &AtomicBool,
    ) -> Result<WorktreeInfo, WorktreeError> {
        if interrupt.load(Ordering::SeqCst) {
            return Err(WorktreeError::Interrupted);
        }
        if let Some(unsaved) = lock(&self.unsaved).get(&req.path).filter(|u| !u.is_empty())
            && !req.force
        {
            return Err(WorktreeError::WouldLoseWork {
                path: req.path.clone(),
                unsaved: unsaved.clone(),
            });
        }
        progress.phase(crate::worktree::WorktreePhase::Checkout, Some(1));
        progress.advance(1);
        progress.finish();
        std::fs::create_dir_all(&req.path).map_err(|e| WorktreeError::Other {
            context: format!("cannot create {}", req.path.display()),
            source: Box::new(e),
        })?;
        let info = WorktreeInfo {
            path: req.path.clone(),
            branch: Some(req.branch.clone()),
            head: Some("0".repeat(40)),
            mirror_key: req.source.mirror_key.clone(),
            prunable: false,
            locked: false,
        };
        lock(&self.unsaved).remove(&req.path);
        lock(&self.trees).insert(req.path.clone(), info.clone());
        lock(&self.created).push(req.clone());
        Ok(info)
    }

    fn remove(&self, path: &Path, opts: RemoveOptions) -> Result<(), WorktreeError> {
        if !lock(&self.trees).contains_key(path) {
            return Err(WorktreeError::NoSuchWorktree { path: path.into() });
        }
        if let Some(unsaved) = lock(&self.unsaved).get(path).filter(|u| !u.is_empty())
            && !opts.force
        {
            return Err(WorktreeError::WouldLoseWork {
                path: path.into(),
                unsaved: unsaved.clone(),
            });
        }
        lock(&self.trees).remove(path);
        let _ = std::fs::remove_dir_all(path);
        Ok(())
    }

    fn list(&self) -> Result<Vec<WorktreeInfo>, WorktreeError> {
        Ok(lock(&self.trees).values().cloned().collect())
    }

    fn unsaved_work(&self, path: &Path) -> Result<UnsavedWork, WorktreeError> {
        Ok(lock(&self.unsaved).get(path).cloned().unwrap_or_default())
    }

    fn prune(&self) -> Result<Vec<PathBuf>, WorktreeError> {
        let mut trees = lock(&self.trees);
        let gone: Vec<PathBuf> = trees.keys().filter(|p| !p.exists()).cloned().collect();
        for p in &gone {
            trees.remove(p);
        }
        Ok(gone)
    }
}

/// A scripted behaviour of one [`FakeAgent`] run.
#[derive(Debug, Clone)]
pub enum FakeTurn {
    /// Say `text` and finish.
    Reply(String),
    /// End with this outcome.
    Outcome(RunOutcome),
    /// Sleep, then finish (to observe concurrency).
    Sleep(Duration),
    /// Steps that report these usages (an [`AgentEvent::Usage`] each), the turn's total in
    /// its report; stopped as a real agent is when `stop` is triggered after a step.
    Steps(Vec<crate::usage::TurnUsage>, crate::interrupt::Interrupt),
}

/// A recorded call to the fake agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCall {
    /// `create`, `fork`, `run`, `delete`.
    pub op: &'static str,
    /// The session concerned.
    pub session: String,
    /// The directory it ran in.
    pub dir: PathBuf,
    /// The prompt, for create/run.
    pub prompt: String,
    /// Names of env variables it received (never their values).
    pub env_keys: Vec<String>,
    /// The spending cap a run was given.
    pub spend_cap: Option<crate::usage::Usd>,
}

/// An in-memory agent: sessions with directories, scripted turns, recorded calls and a live
/// count of concurrent runs.
#[derive(Default)]
pub struct FakeAgent {
    sessions: Mutex<BTreeMap<String, AgentSessionInfo>>,
    script: Mutex<VecDeque<FakeTurn>>,
    counter: AtomicU64,
    /// Every call, in order.
    pub calls: Mutex<Vec<FakeCall>>,
    running: AtomicUsize,
    /// Highest number of runs seen at once.
    pub max_running: AtomicUsize,
    /// Sessions whose permission rules are missing (forks made elsewhere).
    pub missing_permissions: Mutex<Vec<String>>,
    /// The made-up pids of the turns running now.
    live: Arc<Mutex<BTreeSet<u32>>>,
    next_pid: AtomicU32,
    /// The major version of the agent it plays ([`AgentDriver::agent_major`]; 0 is 1).
    pub major: AtomicU32,
}

/// The first pid [`FakeAgent`] reports. Above Linux's `PID_MAX_LIMIT` (2^22), so no real process
/// ever has it and the system's liveness check calls it dead.
pub const FAKE_PID_BASE: u32 = 5_000_000;

/// Liveness of [`FakeAgent`]'s made-up agent processes: alive while their turn runs.
#[derive(Debug, Clone, Default)]
pub struct FakeLiveness(Arc<Mutex<BTreeSet<u32>>>);

impl Liveness for FakeLiveness {
    fn is_running(&self, pid: u32) -> bool {
        lock(&self.0).contains(&pid)
    }
}

impl FakeAgent {
    /// Which of this agent's pids are alive: wire it into [`crate::orchestrator::Settings`].
    pub fn liveness(&self) -> Arc<dyn Liveness> {
        Arc::new(FakeLiveness(self.live.clone()))
    }
    /// Queues behaviours for the next runs (default: a short reply).
    pub fn script(&self, turns: impl IntoIterator<Item = FakeTurn>) {
        lock(&self.script).extend(turns);
    }
    /// Whether the agent knows this session.
    pub fn has(&self, id: &str) -> bool {
        lock(&self.sessions).contains_key(id)
    }
    /// The directory a session lives in.
    pub fn dir_of(&self, id: &str) -> Option<PathBuf> {
        lock(&self.sessions).get(id).map(|s| s.directory.clone())
    }
    /// Moves a session to another directory, as a hand-made change inside the agent would.
    pub fn move_session(&self, id: &str, dir: &Path) {
        if let Some(s) = lock(&self.sessions).get_mut(id) {
            s.directory = dir.to_path_buf();
        }
    }
    fn new_id(&self) -> SessionId {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        SessionId::new(format!("ses_fake{n:06}")).unwrap_or_else(|_| unreachable!("valid id shape"))
    }
    fn record(&self, op: &'static str, session: &str, dir: &Path, prompt: &str, env: &AgentEnv) {
        lock(&self.calls).push(FakeCall {
            op,
            session: session.into(),
            dir: dir.into(),
            prompt: prompt.into(),
            env_keys: env.0.keys().cloned().collect(),
            spend_cap: None,
        });
    }
    fn turn(&self, sink: &mut dyn EventSink) -> (RunOutcome, Option<crate::usage::TurnUsage>) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let pid = FAKE_PID_BASE + self.next_pid.fetch_add(1, Ordering::SeqCst);
        lock(&self.live).insert(pid);
        sink.spawned(pid);
        let turn = lock(&self.script).pop_front();
        let mut usage: Option<crate::usage::TurnUsage> = None;
        let outcome = match turn {
            None => {
                sink.event(&AgentEvent::Text { text: "ok".into() });
                RunOutcome::Completed
            }
            Some(FakeTurn::Reply(text)) => {
                sink.event(&AgentEvent::Text { text });
                RunOutcome::Completed
            }
            Some(FakeTurn::Outcome(o)) => o,
            Some(FakeTurn::Sleep(d)) => {
                std::thread::sleep(d);
                RunOutcome::Completed
            }
            Some(FakeTurn::Steps(steps, stop)) => {
                let mut outcome = RunOutcome::Completed;
                for step in steps {
                    sink.event(&AgentEvent::Usage { usage: step });
                    usage = Some(usage.unwrap_or_default().plus(step));
                    if stop.is_triggered() {
                        outcome = RunOutcome::Interrupted { signal: stop.describe() };
                        break;
                    }
                }
                outcome
            }
        };
        lock(&self.live).remove(&pid);
        self.running.fetch_sub(1, Ordering::SeqCst);
        (outcome, usage)
    }
}

impl AgentDriver for FakeAgent {
    fn agent_major(&self) -> u32 {
        self.major.load(Ordering::SeqCst).max(1)
    }

    fn create_session(
        &self,
        req: &CreateSessionRequest,
        sink: &mut dyn EventSink,
    ) -> Result<RunReport, AgentError> {
        let id = self.new_id();
        self.record("create", id.as_str(), &req.dir, &req.prompt, &req.env);
        lock(&self.sessions).insert(
            id.to_string(),
            AgentSessionInfo {
                id: id.clone(),
                title: req.title.clone(),
                directory: req.dir.clone(),
            },
        );
        let (outcome, usage) = self.turn(sink);
        Ok(RunReport { session: id, outcome, exit_code: Some(0), usage })
    }

    fn fork_session(&self, req: &ForkRequest) -> Result<SessionId, AgentError> {
        if !self.has(req.base.as_str()) {
            return Err(AgentError::SessionNotFound { id: req.base.clone() });
        }
        let id = self.new_id();
        self.record("fork", id.as_str(), &req.dir, "", &req.env);
        lock(&self.sessions).insert(
            id.to_string(),
            AgentSessionInfo {
                id: id.clone(),
                title: req.title.clone(),
                directory: req.dir.clone(),
            },
        );
        Ok(id)
    }

    fn run(&self, req: &RunRequest, sink: &mut dyn EventSink) -> Result<RunReport, AgentError> {
        let dir = self
            .dir_of(req.session.as_str())
            .ok_or_else(|| AgentError::SessionNotFound { id: req.session.clone() })?;
        if dir != req.dir {
            // A real agent may hang here (the directory trap); the fake refuses loudly.
            return Err(AgentError::CommandFailed {
                command: "run".into(),
                message: format!("session lives in {}, not {}", dir.display(), req.dir.display()),
            });
        }
        self.record("run", req.session.as_str(), &req.dir, &req.prompt, &req.env);
        if let Some(call) = lock(&self.calls).last_mut() {
            call.spend_cap = req.limits.spend_cap;
        }
        let (outcome, usage) = self.turn(sink);
        Ok(RunReport { session: req.session.clone(), outcome, exit_code: Some(0), usage })
    }

    fn delete_session(&self, id: &SessionId) -> Result<(), AgentError> {
        match lock(&self.sessions).remove(id.as_str()) {
            Some(s) => {
                self.record("delete", id.as_str(), &s.directory, "", &AgentEnv::default());
                Ok(())
            }
            None => Err(AgentError::SessionNotFound { id: id.clone() }),
        }
    }

    fn session_exists(&self, id: &SessionId) -> Result<bool, AgentError> {
        Ok(self.has(id.as_str()))
    }

    fn session_info(&self, id: &SessionId) -> Result<Option<AgentSessionInfo>, AgentError> {
        Ok(lock(&self.sessions).get(id.as_str()).cloned())
    }

    fn list_sessions(&self, dir: &Path) -> Result<Vec<AgentSessionInfo>, AgentError> {
        Ok(lock(&self.sessions)
            .values()
            .filter(|s| s.directory.starts_with(dir))
            .cloned()
            .collect())
    }

    fn repair_session(&self, id: &SessionId) -> Result<Option<Repair>, AgentError> {
        let mut missing = lock(&self.missing_permissions);
        let before = missing.len();
        missing.retain(|m| m != id.as_str());
        Ok((missing.len() != before).then(|| Repair {
            problem: "lacked its permission rules".into(),
            done: "re-applied them".into(),
        }))
    }
}

/// Counting slots in memory (one process only).
#[derive(Default)]
pub struct MemorySlots {
    held: Arc<(Mutex<Vec<bool>>, Condvar)>,
}

struct MemorySlotGuard {
    held: Arc<(Mutex<Vec<bool>>, Condvar)>,
    index: usize,
}

impl SlotGuard for MemorySlotGuard {
    fn index(&self) -> usize {
        self.index
    }
}

impl Drop for MemorySlotGuard {
    fn drop(&mut self) {
        let (m, cv) = &*self.held;
        lock(m)[self.index] = false;
        cv.notify_all();
    }
}

impl MemorySlots {
    fn take(&self, held: &mut Vec<bool>, limit: usize) -> Option<Box<dyn SlotGuard>> {
        if held.len() < limit {
            held.resize(limit, false);
        }
        let index = held.iter().take(limit).position(|h| !h)?;
        held[index] = true;
        Some(Box::new(MemorySlotGuard { held: self.held.clone(), index }))
    }
}

impl AgentSlots for MemorySlots {
    fn try_acquire(&self, limit: usize) -> Result<Option<Box<dyn SlotGuard>>, QueueError> {
        let mut held = lock(&self.held.0);
        Ok(self.take(&mut held, limit))
    }

    fn acquire(&self, limit: usize, timeout: Duration) -> Result<Box<dyn SlotGuard>, QueueError> {
        let (m, cv) = &*self.held;
        let deadline = std::time::Instant::now() + timeout;
        let mut held = lock(m);
        loop {
            if let Some(g) = self.take(&mut held, limit) {
                return Ok(g);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(QueueError::NoSlot { limit, waited: timeout });
            }
            held = cv
                .wait_timeout(held, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    fn active(&self) -> Result<usize, QueueError> {
        Ok(lock(&self.held.0).iter().filter(|h| **h).count())
    }
}

/// A queue in memory.
#[derive(Default)]
pub struct MemoryQueue {
    items: Mutex<Vec<QueueItem>>,
    counter: AtomicU64,
}

impl TaskQueue for MemoryQueue {
    fn enqueue(&self, task: NewTask) -> Result<QueueItem, QueueError> {
        if task.message.trim().is_empty() {
            return Err(QueueError::InvalidTask { reason: "the message is empty".into() });
        }
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        // No clock here: every item is as old as the epoch, so order is the counter's.
        let item = QueueItem::pending(format!("q_{n:020}"), &task, OffsetDateTime::UNIX_EPOCH);
        lock(&self.items).push(item.clone());
        Ok(item)
    }

    fn list(&self) -> Result<QueueListing, QueueError> {
        Ok(QueueListing { items: lock(&self.items).clone(), problems: Vec::new() })
    }

    fn stats(&self) -> Result<QueueStats, QueueError> {
        Ok(QueueStats::count(lock(&self.items).iter().map(|i| i.status)))
    }

    fn claim_next_in(
        &self,
        claim: &Claim,
        now: OffsetDateTime,
        lane: ClaimLane,
    ) -> Result<Option<QueueItem>, QueueError> {
        let mut items = lock(&self.items);
        let Some(item) = items.iter_mut().find(|i| {
            i.status == QueueStatus::Pending
                && i.not_before.is_none_or(|t| t <= now)
                && lane.accepts(i)
        }) else {
            return Ok(None);
        };
        item.status = QueueStatus::Notified;
        item.claim = Some(claim.clone());
        item.attempts += 1;
        item.updated_at = Some(now);
        Ok(Some(item.clone()))
    }

    fn update(&self, id: &str, f: &mut dyn FnMut(&mut QueueItem)) -> Result<QueueItem, QueueError> {
        let mut items = lock(&self.items);
        let item = items
            .iter_mut()
            .find(|i| i.id == id)
            .ok_or_else(|| QueueError::NotFound { id: id.into() })?;
        f(item);
        Ok(item.clone())
    }

    fn clear(&self, older_than: OffsetDateTime) -> Result<usize, QueueError> {
        let mut items = lock(&self.items);
        let before = items.len();
        items.retain(|i| {
            !(i.status.is_final() && i.updated_at.unwrap_or(i.created_at) < older_than)
        });
        Ok(before - items.len())
    }
}

/// Env files in memory: `agent → variables`, with `default` merged under each agent.
#[derive(Default)]
pub struct StaticEnv(pub Mutex<BTreeMap<String, BTreeMap<String, String>>>);

impl EnvSource for StaticEnv {
    fn agent_env(&self, agent: &str) -> Result<AgentEnv, crate::env_file::EnvFileError> {
        let all = lock(&self.0);
        let mut env = all.get("default").cloned().unwrap_or_default();
        if let Some(own) = all.get(agent) {
            env.extend(own.clone());
        }
        Ok(AgentEnv(env))
    }
}
