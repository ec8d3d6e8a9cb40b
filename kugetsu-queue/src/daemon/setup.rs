//! What a daemon is made of: its backends, its dispatcher, where it reports, its clock and its
//! tunables, chosen before it runs.

use std::sync::Arc;
use std::time::Duration;

use kugetsu_core::StateDir;
use kugetsu_core::clock::{Clock, SystemClock};
use kugetsu_core::queue::{AgentSlots, Liveness, TaskQueue, WakeUp};

use super::dispatch::Dispatcher;
use super::events::{NoNotifier, Notifier};
use crate::backend::{Backend, DaemonSeat, HostWatch};
use crate::log::{DEFAULT_LOG_MAX_BYTES, DaemonLog};
use crate::queue::FileQueue;

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
    /// On a shared queue, the most bytes each part of an issue's history saved for another
    /// host may take (`KUGETSU_MOVE_MAX_MB`).
    pub history_cap: usize,
    /// How soon an item held for a spent budget is looked at again (a raised limit frees it
    /// then).
    pub hold_recheck: Duration,
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
            history_cap: 50 << 20,
            hold_recheck: Duration::from_secs(60),
        }
    }
}

/// `MAX_CONCURRENT_AGENTS`, read afresh every round.
pub type LimitFn = Arc<dyn Fn() -> usize + Send + Sync>;

/// Asked before every claim: why nothing may be dispatched now (a provider's pause, see
/// [`kugetsu_core::pause`]) and until when, or `None` to go on.
pub type GateFn = Arc<dyn Fn() -> Option<Held> + Send + Sync>;

/// What holds dispatch back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// As people read it (`paused until 14:05 UTC (mock: rate limit)`).
    pub reason: String,
    /// When to look again (`None`: at the next poll or wake-up).
    pub until: Option<time::OffsetDateTime>,
}

/// Starts something that lives exactly as long as the daemon holds its lock (see
/// [`Daemon::with_companion`]); dropping what it returns stops it.
pub type Companion = Arc<dyn Fn() -> Box<dyn std::any::Any + Send> + Send + Sync>;

/// The queue daemon over a state directory.
pub struct Daemon {
    pub(super) state: StateDir,
    pub(super) queue: Arc<dyn TaskQueue>,
    pub(super) slots: Arc<dyn AgentSlots>,
    pub(super) liveness: Arc<dyn Liveness>,
    pub(super) wake: Option<Arc<dyn WakeUp>>,
    pub(super) host: Option<String>,
    pub(super) seat: Option<Arc<dyn DaemonSeat>>,
    pub(super) hosts: Option<Arc<dyn HostWatch>>,
    /// Whether the queue is the state directory's own files (rebuilt with the clock given).
    file_queue: bool,
    pub(super) dispatcher: Arc<dyn Dispatcher>,
    pub(super) notifier: Arc<dyn Notifier>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) limit: LimitFn,
    pub(super) options: DaemonOptions,
    pub(super) log: Option<DaemonLog>,
    pub(super) companion: Option<Companion>,
    pub(super) gate: Option<GateFn>,
    /// What the gate said last (logged when it changes), and when to look again.
    pub(super) held: std::sync::Mutex<Option<Held>>,
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
            hosts: files.hosts,
            file_queue: true,
            state,
            dispatcher,
            notifier: Arc::new(NoNotifier),
            clock: Arc::new(SystemClock),
            limit,
            options: DaemonOptions::default(),
            log: None,
            companion: None,
            gate: None,
            held: std::sync::Mutex::new(None),
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

    /// Asks `gate` before every claim (see [`GateFn`]).
    pub fn with_gate(mut self, gate: GateFn) -> Self {
        self.gate = Some(gate);
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
        self.hosts = backend.hosts;
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
}
