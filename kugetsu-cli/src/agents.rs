//! The agent drivers this build can drive, and the one factory that picks one from
//! `KUGETSU_AGENT`. A second driver is an entry in [`DRIVERS`] (and its crate in Cargo.toml):
//! nothing else in the CLI names a driver. An entry supplies everything the CLI says or does
//! about its agent: the program and how to install it, how a line of its run log reads, its
//! log target, and the stand-in `kugetsu demo` runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kugetsu_core::agent::{AgentDriver, AgentEvent};
use kugetsu_core::config::{Config, KUGETSU_AGENT, KUGETSU_AGENT_BIN};

use crate::context::Ctx;
use crate::error::CliError;
use crate::launch::RunPlace;

/// A driver kugetsu can build.
pub struct DriverEntry {
    /// Its `KUGETSU_AGENT` name.
    pub name: &'static str,
    /// The program it runs unless `KUGETSU_AGENT_BIN` names another (`None`: it runs none).
    pub program: Option<&'static str>,
    /// What to do when the program is missing (`KUGETSU_AGENT_BIN` is the other way out).
    pub install: &'static str,
    /// Builds it for this process.
    pub build: fn(&Ctx, &Config, RunPlace) -> Arc<dyn AgentDriver>,
    /// The events one line of its run log holds (none for a line it does not know).
    pub log_events: fn(&str) -> Vec<AgentEvent>,
    /// The `tracing` target of its crate, for `--debug`'s default filter.
    pub log_target: &'static str,
    /// A stand-in for the agent built into kugetsu, if the driver has one.
    pub fake: Option<BundledFake>,
    /// What `doctor` says of the agent this configuration runs.
    pub describe: fn(&Ctx, &Config) -> AgentSummary,
}

/// The agent a configuration runs, as `doctor` shows it.
pub struct AgentSummary {
    /// Its version, or why it could not be told.
    pub version: Result<String, String>,
    /// The driver in use (a driver may speak several versions of its agent), when the
    /// version is known.
    pub driver: String,
    /// What that driver cannot do, a sentence each.
    pub limits: Vec<String>,
}

/// A fake agent built into the `kugetsu` binary: a process started under the driver's program
/// name runs it (`kugetsu demo` links that name to the binary).
pub struct BundledFake {
    /// Runs it with its arguments (without the program name); returns its exit code.
    pub main: fn(Vec<String>) -> u8,
    /// The environment that makes it follow the script `script` and keep its sessions under
    /// `dir`.
    pub env: fn(script: &Path, dir: &Path) -> Vec<(&'static str, String)>,
    /// Prefixes of the variables the agent and the fake read: the demo drops the user's.
    pub env_prefixes: &'static [&'static str],
    /// The script (the file `env`'s `script` names) that makes each turn write the file
    /// `writes` (relative to the directory the agent works in) with `content` by a tool call,
    /// then answer `says`: what the demo and the driver conformance suite ask of the fake.
    pub script: fn(writes: &str, content: &str, says: &str) -> String,
    /// The script whose turns the provider refuses, as the agent shows it: for a rate limit,
    /// or with `quota` for a used-up quota (what the conformance suite's limit check asks).
    pub refused: fn(quota: bool) -> String,
    /// A session id in the agent's format that no session has.
    pub unknown_session: &'static str,
    /// The versions of the agent the fake can stand in for, each with the variables that make
    /// it speak that one; the first is what `env` alone gives. The conformance suite checks the
    /// driver against each.
    pub dialects: &'static [FakeDialect],
}

/// One version of an agent its bundled fake can speak.
pub struct FakeDialect {
    /// How people name it (`1.x`).
    pub name: &'static str,
    /// Its major version: the driver built for it says the same
    /// ([`AgentDriver::agent_major`]).
    pub major: u32,
    /// The variables, on top of [`BundledFake::env`], that switch the fake to it.
    pub env: &'static [(&'static str, &'static str)],
}

