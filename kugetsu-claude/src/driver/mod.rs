//! [`ClaudeDriver`]: the [`AgentDriver`] that runs the real Claude Code CLI (`claude -p`), one
//! module per operation: `turn` runs one headless turn (create, a fork's first turn, a later
//! turn) and its log, `interactive` primes a session in the TUI, `sessions` forks, finds, lists
//! and deletes sessions, `transfer` exports a session and imports it on another host.
//!
//! One Claude Code turn costs about 0.45 s and 210 MB (2.1.328, an instant API), so the driver
//! spends no process of its own around it: a fork is recorded and made by its first turn
//! (`--resume BASE --fork-session`), and nothing is read back from Claude Code after a run.

mod interactive;
mod options;
mod sessions;
mod transfer;
mod turn;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use kugetsu_core::agent::{
    AgentDriver, AgentEnv, AgentError, AgentSessionInfo, CreateSessionRequest, EventSink,
    ForkRequest, RunReport, RunRequest, SessionId,
};
use kugetsu_process::{CommandSpec, Io, build_command};

pub use options::{ClaudeOptions, MIN_IDLE};

use crate::args::{DROP_VARS, QUIET_ENV};
use crate::store::Records;

/// Drives the Claude Code CLI. Cheap to share between threads: it holds only its options.
#[derive(Debug, Clone)]
pub struct ClaudeDriver {
    opts: ClaudeOptions,
    /// The base env with [`QUIET_ENV`] and the private `TMPDIR`.
    env: Vec<(OsString, OsString)>,
}

impl ClaudeDriver {
    /// A driver with these options.
    pub fn new(options: ClaudeOptions) -> Self {
        let mut env: Vec<(OsString, OsString)> = options
            .base_env
            .iter()
            .filter(|(k, _)| k != "TMPDIR" && !QUIET_ENV.iter().any(|(q, _)| k == q))
            .cloned()
            .collect();
        env.extend(QUIET_ENV.iter().map(|(k, v)| (k.into(), v.into())));
        // Claude Code leaves files in the temporary directory (a probe directory per run, the
        // output of Bash tasks, and more after a kill): kept under kugetsu's state, not /tmp.
        env.push(("TMPDIR".into(), options.state_dir.join("tmp").into()));
        ClaudeDriver { opts: options, env }
    }

    /// Its options.
    pub fn options(&self) -> &ClaudeOptions {
        &self.opts
    }

    fn spawn_error(&self, source: std::io::Error) -> AgentError {
        AgentError::Spawn { program: self.opts.program.clone(), source }
    }

    fn records(&self) -> Records {
        Records::new(&self.opts.state_dir)
    }

    /// Claude Code's configuration directory (where its transcripts are).
    fn config_dir(&self) -> Result<PathBuf, AgentError> {
        crate::store::config_dir(&self.env).ok_or_else(|| AgentError::CommandFailed {
            command: "find sessions".into(),
            message: "neither CLAUDE_CONFIG_DIR nor HOME is set".into(),
        })
    }

    /// A Claude Code command: the program with `args` in `cwd`, with the driver's environment,
    /// the agent's env and the hygiene of [`build_command`].
    fn command(&self, args: &[OsString], cwd: &Path, env: &AgentEnv, io: Io) -> Command {
        build_command(&CommandSpec {
            program: &self.opts.program,
            args,
            cwd: Some(cwd),
            base_env: &self.env,
            agent_env: Some(env),
            drop_vars: DROP_VARS,
            io,
            die_with_parent: self.opts.die_with_parent,
        })
    }
}

impl AgentDriver for ClaudeDriver {
    /// [`crate::PROVIDER`], or the cloud Claude Code's environment routes it to: every turn
    /// of a configuration goes to the same one, so one refusal holds them all.
    fn provider(&self) -> Option<String> {
        let on = |name: &str| {
            self.env.iter().any(|(k, v)| k == name && !v.is_empty() && v != "0" && v != "false")
        };
        Some(
            if on("CLAUDE_CODE_USE_BEDROCK") {
                "bedrock"
            } else if on("CLAUDE_CODE_USE_VERTEX") {
                "vertex"
            } else {
                crate::PROVIDER
            }
            .to_owned(),
        )
    }

    /// Claude Code 2.x.
    fn agent_major(&self) -> u32 {
        2
    }

    fn create_session(
        &self,
        req: &CreateSessionRequest,
        sink: &mut dyn EventSink,
    ) -> Result<RunReport, AgentError> {
        if req.interactive { self.create_interactive(req) } else { self.create_headless(req, sink) }
    }

    fn fork_session(&self, req: &ForkRequest) -> Result<SessionId, AgentError> {
        self.fork(req)
    }

    fn run(&self, req: &RunRequest, sink: &mut dyn EventSink) -> Result<RunReport, AgentError> {
        self.run_session(req, sink)
    }

    fn delete_session(&self, id: &SessionId) -> Result<(), AgentError> {
        self.delete(id)
    }

    fn session_exists(&self, id: &SessionId) -> Result<bool, AgentError> {
        Ok(self.info(id)?.is_some())
    }

    fn list_sessions(&self, dir: &Path) -> Result<Vec<AgentSessionInfo>, AgentError> {
        self.sessions_in(dir)
    }

    fn session_info(&self, id: &SessionId) -> Result<Option<AgentSessionInfo>, AgentError> {
        self.info(id)
    }

    fn export_session(&self, id: &SessionId, env: &AgentEnv) -> Result<String, AgentError> {
        self.export_whole(id, env)
    }

    fn import_session(&self, export: &str, req: &ForkRequest) -> Result<SessionId, AgentError> {
        self.import_whole(export, req)
    }
}

impl ClaudeDriver {
    /// What `claude --version` prints (`2.1.328 (Claude Code)`), or why it could not be told.
    pub fn version(&self) -> Result<String, String> {
        let args = [OsString::from("--version")];
        let cwd = std::env::temp_dir();
        let cmd = self.command(&args, &cwd, &AgentEnv::default(), Io::NullStdin);
        let limits = kugetsu_process::Limits {
            timeout: std::time::Duration::from_secs(30),
            idle: None,
            grace: self.opts.kill_grace,
        };
        let (ended, out, err) =
            kugetsu_process::supervise::run_captured(cmd, None, limits, &self.opts.interrupt)
                .map_err(|e| {
                    format!("cannot run {}: {}", self.opts.program.display(), e.into_io())
                })?;
        let out = String::from_utf8_lossy(&out).trim().to_owned();
        match ended {
            kugetsu_process::Ended::Exited(s) if s.success() && !out.is_empty() => Ok(out),
            _ => Err(format!(
                "{} --version failed: {}",
                self.opts.program.display(),
                String::from_utf8_lossy(&err).lines().next().unwrap_or("no output")
            )),
        }
    }
}
