//! What `queue-daemon status`, `stop`, `logs` and `start` need from outside the daemon: its
//! lock, its pid file, signalling it by identity, its log, and starting it detached.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kugetsu_core::StateDir;
use kugetsu_core::storage::{self, StorageError};
use rustix::fs::FlockOperation;
use rustix::process::Signal;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::DaemonError;
use crate::log;
use kugetsu_process::identity as process;

/// The contents of `queue/daemon.pid`: the pid on the first line (as the original kugetsu
/// wrote it), then `key=value` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidFile {
    /// The daemon's pid.
    pub pid: u32,
    /// Its identity token (see [`kugetsu_process::identity`]).
    pub token: Option<String>,
    /// When it started.
    pub started_at: Option<OffsetDateTime>,
}

impl PidFile {
    pub(super) fn render(&self) -> String {
        let mut s = format!("{}\n", self.pid);
        if let Some(t) = &self.token {
            s.push_str(&format!("token={t}\n"));
        }
        if let Some(at) = self.started_at.and_then(|t| t.format(&Rfc3339).ok()) {
            s.push_str(&format!("started_at={at}\n"));
        }
        s
    }

    pub(super) fn parse(text: &str) -> Option<PidFile> {
        let mut lines = text.lines();
        let pid = lines.next()?.trim().parse().ok()?;
        let mut file = PidFile { pid, token: None, started_at: None };
        for line in lines {
            if let Some(t) = line.strip_prefix("token=") {
                file.token = Some(t.trim().to_string());
            } else if let Some(t) = line.strip_prefix("started_at=") {
                file.started_at = OffsetDateTime::parse(t.trim(), &Rfc3339).ok();
            }
        }
        Some(file)
    }

    /// Reads the pid file of `state`; `None` if missing or unreadable (it is informational).
    pub fn read(state: &StateDir) -> Option<PidFile> {
        let bytes = storage::read_bytes(&state.daemon_pid_path()).ok()??;
        PidFile::parse(&String::from_utf8_lossy(&bytes))
    }

    /// Whether the process it names is alive and is the very process that wrote it.
    pub fn is_live(&self) -> bool {
        self.token.as_deref().is_some_and(|t| process::is_alive(self.pid, t))
    }
}

/// The daemon lock, held for the daemon's life. Owns the file (like the slot guards, and for
/// the same reason: fd-lock's guard cannot outlive a borrow); the kernel releases it on exit.
pub(super) struct DaemonLock {
    pub(super) _file: File,
}

pub(super) fn try_lock_file(path: &Path, op: FlockOperation) -> Result<Option<File>, StorageError> {
    let file = storage::open_lock_file(path)?;
    match rustix::fs::flock(&file, op) {
        Ok(()) => Ok(Some(file)),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
        Err(e) => {
            Err(StorageError::Io { action: "lock", path: path.to_path_buf(), source: e.into() })
        }
    }
}

/// Whether a daemon holds the lock of `state`, probed without disturbing it for long (a shared
/// try-lock, released at once). A daemon starting at that very instant retries, see
/// [`Daemon::run`](super::Daemon::run).
pub(super) fn lock_is_held(state: &StateDir) -> Result<bool, StorageError> {
    let path = state.daemon_lock_path();
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(false);
    }
    Ok(try_lock_file(&path, FlockOperation::NonBlockingLockShared)?.is_none())
}

/// Whether the queue daemon of a state directory runs, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonStatus {
    /// A daemon holds the lock.
    pub running: bool,
    /// Its pid, when verified through the pid file's identity token.
    pub pid: Option<u32>,
    /// When it started.
    pub since: Option<OffsetDateTime>,
    /// A pid file left by a daemon that is gone (reported, never acted on).
    pub stale_pid_file: Option<u32>,
}

