//! What the kernel says about a process: whether it still runs, when it started, who its parent
//! and process group are, and how much CPU time and I/O it has used. The one place that reads
//! `/proc/<pid>/stat` and `/proc/<pid>/io`.
//!
//! Session files and queue leases name agent processes by pid, and those records outlive the
//! processes. A process that has exited but was not reaped yet (a *zombie*, common for agents
//! whose kugetsu was killed, when the machine's init does not reap promptly) still answers
//! `kill(pid, 0)`, so liveness is read from `/proc/<pid>/stat`, where a zombie says so. The
//! supervised run reads the same file to follow a run's process tree and to tell an agent that
//! works silently from one that is stuck. Reading is all this module does: it starts and
//! signals nothing.

use kugetsu_core::process::Liveness;

/// The kernel's answer to [`Liveness`] ([`is_running`]): what the orchestration is handed
/// wherever agents are real processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLiveness;

impl Liveness for SystemLiveness {
    fn is_running(&self, pid: u32) -> bool {
        is_running(pid)
    }
}

/// The fields of one `/proc/<pid>/stat` line that kugetsu uses. Times are in clock ticks
/// ([`clock_ticks_per_second`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The process id.
    pub pid: u32,
    /// The state letter (`R`, `S`, `D`, `Z`, ...).
    pub state: char,
    /// The parent's pid.
    pub ppid: u32,
    /// The process group id.
    pub pgrp: u32,
    /// CPU time spent in user mode (all threads).
    pub utime: u64,
    /// CPU time spent in kernel mode (all threads).
    pub stime: u64,
    /// User time of the children this process has waited for (reaped).
    pub cutime: u64,
    /// Kernel time of the children this process has waited for (reaped).
    pub cstime: u64,
    /// When it started, in clock ticks since boot: with the pid, an identity that survives pid
    /// reuse.
    pub start: u64,
}

impl Stat {
    /// Whether the process has exited (zombie or dead).
    pub fn has_exited(&self) -> bool {
        has_exited(self.state)
    }

    /// CPU time used by the process and by the children it has reaped, in clock ticks. It only
    /// grows: a child's time moves into its parent's when the parent waits for it.
    pub fn cpu_with_reaped_children(&self) -> u64 {
        self.utime + self.stime + self.cutime + self.cstime
    }
}

/// The I/O counters of `/proc/<pid>/io`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Io {
    /// Bytes read through any `read`-like call (files, pipes, sockets, terminals).
    pub rchar: u64,
    /// Bytes written through any `write`-like call.
    pub wchar: u64,
    /// Bytes really fetched from storage.
    pub read_bytes: u64,
    /// Bytes sent to storage.
    pub write_bytes: u64,
}

impl Io {
    /// Bytes passed through read and write calls: what a download, a pipe or a file being
    /// written shows, whether or not it reached a disk.
    pub fn chars(&self) -> u64 {
        self.rchar.saturating_add(self.wchar)
    }
}

/// `(state, starttime)` of `pid` from `/proc/<pid>/stat`, or `None` if there is no such process
/// (or no procfs).
pub fn stat(pid: u32) -> Option<(char, u64)> {
    read_stat(pid).map(|s| (s.state, s.start))
}

/// The `/proc/<pid>/stat` of `pid`, or `None` if there is no such process (or no procfs).
pub fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_whitespace().next()?.parse().ok()?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    // cutime and cstime are printed signed (`%ld`); a negative value never happens in practice
    // and is read as 0.
    let signed = |i: usize| Some(f.get(i)?.parse::<i64>().ok()?.max(0).unsigned_abs());
    // Counted after `(comm)`: state(0) ppid(1) pgrp(2) session(3) tty_nr(4) tpgid(5) flags(6)
    // minflt(7) cminflt(8) majflt(9) cmajflt(10) utime(11) stime(12) cutime(13) cstime(14)
    // priority(15) nice(16) num_threads(17) itrealvalue(18) starttime(19).
    Some(Stat {
        pid,
        state: f.first()?.chars().next()?,
        ppid: num(1)?.try_into().ok()?,
        pgrp: num(2)?.try_into().ok()?,
        utime: num(11)?,
        stime: num(12)?,
        cutime: signed(13)?,
        cstime: signed(14)?,
        start: num(19)?,
    })
}

/// The program `pid` runs (`/proc/<pid>/exe`), `None` when it cannot be read.
pub fn exe(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The command name of `pid` (`/proc/<pid>/comm`, at most 15 bytes), `None` when it cannot be
/// read.
pub fn comm(pid: u32) -> Option<String> {
    Some(std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim_end().to_owned())
}

/// The `/proc/<pid>/io` of `pid`, or `None` when it cannot be read (no such process, no
/// procfs, a kernel without I/O accounting, or a process of another user).
pub fn read_io(pid: u32) -> Option<Io> {
    parse_io(&std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?)
}

/// Parses the text of `/proc/<pid>/io` (`name: value` lines). `None` unless both `rchar` and
/// `wchar` are there; the storage counters default to 0.
pub fn parse_io(text: &str) -> Option<Io> {
    let mut io = Io::default();
    let (mut rchar, mut wchar) = (false, false);
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let Ok(value) = value.trim().parse::<u64>() else { continue };
        match name.trim() {
            "rchar" => (io.rchar, rchar) = (value, true),
            "wchar" => (io.wchar, wchar) = (value, true),
            "read_bytes" => io.read_bytes = value,
            "write_bytes" => io.write_bytes = value,
            _ => {}
        }
    }
    (rchar && wchar).then_some(io)
}

