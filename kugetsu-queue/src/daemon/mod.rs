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

mod control;
mod dispatch;
mod events;
mod recovery;
mod workers;

use control::{DaemonLock, try_lock_file};
pub use control::{DaemonStatus, PidFile, StopOutcome, spawn_detached, status, stop, tail_log};
pub use dispatch::{DispatchContext, DispatchError, DispatchOutcome, Dispatcher};
pub use events::{NoNotifier, Notifier, QueueEvent, QueueEventKind};
use workers::{Shared, Worker, lock_state, reap, spawn_adopter, spawn_worker};

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
    AgentSlots, Claim, ClaimLane, Liveness, QueueError, QueueItem, QueueStatus, SlotGuard,
    TaskQueue, WakeUp,
};
use kugetsu_core::storage::{self, StorageError};
use rustix::fs::FlockOperation;
use rustix::process::Signal;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::backend::{Backend, DaemonSeat};
use crate::log::{self, DEFAULT_LOG_MAX_BYTES, DaemonLog};
use crate::queue::FileQueue;
use crate::slots::LentSlot;
use crate::wake;
use kugetsu_process::identity as process;

/// How long an idle daemon may sleep before it looks at its stop flag without being poked.
const STOP_POLL: Duration = Duration::from_secs(1);

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
    /// Another daemon already runs as this host on the shared queue.
    #[error(
        "another queue daemon already runs as host {host} on the shared queue (the same machine \
         name and state directory on another machine?)"
    )]
    HostTaken {
        /// The host name.
        host: String,
    },
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
    queue: Arc<dyn TaskQueue>,
    slots: Arc<dyn AgentSlots>,
    liveness: Arc<dyn Liveness>,
    wake: Option<Arc<dyn WakeUp>>,
    host: Option<String>,
    seat: Option<Arc<dyn DaemonSeat>>,
    /// Whether the queue is the state directory's own files (rebuilt with the clock given).
    file_queue: bool,
    dispatcher: Arc<dyn Dispatcher>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    limit: LimitFn,
    options: DaemonOptions,
    log: Option<DaemonLog>,
    companion: Option<Companion>,
}

/// Starts something that lives exactly as long as the daemon holds its lock (see
/// [`Daemon::with_companion`]); dropping what it returns stops it.
pub type Companion = Arc<dyn Fn() -> Box<dyn std::any::Any + Send> + Send + Sync>;

/// How a daemon run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DaemonExit {
    /// Items dispatched during the run.
    pub dispatched: usize,
    /// Items put back to `pending` because the daemon stopped under them.
    pub requeued_on_stop: usize,
}

impl Daemon {
    /// A daemon over `state` that runs items with `dispatcher`, at most `limit()` dev agents at
    /// once. Defaults: the state directory's files ([`Backend::files`]), no notifications, the
    /// system clock, [`DaemonOptions::default`], a log at `queue/daemon.log`.
    pub fn new(state: StateDir, dispatcher: Arc<dyn Dispatcher>, limit: LimitFn) -> Self {
        let files = Backend::files(&state);
        Daemon {
            queue: files.queue,
            slots: files.slots,
            liveness: files.liveness,
            wake: files.wake,
            host: files.host,
            seat: files.seat,
            file_queue: true,
            state,
            dispatcher,
            notifier: Arc::new(NoNotifier),
            clock: Arc::new(SystemClock),
            limit,
            options: DaemonOptions::default(),
            log: None,
            companion: None,
        }
    }

    /// Calls `start` once the daemon holds its lock, and drops what it returned before letting
    /// go of the lock: a daemon that cannot take the lock starts nothing, and once `stop` sees
    /// the daemon gone, so is its companion (the CLI's warm agent). `start` must not block:
    /// dispatching waits for it.
    pub fn with_companion(mut self, start: Companion) -> Self {
        self.companion = Some(start);
        self
    }

