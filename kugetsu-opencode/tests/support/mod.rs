//! Shared helpers of the integration tests: hermetic directories and env, and a check that a
//! process group is really gone.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kugetsu_core::agent::{
    AgentEnv, AgentEvent, CreateSessionRequest, EventSink, RunLimits, RunRequest, SessionId,
};

pub mod mock_model;
pub mod real;

/// A temp root with its own HOME and XDG dirs, and two project directories.
pub struct Sandbox {
    pub root: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        let root = tempfile::Builder::new().prefix("kugetsu-oc-").tempdir().expect("temp dir");
        let s = Sandbox { root };
        for d in ["home", "data", "config", "cache", "state", "base", "tree", "logs", "elsewhere"] {
            std::fs::create_dir_all(s.path(d)).expect("mkdir");
        }
        s
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel).canonicalize().unwrap_or_else(|_| self.root.path().join(rel))
    }
    /// The base env every test driver starts from, as a program started from a user's shell
    /// gets it: this process's whole environment, `PWD` naming another directory (the shell's,
    /// not the one opencode must work in), and only the state made hermetic: HOME, the XDG
    /// dirs, and no opencode or kugetsu settings of the machine's user.
    pub fn base_env(&self) -> Vec<(OsString, OsString)> {
        let mut env: BTreeMap<OsString, OsString> = std::env::vars_os()
            .filter(|(k, _)| {
                let k = k.to_string_lossy();
                !k.starts_with("OPENCODE_")
                    && !k.starts_with("KUGETSU_")
                    && !k.starts_with("FAKE_OPENCODE_")
            })
            .collect();
        for (k, d) in [
            ("PWD", "elsewhere"),
            ("HOME", "home"),
            ("XDG_DATA_HOME", "data"),
            ("XDG_CONFIG_HOME", "config"),
            ("XDG_CACHE_HOME", "cache"),
            ("XDG_STATE_HOME", "state"),
        ] {
            env.insert(k.into(), self.path(d).into());
        }
        env.into_iter().collect()
    }
    pub fn log(&self) -> PathBuf {
        self.path("logs").join("run.log")
    }
    pub fn create_req(&self, dir: &str, title: &str, prompt: &str) -> CreateSessionRequest {
        CreateSessionRequest {
            title: title.into(),
            prompt: prompt.into(),
            dir: self.path(dir),
            env: AgentEnv::default(),
            interactive: false,
            limits: limits(60, 60),
            log_path: self.log(),
        }
    }
    pub fn run_req(&self, session: &SessionId, dir: &str, prompt: &str) -> RunRequest {
        RunRequest {
            session: session.clone(),
            dir: self.path(dir),
            prompt: prompt.into(),
            env: AgentEnv::default(),
            limits: limits(60, 60),
            log_path: self.log(),
        }
    }
}

pub fn limits(timeout_secs: u64, idle_secs: u64) -> RunLimits {
    RunLimits {
        timeout: Duration::from_secs(timeout_secs),
        idle_timeout: Duration::from_secs(idle_secs),
        spend_cap: None,
    }
}

pub fn agent_env(pairs: &[(&str, &str)]) -> AgentEnv {
    AgentEnv(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
}

/// Live (not zombie) processes whose process group is `pgid`, from /proc.
pub fn live_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // Fields after the `(comm)`: state, ppid, pgrp, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" && fields[0] != "X"
        {
            out.push(pid);
        }
    }
    out
}

/// Waits (a bounded while: SIGKILL is delivered asynchronously) for the group to be empty.
pub fn assert_group_gone(pgid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let live = live_members(pgid);
        if live.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "process group {pgid} still has live members {live:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Records what a run reports: the agent's pid and every event.
#[derive(Default)]
pub struct Sink {
    /// The pid of the spawned agent.
    pub pid: Option<u32>,
    /// Every event, in order.
    pub events: Vec<AgentEvent>,
}

impl EventSink for Sink {
    fn spawned(&mut self, pid: u32) {
        self.pid = Some(pid);
    }
    fn event(&mut self, event: &AgentEvent) {
        self.events.push(event.clone());
    }
}
