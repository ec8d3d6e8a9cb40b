//! Running the daemon: its lock and seat, its pid file, the threads that wake it, and the main
//! loop that recovers, dispatches and sleeps until it is asked to stop.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use kugetsu_core::StateDir;
use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::storage::{self, StorageError};
use rustix::fs::FlockOperation;

use super::control::{DaemonLock, PidFile, try_lock_file};
use super::error::DaemonError;
use super::round::Failing;
use super::setup::Daemon;
use super::workers::{Shared, Worker, reap};
use crate::log::DaemonLog;
use crate::wake;

/// How long an idle daemon may sleep before it looks at its stop flag without being poked.
const STOP_POLL: Duration = Duration::from_secs(1);

/// How a daemon run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DaemonExit {
    /// Items dispatched during the run.
    pub dispatched: usize,
    /// Items put back to `pending` because the daemon stopped under them.
    pub requeued_on_stop: usize,
}

/// Asks the daemon of `state`, run with `stop`, to stop at once: triggers `stop` with `signal`
/// (0 for a request that came from no signal) and pokes the daemon's wake-up FIFO, so that an
/// idle daemon need not wait for its next look at the flag. Cheap and non-blocking: fit for a
/// signal-handling thread.
pub fn request_stop(state: &StateDir, stop: &Interrupt, signal: i32) {
    stop.trigger(signal);
    wake::poke(&wake::wake_path(state));
}

impl Daemon {
    /// Runs the daemon until `stop` is triggered: takes the daemon lock (or fails with
    /// [`DaemonError::AlreadyRunning`]), writes `daemon.pid`, then dispatches as described in
    /// the module documentation. Returns once every item it held is in a consistent state.
    ///
    /// The daemon installs no signal handler: whoever runs it decides what stops it (the CLI
    /// triggers `stop` on SIGTERM and SIGINT). An idle daemon looks at `stop` about once a
    /// second; [`request_stop`] also wakes it, so it stops at once.
    pub fn run(&self, stop: &Interrupt) -> Result<DaemonExit, DaemonError> {
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
        let served = dir_identity(self.state.root());

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
            hosts: self.hosts.clone(),
            last_hold: std::sync::Mutex::new(None),
        });
        self.listen_for_wake_ups(&shared, &tx)?;
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
        let mut last_watch: Option<Instant> = None;
        while !stop.is_triggered() {
            reap(&mut workers);
            if served.is_some() && dir_identity(self.state.root()) != served {
                // Deleted (or replaced by another directory at its path): nothing this daemon
                // would write there reaches anyone, and no `stop` can find it any more.
                shared.log(&format!(
                    "the state directory {} is gone: stopping",
                    self.state.root().display()
                ));
                break;
            }
            if let Some(ttl) = self.queue.lease_ttl() {
                if last_renew.elapsed() >= ttl / 3 {
                    last_renew = Instant::now();
                    self.renew_leases(&shared, &workers);
                }
                if last_watch.is_none_or(|t| t.elapsed() >= ttl / 3) {
                    last_watch = Some(Instant::now());
                    self.watch_hosts(&shared);
                }
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

    /// Starts the threads that end the daemon's sleep: the backend's wake-up (a shared
    /// queue's `LISTEN`) and the state directory's FIFO. Without them the daemon still works,
    /// polling every `interval`.
    fn listen_for_wake_ups(
        &self,
        shared: &Arc<Shared>,
        tx: &Sender<()>,
    ) -> Result<(), DaemonError> {
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
        Ok(())
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
    fn wait(&self, shared: &Shared, rx: &Receiver<()>, stop: &Interrupt, retry: Option<Duration>) {
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
        let held_until =
            self.held.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|h| h.until);
        if let Some(at) = held_until {
            let until = (at - now).try_into().unwrap_or(Duration::ZERO);
            timeout = timeout.min(until + Duration::from_millis(5));
        }
        if let Ok(Some(at)) = self.queue.next_retry_at(now) {
            let until = (at - now).try_into().unwrap_or(Duration::ZERO);
            timeout = timeout.min(until + Duration::from_millis(5));
        }
        let deadline = Instant::now() + timeout;
        // A stop request pokes the wake-up FIFO (see `request_stop`); the slices are only a
        // fallback for a `stop` set without a poke, or a FIFO that could not be opened.
        while !stop.is_triggered() {
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
}

/// The device and inode of `dir`, `None` when it cannot be read: the same path holding another
/// directory is not the same state directory.
fn dir_identity(dir: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::control;
    use crate::daemon::dispatch::{DispatchContext, DispatchError, DispatchOutcome, Dispatcher};
    use kugetsu_core::QueueItem;

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
        let stop = Interrupt::new();
        stop.trigger(0);
        daemon.run(&stop).expect("run");
        assert_eq!(*seen.lock().unwrap_or_else(|e| e.into_inner()), [true, true]);
        assert!(!control::lock_is_held(&state).expect("lock"), "let go after");
    }

    /// A daemon whose state directory is deleted under it stops by itself, at its next round:
    /// nobody could reach it any more (its pid file and FIFO went with the directory).
    #[test]
    fn a_daemon_stops_when_its_state_directory_is_deleted() {
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
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path().join("state"));
        let options = crate::daemon::DaemonOptions {
            interval: Duration::from_millis(100),
            ..Default::default()
        };
        let daemon =
            Daemon::new(state.clone(), Arc::new(NoDispatch), Arc::new(|| 1)).with_options(options);
        let stop = Interrupt::new();
        let (done_tx, done_rx) = mpsc::channel();
        let runner_stop = stop.clone();
        std::thread::spawn(move || {
            let _ = done_tx.send(daemon.run(&runner_stop).map(|_| ()).map_err(|e| e.to_string()));
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while !state.daemon_pid_path().exists() {
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::remove_dir_all(state.root()).expect("delete the state directory");
        let ended = done_rx.recv_timeout(Duration::from_secs(30));
        stop.trigger(0); // whatever happened, let the thread go
        assert!(ended.is_ok(), "the daemon still runs without its state directory");
    }
}