    /// Sends transitions to `notifier`.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Uses `clock` for every timestamp (claims, backoff, log), queue included.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        if self.file_queue {
            self.queue = Arc::new(FileQueue::with_clock(&self.state, clock.clone()));
        }
        self.clock = clock;
        self
    }

    /// Overrides the tunables.
    pub fn with_options(mut self, options: DaemonOptions) -> Self {
        self.options = options;
        self
    }

    /// Uses `backend` (its queue, slots, liveness rule and wake-up) instead of the state
    /// directory's files.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.queue = backend.queue;
        self.slots = backend.slots;
        self.liveness = backend.liveness;
        self.wake = backend.wake;
        self.host = backend.host;
        self.seat = backend.seat;
        self.file_queue = false;
        self
    }

    /// Uses `slots` instead of the backend's.
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
        // One daemon per host on a shared queue too; held as long as the lock.
        let _seat = self.take_seat()?;
        // Declared after the lock, so dropped before it.
        let _companion = self.companion.as_ref().map(|start| start());
        let log = match &self.log {
            Some(l) => l.clone(),
            None => DaemonLog::open(&self.state.daemon_log_path(), self.options.log_max_bytes)?,
        };
        let token = self.liveness.own_token();
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
            host: self.host.clone(),
            leases: std::sync::atomic::AtomicU64::new(0),
            liveness: self.liveness.clone(),
        });
        if let Some(source) = self.wake.clone() {
            let tx = tx.clone();
            let log = shared.clone();
            std::thread::Builder::new()
                .name("queue-listen".into())
                .spawn(move || {
                    if let Err(e) = source.listen(&mut || tx.send(()).is_ok()) {
                        log.log(&format!("{e}; enqueued items wait for the next poll"));
                    }
                })
                .map_err(|source| StorageError::Io {
                    action: "start the wake-up thread for",
                    path: self.state.queue_dir(),
                    source,
                })?;
        }
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
            "daemon started: pid {}, limit {}, poll every {:?}{}",
            std::process::id(),
            (self.limit)(),
            self.options.interval,
            self.host.as_ref().map(|h| format!(", host {h}")).unwrap_or_default()
        ));

        let mut workers: HashMap<String, Worker> = HashMap::new();
        let mut exit = DaemonExit::default();
        let mut last_cleanup: Option<Instant> = None;
        let mut reported: Vec<String> = Vec::new();
        let mut failing = Failing::default();
        let mut last_renew = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            reap(&mut workers);
            if let Some(ttl) = self.queue.lease_ttl()
                && last_renew.elapsed() >= ttl / 3
            {
                last_renew = Instant::now();
                self.renew_leases(&shared, &workers);
            }
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
                Ok(n) => {
                    exit.dispatched += n;
                    if failing.streak > 0 {
                        shared.log("the queue is reachable again");
                    }
                    failing = Failing::default();
                }
                Err(e) => {
                    // An unreachable queue server: running agents go on, the daemon retries
                    // with a growing pause (logged once per step, not once per poll).
                    failing.streak += 1;
                    shared.log(&format!(
                        "dispatch round failed: {e}; retrying in {:?}",
                        failing.backoff()
                    ));
                }
            }
            self.wait(&shared, &rx, stop, failing.backoff());
        }
        shared.log("stop requested: no more dispatching; stopping running agents");
        exit.requeued_on_stop = self.shutdown(&shared, workers);
        let _ = storage::remove_file(&self.state.daemon_pid_path());
        shared.log(&format!("daemon stopped (pid {})", std::process::id()));
        Ok(exit)
    }

    /// Takes this host's seat on a shared queue: a second daemon running as the same host
    /// (elsewhere) is refused. A server unreachable now does not stop the daemon (it retries
    /// the queue like any other operation); the state directory's lock still holds.
    fn take_seat(&self) -> Result<Option<Box<dyn std::any::Any + Send>>, DaemonError> {
        let (Some(seat), Some(host)) = (&self.seat, &self.host) else { return Ok(None) };
        match seat.take() {
            Ok(Some(held)) => Ok(Some(held)),
            Ok(None) => Err(DaemonError::HostTaken { host: host.clone() }),
            Err(e) => {
                tracing::warn!("cannot take this host's seat on the shared queue: {e}");
                Ok(None)
            }
        }
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

    /// Sleeps until the next poll, a wake-up, a due retry, a lease renewal, or `stop`.
    fn wait(&self, shared: &Shared, rx: &Receiver<()>, stop: &AtomicBool, retry: Option<Duration>) {
        let now = shared.now();
        // A zero interval would spin; nothing needs polling faster than this.
        let mut timeout = self.options.interval.max(Duration::from_millis(100));
        if let Some(ttl) = self.queue.lease_ttl() {
            // Leases are renewed at a third of their life; expired ones of dead peers are
            // recovered about as often.
            timeout = timeout.min((ttl / 3).max(Duration::from_millis(100)));
        }
        if let Some(retry) = retry {
            timeout = timeout.min(retry);
        }
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
            let claim = shared.new_claim();
            let now = shared.now();
            let lane = match (slot.is_some(), pm_busy) {
                (true, false) => Some(ClaimLane::Any),
                (true, true) => Some(ClaimLane::Issues),
                (false, false) => Some(ClaimLane::Pm),
                (false, true) => None,
            };
            let claimed = match lane {
                Some(lane) => self.queue.claim_next_in(&claim, now, lane)?,
                None => None,
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
}

/// Consecutive failed rounds (an unreachable queue server), and the pause they call for.
#[derive(Default)]
struct Failing {
    streak: u32,
}

impl Failing {
    /// `None` while rounds succeed; then 1 s doubling up to 1 min.
    fn backoff(&self) -> Option<Duration> {
        (self.streak > 0).then(|| {
            Duration::from_secs(1u64 << self.streak.saturating_sub(1).min(6)).min(MAX_RETRY_PAUSE)
        })
    }
}

/// Longest pause between attempts to reach an unreachable queue.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(60);

impl Daemon {
    /// The heartbeat: renews the leases of the items this daemon runs. A lease that comes back
    /// lost (this daemon was paused or cut off past its expiry, and the item went to another)
    /// makes its worker write nothing more and its agent stop: the item is someone else's now.
    /// An unreachable queue renews nothing and ends nothing: the agents run on, and the leases
    /// are renewed when it answers again.
    fn renew_leases(&self, shared: &Shared, workers: &HashMap<String, Worker>) {
        let held: Vec<(String, Claim)> = workers
            .iter()
            .filter(|(_, w)| !w.handle.is_finished())
            .filter_map(|(id, w)| Some((id.clone(), w.item.claim.clone()?)))
            .collect();
        if held.is_empty() {
            return;
        }
        let kept = match self.queue.renew(&held) {
            Ok(kept) => kept,
            Err(e) => {
                shared.log(&format!(
                    "cannot renew {} lease(s): {e}; agents keep running",
                    held.len()
                ));
                return;
            }
        };
        for (id, _) in held.iter().filter(|(id, _)| !kept.contains(id)) {
            let Some(worker) = workers.get(id) else { continue };
            let mut st = lock_state(&worker.state);
            if st.finalized {
                continue;
            }
            st.finalized = true;
            shared.log(&format!(
                "{id}: lease lost (another daemon holds the item now); stopping its agent, \
                 recording nothing"
            ));
            if let Some((pid, token)) = st.agent.clone() {
                process::signal_group_verified(pid, &token, Signal::TERM);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A companion lives exactly while the daemon holds its lock: started after the lock is
    /// taken, dropped before it is let go (so `stop`, which waits for the lock, sees it gone).
    #[test]
    fn the_companion_lives_inside_the_lock() {
        struct NoDispatch;
        impl Dispatcher for NoDispatch {
            fn dispatch(
                &self,
                _: &QueueItem,
                _: &mut DispatchContext<'_>,
            ) -> Result<DispatchOutcome, DispatchError> {
                Err(DispatchError::Fatal("not in this test".into()))
            }
        }
        struct Probe(StateDir, Arc<std::sync::Mutex<Vec<bool>>>);
        impl Drop for Probe {
            fn drop(&mut self) {
                let held = control::lock_is_held(&self.0).unwrap_or(false);
                self.1.lock().unwrap_or_else(|e| e.into_inner()).push(held);
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path().join("state"));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (probe_state, probe_seen) = (state.clone(), seen.clone());
        let daemon = Daemon::new(state.clone(), Arc::new(NoDispatch), Arc::new(|| 1))
            .with_companion(Arc::new(move || {
                let held = control::lock_is_held(&probe_state).unwrap_or(false);
                probe_seen.lock().unwrap_or_else(|e| e.into_inner()).push(held);
                Box::new(Probe(probe_state.clone(), probe_seen.clone()))
            }));
        daemon.run(&AtomicBool::new(true)).expect("run");
        assert_eq!(*seen.lock().unwrap_or_else(|e| e.into_inner()), [true, true]);
        assert!(!control::lock_is_held(&state).expect("lock"), "let go after");
    }

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
