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

/// Makes SIGINT (Ctrl-C) do nothing to this process from now on, for a command that spends its
/// time waiting on an interactive program in the foreground of the same terminal.
pub fn leave_ctrl_c_to_the_foreground_program() {
    let ignored = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _ = signal_hook::flag::register(signals::SIGINT, ignored);
}
