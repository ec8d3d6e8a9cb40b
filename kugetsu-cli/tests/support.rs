//! A hermetic environment for running the `kugetsu` binary: a temp HOME and state directory,
//! a cleared environment, and helpers that capture stdout, stderr and the exit status together
//! so one snapshot pins all three.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch home with its own state directory.
pub struct Env {
    /// The scratch directory; everything lives below it.
    pub tmp: tempfile::TempDir,
    /// `HOME` of every run.
    pub home: PathBuf,
    /// `KUGETSU_HOME` of every run.
    pub state: PathBuf,
    extra: Vec<(String, String)>,
}

/// What a run printed and how it exited.
pub struct Output {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// `stdout`, `stderr` and the exit status in one text, with the scratch paths replaced.
    pub fn snapshot(&self, env: &Env) -> String {
        let clean = |s: &str| env.redact(s);
        format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code,
            clean(&self.stdout),
            clean(&self.stderr)
        )
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    /// A fresh scratch home.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).expect("home");
        let state = home.join(".kugetsu");
        Env { tmp, home, state, extra: Vec::new() }
    }

    /// Adds an environment variable for every later run.
    pub fn set(&mut self, key: &str, value: &str) {
        self.extra.push((key.into(), value.into()));
    }

    /// Replaces the scratch path with `[TMP]` so snapshots are stable.
    pub fn redact(&self, s: &str) -> String {
        s.replace(self.tmp.path().to_str().expect("utf-8 temp path"), "[TMP]")
    }

    /// A `kugetsu` command with the hermetic environment and closed stdin.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kugetsu"));
        cmd.args(args)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUGETSU_HOME", &self.state)
            .env("NO_COLOR", "1")
            .current_dir(&self.home)
            .stdin(std::process::Stdio::null());
        for (k, v) in &self.extra {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `kugetsu args...` to the end.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("run kugetsu");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A path inside the state directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.state.join(rel)
    }

    /// Every file under the scratch directory, for "nothing was created outside" checks.
    pub fn all_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    out.push(p.clone());
                    if p.is_dir() && !p.is_symlink() {
                        walk(&p, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(self.tmp.path(), &mut out);
        out.sort();
        out
    }
}
