//! The Claude Code driver's real subject: the driver against the real Claude Code with a stand-in
//! of the Messages API on loopback (installed from npm; `None` when it cannot be had). The
//! stand-in and the installer are the claude crate's own test support, shared rather than
//! copied. (Against its bundled fake it is checked through the driver table, in `fakes.rs`.)

use std::path::PathBuf;
use std::time::Duration;

use kugetsu_claude::{ClaudeDriver, ClaudeOptions};
use kugetsu_core::agent::{AgentDriver, SessionId};

use super::World;

#[path = "../../../kugetsu-claude/tests/support/mock_api.rs"]
mod mock_api;
#[path = "../../../kugetsu-claude/tests/support/real.rs"]
mod real;

/// No Claude Code session has it (the shape of a real id).
const UNKNOWN: &str = "5b1f0e36-9a4c-4d2e-8f10-6c2b7e0d9a11";

/// The driver against the real Claude Code and the stand-in; `None` (after saying why) when
/// the real Claude Code cannot be installed, unless `KUGETSU_REAL_CLAUDE=1` makes that a
/// failure.
pub fn real() -> Option<Real> {
    let bin = real::claude()?;
    let tmp = tempfile::Builder::new().prefix("kugetsu-conformance-claude-").tempdir().ok()?;
    let root = tmp.path().canonicalize().ok()?;
    for d in ["home", "base", "tree", "logs", "state"] {
        std::fs::create_dir_all(root.join(d)).ok()?;
    }
    let api = mock_api::MockApi::start();
    let env = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOME", root.join("home").display().to_string()),
        ("ANTHROPIC_BASE_URL", api.base_url.clone()),
        ("ANTHROPIC_API_KEY", "sk-ant-api03-conformance".into()),
    ];
    let options = ClaudeOptions::new(bin, root.join("state"))
        .base_env(env)
        .kill_grace(Duration::from_secs(3));
    Some(Real { _tmp: tmp, root, _api: api, driver: ClaudeDriver::new(options) })
}

/// The claude driver, the real Claude Code and the stand-in it talks to.
pub struct Real {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    _api: mock_api::MockApi,
    driver: ClaudeDriver,
}

impl World for Real {
    fn driver(&self) -> &dyn AgentDriver {
        &self.driver
    }
    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    fn log(&self) -> PathBuf {
        self.root.join("logs").join("run.log")
    }
    fn next_turn_writes(&self, file: &str) -> String {
        // The stand-in answers a prompt holding `WRITEFILE:<file>` with a Bash call writing it.
        format!("please WRITEFILE:{file} now")
    }
    fn next_turn_refused(&self, quota: bool) -> String {
        // The stand-in answers `RATELIMIT` with a 429 (`retry-after: 1`) and `QUOTA` with a used-up
        // credit balance.
        if quota { "QUOTA now" } else { "please RATELIMIT" }.into()
    }
    fn unknown_id(&self) -> SessionId {
        SessionId::new(UNKNOWN).expect("id")
    }
}