impl DriverEntry {
    /// The program this configuration runs (`KUGETSU_AGENT_BIN`, else the driver's own).
    pub fn program(&self, config: &Config) -> Option<PathBuf> {
        config.agent_bin.clone().or_else(|| self.program.map(PathBuf::from))
    }

    /// What to do when its program cannot be run.
    pub fn install_hint(&self) -> String {
        format!("{} or set {KUGETSU_AGENT_BIN}", self.install)
    }
}

/// The opencode driver's name and program.
const OPENCODE: &str = "opencode";

/// Every driver, the default first.
pub const DRIVERS: &[DriverEntry] = &[OPENCODE_DRIVER, CLAUDE_DRIVER];

/// The opencode driver (1.x and 2.x).
const OPENCODE_DRIVER: DriverEntry = DriverEntry {
    name: OPENCODE,
    program: Some(OPENCODE),
    install: "install opencode (`npm install -g @opencode/cli`, or 1.x: `npm install -g opencode-ai`)",
    build: |ctx, config, place| match opencode(ctx, config, place) {
        Ok(picked) => picked.driver,
        Err(failed) => {
            let (e, options) = *failed;
            // Said again by whatever runs it; the 1.x driver words a missing program best.
            tracing::debug!(error = %e, "cannot tell opencode's version");
            Arc::new(kugetsu_opencode::OpencodeDriver::new(options))
        }
    },
    describe: |ctx, config| match opencode(ctx, config, RunPlace::Foreground) {
        Ok(p) => AgentSummary {
            version: Ok(p.version.text),
            driver: p.driver_name.into(),
            limits: p.limits.iter().map(|l| l.to_string()).collect(),
        },
        Err(failed) => AgentSummary {
            version: Err(failed.0.to_string()),
            driver: String::new(),
            limits: Vec::new(),
        },
    },
    log_events: |line| kugetsu_opencode::events::parse_stdout_line(line).events,
    log_target: "kugetsu_opencode",
    fake: Some(BundledFake {
        main: kugetsu_opencode::fake::main,
        env: |script, dir| {
            vec![
                ("FAKE_OPENCODE_SCRIPT", script.display().to_string()),
                ("OPENCODE_DB", dir.join("opencode-fake.json").display().to_string()),
            ]
        },
        env_prefixes: &["OPENCODE_", "FAKE_OPENCODE_"],
        script: |writes, content, says| {
            let turn = serde_json::json!({"mode": "tool", "path": writes, "content": content, "text": says});
            serde_json::json!({ "default": turn }).to_string()
        },
        refused: |quota| {
            let message = if quota {
                "You exceeded your current quota, please check your plan and billing details."
            } else {
                "Rate limit reached for requests"
            };
            let turn = serde_json::json!({"mode": "limited", "provider": "mock", "message": message, "retry_ms": 100});
            serde_json::json!({ "default": turn }).to_string()
        },
        unknown_session: "ses_df5eb4af9ffemK92KrwWdJZMY3",
        dialects: &[
            FakeDialect { name: "1.x", major: 1, env: &[] },
            FakeDialect { name: "2.x", major: 2, env: &[("FAKE_OPENCODE_VERSION", "2.1.2")] },
        ],
    }),
};

/// The Claude Code driver's name and program.
const CLAUDE: &str = "claude";

