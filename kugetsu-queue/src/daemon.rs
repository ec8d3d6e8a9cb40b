//! The queue daemon: drains the queue, never running more dev agents than allowed, losing
//! nothing when anything dies; plus what `queue-daemon status|stop|logs` need.
//!
//! # One daemon per state directory
//! The daemon holds `queue/daemon.lock` (an `flock`, released by the kernel when it dies) for
//! its whole life. A second daemon fails to take it and exits with
//! [`DaemonError::AlreadyRunning`]. `queue/daemon.pid` (pid, identity token, start time) is
//! informational only: a stale one, even naming a live unrelated process, never blocks a start,
//! and [`stop`] signals a pid only if the lock is held *and* the pid's identity token matches.
//!
//! # Dispatching
//! The main loop wakes every `interval`, at once when an item is enqueued (a FIFO poke, see
//! [`crate::wake`]), when a worker finishes, and when a retry falls due. Each round it takes a
//! dev slot *first* and only then claims the oldest due item, so it never claims work it cannot
//! start; the worker thread keeps the slot for the agent's whole run. Items without an issue ref
//! go to the PM agent, which takes no slot; at most one PM item runs at a time (the PM agent is
//! one session), and a PM item may be claimed while every dev slot is busy. The limit is
//! re-read every round, so a config change applies without a restart.
//!
//! # Failures and retries
//! A retryable failure puts the item back to `pending` with `not_before` = now + backoff
//! (doubling from [`DaemonOptions::retry_backoff`]); after [`DaemonOptions::max_attempts`]
//! attempts, or on a fatal failure, it becomes `error` with the reason in `last_error`.
//!
//! # Leases and adoption
//! A claimed item records the daemon's pid and identity token, and the agent's pid and token
//! once it starts (`extra.agent_token`). Every round, items claimed by a process that is no
//! longer alive (a crashed or killed daemon, a killed claimer) are recovered:
//! - if their agent is still alive, it is *adopted*: watched (holding a slot when one is free,
//!   since it still uses resources) until it exits; then [`Dispatcher::adopted_exited`] settles
//!   the turn (the old daemon that could have read its outcome is gone) and says how the item
//!   ends;
//! - otherwise the item goes back to `pending` (the attempt stays counted, so an item that
//!   crashes its daemon cannot loop forever) or to `error` when attempts are used up.
//!
//! # Stopping (SIGTERM / SIGINT)
//! The daemon stops claiming at once, asks running dispatches to stop (the stop flag in
//! [`DispatchContext`]), then terminates the agents still running: `SIGTERM` to each agent's
//! process group, `SIGKILL` after [`DaemonOptions::shutdown_grace`]. Their items go back to
//! `pending` with the attempt refunded (stopping was not their fault), so the next daemon
//! starts them again (as a `continue` when the session exists). Agents are killed rather than
//! left running because their output pipes end with the daemon, so they could not report
//! anyway. The daemon exits within about `shutdown_grace + 2s` (under 5 s by default), with
//! every item in a consistent state. `SIGHUP` is ignored (closing an SSH session must not stop
//! it).
//!
//! # Wiring it up
//! The CLI implements [`Dispatcher`] over the orchestration, giving it the slot the worker
//! already holds ([`DispatchContext::lent_slot`]) so that `start`/`continue` do not take a
//! second one, and reporting the agent's pid when the driver spawns it:
//!
//! ```no_run
//! use std::sync::Arc;
//! use kugetsu_core::{QueueItem, StateDir};
//! use kugetsu_queue::daemon::{
//!     Daemon, DaemonOptions, DispatchContext, DispatchError, DispatchOutcome, Dispatcher,
//!     QueueEvent,
//! };
//!
//! struct Cli;
//! impl Dispatcher for Cli {
//!     fn dispatch(
//!         &self,
//!         item: &QueueItem,
//!         ctx: &mut DispatchContext<'_>,
//!     ) -> Result<DispatchOutcome, DispatchError> {
//!         match (&item.issue_ref, ctx.lent_slot()) {
//!             // Build the orchestrator with `Arc::new(slot)` as its slots, then `start` or
//!             // `continue_issue`, passing `ctx.stop_flag()` as the interrupt and calling
//!             // `ctx.agent_started(pid)` from the event sink when the agent is spawned.
//!             (Some(_issue), Some(_slot)) => Ok(DispatchOutcome { summary: "done".into() }),
//!             // No issue ref: `message_pm` (no slot).
//!             _ => Ok(DispatchOutcome::default()),
//!         }
//!     }
//! }
//!
//! let state = StateDir::new("/home/me/.kugetsu");
//! let notify = |e: &QueueEvent| { let _ = (e.kind.as_str(), &e.detail); };
//! let daemon = Daemon::new(state, Arc::new(Cli), Arc::new(|| 3 /* re-read the config */))
//!     .with_notifier(Arc::new(notify))
//!     .with_options(DaemonOptions::default());
//! daemon.run_until_signalled()?;
//! # Ok::<(), kugetsu_queue::DaemonError>(())
//! ```

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kugetsu_core::StateDir;
use kugetsu_core::clock::{Clock, SystemClock};
use kugetsu_core::queue::{
    AgentSlots, Claim, QueueError, QueueItem, QueueStatus, SlotGuard, TaskQueue,
};
use kugetsu_core::storage::{self, StorageError};
use rustix::fs::FlockOperation;
use rustix::process::Signal;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::log::{self, DEFAULT_LOG_MAX_BYTES, DaemonLog};
use crate::process;
use crate::queue::FileQueue;
use crate::slots::{FileSlots, LentSlot};
use crate::wake;

