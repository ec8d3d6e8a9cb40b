//! How this process launches an agent: where it runs (which decides whether it may outlive
//! kugetsu), the environment it starts from, and where its program is. The driver table builds
//! drivers from these; wiring builds the orchestration around the driver.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kugetsu_core::config::Config;
use kugetsu_core::env_file::EnvFiles;

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
/// HOME and its provider keys), pointed at this state directory and temp dir, plus
/// `env/default.env`. A driver's helper commands get the same environment as its runs, so a
/// variable in the env files that moves the agent's store applies to all of them alike.
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