/// The Claude Code driver (2.x).
const CLAUDE_DRIVER: DriverEntry = DriverEntry {
    name: CLAUDE,
    program: Some(CLAUDE),
    install: "install Claude Code (`npm install -g @anthropic-ai/claude-code`)",
    build: |ctx, config, place| Arc::new(claude(ctx, config, place)),
    describe: |ctx, config| AgentSummary {
        version: claude(ctx, config, RunPlace::Foreground).version(),
        driver: "claude 2.x".into(),
        limits: Vec::new(),
    },
    log_events: |line| kugetsu_claude::events::EventLog::default().stdout_line(line),
    log_target: "kugetsu_claude",
    fake: Some(BundledFake {
        main: kugetsu_claude::fake::main,
        env: |script, dir| {
            vec![
                ("FAKE_CLAUDE_SCRIPT", script.display().to_string()),
                ("CLAUDE_CONFIG_DIR", dir.join("claude-fake").display().to_string()),
            ]
        },
        env_prefixes: &["CLAUDE_", "FAKE_CLAUDE_"],
        script: |writes, content, says| {
            let turn = serde_json::json!({"mode": "tool", "path": writes, "content": content, "text": says});
            serde_json::json!({ "default": turn }).to_string()
        },
        refused: |quota| {
            let turn = if quota {
                serde_json::json!({"mode": "api_error", "status": 400, "error": "billing_error",
                    "message": "Your credit balance is too low to access the Anthropic API."})
            } else {
                serde_json::json!({"mode": "api_error", "status": 429, "message": "slow down",
                    "retries": 10, "delay_ms": 30_000})
            };
            serde_json::json!({ "default": turn }).to_string()
        },
        unknown_session: "5b1f0e36-9a4c-4d2e-8f10-6c2b7e0d9a11",
        dialects: &[FakeDialect { name: "2.1.x", major: 2, env: &[] }],
    }),
};

/// The Claude Code driver: it obeys the process's stop request and keeps its records of
/// sessions (titles, forks not yet run) and Claude Code's temporary files in `claude/` of the
/// state directory.
fn claude(ctx: &Ctx, config: &Config, place: RunPlace) -> kugetsu_claude::ClaudeDriver {
    let configured = config.agent_bin.clone().unwrap_or_else(|| PathBuf::from(CLAUDE));
    let program =
        crate::launch::find_program(&configured, &ctx.env).unwrap_or_else(|| configured.clone());
    let options = kugetsu_claude::ClaudeOptions::new(program, ctx.state.root().join(CLAUDE))
        .base_env(crate::launch::agent_base_env(ctx, config))
        .also_mask(crate::launch::withheld_secrets(config.queue_url.as_deref()))
        .interrupt(ctx.interrupt.clone())
        .die_with_parent(place == RunPlace::Foreground);
    kugetsu_claude::ClaudeDriver::new(options)
}

/// The driver used where none is configured (a broken config, the demo).
pub fn default_entry() -> &'static DriverEntry {
    &DRIVERS[0]
}

/// The configured driver's entry, or the default one when the config or the name is wrong
/// (for what only words depend on: a hint, a log line).
pub fn entry_or_default(ctx: &Ctx) -> &'static DriverEntry {
    ctx.config().ok().and_then(|c| entry(&c).ok()).unwrap_or_else(default_entry)
}

/// Adds the configured driver's install hint to an error that asks for one.
pub fn add_install_hint(ctx: &Ctx, err: &mut CliError) {
    if err.wants_install_hint && err.hint.is_none() {
        err.hint =
            Some(format!("{}; `kugetsu demo` needs neither", entry_or_default(ctx).install_hint()));
    }
}

/// If this process was started under the program name of a driver with a bundled fake (the
/// demo links it to the kugetsu binary), runs the fake and returns its exit code.
pub fn run_as_fake_agent() -> Option<u8> {
    let argv0 = std::env::args_os().next()?;
    let name = Path::new(&argv0).file_name()?.to_str()?.to_string();
    let fake = DRIVERS.iter().find(|d| d.program == Some(name.as_str()))?.fake.as_ref()?;
    Some((fake.main)(
        std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect(),
    ))
}

/// The entry `KUGETSU_AGENT` names; an unknown name is a usage error listing the known ones.
pub fn entry(config: &Config) -> Result<&'static DriverEntry, CliError> {
    DRIVERS.iter().find(|d| d.name == config.agent).ok_or_else(|| {
        let known: Vec<&str> = DRIVERS.iter().map(|d| d.name).collect();
        CliError::usage(format!("{KUGETSU_AGENT}={}: no such agent driver", config.agent))
            .with_hint(format!("known drivers: {}", known.join(", ")))
    })
}