/// Key in `QueueItem::extra` holding the agent's identity token (pid reuse detection).
pub const AGENT_TOKEN_KEY: &str = "agent_token";
/// How long an idle daemon may sleep before it looks at its stop flag without being poked.
const STOP_POLL: Duration = Duration::from_secs(1);

/// Key in `QueueItem::extra` set on items whose agent was adopted from a dead daemon.
pub const ADOPTED_KEY: &str = "adopted_by";

/// Why a daemon operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon holds the lock for this state directory.
    #[error("the queue daemon is already running{}", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyRunning {
        /// Its pid, when the pid file names a live holder.
        pid: Option<u32>,
    },
    /// The lock is held but no process could be verified as the daemon (it may be starting).
    #[error("the queue daemon lock {path} is held, but {pid_path} names no live daemon")]
    Unverified {
        /// The lock file.
        path: PathBuf,
        /// The pid file.
        pid_path: PathBuf,
    },
    /// The daemon did not exit after SIGTERM and SIGKILL.
    #[error("the queue daemon (pid {pid}) did not exit")]
    DidNotExit {
        /// Its pid.
        pid: u32,
    },
    /// Spawning the background process failed.
    #[error("cannot start {program}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A state file problem.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A queue problem.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// What a dispatch achieved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DispatchOutcome {
    /// One line for the notification and the log ("PR opened", "session idle", ...).
    pub summary: String,
}

/// Why a dispatch failed, which decides what happens to the item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// Worth trying again later (agent crashed, network down): retried with backoff.
    #[error("{0}")]
    Retry(String),
    /// Retrying cannot help (bad issue ref, unknown repo): the item becomes `error` at once.
    #[error("{0}")]
    Fatal(String),
    /// The dispatch stopped because the daemon is stopping: back to `pending`, attempt refunded.
    #[error("interrupted: {0}")]
    Interrupted(String),
}

/// What a dispatch gets besides the item.
pub struct DispatchContext<'a> {
    slot: Option<usize>,
    stop: &'a AtomicBool,
    on_agent_started: &'a mut dyn FnMut(u32),
}

impl<'a> DispatchContext<'a> {
    /// A context (the daemon builds these; public so dispatchers can be tested alone).
    pub fn new(
        slot: Option<usize>,
        stop: &'a AtomicBool,
        on_agent_started: &'a mut dyn FnMut(u32),
    ) -> Self {
        DispatchContext { slot, stop, on_agent_started }
    }

    /// The dev slot held for this item (`None` for PM agent items, which take none).
    pub fn slot_index(&self) -> Option<usize> {
        self.slot
    }

    /// The held slot as an `AgentSlots` to build the orchestrator with, so that its own slot
    /// acquire returns this slot instead of taking a second one. `None` for PM items.
    pub fn lent_slot(&self) -> Option<LentSlot> {
        self.slot.map(LentSlot::new)
    }

    /// Set when the daemon is stopping; pass it as the orchestration's interrupt flag.
    pub fn stop_flag(&self) -> &'a AtomicBool {
        self.stop
    }

    /// Whether the daemon is stopping.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Reports the agent's pid (and process group) as soon as it is spawned, so that the lease
    /// records it: a later daemon can then adopt or kill it, and this one can stop it.
    pub fn agent_started(&mut self, pid: u32) {
        (self.on_agent_started)(pid);
    }
}

/// Runs one queue item. The CLI implements it over the orchestration: an item with an issue ref
/// goes to `start` (no session yet) or `continue`, one without goes to the PM agent.
pub trait Dispatcher: Send + Sync {
    /// Runs `item` to the end of its agent turn. Called on a worker thread; may block for
    /// hours. Should return [`DispatchError::Interrupted`] soon after
    /// [`DispatchContext::stop_requested`] turns true (or when its agent is killed).
    fn dispatch(
        &self,
        item: &QueueItem,
        ctx: &mut DispatchContext<'_>,
    ) -> Result<DispatchOutcome, DispatchError>;

    /// Called when the agent of `item` that this daemon adopted (its own daemon died while the
    /// agent ran on) has exited, with its pid. The dispatch that would have read the agent's
    /// outcome died with the old daemon, so this is where a dispatcher settles what the turn
    /// left behind and says how the item ends. The default reports the item completed.
    fn adopted_exited(&self, item: &QueueItem, pid: u32) -> Result<DispatchOutcome, DispatchError> {
        let _ = item;
        Ok(DispatchOutcome { summary: format!("adopted agent pid {pid} exited") })
    }
}

/// The kinds of queue transitions, with the spec's notification type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueEventKind {
    /// Put (back) in the queue. The daemon emits it when it requeues an item (a retry, an
    /// interruption, a recovered claim); for a fresh enqueue the enqueuing command emits it.
    TaskQueued,
    /// Claimed by the daemon.
    TaskDequeued,
    /// Its dispatch began (or its orphaned agent was adopted).
    TaskStarted,
    /// Finished.
    TaskCompleted,
    /// Failed for good.
    TaskError,
}

impl QueueEventKind {
    /// `task_queued`, `task_dequeued`, ... as written to `notifications.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueEventKind::TaskQueued => "task_queued",
            QueueEventKind::TaskDequeued => "task_dequeued",
            QueueEventKind::TaskStarted => "task_started",
            QueueEventKind::TaskCompleted => "task_completed",
            QueueEventKind::TaskError => "task_error",
        }
    }
}

/// One queue transition.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueEvent {
    /// What happened.
    pub kind: QueueEventKind,
    /// The item.
    pub item_id: String,
    /// Its issue ref, if any.
    pub issue_ref: Option<String>,
    /// Its request.
    pub message: String,
    /// Details in words (the error, the retry time, the outcome).
    pub detail: String,
    /// When.
    pub at: OffsetDateTime,
}

