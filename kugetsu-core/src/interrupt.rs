//! A request to stop, shared by whoever receives it (the CLI's signal handler, an embedder's
//! cancel button) and everything that must obey it (a worktree checkout, a wait for an agent
//! slot, the agent process).
//!
//! Core installs no signal handler: the edge triggers an [`Interrupt`] with the signal it
//! received, and the orchestration and the drivers poll it. The signal is kept so that the run
//! can be recorded as interrupted *by what* and the process can exit as a shell expects
//! (128 + the signal's number). How often it was triggered is kept too: a second Ctrl-C asks
//! for the agent to be killed at once instead of after a grace period.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

/// The signals a foreground run is stopped by, by number (Linux numbering).
pub mod signals {
    /// The terminal or SSH connection went away.
    pub const SIGHUP: i32 = 1;
    /// Ctrl-C.
    pub const SIGINT: i32 = 2;
    /// `kill`, `timeout`, a service manager.
    pub const SIGTERM: i32 = 15;
}

/// A cloneable stop request: every clone sees the same state.
#[derive(Clone, Default)]
pub struct Interrupt {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Set on the first trigger; handed as-is to code that takes a plain flag (gix).
    flag: AtomicBool,
    /// The signal of the first trigger (0: none, or a trigger without a signal).
    signal: AtomicI32,
    /// How many times it was triggered.
    count: AtomicU32,
}

impl Interrupt {
    /// A request that nothing has triggered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks everything watching to stop because of `signal` (a signal number, or 0 for a
    /// request that came from no signal). The first signal is the one reported.
    pub fn trigger(&self, signal: i32) {
        let _ = self.inner.signal.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        self.inner.count.fetch_add(1, Ordering::SeqCst);
        self.inner.flag.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_triggered(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    /// Whether it was asked more than once: the user is impatient, skip grace periods.
    pub fn is_urgent(&self) -> bool {
        self.inner.count.load(Ordering::SeqCst) > 1
    }

    /// The signal that asked first, if any.
    pub fn signal(&self) -> Option<Signal> {
        match self.inner.signal.load(Ordering::SeqCst) {
            0 => None,
            n => Some(Signal(n)),
        }
    }

    /// What asked to stop, as people read it: the signal's name, or `a stop request`.
    pub fn describe(&self) -> String {
        self.signal().map_or_else(|| "a stop request".to_owned(), Signal::name)
    }

    /// The plain flag, for APIs that poll an `AtomicBool` (a git checkout).
    pub fn flag(&self) -> &AtomicBool {
        &self.inner.flag
    }
}

impl fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interrupt")
            .field("triggered", &self.is_triggered())
            .field("signal", &self.signal())
            .finish()
    }
}

/// A signal number, named the way people read it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signal(pub i32);

impl Signal {
    /// The exit status a shell shows for a process ended by this signal.
    pub fn exit_code(self) -> u8 {
        u8::try_from(128 + self.0.clamp(0, 127)).unwrap_or(u8::MAX)
    }

    /// `SIGINT`, `SIGTERM`, `SIGHUP`, or `signal N`.
    pub fn name(self) -> String {
        match self.0 {
            signals::SIGHUP => "SIGHUP".into(),
            signals::SIGINT => "SIGINT".into(),
            signals::SIGTERM => "SIGTERM".into(),
            9 => "SIGKILL".into(),
            3 => "SIGQUIT".into(),
            n => format!("signal {n}"),
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signal({})", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_is_kept_and_a_second_trigger_is_urgent() {
        let i = Interrupt::new();
        let seen_by_worker = i.clone();
        assert!(!seen_by_worker.is_triggered());
        assert_eq!(seen_by_worker.signal(), None);
        i.trigger(signals::SIGHUP);
        assert!(seen_by_worker.is_triggered());
        assert!(seen_by_worker.flag().load(Ordering::SeqCst));
        assert!(!seen_by_worker.is_urgent());
        i.trigger(signals::SIGINT);
        assert!(seen_by_worker.is_urgent());
        assert_eq!(seen_by_worker.signal(), Some(Signal(signals::SIGHUP)));
        assert_eq!(Signal(signals::SIGHUP).exit_code(), 129);
        assert_eq!(Signal(signals::SIGINT).exit_code(), 130);
        assert_eq!(Signal(signals::SIGTERM).exit_code(), 143);
        assert_eq!(Signal(signals::SIGTERM).to_string(), "SIGTERM");
    }
}
