//! The one place the queue backend is chosen and built: the state directory's files unless
//! `KUGETSU_QUEUE_URL` names a shared PostgreSQL queue. Everything that touches the queue or
//! the agent slots (enqueue, `queue`, the daemon, `start`'s slot, `doctor`, the demo) gets it
//! from here, so the two can never be mixed up within one command.

use std::sync::Arc;

use kugetsu_core::config::Config;
use kugetsu_core::queue::{AgentSlots, TaskQueue};
use kugetsu_queue::Backend;

use kugetsu_core::orchestrator::Finding;

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
        host_lost: std::time::Duration::from_secs(config.host_lost_seconds),
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
    let machine = kugetsu_process::host::machine_name()
        .or_else(|| ctx.env.get("HOSTNAME").cloned())
        .unwrap_or_else(|| "localhost".into());
    format!("{machine}:{}", ctx.state.root().display())
}

/// This host's name when the queue is shared (for `list` and `status`), `None` otherwise.
/// Reads the config only: it works while the server is down.
pub fn shared_host(ctx: &Ctx) -> Result<Option<String>, CliError> {
    Ok(ctx.config()?.queue_url.is_some().then(|| host_name(ctx)))
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
    let target = pg_queue(ctx, &ctx.config()?, url)?;
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
/// Built without PostgreSQL support: there is no shared queue to speak of.
pub fn migrate_files_to(ctx: &Ctx, url: &str) -> Result<Vec<String>, CliError> {
    let _ = (ctx, url);
    Err(CliError::new(
        crate::error::exit::USAGE,
        "this kugetsu was built without PostgreSQL support",
    ))
}

/// What `doctor` checks of a shared queue beyond reading it: the schema version and items
/// stuck under an expired lease (their host died or is cut off). Nothing without one.
#[cfg(feature = "postgres")]
pub fn shared_findings(config: &Config) -> Vec<Finding> {
    let Some(url) = &config.queue_url else { return Vec::new() };
    let shown = kugetsu_core::secrets::redact_url(url);
    let finding = |problem: String, remedy: &str| Finding {
        subject: format!("shared queue {shown}"),
        problem,
        remedy: remedy.into(),
        fixed: false,
    };
    let found = match kugetsu_queue::postgres::inspect(url) {
        Ok(found) => found,
        // Reading the queue already reported an unreachable server.
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    if found.version != kugetsu_queue::postgres::SCHEMA_VERSION {
        out.push(finding(
            format!(
                "its schema is version {}, this kugetsu uses version {}",
                found.version,
                kugetsu_queue::postgres::SCHEMA_VERSION
            ),
            "a newer kugetsu migrated it: upgrade kugetsu on this host",
        ));
    }
    for (id, host) in &found.stuck {
        out.push(finding(
            format!("{id} is claimed by host {host}, whose lease has expired"),
            &format!(
                "a running daemon gives it back to the queue at its next round; if {host} is \
                 gone for good, `kugetsu queue release-host {host}`"
            ),
        ));
    }
    out
}

#[cfg(not(feature = "postgres"))]
/// Built without PostgreSQL support: there is no shared queue to speak of.
pub fn shared_findings(_config: &Config) -> Vec<Finding> {
    Vec::new()
}

/// What `doctor` prints about a shared queue besides its problems: the schema version and the
/// hosts that hold live leases. Nothing without a shared queue or when it cannot be read (that
/// is a problem `doctor` reports).
#[cfg(feature = "postgres")]
pub fn shared_summary(ctx: &Ctx, config: &Config) -> Vec<String> {
    let Some(url) = &config.queue_url else { return Vec::new() };
    let Ok(found) = kugetsu_queue::postgres::inspect(url) else { return Vec::new() };
    let me = host_name(ctx);
    let mut out = vec![format!(
        "shared queue {} (schema version {}), this host {me}:",
        kugetsu_core::secrets::redact_url(url),
        found.version
    )];
    if found.hosts.is_empty() {
        out.push("  no host holds a live lease".into());
    }
    for h in &found.hosts {
        out.push(format!("  {}: {} item(s) running, {} slot(s) held", h.host, h.items, h.slots));
    }
    out
}

#[cfg(not(feature = "postgres"))]
/// Built without PostgreSQL support: there is no shared queue to speak of.
pub fn shared_summary(_ctx: &Ctx, _config: &Config) -> Vec<String> {
    Vec::new()
}

/// `queue hosts`: the hosts holding live leases (items, slots) and the issues each keeps.
#[cfg(feature = "postgres")]
pub fn hosts(ctx: &Ctx, config: &Config) -> Result<Vec<HostReport>, CliError> {
    let url = shared_url(config)?;
    let found = kugetsu_queue::postgres::inspect(url)?;
    let queue = pg_queue(ctx, config, url)?;
    let issues = queue.issue_hosts()?;
    let moves = queue.moves()?;
    let mut names: Vec<String> = found.hosts.iter().map(|h| h.host.clone()).collect();
    names.extend(issues.iter().map(|(_, h)| h.clone()));
    names.extend(moves.iter().map(|m| m.from_host.clone()));
    names.sort();
    names.dedup();
    Ok(names
        .into_iter()
        .map(|name| {
            let live = found.hosts.iter().find(|h| h.host == name);
            HostReport {
                items: live.map_or(0, |h| h.items),
                slots: live.map_or(0, |h| h.slots),
                issues: issues.iter().filter(|(_, h)| *h == name).map(|(i, _)| i.clone()).collect(),
                moved_away: moves
                    .iter()
                    .filter(|m| m.from_host == name)
                    .map(|m| MoveReport {
                        issue: m.issue_ref.clone(),
                        to_host: m.to_host.clone(),
                        at: m
                            .at
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default(),
                        why: m.why.clone(),
                    })
                    .collect(),
                this_host: name == host_name(ctx),
                host: name,
            }
        })
        .collect())
}

/// One host of a shared queue, as `queue hosts` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostReport {
    /// The host (machine and state directory).
    pub host: String,
    /// Items it runs under a live lease.
    pub items: i64,
    /// Agent slots it holds.
    pub slots: i64,
    /// Issues whose worktree and session live there.
    pub issues: Vec<String>,
    /// Whether it is this very host.
    pub this_host: bool,
    /// Its issues that moved to other hosts (it was lost, or released), newest first.
    pub moved_away: Vec<MoveReport>,
}

/// An issue that moved away from a host, as `queue hosts` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MoveReport {
    /// The issue.
    pub issue: String,
    /// The host that took it since (`None`: none has yet).
    pub to_host: Option<String>,
    /// When it moved (RFC 3339).
    pub at: String,
    /// Why, and what stayed behind.
    pub why: String,
}