/// Receives queue transitions (the CLI appends them to `notifications.json`). Must not block
/// for long: it is called from the daemon's loop and workers.
pub trait Notifier: Send + Sync {
    /// Records one transition.
    fn notify(&self, event: &QueueEvent);
}

impl<F: Fn(&QueueEvent) + Send + Sync> Notifier for F {
    fn notify(&self, event: &QueueEvent) {
        self(event)
    }
}

/// A notifier that drops everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn notify(&self, _event: &QueueEvent) {}
}

/// Tunables of the daemon.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// How often the queue is polled when nothing wakes the daemon
    /// (`QUEUE_DAEMON_INTERVAL_MINUTES`).
    pub interval: Duration,
    /// Attempts before an item becomes `error`.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles with each attempt.
    pub retry_backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// Between SIGTERM and SIGKILL of running agents when stopping.
    pub shutdown_grace: Duration,
    /// Completed/error items older than this are removed (`QUEUE_CLEANUP_AGE_DAYS`); `None`
    /// keeps them.
    pub cleanup_age: Option<Duration>,
    /// Size cap of `daemon.log` before rotation.
    pub log_max_bytes: u64,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            interval: Duration::from_secs(5 * 60),
            max_attempts: 3,
            retry_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30 * 60),
            shutdown_grace: Duration::from_secs(2),
            cleanup_age: Some(Duration::from_secs(7 * 24 * 3600)),
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
        }
    }
}

/// `MAX_CONCURRENT_AGENTS`, read afresh every round.
pub type LimitFn = Arc<dyn Fn() -> usize + Send + Sync>;

/// The queue daemon over a state directory.
pub struct Daemon {
    state: StateDir,
    queue: Arc<FileQueue>,
    slots: Arc<dyn AgentSlots>,
    dispatcher: Arc<dyn Dispatcher>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    limit: LimitFn,
    options: DaemonOptions,
    log: Option<DaemonLog>,
}

/// How a daemon run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DaemonExit {
    /// Items dispatched during the run.
    pub dispatched: usize,
    /// Items put back to `pending` because the daemon stopped under them.
    pub requeued_on_stop: usize,
}

/// The contents of `queue/daemon.pid`: the pid on the first line (as the original kugetsu
/// wrote it), then `key=value` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidFile {
    /// The daemon's pid.
    pub pid: u32,
    /// Its identity token (see [`crate::process`]).
    pub token: Option<String>,
    /// When it started.
    pub started_at: Option<OffsetDateTime>,
}

impl PidFile {
    fn render(&self) -> String {
        let mut s = format!("{}\n", self.pid);
        if let Some(t) = &self.token {
            s.push_str(&format!("token={t}\n"));
        }
        if let Some(at) = self.started_at.and_then(|t| t.format(&Rfc3339).ok()) {
            s.push_str(&format!("started_at={at}\n"));
        }
        s
    }

    fn parse(text: &str) -> Option<PidFile> {
        let mut lines = text.lines();
        let pid = lines.next()?.trim().parse().ok()?;
        let mut file = PidFile { pid, token: None, started_at: None };
        for line in lines {
            if let Some(t) = line.strip_prefix("token=") {
                file.token = Some(t.trim().to_string());
            } else if let Some(t) = line.strip_prefix("started_at=") {
                file.started_at = OffsetDateTime::parse(t.trim(), &Rfc3339).ok();
            }
        }
        Some(file)
    }

    /// Reads the pid file of `state`; `None` if missing or unreadable (it is informational).
    pub fn read(state: &StateDir) -> Option<PidFile> {
        let bytes = storage::read_bytes(&state.daemon_pid_path()).ok()??;
        PidFile::parse(&String::from_utf8_lossy(&bytes))
    }

    /// Whether the process it names is alive and is the very process that wrote it.
    pub fn is_live(&self) -> bool {
        self.token.as_deref().is_some_and(|t| process::is_alive(self.pid, t))
    }
}

/// The daemon lock, held for the daemon's life. Owns the file (like the slot guards, and for
/// the same reason: fd-lock's guard cannot outlive a borrow); the kernel releases it on exit.
struct DaemonLock {
    _file: File,
}

fn try_lock_file(path: &Path, op: FlockOperation) -> Result<Option<File>, StorageError> {
    let file = storage::open_lock_file(path)?;
    match rustix::fs::flock(&file, op) {
        Ok(()) => Ok(Some(file)),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
        Err(e) => {
            Err(StorageError::Io { action: "lock", path: path.to_path_buf(), source: e.into() })
        }
    }
}

/// Whether a daemon holds the lock of `state`, probed without disturbing it for long (a shared
/// try-lock, released at once). A daemon starting at that very instant retries, see
/// [`Daemon::run`].
fn lock_is_held(state: &StateDir) -> Result<bool, StorageError> {
    let path = state.daemon_lock_path();
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(false);
    }
    Ok(try_lock_file(&path, FlockOperation::NonBlockingLockShared)?.is_none())
}

/// Whether the queue daemon of a state directory runs, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonStatus {
    /// A daemon holds the lock.
    pub running: bool,
    /// Its pid, when verified through the pid file's identity token.
    pub pid: Option<u32>,
    /// When it started.
    pub since: Option<OffsetDateTime>,
    /// A pid file left by a daemon that is gone (reported, never acted on).
    pub stale_pid_file: Option<u32>,
}

/// `queue-daemon status`.
pub fn status(state: &StateDir) -> Result<DaemonStatus, DaemonError> {
    let running = lock_is_held(state)?;
    let mut pid_file = PidFile::read(state);
    if running && !pid_file.as_ref().is_some_and(PidFile::is_live) {
        // It may have just taken the lock and not written its pid yet.
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            pid_file = PidFile::read(state);
            if pid_file.as_ref().is_some_and(PidFile::is_live) {
                break;
            }
        }
    }
    let live = pid_file.as_ref().filter(|p| running && p.is_live());
    Ok(DaemonStatus {
        running,
        pid: live.map(|p| p.pid),
        since: live.and_then(|p| p.started_at),
        stale_pid_file: pid_file.as_ref().filter(|_| live.is_none()).map(|p| p.pid),
    })
}