/// `queue-daemon status`.
pub fn status(state: &StateDir) -> Result<DaemonStatus, DaemonError> {
    let running = lock_is_held(state)?;
    let mut pid_file = PidFile::read(state);
    if running && !pid_file.as_ref().is_some_and(PidFile::is_live) {
        // It may have just taken the lock and not written its pid yet.
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            pid_file = PidFile::read(state);
            if pid_file.as_ref().is_some_and(PidFile::is_live) {
                break;
            }
        }
    }
    let live = pid_file.as_ref().filter(|p| running && p.is_live());
    Ok(DaemonStatus {
        running,
        pid: live.map(|p| p.pid),
        since: live.and_then(|p| p.started_at),
        stale_pid_file: pid_file.as_ref().filter(|_| live.is_none()).map(|p| p.pid),
    })
}

/// What [`stop`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// No daemon was running.
    NotRunning,
    /// The daemon exited after SIGTERM.
    Stopped {
        /// Its pid.
        pid: u32,
    },
    /// It had to be killed with SIGKILL after `timeout`.
    Killed {
        /// Its pid.
        pid: u32,
    },
}

/// `queue-daemon stop`: SIGTERM to the daemon (only after verifying, through the lock and the
/// identity token, that the pid is really it), wait up to `timeout` for the lock to be
/// released, then SIGKILL.
pub fn stop(state: &StateDir, timeout: Duration) -> Result<StopOutcome, DaemonError> {
    let st = status(state)?;
    if !st.running {
        return Ok(StopOutcome::NotRunning);
    }
    let pid_file = PidFile::read(state).filter(|p| p.is_live() && Some(p.pid) == st.pid);
    let Some(pid_file) = pid_file else {
        return Err(DaemonError::Unverified {
            path: state.daemon_lock_path(),
            pid_path: state.daemon_pid_path(),
        });
    };
    let token = pid_file.token.clone().unwrap_or_default();
    let gone = |wait: Duration| -> Result<bool, DaemonError> {
        let deadline = Instant::now() + wait;
        loop {
            if !lock_is_held(state)? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    };
    if !process::signal_verified(pid_file.pid, &token, Signal::TERM) {
        // It exited between the check and the signal.
        return Ok(StopOutcome::Stopped { pid: pid_file.pid });
    }
    if gone(timeout)? {
        return Ok(StopOutcome::Stopped { pid: pid_file.pid });
    }
    process::signal_verified(pid_file.pid, &token, Signal::KILL);
    if gone(Duration::from_secs(3))? {
        return Ok(StopOutcome::Killed { pid: pid_file.pid });
    }
    Err(DaemonError::DidNotExit { pid: pid_file.pid })
}

/// `queue-daemon logs`: the last `n` lines of the daemon log.
pub fn tail_log(state: &StateDir, n: usize) -> Result<Vec<String>, DaemonError> {
    Ok(log::tail(&state.daemon_log_path(), n)?)
}

/// Starts `program args...` (normally `kugetsu queue-daemon run`) in the background, detached
/// from the terminal ([`kugetsu_process::detach`]: its own session, so no signal of the terminal reaches
/// it; the daemon ignores SIGHUP anyway), stdin from `/dev/null`, stdout to `/dev/null`, stderr appended to the daemon log
/// (so a panic message is not lost), and exactly the environment `env` (the caller's view of
/// its environment, which it may have narrowed: the demo's daemon gets none of the user's
/// kugetsu settings). Returns its pid. Whether it then won the daemon lock is for the caller to
/// check with [`status`].
pub fn spawn_detached(
    program: &Path,
    args: &[OsString],
    env: &BTreeMap<String, String>,
    state: &StateDir,
) -> Result<u32, DaemonError> {
    storage::ensure_dir(&state.queue_dir())?;
    let log_path = state.daemon_log_path();
    let stderr = storage::open_private(&log_path, storage::PrivateOpen::Append)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().envs(env).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    kugetsu_process::detach(&mut cmd);
    let child = cmd
        .spawn()
        .map_err(|source| DaemonError::Spawn { program: program.to_path_buf(), source })?;
    tracing::debug!(program = %program.display(), ?args, pid = child.id(), "spawned queue daemon");
    // The child is not waited for: it outlives us. It is reparented when we exit.
    Ok(child.id())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