/// The stat of every process there is (those that vanish while being read are left out).
/// Empty without procfs.
pub fn all_stats() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_stat)
        .collect()
}

/// How many clock ticks make a second in `/proc` times: the kernel's `AT_CLKTCK`, read from
/// this process's auxiliary vector, else 100 (`USER_HZ` on every common architecture).
pub fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::fs::read("/proc/self/auxv").ok().and_then(|a| auxv_value(&a, AT_CLKTCK)).unwrap_or(100)
    })
}

const AT_CLKTCK: u64 = 17;

/// The value of `key` in an auxiliary vector (native-endian pairs of machine words).
fn auxv_value(auxv: &[u8], key: u64) -> Option<u64> {
    const W: usize = std::mem::size_of::<usize>();
    let word = |c: &[u8]| -> Option<u64> {
        let bytes: [u8; W] = c.try_into().ok()?;
        u64::try_from(usize::from_ne_bytes(bytes)).ok()
    };
    auxv.chunks_exact(2 * W)
        .map(|pair| (word(&pair[..W]), word(&pair[W..])))
        .take_while(|(k, _)| *k != Some(0))
        .find_map(|(k, v)| if k == Some(key) { v.filter(|v| *v > 0) } else { None })
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
        Ok(text) => parse_stat(&text).is_none_or(|s| !s.has_exited()),
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
        let s = parse_stat(line).unwrap();
        assert_eq!((s.pid, s.state, s.ppid, s.pgrp, s.start), (4242, 'S', 1, 2, 987654));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("12 (x) S 1 2"), None, "cut short");
    }

    #[test]
    fn parses_the_cpu_times() {
        // A real line (bash), with utime 25, stime 11, cutime 103, cstime 40.
        let line = "31337 (bash) S 1200 31337 31337 34816 31400 4194304 6120 41235 0 12 25 11 103 40 20 0 1 0 5123456 9469952 1310 18446744073709551615 1 1 0 0 0 0 65536 3686404 1266761467 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            Stat {
                pid: 31337,
                state: 'S',
                ppid: 1200,
                pgrp: 31337,
                utime: 25,
                stime: 11,
                cutime: 103,
                cstime: 40,
                start: 5123456,
            }
        );
        assert_eq!(s.cpu_with_reaped_children(), 179);
        assert!(!s.has_exited());
        let zombie = line.replacen(") S ", ") Z ", 1).replacen(" 103 40 ", " -1 40 ", 1);
        let z = parse_stat(&zombie).unwrap();
        assert!(z.has_exited());
        assert_eq!(z.cutime, 0, "a negative count reads as 0");
    }

    #[test]
    fn parses_io() {
        let text = "rchar: 4096\nwchar: 512\nsyscr: 10\nsyscw: 3\nread_bytes: 8192\nwrite_bytes: 0\ncancelled_write_bytes: 0\n";
        assert_eq!(
            parse_io(text),
            Some(Io { rchar: 4096, wchar: 512, read_bytes: 8192, write_bytes: 0 })
        );
        assert_eq!(parse_io(text).unwrap().chars(), 4608);
        assert_eq!(parse_io("rchar: 1\nwchar: 2\n").map(|i| i.chars()), Some(3));
        assert_eq!(parse_io("rchar: 1\n"), None);
        assert_eq!(parse_io(""), None);
        assert_eq!(parse_io("rchar: x\nwchar: 2"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = read_stat(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(!me.has_exited());
        assert!(all_stats().iter().any(|s| s.pid == me.pid));
        // Reading a file moves our own rchar on.
        let before = read_io(std::process::id()).map(|i| i.rchar);
        let _ = std::fs::read("/proc/self/stat").unwrap();
        let after = read_io(std::process::id()).map(|i| i.rchar);
        if let (Some(b), Some(a)) = (before, after) {
            assert!(a > b, "{b} -> {a}");
        }
        assert_eq!(read_stat(u32::MAX), None);
    }

    #[test]
    fn clock_ticks_come_from_the_auxiliary_vector() {
        const W: usize = std::mem::size_of::<usize>();
        let mut auxv = Vec::new();
        for (k, v) in [(6usize, 4096usize), (17, 250), (0, 0), (17, 999)] {
            auxv.extend_from_slice(&k.to_ne_bytes());
            auxv.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(auxv_value(&auxv, 17), Some(250));
        assert_eq!(auxv_value(&auxv, 6), Some(4096));
        assert_eq!(auxv_value(&auxv, 33), None, "nothing is read past AT_NULL");
        assert_eq!(auxv_value(&auxv[..W], 17), None);
        let ticks = clock_ticks_per_second();
        assert!((50..=10_000).contains(&ticks), "{ticks}");
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
