//! How this process launches an agent: where it runs (which decides whether it may outlive
//! kugetsu), the environment it starts from, and where its program is. The driver table builds
//! drivers from these; wiring builds the orchestration around the driver.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kugetsu_core::agent::AgentEnv;
use kugetsu_core::config::Config;
use kugetsu_core::env_file::{EnvFileError, EnvFiles, PM_AGENT};
use kugetsu_core::orchestrator::EnvSource;

use crate::context::Ctx;

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

/// What every agent process starts from: kugetsu's own environment (an agent needs PATH,
/// HOME and its provider keys) without kugetsu's secret settings, pointed at this state
/// directory and temp dir, plus `env/default.env`. A driver's helper commands get the same
/// environment as its runs, so a variable in the env files that moves the agent's store
/// applies to all of them alike.
///
/// The queue's URL (`KUGETSU_QUEUE_URL`, with its password) is kugetsu's, not an agent's: an
/// agent that prints its environment would show it. The PM agent, whose `kugetsu` commands
/// use the queue, is told where to read it instead ([`AgentEnvs`]).
pub fn agent_base_env(ctx: &Ctx, config: &Config) -> BTreeMap<String, String> {
    let mut env = ctx.env.clone();
    crate::context::remove_secrets(&mut env);
    env.insert(crate::context::vars::KUGETSU_HOME.into(), ctx.state.root().display().to_string());
    env.insert("KUGETSU_TEMP_DIR".into(), config.temp_dir.display().to_string());
    if let Ok(defaults) =
        EnvFiles::new(&ctx.state).merged(kugetsu_core::orchestrator::DEFAULT_AGENT)
    {
        env.extend(defaults.0);
    }
    env
}

/// The variables each agent gets on top of [`agent_base_env`]: its env files, and for the PM
/// agent, when a shared queue is configured, [`crate::context::vars::KUGETSU_QUEUE_URL_FILE`]
/// naming a private file with the queue's URL, written before each of its turns. The `kugetsu`
/// commands it runs (`start`, `delegate`) then reach the same queue however the user gave the
/// URL (environment, config file or `--config`), and its environment holds no password: an
/// agent that prints it shows a path. The PM agent can read the file, as it can read the env
/// files: an agent is the user (docs/threat-model.md).
pub struct AgentEnvs {
    files: EnvFiles,
    queue_url: Option<(kugetsu_core::StateDir, String)>,
}

impl AgentEnvs {
    /// The env files of the state directory, and the configured queue.
    pub fn new(ctx: &Ctx, config: &Config) -> Self {
        AgentEnvs {
            files: EnvFiles::new(&ctx.state),
            queue_url: config.queue_url.clone().map(|url| (ctx.state.clone(), url)),
        }
    }
}

impl EnvSource for AgentEnvs {
    fn agent_env(&self, agent: &str) -> Result<AgentEnv, EnvFileError> {
        let mut env = self.files.agent_env(agent)?;
        if agent == PM_AGENT
            && let Some((state, url)) = &self.queue_url
        {
            let path = crate::context::write_queue_url(state, url)?;
            env.0.insert(
                crate::context::vars::KUGETSU_QUEUE_URL_FILE.into(),
                path.display().to_string(),
            );
        }
        Ok(env)
    }
}

/// The secret values an agent can read without being handed them in its environment (the
/// shared queue's URL with its password, kept in a file for the PM agent): every driver masks
/// them in what it logs and shows, as it masks its environment's.
pub fn withheld_secrets(queue_url: Option<&str>) -> Vec<String> {
    queue_url
        .map(|url| {
            kugetsu_core::secrets::secret_values([(kugetsu_core::config::KUGETSU_QUEUE_URL, url)])
        })
        .unwrap_or_default()
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
