//! Wiring: builds the real backends (gix worktrees, the agent driver, file queue and slots,
//! env files) from the resolved config, and the few process-level things only the edge may do
//! (detaching, Ctrl-C).

use std::sync::Arc;
use std::time::Duration;

use kugetsu_core::IssueRef;
use kugetsu_core::agent::AgentDriver;
use kugetsu_core::config::Config;
use kugetsu_core::env_file::EnvFiles;
use kugetsu_core::orchestrator::{EnvSource, Orchestrator, Settings};
use kugetsu_core::queue::{AgentSlots, NewTask, QueueItem, RunOptions, TaskQueue};
use kugetsu_core::worktree::{RepoSource, Secret, Worktrees};

use crate::context::Ctx;
use crate::error::CliError;
pub use crate::launch::RunPlace;

/// Committer identity used for the branches and worktrees kugetsu creates when git has none.
pub const COMMITTER_NAME: &str = "kugetsu";
/// Committer email used with [`COMMITTER_NAME`].
pub const COMMITTER_EMAIL: &str = "kugetsu@localhost";

/// The real backends.
pub struct Backends {
    /// gix worktrees.
    pub worktrees: Arc<dyn Worktrees>,
    /// The driver `KUGETSU_AGENT` names.
    pub agent: Arc<dyn AgentDriver>,
    /// File-lock slots.
    pub slots: Arc<dyn AgentSlots>,
    /// Env files.
    pub env: Arc<dyn EnvSource>,
}

impl Backends {
    /// Builds them; nothing is spawned or written yet.
    pub fn new(ctx: &Ctx, config: &Config, place: RunPlace) -> Result<Self, CliError> {
        Ok(Backends {
            worktrees: Arc::new(kugetsu_git::GitWorktrees::new(
                ctx.state.mirrors_dir(),
                ctx.state.locks_dir(),
                kugetsu_git::Committer::new(COMMITTER_NAME, COMMITTER_EMAIL),
            )),
            agent: crate::agents::driver(ctx, config, place)?,
            slots: crate::queue_backend::slots(ctx, config)?,
            env: Arc::new(crate::launch::AgentEnvs::new(ctx, config)),
        })
    }
}

impl Ctx {
    /// The orchestration wired to the real backends.
    pub fn orchestrator(&self) -> Result<Orchestrator, CliError> {
        let config = self.config()?;
        self.orchestrator_with(&config)
    }

    /// The orchestration for an already resolved config (no waiting for agent slots).
    pub fn orchestrator_with(&self, config: &Config) -> Result<Orchestrator, CliError> {
        build_orchestrator(self, config, RunPlace::Foreground, Duration::ZERO, None)
    }
}

/// The orchestration over the real backends: the one place it is assembled. `slots` replaces
/// the file slots (the daemon lends the slot it holds); `slot_wait` is how long a run waits
/// for a free slot.
pub fn build_orchestrator(
    ctx: &Ctx,
    config: &Config,
    place: RunPlace,
    slot_wait: Duration,
    slots: Option<Arc<dyn AgentSlots>>,
) -> Result<Orchestrator, CliError> {
    let backends = Backends::new(ctx, config, place)?;
    // The config is read afresh on every command; a run waiting for a slot reads it again, so
    // a raised limit applies at once (a broken config meanwhile keeps the limit it started with).
    let started_with = config.max_concurrent_agents;
    let live = ctx.clone();
    let max_agents = kugetsu_core::orchestrator::AgentLimit::Live(Arc::new(move || {
        live.config().map_or(started_with, |c| c.max_concurrent_agents)
    }));
    let orchestrator = Orchestrator::new(
        ctx.state.clone(),
        backends.worktrees,
        backends.agent,
        slots.unwrap_or(backends.slots),
        backends.env,
        Arc::new(kugetsu_core::clock::SystemClock),
        Settings {
            max_agents,
            limits: config.run_limits(),
            slot_wait,
            interrupt: ctx.interrupt.clone(),
            liveness: Arc::new(kugetsu_process::SystemLiveness),
            driver: config.agent.clone(),
            budgets: config.budgets(),
        },
    )
    .with_pauses(crate::pauses::pauses(ctx, config));
    // Watched issues are reported on, whoever runs their turns.
    let reporter = crate::reporting::Reporter::new(ctx.state.clone(), config.clone());
    Ok(orchestrator.with_observer(reporter))
}

