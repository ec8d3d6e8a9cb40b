//! The one place that builds an agent's command, so every process an agent driver starts gets
//! the same hygiene: a cleared environment (the caller's base env minus `GIT_*`, plus the
//! agent's env whose values never reach the argv), `PWD` naming the directory it really runs in,
//! its own process group so a timeout can kill everything it started, stdin that can never be
//! left open (an agent that reads stdin to EOF hangs on a pipe nobody closes), optionally death
//! with its parent, and a debug log of the argv.
//!
//! `PWD` is set to the child's own working directory because a shell sets it to wherever the
//! user stood, and a program may trust it over its real cwd. Which other variables an agent
//! reads as a directory is the agent's business: its driver names them
//! ([`CommandSpec::drop_vars`]).
//!
//! [`detach`] is the other way a process is started here: in a session of its own, for the
//! processes that must outlive the command that started them.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use kugetsu_core::agent::AgentEnv;

use crate::pre_exec;

/// How the child's standard streams are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// Headless: stdin is `/dev/null`, stdout and stderr are pipes; own process group.
    NullStdin,
    /// Headless: stdin is a pipe the caller writes once and then closes; stdout and stderr
    /// are pipes; own process group.
    PipedStdin,
    /// Interactive (a TUI): the terminal is inherited and the child stays in the foreground
    /// process group, else it could not read the terminal.
    Terminal,
}

/// Everything needed to build one command.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec<'a> {
    /// The program (the agent's binary).
    pub program: &'a Path,
    /// Its arguments.
    pub args: &'a [OsString],
    /// Working directory, if not inherited.
    pub cwd: Option<&'a Path>,
    /// The environment the caller chose to pass down (usually a filtered copy of its own).
    /// `GIT_*` variables and [`CommandSpec::drop_vars`] are dropped from it.
    pub base_env: &'a [(OsString, OsString)],
    /// The agent's variables from the env files, added on top.
    pub agent_env: Option<&'a AgentEnv>,
    /// Variables of the base env the agent must not see: those it would read as a directory
    /// of the user's shell (`PWD` itself is always set anew).
    pub drop_vars: &'a [&'a str],
    /// Stream wiring.
    pub io: Io,
    /// Kill the child (SIGKILL) when the thread that spawned it ends, so a foreground run does
    /// not outlive a kugetsu that was killed outright. Off for agents that must survive their
    /// spawner (the daemon's, which a later daemon adopts).
    pub die_with_parent: bool,
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
        if !is_git_var(key) && key != "PWD" && !spec.drop_vars.iter().any(|v| key == *v) {
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
    // The directory the child really runs in, as an absolute path (what a shell would put in
    // `PWD` after `cd`). Without a cwd of its own the child inherits this process's.
    let dir = match spec.cwd {
        Some(cwd) => std::path::absolute(cwd).ok(),
        None => std::env::current_dir().ok(),
    };
    if let Some(cwd) = spec.cwd {
        cmd.current_dir(cwd);
    }
    match dir {
        Some(dir) => cmd.env("PWD", dir),
        // This process's own directory is gone: the child then falls back to its cwd.
        None => cmd.env_remove("PWD"),
    };
    if spec.die_with_parent {
        pre_exec::die_with_parent(&mut cmd);
    }
    match spec.io {
        Io::NullStdin | Io::PipedStdin => {
            cmd.stdin(if spec.io == Io::NullStdin { Stdio::null() } else { Stdio::piped() });
            cmd.stdout(Stdio::piped());
            cmd.stderr(Stdio::piped());
            // Own group: the timeout kills the agent and every tool process it started.
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

/// Makes `cmd` start in a session of its own (`setsid` between fork and exec): no terminal's
/// signals reach it (a closed terminal's SIGHUP, a Ctrl-C) from its first instruction on, and it
/// has no controlling terminal to lose. The one way kugetsu detaches a process that must
/// outlive the command that started it: the queue daemon and `--detach` runs.
pub fn detach(cmd: &mut Command) {
    pre_exec::new_session(cmd);
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
    fn env_is_base_without_git_and_dropped_vars_plus_agent() {
        let base = vec![
            (OsString::from("PATH"), OsString::from("/bin")),
            (OsString::from("GIT_DIR"), OsString::from("/elsewhere")),
            (OsString::from("GIT_AUTHOR_NAME"), OsString::from("outer")),
            (OsString::from("PWD"), OsString::from("/where/the/user/stood")),
            (OsString::from("OLDPWD"), OsString::from("/before/that")),
            (OsString::from("KEEP_ME"), OsString::from("/kept")),
        ];
        let mut agent = AgentEnv::default();
        agent.0.insert("GITHUB_TOKEN".into(), "s3cret".into());
        agent.0.insert("GIT_AUTHOR_NAME".into(), "bot".into());
        agent.0.insert("GIT_WORK_TREE".into(), "/nope".into());
        let args = [OsString::from("run")];
        let cmd = build_command(&CommandSpec {
            program: Path::new("agent"),
            args: &args,
            cwd: Some(Path::new("/tmp")),
            base_env: &base,
            agent_env: Some(&agent),
            drop_vars: &["OLDPWD"],
            io: Io::NullStdin,
            die_with_parent: false,
        });
        let e = envs(&cmd);
        assert_eq!(e.get("PATH"), Some(&Some("/bin".into())));
        assert_eq!(e.get("KEEP_ME"), Some(&Some("/kept".into())));
        assert_eq!(e.get("GITHUB_TOKEN"), Some(&Some("s3cret".into())));
        assert_eq!(e.get("GIT_AUTHOR_NAME"), Some(&Some("bot".into())));
        assert!(!e.contains_key("GIT_DIR"));
        assert!(!e.contains_key("GIT_WORK_TREE"));
        assert_eq!(e.get("PWD"), Some(&Some("/tmp".into())), "PWD names the child's own cwd");
        assert!(!e.contains_key("OLDPWD"), "a variable the driver named is dropped");
        let argv: Vec<_> = cmd.get_args().collect();
        assert_eq!(argv, vec![OsStr::new("run")]);
        assert!(!argv.iter().any(|a| a.to_string_lossy().contains("s3cret")));
        assert_eq!(cmd.get_current_dir(), Some(Path::new("/tmp")));
    }

    #[test]
    fn a_detached_child_leads_its_own_session() {
        let mut cmd = Command::new("sleep");
        cmd.arg("5").stdin(Stdio::null());
        detach(&mut cmd);
        let mut child = cmd.spawn().expect("sleep");
        let pid = rustix::process::Pid::from_child(&child);
        let sid = rustix::process::getsid(Some(pid));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(sid.ok(), Some(pid), "the child is the leader of a new session");
    }

    #[test]
    fn a_child_dies_with_the_thread_that_started_it() {
        use std::os::unix::process::ExitStatusExt;
        let args = [OsString::from("30")];
        let base = [(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))];
        let mut child = std::thread::scope(|s| {
            s.spawn(|| {
                build_command(&CommandSpec {
                    program: Path::new("sleep"),
                    args: &args,
                    cwd: None,
                    base_env: &base,
                    agent_env: None,
                    drop_vars: &[],
                    io: Io::NullStdin,
                    die_with_parent: true,
                })
                .spawn()
                .expect("sleep")
            })
            .join()
            .expect("the spawning thread")
        });
        // The thread that spawned it has ended: the kernel kills it, long before its 30 s.
        let status = child.wait().expect("wait");
        assert_eq!(status.signal(), Some(rustix::process::Signal::KILL.as_raw()), "{status}");
    }
}