/// What [`stop`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// No daemon was running.
    NotRunning,
    /// The daemon exited after SIGTERM.
    Stopped {
        /// Its pid.
        pid: u32,
    },
    /// It had to be killed with SIGKILL after `timeout`.
    Killed {
        /// Its pid.
        pid: u32,
    },
}

/// `queue-daemon stop`: SIGTERM to the daemon (only after verifying, through the lock and the
/// identity token, that the pid is really it), wait up to `timeout` for the lock to be
/// released, then SIGKILL.
pub fn stop(state: &StateDir, timeout: Duration) -> Result<StopOutcome, DaemonError> {
    let st = status(state)?;
    if !st.running {
        return Ok(StopOutcome::NotRunning);
    }
    let pid_file = PidFile::read(state).filter(|p| p.is_live() && Some(p.pid) == st.pid);
    let Some(pid_file) = pid_file else {
        return Err(DaemonError::Unverified {
            path: state.daemon_lock_path(),
            pid_path: state.daemon_pid_path(),
        });
    };
    let token = pid_file.token.clone().unwrap_or_default();
    let gone = |wait: Duration| -> Result<bool, DaemonError> {
        let deadline = Instant::now() + wait;
        loop {
            if !lock_is_held(state)? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    };
    if !process::signal_verified(pid_file.pid, &token, Signal::TERM) {
        // It exited between the check and the signal.
        return Ok(StopOutcome::Stopped { pid: pid_file.pid });
    }
    if gone(timeout)? {
        return Ok(StopOutcome::Stopped { pid: pid_file.pid });
    }
    process::signal_verified(pid_file.pid, &token, Signal::KILL);
    if gone(Duration::from_secs(3))? {
        return Ok(StopOutcome::Killed { pid: pid_file.pid });
    }
    Err(DaemonError::DidNotExit { pid: pid_file.pid })
}

/// `queue-daemon logs`: the last `n` lines of the daemon log.
pub fn tail_log(state: &StateDir, n: usize) -> Result<Vec<String>, DaemonError> {
    Ok(log::tail(&state.daemon_log_path(), n)?)
}

/// Starts `program args...` (normally `kugetsu queue-daemon run`) in the background, detached
/// from the terminal ([`process::detach`]: its own session, so no signal of the terminal reaches
/// it; the daemon ignores SIGHUP anyway), stdin from `/dev/null`, stdout to `/dev/null`, stderr appended to the daemon log
/// (so a panic message is not lost), and exactly the environment `env` (the caller's view of
/// its environment, which it may have narrowed: the demo's daemon gets none of the user's
/// kugetsu settings). Returns its pid. Whether it then won the daemon lock is for the caller to
/// check with [`status`].
pub fn spawn_detached(
    program: &Path,
    args: &[OsString],
    env: &BTreeMap<String, String>,
    state: &StateDir,
) -> Result<u32, DaemonError> {
    storage::ensure_dir(&state.queue_dir())?;
    let log_path = state.daemon_log_path();
    let stderr = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log_path)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().envs(env).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    process::detach(&mut cmd);
    let child = cmd
        .spawn()
        .map_err(|source| DaemonError::Spawn { program: program.to_path_buf(), source })?;
    tracing::debug!(program = %program.display(), ?args, pid = child.id(), "spawned queue daemon");
    // The child is not waited for: it outlives us. It is reparented when we exit.
    Ok(child.id())
}

/// Lifecycle of one running item, shared by its worker thread and the main loop so that
/// exactly one of them writes the item's final state.
#[derive(Default)]
struct WorkerState {
    /// The agent's pid and token, once reported.
    agent: Option<(u32, String)>,
    /// The item's final state was written (by the worker, or by shutdown abandoning it).
    finalized: bool,
}

struct Worker {
    item: QueueItem,
    pm: bool,
    state: Arc<Mutex<WorkerState>>,
    handle: JoinHandle<()>,
}

fn lock_state(m: &Mutex<WorkerState>) -> MutexGuard<'_, WorkerState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shared by the main loop and the workers.
struct Shared {
    queue: Arc<FileQueue>,
    slots: Arc<dyn AgentSlots>,
    dispatcher: Arc<dyn Dispatcher>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    limit: LimitFn,
    options: DaemonOptions,
    log: DaemonLog,
    stopping: AtomicBool,
    wake: Sender<()>,
    token: String,
}

impl Shared {
    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn log(&self, message: &str) {
        tracing::info!("{message}");
        self.log.line(self.now(), message);
    }

