//! Shared by the integration tests: a hermetic state directory and the helper process.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use kugetsu_core::StateDir;

pub struct Env {
    pub _dir: tempfile::TempDir,
    pub state: StateDir,
    pub record: PathBuf,
}

pub fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("state"));
    state.ensure().unwrap();
    let record = dir.path().join("record");
    std::fs::create_dir(&record).unwrap();
    Env { _dir: dir, state, record }
}

#[cfg(feature = "test-helper")]
pub fn helper(args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_queue-test-helper"));
    cmd.args(args).env_clear().stdin(std::process::Stdio::null());
    cmd
}

/// A child process killed (and reaped) when dropped, so a failing test never leaves a
/// daemon running behind it (holding the test harness's output pipe open).
pub struct Proc(pub Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[cfg(feature = "test-helper")]
pub fn spawn_daemon(env: &Env, limit: usize, interval_ms: u64) -> Proc {
    Proc(
        helper(&[
            "daemon",
            env.state.root().to_str().unwrap(),
            &limit.to_string(),
            env.record.to_str().unwrap(),
            &interval_ms.to_string(),
        ])
        .spawn()
        .unwrap(),
    )
}

/// Polls `f` until it holds or `timeout` passes (a hang guard, not a speed check).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn read_num(path: &Path) -> i64 {
    std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

pub fn kill(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

/// Waits for `child` to exit (hang guard); kills it and fails the test if it does not.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let mut status = None;
    let ok = wait_until(timeout, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !ok {
        let _ = child.kill();
        panic!("process {} did not exit within {timeout:?}", child.id());
    }
    status.unwrap()
}