/// `queue release-host <host>`: the issues of a host gone for good move elsewhere, and
/// its claimed items go back to the queue. Returns (issues, items).
#[cfg(feature = "postgres")]
pub fn release_host(
    ctx: &Ctx,
    config: &Config,
    host: &str,
) -> Result<(Vec<String>, Vec<String>), CliError> {
    let url = shared_url(config)?;
    Ok(pg_queue(ctx, config, url)?.release_host(host)?)
}

#[cfg(feature = "postgres")]
fn pg_queue(
    ctx: &Ctx,
    config: &Config,
    url: &str,
) -> Result<kugetsu_queue::postgres::PgQueue, CliError> {
    Ok(kugetsu_queue::postgres::PgQueue::connect(&kugetsu_queue::postgres::PgOptions {
        url: url.to_string(),
        host: host_name(ctx),
        lease_ttl: std::time::Duration::from_secs(config.queue_lease_seconds),
        host_lost: std::time::Duration::from_secs(config.host_lost_seconds),
        global_limit: Arc::new(|| None),
    })?)
}

#[cfg(feature = "postgres")]
fn shared_url(config: &Config) -> Result<&str, CliError> {
    config.queue_url.as_deref().ok_or_else(|| {
        CliError::usage(format!(
            "there is no shared queue: {} is not set",
            kugetsu_core::config::KUGETSU_QUEUE_URL
        ))
    })
}

#[cfg(not(feature = "postgres"))]
/// Built without PostgreSQL support: there is no shared queue to speak of.
pub fn hosts(_ctx: &Ctx, _config: &Config) -> Result<Vec<HostReport>, CliError> {
    Err(CliError::usage("this kugetsu was built without PostgreSQL support"))
}

#[cfg(not(feature = "postgres"))]
/// Built without PostgreSQL support: there is no shared queue to speak of.
pub fn release_host(
    _ctx: &Ctx,
    _config: &Config,
    _host: &str,
) -> Result<(Vec<String>, Vec<String>), CliError> {
    Err(CliError::usage("this kugetsu was built without PostgreSQL support"))
}

/// Before a `start` run by hand: with a shared queue, records that the issue lives on this
/// host (its worktree and session are about to be made here), or refuses when another host
/// keeps it. Nothing to do with the file queue.
#[cfg(feature = "postgres")]
pub fn hold_issue(ctx: &Ctx, config: &Config, issue: &str) -> Result<(), CliError> {
    let Some(url) = config.queue_url.as_deref() else { return Ok(()) };
    let me = host_name(ctx);
    let keeper = pg_queue(ctx, config, url)?.hold_issue(issue, &me)?;
    if keeper == me {
        return Ok(());
    }
    Err(CliError::new(
        crate::error::exit::BUSY,
        format!("{issue} lives on host {keeper}: its worktree and session are there"),
    )
    .with_hint(format!(
        "run it on that host, or `kugetsu queue release-host {keeper}` if that host is gone"
    )))
}

#[cfg(not(feature = "postgres"))]
/// Built without PostgreSQL support: there is no shared queue to speak of.
pub fn hold_issue(_ctx: &Ctx, _config: &Config, _issue: &str) -> Result<(), CliError> {
    Ok(())
}