/// Creates the state directory, the default config and the env files (for `init`).
pub fn prepare_state(ctx: &Ctx) -> Result<(), CliError> {
    ctx.state.ensure()?;
    kugetsu_core::config::write_default_config(&ctx.state)?;
    EnvFiles::new(&ctx.state).ensure_defaults()?;
    Ok(())
}

/// The repository an issue's worktree comes from: its clone URL (from `repos.json`, the server
/// table, or `https://<instance>/<path>.git`) and a token from the env files, never in the URL.
pub fn repo_source(ctx: &Ctx, issue: &IssueRef) -> Result<RepoSource, CliError> {
    repo_source_in(&ctx.state, issue)
}

/// [`repo_source`] for the state directory `state`.
pub fn repo_source_in(
    state: &kugetsu_core::StateDir,
    issue: &IssueRef,
) -> Result<RepoSource, CliError> {
    let servers = kugetsu_core::servers::Servers::new(state).load()?;
    let repos = kugetsu_core::repos::Repos::new(state).load()?;
    let url = kugetsu_core::repos::clone_url_for(issue, &servers, &repos)?;
    // Only the token meant for this URL's server, and only if one is set.
    let token = match kugetsu_core::repos::token_var_for(&url, &servers) {
        Some(var) => {
            let env = EnvFiles::new(state).merged(kugetsu_core::orchestrator::DEFAULT_AGENT)?;
            env.0.get(var).filter(|v| !v.is_empty()).map(|t| Secret::new(t.clone()))
        }
        None => None,
    };
    Ok(RepoSource { url, mirror_key: issue.repo().mirror_key(), token })
}

/// Enqueues a task, records the `task_queued` notification and wakes the daemon.
pub fn enqueue(
    ctx: &Ctx,
    message: &str,
    issue_ref: Option<String>,
    options: RunOptions,
) -> Result<QueueItem, CliError> {
    ctx.state.ensure()?;
    let queue = crate::queue_backend::queue(ctx, &ctx.config()?)?;
    let item = queue.enqueue(NewTask {
        message: message.into(),
        issue_ref: issue_ref.clone(),
        options,
    })?;
    crate::notifications::record(
        ctx,
        kugetsu_core::notify::NotificationType::TaskQueued,
        &format!("queued {}: {}", item.id, first_line(message, 80)),
        issue_ref.as_deref(),
    );
    Ok(item)
}

/// Puts item `id`, which ended in `error`, back in line and wakes this host's daemon (an
/// enqueue does; a retried item would otherwise wait for the next poll).
pub fn retry(ctx: &Ctx, queue: &dyn TaskQueue, id: &str) -> Result<QueueItem, CliError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(CliError::usage(format!("invalid queue item id {id:?}")));
    }
    let item = kugetsu_core::control::retry_item(queue, id).map_err(|e| match e {
        kugetsu_core::control::RetryError::Queue(q) => CliError::from(q),
        other => CliError::new(crate::error::exit::FAILURE, other.to_string()),
    })?;
    kugetsu_queue::wake::poke(&kugetsu_queue::wake::wake_path(&ctx.state));
    Ok(item)
}

/// Removes the finished items older than `QUEUE_CLEANUP_AGE_DAYS`; returns how many.
pub fn clear_finished(config: &Config, queue: &dyn TaskQueue) -> Result<usize, CliError> {
    let cutoff = time::OffsetDateTime::now_utc() - config.queue_cleanup_age();
    Ok(queue.clear(cutoff)?)
}

/// The first line of `text`, cut at `max` characters.
pub fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > max || text.lines().nth(1).is_some() {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_string()
    }
}
