//! The driver conformance suite against every driver in the CLI's table that has a bundled
//! fake, found there rather than listed here: a driver's entry (`kugetsu_cli::agents::DRIVERS`)
//! says how to build it, under which program name its fake runs, and how to script that fake,
//! which is all the suite needs. Each driver is built as the CLI builds it (its entry's
//! constructor, with `KUGETSU_AGENT_BIN` naming the fake), in a hermetic world of its own.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kugetsu_cli::agents::{BundledFake, DRIVERS, DriverEntry, FakeDialect};
use kugetsu_cli::context::Ctx;
use kugetsu_cli::launch::RunPlace;
use kugetsu_core::agent::{AgentDriver, SessionId};
use kugetsu_core::config::Config;
use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::state::StateDir;

use crate::conformance::{self as check, World};

/// Runs `check` against every driver with a bundled fake, once per version of the agent the
/// fake speaks (the driver picks its dialect from the fake as from the real agent); a failure
/// names the driver and the version.
fn each_fake(check: fn(&dyn World)) {
    let mut checked = 0;
    for entry in DRIVERS {
        let Some(fake) = &entry.fake else { continue };
        for dialect in fake.dialects {
            let world = FakeWorld::new(entry, fake, dialect);
            assert_eq!(
                world.driver.agent_major(),
                dialect.major,
                "the {} driver did not pick the {} dialect of its fake",
                entry.name,
                dialect.name
            );
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| check(&world))) {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "the {} driver against its bundled fake speaking {}: {why}",
                    entry.name, dialect.name
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no driver in the table has a bundled fake: the suite checked nothing");
}

#[test]
fn a_session_is_created_forked_run_and_deleted() {
    each_fake(check::a_session_is_created_forked_run_and_deleted);
}

#[test]
fn an_unknown_session_is_not_found() {
    each_fake(check::an_unknown_session_is_not_found);
}

#[test]
fn a_providers_refusal_ends_the_turn_rate_limited() {
    each_fake(check::a_providers_refusal_ends_the_turn_rate_limited);
}

/// A driver built by its entry, running its bundled fake, in a temporary directory of its own
/// (home, state directory, the session directories, the fake's script and store).
struct FakeWorld {
    _root: tempfile::TempDir,
    root: PathBuf,
    fake: &'static BundledFake,
    script: PathBuf,
    driver: Arc<dyn AgentDriver>,
}

impl FakeWorld {
    fn new(entry: &'static DriverEntry, fake: &'static BundledFake, dialect: &FakeDialect) -> Self {
        let tmp = tempfile::Builder::new().prefix("kugetsu-conformance-").tempdir().expect("tmp");
        let root = tmp.path().canonicalize().expect("canonical");
        for d in ["home", "base", "tree", "logs", "elsewhere", "bin"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        // The fake is this package's `kugetsu` under the driver's program name, as in the demo.
        let name = entry.program.expect("a driver with a bundled fake runs a program");
        let program = root.join("bin").join(name);
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kugetsu-e2e"), &program).expect("link");
        let script = root.join("fake-script.json");
        let mut env = hermetic_env(&root, fake, &script);
        env.extend(dialect.env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let ctx = ctx(&root, &env);
        ctx.state.ensure().expect("state dir");
        let mut config = Config::defaults(&ctx.home);
        config.agent = entry.name.to_string();
        config.agent_bin = Some(program);
        let driver = (entry.build)(&ctx, &config, RunPlace::Foreground);
        FakeWorld { _root: tmp, root, fake, script, driver }
    }
}

/// What a user's shell would hand kugetsu (this process's environment, `PWD` elsewhere), with
/// only the state made hermetic: HOME, the XDG directories, no kugetsu or agent settings of the
/// machine's user; plus what makes the fake follow `script` and keep its store in `root`.
fn hermetic_env(root: &Path, fake: &BundledFake, script: &Path) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| {
            !k.starts_with("KUGETSU_") && !fake.env_prefixes.iter().any(|p| k.starts_with(p))
        })
        .collect();
    for (key, dir) in [
        ("PWD", "elsewhere"),
        ("HOME", "home"),
        ("XDG_DATA_HOME", "home/data"),
        ("XDG_CONFIG_HOME", "home/config"),
        ("XDG_CACHE_HOME", "home/cache"),
        ("XDG_STATE_HOME", "home/state"),
    ] {
        env.insert(key.into(), root.join(dir).display().to_string());
    }
    env.extend((fake.env)(script, root).into_iter().map(|(k, v)| (k.to_string(), v)));
    env
}

fn ctx(root: &Path, env: &BTreeMap<String, String>) -> Ctx {
    Ctx {
        state: StateDir::new(root.join("state")),
        home: root.join("home"),
        json: false,
        debug: false,
        overrides: Vec::new(),
        env: env.clone(),
        stdin_tty: false,
        stderr_tty: false,
        color: false,
        interrupt: Interrupt::new(),
    }
}

impl World for FakeWorld {
    fn driver(&self) -> &dyn AgentDriver {
        &*self.driver
    }
    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    fn log(&self) -> PathBuf {
        self.root.join("logs").join("run.log")
    }
    fn next_turn_writes(&self, file: &str) -> String {
        std::fs::write(&self.script, (self.fake.script)(file, "written\n", "done"))
            .expect("script");
        format!("write {file}")
    }
    fn next_turn_refused(&self, quota: bool) -> String {
        std::fs::write(&self.script, (self.fake.refused)(quota)).expect("script");
        "refused".into()
    }
    fn unknown_id(&self) -> SessionId {
        SessionId::new(self.fake.unknown_session).expect("the entry's unknown id is an id")
    }
}
