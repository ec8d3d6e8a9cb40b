//! `kugetsu warm-agent` (hidden): keeps the agent warm for forks until it has gone unused for
//! `KUGETSU_WARM_AGENT_IDLE_MINUTES`.
//!
//! The queue daemon keeps the agent warm while it runs. Without a daemon, a foreground `start`
//! would spend an agent process on its fork every time; with the idle setting above 0 it leaves
//! this command running in the background (see [`spawn_after_start`]), so the next `start`
//! forks through the warm agent. It exits at once when the agent is kept warm already (by the
//! daemon or another of these), and stops what it started when it exits: after the idle time,
//! on SIGTERM/SIGINT/SIGHUP, or when what it kept has gone away.

use std::time::{Duration, SystemTime};

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `warm-agent` (none).
#[derive(Debug, clap::Args)]
pub struct WarmAgentArgs {}

/// Keeps the agent warm until unused for the configured time.
pub fn cmd_warm_agent(_ui: &mut Ui, ctx: &Ctx, _args: &WarmAgentArgs) -> Result<(), CliError> {
    let config = ctx.config()?;
    let idle = Duration::from_secs(config.warm_agent_idle_minutes * 60);
    if !config.warm_agent || idle.is_zero() {
        return Ok(());
    }
    crate::signals::stop_on_signals(&ctx.interrupt);
    let driver = crate::agents::driver(ctx, &config, crate::launch::RunPlace::Daemon)?;
    let env = kugetsu_core::env_file::EnvFiles::new(&ctx.state)
        .merged(kugetsu_core::orchestrator::DEFAULT_AGENT)?;
    let Some(guard) = driver.keep_warm(&env).map_err(CliError::from)? else {
        tracing::debug!("the agent is kept warm already");
        return Ok(());
    };
    tracing::info!(idle_minutes = config.warm_agent_idle_minutes, "keeping the agent warm");
    while !ctx.interrupt.is_triggered() {
        let Some(used) = guard.last_used() else { break };
        if SystemTime::now().duration_since(used).unwrap_or_default() >= idle {
            tracing::info!("unused for the idle time: stopping the warm agent");
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// Leaves `kugetsu warm-agent` running in the background, detached from this process and its
/// terminal, when `KUGETSU_WARM_AGENT_IDLE_MINUTES` asks for it (it exits at once if the agent
/// is kept warm already). A failure costs only the next `start` its speed: logged.
pub fn spawn_after_start(ctx: &Ctx, config: &kugetsu_core::config::Config) {
    if !config.warm_agent || config.warm_agent_idle_minutes == 0 {
        return;
    }
    let env = match ctx.child_env(config) {
        Ok(env) => env,
        Err(e) => {
            tracing::warn!(error = %e.message, "cannot leave the agent warm");
            return;
        }
    };
    let spawned = std::env::current_exe().and_then(|exe| {
        let mut cmd = std::process::Command::new(exe);
        cmd.args(ctx.child_args())
            .arg("warm-agent")
            .env_clear()
            .envs(env)
            .current_dir(ctx.state.root())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        kugetsu_process::detach(&mut cmd);
        cmd.spawn()
    });
    match spawned {
        Ok(child) => tracing::debug!(pid = child.id(), "left the agent warm for the next start"),
        Err(e) => tracing::warn!(error = %e, "cannot leave the agent warm"),
    }
}
