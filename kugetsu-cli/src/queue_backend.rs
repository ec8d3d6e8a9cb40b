//! The one place the queue backend is chosen and built: the state directory's files unless
//! `KUGETSU_QUEUE_URL` names a shared PostgreSQL queue. Everything that touches the queue or
//! the agent slots (enqueue, `queue`, the daemon, `start`'s slot, `doctor`, the demo) gets it
//! from here, so the two can never be mixed up within one command.

use std::sync::Arc;

use kugetsu_core::config::Config;
use kugetsu_core::queue::{AgentSlots, TaskQueue};
use kugetsu_queue::Backend;

use crate::context::Ctx;
use crate::error::CliError;

/// The backend for `config`: files by default. Nothing is connected or written yet for the
/// files; the database backend connects here (creating or migrating its schema) and fails
/// here, cleanly, when it cannot.
pub fn backend(ctx: &Ctx, config: &Config) -> Result<Backend, CliError> {
    match &config.queue_url {
        None => Ok(Backend::files(&ctx.state)),
        Some(url) => shared(ctx, config, url),
    }
}

#[cfg(feature = "postgres")]
fn shared(ctx: &Ctx, config: &Config, url: &str) -> Result<Backend, CliError> {
    let live = ctx.clone();
    let started_with = config.global_max_agents;
    let options = kugetsu_queue::postgres::PgOptions {
        url: url.to_string(),
        host: host_name(ctx),
        lease_ttl: std::time::Duration::from_secs(config.queue_lease_seconds),
        // Re-read on every grant, like MAX_CONCURRENT_AGENTS.
        global_limit: Arc::new(move || live.config().map_or(started_with, |c| c.global_max_agents)),
    };
    Ok(kugetsu_queue::postgres::backend(options)?)
}

#[cfg(not(feature = "postgres"))]
fn shared(_ctx: &Ctx, _config: &Config, _url: &str) -> Result<Backend, CliError> {
    Err(CliError::new(
        crate::error::exit::USAGE,
        format!(
            "{} is set, but this kugetsu was built without PostgreSQL support",
            kugetsu_core::config::KUGETSU_QUEUE_URL
        ),
    )
    .with_hint("build it with the `postgres` feature, or unset the setting"))
}

/// This host's name in a shared queue: the machine and the state directory, since an issue's
/// worktree and session live in a state directory, and `MAX_CONCURRENT_AGENTS` counts the
/// agents of one.
pub fn host_name(ctx: &Ctx) -> String {
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| ctx.env.get("HOSTNAME").cloned())
        .unwrap_or_else(|| "localhost".into());
    format!("{machine}:{}", ctx.state.root().display())
}

/// The queue of [`backend`].
pub fn queue(ctx: &Ctx, config: &Config) -> Result<Arc<dyn TaskQueue>, CliError> {
    Ok(backend(ctx, config)?.queue)
}

/// The agent slots of [`backend`].
pub fn slots(ctx: &Ctx, config: &Config) -> Result<Arc<dyn AgentSlots>, CliError> {
    Ok(backend(ctx, config)?.slots)
}

/// Whether agents the daemon starts may outlive it (to be adopted by the next daemon on the
/// same state directory). Not with a shared queue: the daemon's items run again elsewhere once
/// its lease expires, so its agents must end with it, or the item would run twice at once.
pub fn agents_outlive_daemon(config: &Config) -> bool {
    config.queue_url.is_none()
}

/// `queue migrate --to <url>`: copies every pending item of the state directory's file queue
/// into the PostgreSQL queue at `url` with its id (an id already there is skipped, so a second
/// run duplicates nothing), then marks it `error` in the file queue, saying where it went, so
/// that a file-queue daemon never runs it as well. Returns the ids moved.
#[cfg(feature = "postgres")]
pub fn migrate_files_to(ctx: &Ctx, url: &str) -> Result<Vec<String>, CliError> {
    use kugetsu_core::queue::QueueStatus;
    let config = ctx.config()?;
    let target = kugetsu_queue::postgres::PgQueue::connect(&kugetsu_queue::postgres::PgOptions {
        url: url.to_string(),
        host: host_name(ctx),
        lease_ttl: std::time::Duration::from_secs(config.queue_lease_seconds),
        global_limit: Arc::new(|| None),
    })?;
    let files = kugetsu_queue::FileQueue::new(&ctx.state);
    let shown = kugetsu_core::secrets::redact_url(url);
    let mut moved = Vec::new();
    for item in files.list()?.items.into_iter().filter(|i| i.status == QueueStatus::Pending) {
        target.import(&item)?;
        files.update(&item.id, &mut |it| {
            it.status = QueueStatus::Error;
            it.last_error = Some(format!("moved to the shared queue at {shown}"));
        })?;
        moved.push(item.id);
    }
    Ok(moved)
}

#[cfg(not(feature = "postgres"))]
pub fn migrate_files_to(ctx: &Ctx, url: &str) -> Result<Vec<String>, CliError> {
    let _ = (ctx, url);
    Err(CliError::new(
        crate::error::exit::USAGE,
        "this kugetsu was built without PostgreSQL support",
    ))
}
