//! What the kernel says about a process: whether it still runs, and when it started.
//!
//! Session files and queue leases name agent processes by pid, and those records outlive the
//! processes. A process that has exited but was not reaped yet (a *zombie*, common for agents
//! whose kugetsu was killed, when the machine's init does not reap promptly) still answers
//! `kill(pid, 0)`, so liveness is read from `/proc/<pid>/stat`, where a zombie says so. Reading
//! is all this module does: it starts and signals nothing.

/// `(state, starttime)` of `pid` from `/proc/<pid>/stat`, or `None` if there is no such process
/// (or no procfs).
pub fn stat(pid: u32) -> Option<(char, u64)> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `(state, starttime)` from the text of `/proc/<pid>/stat`. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted from the
/// last `)`.
pub fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), starttime is field 22: 18 more fields on.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether a `/proc` state letter is that of a process that has exited (zombie or dead).
pub fn has_exited(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// Whether a process with this pid exists and has not exited. Without procfs, falls back to
/// `kill(pid, 0)` (which cannot tell a zombie from a running process).
pub fn is_running(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else { return false };
    let Some(p) = rustix::process::Pid::from_raw(raw) else { return false };
    let exists = match rustix::process::test_kill_process(p) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    };
    if !exists {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => parse_stat(&text).is_none_or(|(state, _)| !has_exited(state)),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_stat_with_hostile_command_names() {
        let line = "4242 (a) b (c) R) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn an_exited_unreaped_child_is_not_running() {
        assert!(is_running(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while is_running(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!is_running(pid), "a zombie reads as running");
        child.wait().unwrap();
        assert!(!is_running(pid));
    }
}