    fn event(&self, kind: QueueEventKind, item: &QueueItem, detail: &str) {
        self.log(&format!("{} {} {}", kind.as_str(), item.id, detail));
        let event = QueueEvent {
            kind,
            item_id: item.id.clone(),
            issue_ref: item.issue_ref.clone(),
            message: item.message.clone(),
            detail: detail.to_string(),
            at: self.now(),
        };
        // A notifier bug must not take the daemon (or a worker's bookkeeping) down.
        let notifier = &self.notifier;
        if catch_unwind(AssertUnwindSafe(|| notifier.notify(&event))).is_err() {
            self.log.line(self.now(), "the notifier panicked; event dropped");
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
        self.options.retry_backoff.saturating_mul(factor).min(self.options.max_backoff)
    }

    /// Writes the outcome of a dispatch (or of an adopted agent) to the item.
    fn finish(&self, item: &QueueItem, result: Result<DispatchOutcome, DispatchError>) -> bool {
        let now = self.now();
        let stopping = self.stopping.load(Ordering::Relaxed);
        let max = self.options.max_attempts;
        let mut event = (QueueEventKind::TaskCompleted, String::new());
        let mut requeued = false;
        let update = self.queue.update(&item.id, &mut |it| {
            it.claim = None;
            it.extra.remove(AGENT_TOKEN_KEY);
            match &result {
                Ok(outcome) => {
                    it.status = QueueStatus::Completed;
                    it.last_error = None;
                    it.not_before = None;
                    event = (QueueEventKind::TaskCompleted, outcome.summary.clone());
                }
                Err(e) if stopping || matches!(e, DispatchError::Interrupted(_)) => {
                    it.status = QueueStatus::Pending;
                    it.attempts = it.attempts.saturating_sub(1);
                    it.last_error = Some(format!("interrupted: the daemon stopped ({e})"));
                    it.not_before = None;
                    requeued = true;
                    event = (QueueEventKind::TaskQueued, "requeued: the daemon stopped".into());
                }
                Err(DispatchError::Fatal(reason)) => {
                    it.status = QueueStatus::Error;
                    it.last_error = Some(reason.clone());
                    event = (QueueEventKind::TaskError, reason.clone());
                }
                Err(e) if it.attempts >= max => {
                    it.status = QueueStatus::Error;
                    let reason = format!("failed after {} attempts: {e}", it.attempts);
                    it.last_error = Some(reason.clone());
                    event = (QueueEventKind::TaskError, reason);
                }
                Err(e) => {
                    let at = now + self.backoff(it.attempts);
                    it.status = QueueStatus::Pending;
                    it.last_error = Some(e.to_string());
                    it.not_before = Some(at);
                    event = (
                        QueueEventKind::TaskQueued,
                        format!(
                            "attempt {}/{max} failed ({e}); retrying at {}",
                            it.attempts,
                            at.format(&Rfc3339).unwrap_or_default()
                        ),
                    );
                }
            }
        });
        match update {
            Ok(updated) => self.event(event.0, &updated, &event.1),
            Err(e) => self.log(&format!("cannot record the outcome of {}: {e}", item.id)),
        }
        requeued
    }

    fn record_agent(&self, id: &str, state: &Mutex<WorkerState>, pid: u32) {
        let token = process::process_token(pid);
        lock_state(state).agent = token.clone().map(|t| (pid, t));
        let result = self.queue.update(id, &mut |it| {
            if let Some(claim) = it.claim.as_mut() {
                claim.agent_pid = Some(pid);
            }
            match &token {
                Some(t) => it.extra.insert(AGENT_TOKEN_KEY.into(), Value::String(t.clone())),
                None => it.extra.remove(AGENT_TOKEN_KEY),
            };
        });
        match result {
            Ok(_) => self.log(&format!("agent of {id} started: pid {pid}")),
            Err(e) => self.log(&format!("cannot record agent pid {pid} of {id}: {e}")),
        }
    }
}

impl Daemon {
    /// A daemon over `state` that runs items with `dispatcher`, at most `limit()` dev agents at
    /// once. Defaults: [`FileQueue`], [`FileSlots`], no notifications, the system clock,
    /// [`DaemonOptions::default`], a log at `queue/daemon.log`.
    pub fn new(state: StateDir, dispatcher: Arc<dyn Dispatcher>, limit: LimitFn) -> Self {
        Daemon {
            queue: Arc::new(FileQueue::new(&state)),
            slots: Arc::new(FileSlots::new(&state)),
            state,
            dispatcher,
            notifier: Arc::new(NoNotifier),
            clock: Arc::new(SystemClock),
            limit,
            options: DaemonOptions::default(),
            log: None,
        }
    }

    /// Sends transitions to `notifier`.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Uses `clock` for every timestamp (claims, backoff, log), queue included.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.queue = Arc::new(FileQueue::with_clock(&self.state, clock.clone()));
        self.clock = clock;
        self
    }

    /// Overrides the tunables.
    pub fn with_options(mut self, options: DaemonOptions) -> Self {
        self.options = options;
        self
    }

    /// Uses `slots` instead of the state directory's [`FileSlots`].
    pub fn with_slots(mut self, slots: Arc<dyn AgentSlots>) -> Self {
        self.slots = slots;
        self
    }

    /// Writes the daemon log through `log` (e.g. the same writer the CLI's tracing uses).
    pub fn with_log(mut self, log: DaemonLog) -> Self {
        self.log = Some(log);
        self
    }

