//! What a foreground command does with the signals a user's shell sends it: Ctrl-C (SIGINT),
//! `kill`/`timeout` (SIGTERM) and a terminal or SSH connection going away (SIGHUP).
//!
//! The agent runs in its own process group, so none of these reach it; left to their default,
//! they would end kugetsu and leave the agent running with nobody to record its turn. Instead a
//! thread receives them and triggers the command's [`Interrupt`]: the driver stops the agent's
//! whole process group (TERM, then KILL after a grace period, at once on a second signal), the
//! orchestration records the turn as `interrupted`, the slot and the issue lock are released,
//! and the command exits with 128 + the signal's number, as a shell expects.
//!
//! Nothing is registered until a command asks ([`stop_on_signals`]): commands that run no agent
//! keep the default behaviour of each signal.
//!
//! The queue daemon run in the foreground (`queue-daemon run`) is a service, not a turn: it is
//! stopped by SIGTERM and SIGINT and outlives a hang-up ([`stop_service_on_signals`]). The
//! daemon library installs no handler of its own.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use kugetsu_core::interrupt::{Interrupt, signals};
use signal_hook::iterator::Signals;

/// The signals that stop a foreground run.
pub const STOP_SIGNALS: [i32; 3] = [signals::SIGINT, signals::SIGTERM, signals::SIGHUP];

/// Routes SIGINT, SIGTERM and SIGHUP to `interrupt` for the rest of the process's life. If the
/// handlers cannot be installed the signals keep their default action (the command still
/// works; a signal then ends it as before), which is logged.
pub fn stop_on_signals(interrupt: &Interrupt) {
    stop_on(interrupt, &STOP_SIGNALS);
}

/// Routes the given signals to `interrupt`.
pub fn stop_on(interrupt: &Interrupt, which: &[i32]) {
    let mut signals = match Signals::new(which) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot install signal handlers");
            return;
        }
    };
    let interrupt = interrupt.clone();
    let spawned = std::thread::Builder::new().name("kugetsu-signals".into()).spawn(move || {
        for sig in signals.forever() {
            tracing::debug!(signal = sig, "stop requested by a signal");
            interrupt.trigger(sig);
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the signal thread");
    }
}

/// The exit status of a service stopped twice: the first SIGTERM or SIGINT asks it to stop, a
/// second one while it stops ends it at once, as a Ctrl-C would have (128 + SIGINT).
const IMPATIENT_EXIT: i32 = 130;

/// Calls `stop` with the signal's number on SIGTERM and SIGINT, for the rest of the process's
/// life. A second one while stopping exits the process at once with 130 (a user pressing
/// Ctrl-C twice means it; what the daemon left claimed is recovered by the next one). SIGHUP is
/// ignored: closing the SSH session a daemon was started from must not stop it.
pub fn stop_service_on_signals(stop: impl Fn(i32) + Send + 'static) -> io::Result<()> {
    let seen = Arc::new(AtomicBool::new(false));
    for sig in [signals::SIGTERM, signals::SIGINT] {
        // Registered first, so it looks at `seen` before this same signal sets it.
        signal_hook::flag::register_conditional_shutdown(sig, IMPATIENT_EXIT, seen.clone())?;
        signal_hook::flag::register(sig, seen.clone())?;
    }
    // Registering a handler replaces the default action (terminate) for SIGHUP.
    signal_hook::flag::register(signals::SIGHUP, Arc::new(AtomicBool::new(false)))?;
    let mut signals = Signals::new([signals::SIGTERM, signals::SIGINT])?;
    std::thread::Builder::new().name("kugetsu-signals".into()).spawn(move || {
        for sig in signals.forever() {
            tracing::debug!(signal = sig, "service stop requested by a signal");
            stop(sig);
        }
    })?;
    Ok(())
}

/// Makes SIGINT (Ctrl-C) do nothing to this process from now on, for a command that spends its
/// time waiting on an interactive program in the foreground of the same terminal.
pub fn leave_ctrl_c_to_the_foreground_program() {
    let ignored = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _ = signal_hook::flag::register(signals::SIGINT, ignored);
}
