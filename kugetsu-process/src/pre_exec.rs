//! What runs in a forked child between `fork` and `exec`: the crate's only `unsafe` code.
//!
//! `CommandExt::pre_exec` is `unsafe` because the closure runs in a copy of a multi-threaded
//! process where only async-signal-safe calls are sound. Each closure here makes plain system
//! calls and allocates nothing on its success path.

#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::process::Signal;

/// The child starts a session of its own (`setsid`): no terminal's signals reach it from its
/// first instruction on, and it has no controlling terminal to lose.
pub(crate) fn new_session(cmd: &mut Command) {
    // SAFETY: the closure only calls setsid(2), which is async-signal-safe and allocates
    // nothing.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        });
    }
}

/// The kernel SIGKILLs the child when the thread that spawns it ends (`PR_SET_PDEATHSIG`, kept
/// across `exec`), and the child refuses to start if that thread is already gone.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure makes two system calls (prctl, getppid), which are async-signal-safe,
    // and allocates nothing unless it fails.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent may have died between fork and prctl: then no signal would ever come.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::other("the parent exited before the child started"));
            }
            Ok(())
        });
    }
}
