//! The opencode driver against `fake-opencode`: the world its test files share.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use kugetsu_core::agent::{AgentDriver, ForkRequest, RunOutcome, SessionId};
use kugetsu_opencode::{OpencodeDriver, OpencodeOptions};
use serde_json::{Value, json};

use crate::support::{Sandbox, agent_env};

pub(crate) const FAKE: &str = env!("CARGO_BIN_EXE_fake-opencode");

/// A sandbox, a script for the fake and its record of every invocation.
pub(crate) struct Fake {
    pub(crate) sb: Sandbox,
    pub(crate) script: PathBuf,
    pub(crate) record: PathBuf,
}

impl Fake {
    pub(crate) fn new() -> Self {
        let sb = Sandbox::new();
        let script = sb.path("script.json");
        let record = sb.path("record.jsonl");
        std::fs::write(&script, "{}").expect("script");
        Fake { sb, script, record }
    }
    pub(crate) fn script(&self, turns: Value) {
        std::fs::write(&self.script, json!({ "turns": turns }).to_string()).expect("script");
    }
    pub(crate) fn base_env(&self) -> Vec<(OsString, OsString)> {
        let mut env = self.sb.base_env();
        env.push(("FAKE_OPENCODE_SCRIPT".into(), self.script.clone().into()));
        env.push(("FAKE_OPENCODE_RECORD".into(), self.record.clone().into()));
        env
    }
    pub(crate) fn options(&self) -> OpencodeOptions {
        self.options_for(FAKE)
    }
    /// The options of [`Fake::options`] for another program.
    pub(crate) fn options_for(&self, program: impl Into<std::path::PathBuf>) -> OpencodeOptions {
        OpencodeOptions::new(program)
            .base_env(self.base_env())
            .kill_grace(Duration::from_millis(300))
            .helper_timeout(Duration::from_secs(30))
    }
    pub(crate) fn driver(&self) -> OpencodeDriver {
        OpencodeDriver::new(self.options())
    }
    /// A driver that keeps the base's export in `cache/`, as kugetsu's does.
    pub(crate) fn caching_driver(&self) -> OpencodeDriver {
        OpencodeDriver::new(self.options().export_cache(self.sb.path("cache")))
    }
    /// The subcommands recorded from the `from`th record on (a `run` is recorded twice: as it
    /// starts, then with the message it read; counted once).
    pub(crate) fn commands(&self, from: usize) -> Vec<String> {
        self.records()[from..]
            .iter()
            .filter(|r| r["argv"][0] != "run" || r["message"].is_string())
            .map(|r| r["argv"][0].as_str().unwrap_or_default().to_string())
            .collect()
    }
    pub(crate) fn fork(&self, d: &OpencodeDriver, base: &SessionId, dir: &str) -> SessionId {
        std::fs::create_dir_all(self.sb.path(dir)).expect("mkdir");
        d.fork_session(&ForkRequest {
            base: base.clone(),
            dir: self.sb.path(dir),
            title: format!("issue in {dir}"),
            env: agent_env(&[]),
        })
        .expect("fork")
    }
    /// Invocations recorded by the fake.
    pub(crate) fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record line"))
            .collect()
    }
    pub(crate) fn run_records(&self) -> Vec<Value> {
        self.records().into_iter().filter(|r| r["message"].is_string()).collect()
    }
    pub(crate) fn create_base(&self, d: &OpencodeDriver) -> SessionId {
        let report = d
            .create_session(&self.sb.create_req("base", "kugetsu base", "prime"), &mut Vec::new())
            .expect("create");
        assert_eq!(report.outcome, RunOutcome::Completed);
        report.session
    }
    /// The fake's own store, for checks the driver API does not expose.
    pub(crate) fn export(&self, id: &SessionId) -> Value {
        let out = std::process::Command::new(FAKE)
            .args(["export", id.as_str()])
            .env_clear()
            .envs(self.base_env())
            .output()
            .expect("export");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("export json")
    }
}
