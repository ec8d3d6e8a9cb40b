//! Recognising a process across time: a pid alone is not an identity.
//!
//! Leases (who claimed a queue item, which agent runs it) and the daemon's pid file outlive the
//! processes they name. Pids are reused, so every record also stores a *token*: the pid, the
//! process start time from `/proc/<pid>/stat` (clock ticks since boot) and the boot id. An
//! unrelated process that later gets the same pid, or the same pid after a reboot, has a
//! different token and is never mistaken for the original (never signalled, never adopted).

use std::fs;

use rustix::process::{Pid, Signal};

use crate::procfs;

/// The identity token of `pid` right now, or `None` if no such process exists (or it is a
/// zombie: it has exited and only waits to be reaped, so it counts as gone).
pub fn process_token(pid: u32) -> Option<String> {
    let (state, start) = procfs::stat(pid)?;
    if procfs::has_exited(state) {
        return None;
    }
    Some(format!("{pid}:{start}:{}", boot_id()))
}

/// The token of the calling process.
pub fn own_token() -> String {
    let pid = std::process::id();
    // Reading our own /proc entry only fails without procfs; fall back to a token that can
    // never match anything, so nothing is adopted or signalled by mistake.
    process_token(pid).unwrap_or_else(|| format!("{pid}:unknown:{}", boot_id()))
}

/// Whether the process that had `token` is still alive (same pid, same start, same boot).
pub fn is_alive(pid: u32, token: &str) -> bool {
    process_token(pid).is_some_and(|t| t == token)
}

/// Whether any (non-zombie) process with `pid` exists, whoever it is.
pub fn pid_exists(pid: u32) -> bool {
    process_token(pid).is_some()
}

/// Sends `signal` to the process with `token`, and to its process group when it leads one
/// (agents are started in their own group so that their children go with them). Does nothing
/// when the token no longer matches: the pid may belong to someone else by now.
pub fn signal_group_verified(pid: u32, token: &str, signal: Signal) -> bool {
    let Some(p) = verified_pid(pid, token) else { return false };
    let leads_group = rustix::process::getpgid(Some(p)).is_ok_and(|g| g == p);
    if leads_group && rustix::process::kill_process_group(p, signal).is_ok() {
        return true;
    }
    rustix::process::kill_process(p, signal).is_ok()
}

/// Sends `signal` to the process with `token` only (not its group); nothing if the token no
/// longer matches.
pub fn signal_verified(pid: u32, token: &str, signal: Signal) -> bool {
    verified_pid(pid, token).is_some_and(|p| rustix::process::kill_process(p, signal).is_ok())
}

fn verified_pid(pid: u32, token: &str) -> Option<Pid> {
    if !is_alive(pid, token) {
        return None;
    }
    i32::try_from(pid).ok().and_then(Pid::from_raw)
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().chars().filter(|c| *c != '-').take(12).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_token_is_stable_and_alive() {
        let t = own_token();
        assert_eq!(t, own_token());
        assert!(is_alive(std::process::id(), &t));
        assert!(!is_alive(std::process::id(), "1:0:nope"));
    }

    #[test]
    fn a_zombie_counts_as_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not reaped yet: once it has exited it is a zombie, which must read as dead.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while process_token(pid).is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(process_token(pid).is_none(), "an exited child still reads as alive");
        child.wait().unwrap();
    }
}
