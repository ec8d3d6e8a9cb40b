//! The opencode driver's real subject: the driver against the real opencode with a mock model on
//! loopback (installed from npm; `None` when it cannot be had). Its sandbox, the mock model and
//! the installer are the opencode crate's own test support, shared rather than copied. (Against
//! its bundled fake it is checked through the driver table, in `fakes.rs`.)

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use kugetsu_core::agent::{AgentDriver, SessionId};
use kugetsu_opencode::OpencodeOptions;

use super::World;

#[path = "../../../kugetsu-opencode/tests/support/mod.rs"]
mod support;

use support::Sandbox;

/// No opencode session has it (the shape of a real id).
const UNKNOWN: &str = "ses_df5eb4af9ffemK92KrwWdJZMY3";

/// The driver against the real opencode and a mock model; `None` (after saying why) when the
/// real opencode cannot be installed, unless `KUGETSU_REAL_OPENCODE=1` makes that a failure.
pub fn real() -> Option<Real> {
    real_of(support::real::opencode()?)
}

/// The same against the real opencode 2 (`@opencode/cli`), its driver picked from the
/// program's version as the CLI picks it.
pub fn real2() -> Option<Real> {
    real_of(support::real::opencode2()?)
}

fn real_of(bin: PathBuf) -> Option<Real> {
    let sb = Sandbox::new();
    let model = support::mock_model::MockModel::start();
    let mut env: Vec<(OsString, OsString)> = sb.base_env();
    // Why each of these: see the opencode crate's `tests/real_opencode.rs`.
    for (k, v) in [
        ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
        ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
        ("OPENCODE_DISABLE_SHARE", "1"),
        ("npm_config_offline", "true"),
    ] {
        env.push((k.into(), v.into()));
    }
    env.push(("OPENCODE_CONFIG_CONTENT".into(), model.opencode_config().into()));
    let options = OpencodeOptions::new(bin)
        .base_env(env)
        .kill_grace(Duration::from_secs(3))
        .helper_dir(sb.path("home"))
        .export_cache(sb.path("home").join("kugetsu-cache"));
    let driver =
        kugetsu_opencode::driver_for(options).expect("the version of the real opencode").driver;
    Some(Real { sb, _model: model, driver })
}

/// The opencode driver, the real opencode and the mock model it talks to.
pub struct Real {
    sb: Sandbox,
    _model: support::mock_model::MockModel,
    driver: std::sync::Arc<dyn AgentDriver>,
}

impl World for Real {
    fn driver(&self) -> &dyn AgentDriver {
        &*self.driver
    }
    fn dir(&self, name: &str) -> PathBuf {
        self.sb.path(name)
    }
    fn log(&self) -> PathBuf {
        self.sb.log()
    }
    fn next_turn_writes(&self, file: &str) -> String {
        // The mock model answers a prompt holding `WRITEFILE:<file>` with a `write` tool call.
        format!("please WRITEFILE:{file} now")
    }
    fn next_turn_refused(&self, quota: bool) -> String {
        // The mock model answers `RATELIMIT` with a 429 and `QUOTA` with a used-up quota.
        if quota { "QUOTA now" } else { "please RATELIMIT" }.into()
    }
    fn unknown_id(&self) -> SessionId {
        SessionId::new(UNKNOWN).expect("id")
    }
}
