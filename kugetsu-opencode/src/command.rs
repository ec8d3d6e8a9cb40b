//! The one place that builds an external command, so every opencode process gets the same
//! hygiene: a cleared environment (the caller's base env minus `GIT_*`, plus the agent's env
//! whose values never reach the argv), its own process group so a timeout can kill everything
//! it started, stdin that can never be left open (opencode reads stdin to EOF and hangs on a
//! pipe nobody closes), and a debug log of the argv.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use kugetsu_core::agent::AgentEnv;

/// How the child's standard streams are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// Headless: stdin is `/dev/null`, stdout and stderr are pipes; own process group.
    NullStdin,
    /// Headless: stdin is a pipe the caller writes once and then closes; stdout and stderr
    /// are pipes; own process group.
    PipedStdin,
    /// Interactive (the TUI): the terminal is inherited and the child stays in the foreground
    /// process group, else it could not read the terminal.
    Terminal,
}

/// Everything needed to build one command.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec<'a> {
    /// The program (the opencode binary).
    pub program: &'a Path,
    /// Its arguments.
    pub args: &'a [OsString],
    /// Working directory, if not inherited.
    pub cwd: Option<&'a Path>,
    /// The environment the caller chose to pass down (usually a filtered copy of its own).
    /// `GIT_*` variables are dropped from it.
    pub base_env: &'a [(OsString, OsString)],
    /// The agent's variables from the env files, added on top.
    pub agent_env: Option<&'a AgentEnv>,
    /// Stream wiring.
    pub io: Io,
}

/// Variables that would make git inside the agent's tools look at another repository or index
/// than the worktree it runs in. Dropped even when an env file sets them.
const GIT_LOCATION_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
];

fn is_git_var(key: &OsStr) -> bool {
    key.as_encoded_bytes().starts_with(b"GIT_")
}

/// Builds the command described by `spec`. It is not spawned.
pub fn build_command(spec: &CommandSpec<'_>) -> Command {
    let mut cmd = Command::new(spec.program);
    cmd.args(spec.args);
    cmd.env_clear();
    for (key, value) in spec.base_env {
        if !is_git_var(key) {
            cmd.env(key, value);
        }
    }
    if let Some(env) = spec.agent_env {
        for (key, value) in &env.0 {
            if !GIT_LOCATION_VARS.contains(&key.as_str()) {
                cmd.env(key, value);
            }
        }
    }
    if let Some(cwd) = spec.cwd {
        cmd.current_dir(cwd);
    }
    match spec.io {
        Io::NullStdin | Io::PipedStdin => {
            cmd.stdin(if spec.io == Io::NullStdin { Stdio::null() } else { Stdio::piped() });
            cmd.stdout(Stdio::piped());
            cmd.stderr(Stdio::piped());
            // Own group: the timeout kills opencode and every tool process it started.
            cmd.process_group(0);
        }
        Io::Terminal => {
            cmd.stdin(Stdio::inherit());
            cmd.stdout(Stdio::inherit());
            cmd.stderr(Stdio::inherit());
        }
    }
    let env_names: Vec<&str> =
        spec.agent_env.map(|e| e.0.keys().map(String::as_str).collect()).unwrap_or_default();
    tracing::debug!(
        program = %spec.program.display(),
        argv = ?spec.args,
        cwd = ?spec.cwd,
        agent_env = ?env_names,
        io = ?spec.io,
        "building agent command"
    );
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn envs(cmd: &Command) -> BTreeMap<String, Option<String>> {
        cmd.get_envs()
            .map(|(k, v)| {
                (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned()))
            })
            .collect()
    }

    #[test]
    fn env_is_base_without_git_plus_agent() {
        let base = vec![
            (OsString::from("PATH"), OsString::from("/bin")),
            (OsString::from("GIT_DIR"), OsString::from("/elsewhere")),
            (OsString::from("GIT_AUTHOR_NAME"), OsString::from("outer")),
        ];
        let mut agent = AgentEnv::default();
        agent.0.insert("GITHUB_TOKEN".into(), "s3cret".into());
        agent.0.insert("GIT_AUTHOR_NAME".into(), "bot".into());
        agent.0.insert("GIT_WORK_TREE".into(), "/nope".into());
        let args = [OsString::from("run")];
        let cmd = build_command(&CommandSpec {
            program: Path::new("opencode"),
            args: &args,
            cwd: Some(Path::new("/tmp")),
            base_env: &base,
            agent_env: Some(&agent),
            io: Io::NullStdin,
        });
        let e = envs(&cmd);
        assert_eq!(e.get("PATH"), Some(&Some("/bin".into())));
        assert_eq!(e.get("GITHUB_TOKEN"), Some(&Some("s3cret".into())));
        assert_eq!(e.get("GIT_AUTHOR_NAME"), Some(&Some("bot".into())));
        assert!(!e.contains_key("GIT_DIR"));
        assert!(!e.contains_key("GIT_WORK_TREE"));
        let argv: Vec<_> = cmd.get_args().collect();
        assert_eq!(argv, vec![OsStr::new("run")]);
        assert!(!argv.iter().any(|a| a.to_string_lossy().contains("s3cret")));
        assert_eq!(cmd.get_current_dir(), Some(Path::new("/tmp")));
    }
}
