//! The agent drivers this build can drive, and the one factory that picks one from
//! `KUGETSU_AGENT`. A second driver is an entry in [`DRIVERS`] (and its crate in Cargo.toml):
//! nothing else in the CLI names a driver.

use std::path::PathBuf;
use std::sync::Arc;

use kugetsu_core::agent::AgentDriver;
use kugetsu_core::config::{Config, KUGETSU_AGENT};

use crate::context::Ctx;
use crate::error::CliError;
use crate::wiring::RunPlace;

/// A driver kugetsu can build.
pub struct DriverEntry {
    /// Its `KUGETSU_AGENT` name.
    pub name: &'static str,
    /// The program it runs, as configured, for `doctor` to look for on `PATH` (`None`: it
    /// runs none), with what to do when it is missing.
    pub program: fn(&Config) -> Option<(PathBuf, &'static str)>,
    /// Builds it for this process.
    pub build: fn(&Ctx, &Config, RunPlace) -> Arc<dyn AgentDriver>,
}

/// Every driver, the default first.
pub const DRIVERS: &[DriverEntry] = &[DriverEntry {
    name: "opencode",
    program: |config| {
        Some((
            config.agent_bin.clone().unwrap_or_else(|| PathBuf::from("opencode")),
            "install it (`npm install -g opencode-ai`) or set KUGETSU_AGENT_BIN",
        ))
    },
    build: |ctx, config, place| Arc::new(opencode(ctx, config, place)),
}];

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

/// The opencode driver: it obeys the process's stop request, its helper commands run in the
/// state directory (which outlives any shell directory), and it keeps the base session's
/// export in `cache/`.
fn opencode(ctx: &Ctx, config: &Config, place: RunPlace) -> kugetsu_opencode::OpencodeDriver {
    let configured = config.agent_bin.clone().unwrap_or_else(|| PathBuf::from("opencode"));
    let program =
        crate::wiring::find_program(&configured, &ctx.env).unwrap_or_else(|| configured.clone());
    kugetsu_opencode::OpencodeDriver::new(
        kugetsu_opencode::OpencodeOptions::new(program)
            .base_env(crate::wiring::agent_base_env(ctx, config))
            .helper_dir(ctx.state.root())
            .export_cache(ctx.state.cache_dir())
            .interrupt(ctx.interrupt.clone())
            .die_with_parent(place == RunPlace::Foreground)
            .fork_server(config.warm_agent),
    )
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
