//! Wiring: builds the real backends (gix worktrees, the agent driver, file queue and slots,
//! env files) from the resolved config, and the few process-level things only the edge may do
//! (finding programs on PATH, detaching, Ctrl-C, acting as the bundled fake agent).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kugetsu_core::IssueRef;
use kugetsu_core::agent::AgentDriver;
use kugetsu_core::config::Config;
use kugetsu_core::env_file::EnvFiles;
use kugetsu_core::orchestrator::{EnvSource, Orchestrator, Settings};
use kugetsu_core::queue::{AgentSlots, NewTask, QueueItem, RunOptions};
use kugetsu_core::worktree::{RepoSource, Secret, Worktrees};

use crate::context::Ctx;
use crate::error::CliError;

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

/// Where agents run, which decides whether they may outlive the process that started them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPlace {
    /// In a command the user waits on (`start`, `continue`, `init`, a detached re-run): the
    /// agent dies with kugetsu, even when kugetsu is killed outright.
    Foreground,
    /// In the queue daemon: a daemon killed outright leaves its agents running, and the next
    /// daemon adopts them.
    Daemon,
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
            env: Arc::new(EnvFiles::new(&ctx.state)),
        })
    }
}

/// What every opencode process starts from: kugetsu's own environment (opencode needs PATH,
/// HOME and its provider keys), pointed at this state directory and temp dir, plus
/// `env/default.env`. Helper commands (export, import, db, session list/delete) get the same
/// environment as runs, so a variable that moves opencode's database (`OPENCODE_DB`,
/// `XDG_DATA_HOME`) in the env files applies to all of them alike. `GIT_*` variables are dropped
/// by the driver.
pub fn agent_base_env(ctx: &Ctx, config: &Config) -> BTreeMap<String, String> {
    let mut env = ctx.env.clone();
    env.insert(crate::context::vars::KUGETSU_HOME.into(), ctx.state.root().display().to_string());
    env.insert("KUGETSU_TEMP_DIR".into(), config.temp_dir.display().to_string());
    if let Ok(defaults) =
        EnvFiles::new(&ctx.state).merged(kugetsu_core::orchestrator::DEFAULT_AGENT)
    {
        env.extend(defaults.0);
    }
    env
}

impl Ctx {
    /// The orchestration wired to the real backends.
    pub fn orchestrator(&self) -> Result<Orchestrator, CliError> {
        let config = self.config()?;
        self.orchestrator_with(&config)
    }

    /// The orchestration for an already resolved config (no waiting for agent slots).
    pub fn orchestrator_with(&self, config: &Config) -> Result<Orchestrator, CliError> {
        crate::wiring::build_orchestrator(
            self,
            config,
            crate::wiring::RunPlace::Foreground,
            std::time::Duration::ZERO,
            None,
        )
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
    Ok(Orchestrator::new(
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
        },
    ))
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
    let servers = kugetsu_core::servers::Servers::new(&ctx.state).load()?;
    let repos = kugetsu_core::repos::Repos::new(&ctx.state).load()?;
    let url = kugetsu_core::repos::clone_url_for(issue, &servers, &repos)?;
    // Only the token meant for this URL's server, and only if one is set.
    let token = match kugetsu_core::repos::token_var_for(&url, &servers) {
        Some(var) => {
            let env =
                EnvFiles::new(&ctx.state).merged(kugetsu_core::orchestrator::DEFAULT_AGENT)?;
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

/// The first line of `text`, cut at `max` characters.
pub fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > max || text.lines().nth(1).is_some() {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_string()
    }
}

/// Looks a program up like a shell would: a path with a `/` as it is, else each PATH entry.
pub fn find_program(program: &Path, env: &BTreeMap<String, String>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    };
    if program.components().count() > 1 {
        return executable(program).then(|| program.to_path_buf());
    }
    let path = env.get("PATH")?;
    std::env::split_paths(path).map(|dir| dir.join(program)).find(|p| executable(p))
}

/// If this process was started as `opencode` (the demo links it to the kugetsu binary), runs
/// the bundled fake agent and returns its exit code.
pub fn run_as_fake_agent() -> Option<u8> {
    let argv0 = std::env::args_os().next()?;
    let name = Path::new(&argv0).file_name()?.to_str()?.to_string();
    if name != "opencode" {
        return None;
    }
    Some(kugetsu_opencode::fake::main(
        std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect(),
    ))
}