    /// Runs until SIGTERM or SIGINT (SIGHUP is ignored), see [`Daemon::run`].
    pub fn run_until_signalled(&self) -> Result<DaemonExit, DaemonError> {
        let stop = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        let io_err = |source: io::Error| StorageError::Io {
            action: "install signal handlers for",
            path: self.state.daemon_lock_path(),
            source,
        };
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            // A second signal while already stopping exits at once (a user pressing Ctrl-C
            // twice means it); items left claimed are recovered by the next daemon.
            signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
                .map_err(io_err)?;
            signal_hook::flag::register(sig, stop.clone()).map_err(io_err)?;
        }
        // Registering a handler replaces the default action (terminate) for SIGHUP.
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup).map_err(io_err)?;
        // The flag alone would only be seen at the next poll; a poke through the wake-up FIFO
        // ends the daemon's sleep at once, so it can sleep long while idle.
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
        ])
        .map_err(io_err)?;
        let wake_path = wake::wake_path(&self.state);
        std::thread::Builder::new()
            .name("queue-signals".into())
            .spawn(move || {
                for _ in signals.forever() {
                    wake::poke(&wake_path);
                }
            })
            .map_err(io_err)?;
        self.run(&stop)
    }

    /// Runs the daemon until `stop` is set: takes the daemon lock (or fails with
    /// [`DaemonError::AlreadyRunning`]), writes `daemon.pid`, then dispatches as described in
    /// the module documentation. Returns once every item it held is in a consistent state.
    ///
    /// An idle daemon looks at `stop` about once a second; to have it stop at once, set `stop`
    /// and then [`wake::poke`] its [`wake::wake_path`].
    pub fn run(&self, stop: &AtomicBool) -> Result<DaemonExit, DaemonError> {
        storage::ensure_dir(&self.state.queue_items_dir())?;
        storage::ensure_dir(&self.state.locks_dir())?;
        let _lock = self.take_lock()?;
        let log = match &self.log {
            Some(l) => l.clone(),
            None => DaemonLog::open(&self.state.daemon_log_path(), self.options.log_max_bytes)?,
        };
        let token = process::own_token();
        let pid_file = PidFile {
            pid: std::process::id(),
            token: Some(token.clone()),
            started_at: Some(self.clock.now()),
        };
        storage::atomic_write(&self.state.daemon_pid_path(), pid_file.render().as_bytes())?;

        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            queue: self.queue.clone(),
            slots: self.slots.clone(),
            dispatcher: self.dispatcher.clone(),
            notifier: self.notifier.clone(),
            clock: self.clock.clone(),
            limit: self.limit.clone(),
            options: self.options.clone(),
            log,
            stopping: AtomicBool::new(false),
            wake: tx.clone(),
            token,
        });
        match wake::open_listener(&wake::wake_path(&self.state)) {
            Ok(fifo) => {
                let tx = tx.clone();
                std::thread::Builder::new()
                    .name("queue-wake".into())
                    .spawn(move || wake::forward(fifo, tx))
                    .map_err(|source| StorageError::Io {
                        action: "start the wake-up thread for",
                        path: wake::wake_path(&self.state),
                        source,
                    })?;
            }
            Err(e) => shared.log(&format!(
                "cannot listen on {}: {e}; enqueued items wait for the next poll",
                wake::wake_path(&self.state).display()
            )),
        }
        shared.log(&format!(
            "daemon started: pid {}, limit {}, poll every {:?}",
            std::process::id(),
            (self.limit)(),
            self.options.interval
        ));

        let mut workers: HashMap<String, Worker> = HashMap::new();
        let mut exit = DaemonExit::default();
        let mut last_cleanup: Option<Instant> = None;
        let mut reported: Vec<String> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            reap(&mut workers);
            // Corrupt item files are skipped (and kept aside by storage); say so once each.
            if let Ok(problems) = self.queue.problems() {
                for p in problems.iter().filter(|p| !reported.contains(p)) {
                    shared.log(&format!("skipping an unreadable queue item: {p}"));
                }
                reported = problems;
            }
            if let Err(e) = self.recover(&shared, &mut workers) {
                shared.log(&format!("cannot recover stale claims: {e}"));
            }
            if last_cleanup.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                last_cleanup = Some(Instant::now());
                self.cleanup(&shared);
            }
            match self.dispatch_round(&shared, &mut workers, stop) {
                Ok(n) => exit.dispatched += n,
                Err(e) => shared.log(&format!("dispatch round failed: {e}")),
            }
            self.wait(&shared, &rx, stop);
        }
        shared.log("stop requested: no more dispatching; stopping running agents");
        exit.requeued_on_stop = self.shutdown(&shared, workers);
        let _ = storage::remove_file(&self.state.daemon_pid_path());
        shared.log(&format!("daemon stopped (pid {})", std::process::id()));
        Ok(exit)
    }

    fn take_lock(&self) -> Result<DaemonLock, DaemonError> {
        let path = self.state.daemon_lock_path();
        // Retry briefly: `status` probes the lock for an instant and must not make a daemon
        // that starts at that moment give up. Two daemons still never both get it.
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            if let Some(file) = try_lock_file(&path, FlockOperation::NonBlockingLockExclusive)? {
                return Ok(DaemonLock { _file: file });
            }
            if Instant::now() >= deadline {
                let pid = PidFile::read(&self.state).filter(PidFile::is_live).map(|p| p.pid);
                return Err(DaemonError::AlreadyRunning { pid });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cleanup(&self, shared: &Shared) {
        let Some(age) = self.options.cleanup_age else { return };
        let cutoff = shared.now() - age;
        match self.queue.clear(cutoff) {
            Ok(0) => {}
            Ok(n) => shared.log(&format!("removed {n} finished items older than {age:?}")),
            Err(e) => shared.log(&format!("cleanup failed: {e}")),
        }
    }

    /// Sleeps until the next poll, a wake-up, a due retry, or `stop`.
    fn wait(&self, shared: &Shared, rx: &Receiver<()>, stop: &AtomicBool) {
        let now = shared.now();
        // A zero interval would spin; nothing needs polling faster than this.
        let mut timeout = self.options.interval.max(Duration::from_millis(100));
        if let Ok(Some(at)) = self.queue.next_retry_at(now) {
            let until = (at - now).try_into().unwrap_or(Duration::ZERO);
            timeout = timeout.min(until + Duration::from_millis(5));
        }
        let deadline = Instant::now() + timeout;
        // Signals poke the wake-up FIFO (see `run_until_signalled`); the slices are only a
        // fallback for a `stop` set without a poke, or a FIFO that could not be opened.
        while !stop.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match rx.recv_timeout(left.min(STOP_POLL)) {
                Ok(()) => {
                    while rx.try_recv().is_ok() {}
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Claims and starts items while slots (and the PM lane) allow. Returns how many started.
    fn dispatch_round(
        &self,
        shared: &Arc<Shared>,
        workers: &mut HashMap<String, Worker>,
        stop: &AtomicBool,
    ) -> Result<usize, QueueError> {
        let mut started = 0;
        while !stop.load(Ordering::Relaxed) {
            let limit = (self.limit)();
            let slot = shared.slots.try_acquire(limit)?;
            let pm_busy = workers.values().any(|w| w.pm && !w.handle.is_finished());
            let claim = Claim {
                owner_pid: std::process::id(),
                owner_token: shared.token.clone(),
                claimed_at: shared.now(),
                agent_pid: None,
            };
            let now = shared.now();
            let claimed = match (slot.is_some(), pm_busy) {
                (true, false) => self.queue.claim_next(&claim, now)?,
                (true, true) => {
                    self.queue.claim_next_matching(&claim, now, &|i| i.issue_ref.is_some())?
                }
                (false, false) => {
                    self.queue.claim_next_matching(&claim, now, &|i| i.issue_ref.is_none())?
                }
                (false, true) => None,
            };
            let Some(item) = claimed else { break };
            let pm = item.issue_ref.is_none();
            // The PM agent takes no slot.
            let slot = if pm { None } else { slot };
            shared.event(
                QueueEventKind::TaskDequeued,
                &item,
                &format!(
                    "attempt {}/{}{}",
                    item.attempts,
                    self.options.max_attempts,
                    slot.as_ref().map(|s| format!(", slot {}", s.index())).unwrap_or_default()
                ),
            );
            let worker = spawn_worker(shared.clone(), item.clone(), slot);
            match worker {
                Ok(w) => {
                    workers.insert(item.id.clone(), w);
                    started += 1;
                }
                Err(e) => {
                    shared.log(&format!("cannot start a worker thread for {}: {e}", item.id));
                    shared
                        .finish(&item, Err(DispatchError::Retry(format!("no worker thread: {e}"))));
                    break;
                }
            }
        }
        Ok(started)
    }

    /// Recovers items claimed by processes that are gone: adopt their live agents, requeue the
    /// rest.
    fn recover(
        &self,
        shared: &Arc<Shared>,
        workers: &mut HashMap<String, Worker>,
    ) -> Result<(), QueueError> {
        for item in self.queue.claimed()? {
            if workers.contains_key(&item.id) {
                continue;
            }
            let Some(claim) = item.claim.clone() else {
                self.requeue_stale(shared, &item, "it was notified but had no owner recorded");
                continue;
            };
            if claim.owner_token != shared.token
                && process::is_alive(claim.owner_pid, &claim.owner_token)
            {
                continue; // Someone alive still works on it.
            }
            let agent = claim.agent_pid.and_then(|pid| {
                let token = item.extra.get(AGENT_TOKEN_KEY)?.as_str()?.to_string();
                process::is_alive(pid, &token).then_some((pid, token))
            });
            match agent {
                Some((pid, token)) => {
                    let adopted = shared.queue.update(&item.id, &mut |it| {
                        if let Some(c) = it.claim.as_mut() {
                            c.owner_pid = std::process::id();
                            c.owner_token = shared.token.clone();
                        }
                        it.extra.insert(
                            ADOPTED_KEY.into(),
                            Value::String(format!("pid {}", std::process::id())),
                        );
                    })?;
                    shared.event(
                        QueueEventKind::TaskStarted,
                        &adopted,
                        &format!(
                            "adopted agent pid {pid}: its daemon (pid {}) is gone",
                            claim.owner_pid
                        ),
                    );
                    // Take its slot now, before this round dispatches anything new, so the
                    // orphan and new agents together stay within the limit when they can.
                    let slot = if adopted.issue_ref.is_some() {
                        shared.slots.try_acquire((shared.limit)()).ok().flatten()
                    } else {
                        None
                    };
                    match spawn_adopter(shared.clone(), adopted.clone(), pid, token, slot) {
                        Ok(w) => {
                            workers.insert(adopted.id.clone(), w);
                        }
                        Err(e) => shared.log(&format!("cannot watch adopted {}: {e}", item.id)),
                    }
                }
                None => self.requeue_stale(
                    shared,
                    &item,
                    &format!("its daemon (pid {}) died while running it", claim.owner_pid),
                ),
            }
        }
        Ok(())
    }

    fn requeue_stale(&self, shared: &Shared, item: &QueueItem, why: &str) {
        let max = self.options.max_attempts;
        let mut kind = QueueEventKind::TaskQueued;
        let result = shared.queue.update(&item.id, &mut |it| {
            it.claim = None;
            it.extra.remove(AGENT_TOKEN_KEY);
            it.last_error = Some(why.to_string());
            if it.attempts >= max {
                it.status = QueueStatus::Error;
                kind = QueueEventKind::TaskError;
            } else {
                it.status = QueueStatus::Pending;
                kind = QueueEventKind::TaskQueued;
            }
        });
        match result {
            Ok(updated) => shared.event(kind, &updated, &format!("recovered: {why}")),
            Err(e) => shared.log(&format!("cannot recover {}: {e}", item.id)),
        }
    }

    /// Stops workers and agents; returns how many items went back to `pending`.
    fn shutdown(&self, shared: &Shared, mut workers: HashMap<String, Worker>) -> usize {
        shared.stopping.store(true, Ordering::Relaxed);
        let wait_all = |workers: &mut HashMap<String, Worker>, d: Duration| {
            let deadline = Instant::now() + d;
            while workers.values().any(|w| !w.handle.is_finished()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        // Dispatchers that honour the stop flag return on their own.
        wait_all(&mut workers, Duration::from_millis(500));
        let agents = |workers: &HashMap<String, Worker>| -> Vec<(u32, String)> {
            workers
                .values()
                .filter(|w| !w.handle.is_finished())
                .filter_map(|w| lock_state(&w.state).agent.clone())
                .collect()
        };
        for (pid, token) in agents(&workers) {
            if process::signal_group_verified(pid, &token, Signal::TERM) {
                shared.log(&format!("sent SIGTERM to agent pid {pid}"));
            }
        }
        wait_all(&mut workers, self.options.shutdown_grace);
        for (pid, token) in agents(&workers) {
            if process::signal_group_verified(pid, &token, Signal::KILL) {
                shared.log(&format!("sent SIGKILL to agent pid {pid}"));
            }
        }
        wait_all(&mut workers, Duration::from_secs(1));
        let mut requeued = 0;
        for (id, worker) in workers {
            let finished = worker.handle.is_finished();
            if finished {
                if worker.handle.join().is_err() {
                    shared.log(&format!("worker of {id} panicked"));
                }
                continue;
            }
            // Still running: write its state now, and make the worker's own write a no-op.
            let mut st = lock_state(&worker.state);
            if st.finalized {
                continue;
            }
            st.finalized = true;
            let agent_alive = st.agent.as_ref().is_some_and(|(p, t)| process::is_alive(*p, t));
            if agent_alive {
                // Unkillable for now: leave it claimed; the next daemon adopts it.
                shared.log(&format!("{id}: agent still alive; left for the next daemon"));
                continue;
            }
            if shared
                .finish(&worker.item, Err(DispatchError::Interrupted("the daemon stopped".into())))
            {
                requeued += 1;
            }
        }
        requeued
    }
}

fn reap(workers: &mut HashMap<String, Worker>) {
    let done: Vec<String> =
        workers.iter().filter(|(_, w)| w.handle.is_finished()).map(|(k, _)| k.clone()).collect();
    for id in done {
        if let Some(w) = workers.remove(&id) {
            let _ = w.handle.join();
        }
    }
}

fn spawn_worker(
    shared: Arc<Shared>,
    item: QueueItem,
    slot: Option<Box<dyn SlotGuard>>,
) -> io::Result<Worker> {
    let state = Arc::new(Mutex::new(WorkerState::default()));
    let pm = item.issue_ref.is_none();
    let handle = {
        let state = state.clone();
        let item = item.clone();
        std::thread::Builder::new().name(format!("queue-{}", item.id)).spawn(move || {
            // Held until this thread ends: for the agent's whole run.
            let slot = slot;
            let index = slot.as_ref().map(|s| s.index());
            shared.event(
                QueueEventKind::TaskStarted,
                &item,
                if pm { "PM agent" } else { "dev agent" },
            );
            let id = item.id.clone();
            let mut on_agent = |pid: u32| shared.record_agent(&id, &state, pid);
            let result = {
                let mut ctx = DispatchContext::new(index, &shared.stopping, &mut on_agent);
                let dispatcher = &shared.dispatcher;
                catch_unwind(AssertUnwindSafe(|| dispatcher.dispatch(&item, &mut ctx)))
                    .unwrap_or_else(|panic| {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(DispatchError::Retry(format!("the dispatcher panicked: {what}")))
                    })
            };
            {
                let mut st = lock_state(&state);
                if !st.finalized {
                    st.finalized = true;
                    shared.finish(&item, result);
                }
            }
            drop(slot);
            let _ = shared.wake.send(());
        })?
    };
    Ok(Worker { item, pm, state, handle })
}

/// Watches an adopted agent (not our child: polled by identity token) until it exits.
fn spawn_adopter(
    shared: Arc<Shared>,
    item: QueueItem,
    pid: u32,
    token: String,
    slot: Option<Box<dyn SlotGuard>>,
) -> io::Result<Worker> {
    let state =
        Arc::new(Mutex::new(WorkerState { agent: Some((pid, token.clone())), finalized: false }));
    let pm = item.issue_ref.is_none();
    let handle = {
        let state = state.clone();
        let item = item.clone();
        std::thread::Builder::new().name(format!("adopt-{}", item.id)).spawn(move || {
            let mut slot = slot;
            // On shutdown the main loop kills it like any running agent; this loop then sees
            // it gone and requeues the item.
            while process::is_alive(pid, &token) {
                if slot.is_none() && !pm {
                    // It still runs, so it counts against the limit once a slot frees.
                    slot = shared.slots.try_acquire((shared.limit)()).ok().flatten();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let mut st = lock_state(&state);
            if !st.finalized {
                st.finalized = true;
                let result = if shared.stopping.load(Ordering::Relaxed) {
                    Err(DispatchError::Interrupted(format!("adopted agent pid {pid} stopped")))
                } else {
                    shared.dispatcher.adopted_exited(&item, pid)
                };
                shared.finish(&item, result);
            }
            drop(st);
            drop(slot);
            let _ = shared.wake.send(());
        })?
    };
    Ok(Worker { item, pm, state, handle })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_round_trips_and_reads_the_bash_format() {
        let p = PidFile {
            pid: 42,
            token: Some("42:1:ab".into()),
            started_at: Some(OffsetDateTime::UNIX_EPOCH),
        };
        assert_eq!(PidFile::parse(&p.render()), Some(p));
        assert_eq!(
            PidFile::parse("1234\n"),
            Some(PidFile { pid: 1234, token: None, started_at: None })
        );
        assert_eq!(PidFile::parse("garbage"), None);
        // A bash-era pid file has no token: it is never treated as a live daemon.
        assert!(!PidFile::parse(&format!("{}\n", std::process::id())).unwrap().is_live());
    }

    #[test]
    fn event_names_match_the_spec() {
        assert_eq!(QueueEventKind::TaskQueued.as_str(), "task_queued");
        assert_eq!(QueueEventKind::TaskError.as_str(), "task_error");
    }
}