/// The driver the configuration names, built for `place`.
pub fn driver(
    ctx: &Ctx,
    config: &Config,
    place: RunPlace,
) -> Result<Arc<dyn AgentDriver>, CliError> {
    Ok((entry(config)?.build)(ctx, config, place))
}

/// The opencode driver for the program's version (1.x or 2.x, told by `--version` once per
/// binary and kept in `cache/`): it obeys the process's stop request, its helper commands (and
/// 2.x's serve) run in the state directory (which outlives any shell directory), and it keeps
/// the base session's export (1.x) or its serve's registration (2.x) in `cache/`. Without a
/// version, the error and the options.
fn opencode(
    ctx: &Ctx,
    config: &Config,
    place: RunPlace,
) -> Result<
    kugetsu_opencode::Picked,
    Box<(kugetsu_opencode::version::VersionError, kugetsu_opencode::OpencodeOptions)>,
> {
    let configured = config.agent_bin.clone().unwrap_or_else(|| PathBuf::from(OPENCODE));
    let program =
        crate::launch::find_program(&configured, &ctx.env).unwrap_or_else(|| configured.clone());
    let options = kugetsu_opencode::OpencodeOptions::new(program)
        .base_env(crate::launch::agent_base_env(ctx, config))
        .also_mask(crate::launch::withheld_secrets(config.queue_url.as_deref()))
        .helper_dir(ctx.state.root())
        .export_cache(ctx.state.cache_dir())
        .interrupt(ctx.interrupt.clone())
        .die_with_parent(place == RunPlace::Foreground)
        .fork_server(config.warm_agent);
    kugetsu_opencode::driver_for(options.clone()).map_err(|e| Box::new((e, options)))
}

/// Keeps the configured agent warm for forks ([`AgentDriver::keep_warm`]) until dropped: the
/// queue daemon holds one while it runs (`KUGETSU_WARM_AGENT`). Starting it can take seconds,
/// so it happens on a thread of its own while the daemon starts serving; that thread lives
/// until the keeper is dropped, because what it started may die with it (opencode's serve has
/// the parent-death signal). A failure costs only speed (forks then spend a process): logged.
pub struct WarmKeeper {
    stop: Option<std::sync::mpsc::Sender<()>>,
    /// Ends a start of the warm agent still under way, so that dropping the keeper never waits
    /// for it.
    starting: kugetsu_core::interrupt::Interrupt,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WarmKeeper {
    /// Starts keeping the agent warm, unless `KUGETSU_WARM_AGENT=off`.
    pub fn start(ctx: &Ctx, config: &Config) -> Self {
        let starting = kugetsu_core::interrupt::Interrupt::new();
        if !config.warm_agent {
            return WarmKeeper { stop: None, starting, thread: None };
        }
        let (mut ctx, config) = (ctx.clone(), config.clone());
        ctx.interrupt = starting.clone();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let env = kugetsu_core::env_file::EnvFiles::new(&ctx.state)
                .merged(kugetsu_core::orchestrator::DEFAULT_AGENT);
            let warm = driver(&ctx, &config, RunPlace::Daemon)
                .map_err(|e| e.message)
                .and_then(|d| env.map_err(|e| e.to_string()).map(|env| (d, env)))
                .and_then(|(d, env)| d.keep_warm(&env).map_err(|e| e.to_string()));
            let _guard = match warm {
                Ok(Some(guard)) => {
                    tracing::info!("the agent is kept warm for forks");
                    Some(guard)
                }
                Ok(None) => None,
                Err(e) if ctx.interrupt.is_triggered() => {
                    tracing::debug!(error = %e, "the daemon stopped while the warm agent started");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot keep the agent warm; forks spend a process");
                    None
                }
            };
            // Until the keeper is dropped (the sender with it).
            let _ = rx.recv();
        });
        WarmKeeper { stop: Some(tx), starting, thread: Some(thread) }
    }
}

impl Drop for WarmKeeper {
    fn drop(&mut self) {
        self.starting.trigger(0);
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
