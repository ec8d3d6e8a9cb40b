//! Embedding kugetsu with an agent driver of your own, on kugetsu's real backends.
//!
//! `ShellAgent` is a small `AgentDriver` whose agent is a shell script: every turn runs it in
//! the session's directory with the prompt as its argument; each line it prints is the agent's
//! text, its exit status the turn's outcome. Its process is started and supervised by
//! `kugetsu-process`, as a real driver's are: the same hygiene as every agent kugetsu starts,
//! the wall-clock and idle limits, the stop request, and everything it started killed at the
//! end. It is wired into an `Orchestrator` with kugetsu's git worktrees (a bare mirror and a
//! linked worktree per issue, through gitoxide) and its file slots, the way the `kugetsu` CLI
//! wires the opencode driver. `kugetsu-opencode` shows what more a real agent needs (sessions
//! kept by the agent, forks, its event stream), and the conformance suite in `tests/` checks
//! what every driver promises.
//!
//! Run it with `cargo run -p kugetsu-examples --example own_driver` (it makes its sample
//! repository with the `git` program).

// An example program talks to its user on stdout.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kugetsu_core::agent::{
    AgentDriver, AgentEnv, AgentError, AgentEvent, AgentSessionInfo, CreateSessionRequest,
    EventSink, ForkRequest, RunLimits, RunOutcome, RunReport, RunRequest, SessionId,
};
use kugetsu_core::clock::SystemClock;
use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::orchestrator::{InitOptions, Orchestrator, Settings, StartOptions};
use kugetsu_core::testing::StaticEnv;
use kugetsu_core::worktree::{NoProgress, RepoSource};
use kugetsu_core::{IssueRef, StateDir};
use kugetsu_git::{Committer, GitConfig, GitWorktrees};
use kugetsu_process::supervise::{self, Ended, Limits, Seen, Stream};
use kugetsu_process::{CommandSpec, Io, build_command};
use kugetsu_queue::FileSlots;

/// The agent: a script run by `sh` for every turn; its sessions are the directories they run
/// in, kept in memory.
struct ShellAgent {
    script: String,
    /// What every agent process starts from (a driver is handed it: the CLI passes its own
    /// environment, with the state directory's settings).
    base_env: Vec<(OsString, OsString)>,
    /// The stop request it obeys (the CLI triggers it on Ctrl-C, SIGTERM, a hang-up).
    stop: Interrupt,
    sessions: Mutex<BTreeMap<SessionId, AgentSessionInfo>>,
}

impl ShellAgent {
    fn new(script: &str) -> Self {
        ShellAgent {
            script: script.into(),
            base_env: std::env::vars_os().collect(),
            stop: Interrupt::new(),
            sessions: Mutex::default(),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, BTreeMap<SessionId, AgentSessionInfo>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_session(&self, title: &str, dir: &Path) -> SessionId {
        let mut sessions = self.sessions();
        let id = SessionId::new(format!("sh_{:04}", sessions.len() + 1)).expect("a valid id");
        let info = AgentSessionInfo { id: id.clone(), title: title.into(), directory: dir.into() };
        sessions.insert(id.clone(), info);
        id
    }

    /// One turn: the script in `dir` with `prompt`, its lines as text events. `kugetsu-process`
    /// gives the process kugetsu's hygiene (a cleared environment without `GIT_*`, `PWD` = `dir`,
    /// its own process group, stdin closed) and supervises it: at the wall-clock or idle limit,
    /// or on the stop request, everything it started is killed.
    fn turn(
        &self,
        dir: &Path,
        prompt: &str,
        env: &AgentEnv,
        limits: &RunLimits,
        sink: &mut dyn EventSink,
    ) -> Result<(RunOutcome, Option<i32>), AgentError> {
        let args: Vec<OsString> =
            ["-c", &self.script, "agent", prompt].into_iter().map(OsString::from).collect();
        let cmd = build_command(&CommandSpec {
            program: Path::new("sh"),
            args: &args,
            cwd: Some(dir),
            base_env: &self.base_env,
            agent_env: Some(env),
            drop_vars: &[],
            io: Io::NullStdin,
            // The agent dies with this program even when it is killed outright, as the CLI's
            // foreground runs do (the daemon's agents do not, so a later daemon can adopt them).
            die_with_parent: true,
        });
        let limits = Limits {
            timeout: limits.timeout,
            idle: Some(limits.idle_timeout),
            grace: Duration::from_secs(2),
        };
        let ended = supervise::run(cmd, None, limits, &self.stop, &mut |seen| match seen {
            Seen::Spawned(pid) => sink.spawned(pid),
            Seen::Line(Stream::Stdout, line) => {
                let text = String::from_utf8_lossy(line).trim_end().to_owned();
                sink.event(&AgentEvent::Text { text });
            }
            Seen::Line(Stream::Stderr, _) => {}
        })
        .map_err(|e| AgentError::Spawn { program: "sh".into(), source: e.into_io() })?;
        Ok(match ended {
            Ended::Exited(status) if status.success() => (RunOutcome::Completed, status.code()),
            Ended::Exited(status) => {
                let message = format!("the script ended with {status}");
                (RunOutcome::Failed { message }, status.code())
            }
            Ended::TimedOut(after) => (RunOutcome::TimedOut { after_secs: after.as_secs() }, None),
            Ended::Hung(silent) => {
                let silent_secs = silent.as_secs();
                let processes_idle = kugetsu_process::activity_is_watched();
                (RunOutcome::Hung { silent_secs, processes_idle, last_tool: None }, None)
            }
            Ended::Interrupted => (RunOutcome::Interrupted { signal: self.stop.describe() }, None),
            // Only a run given a cut of its own (`supervise::run_cut`) ends so.
            Ended::Cut => (RunOutcome::Failed { message: "cut short".into() }, None),
        })
    }
}

impl AgentDriver for ShellAgent {
    fn create_session(
        &self,
        req: &CreateSessionRequest,
        sink: &mut dyn EventSink,
    ) -> Result<RunReport, AgentError> {
        if req.interactive {
            return Err(AgentError::NeedsTerminal);
        }
        let session = self.new_session(&req.title, &req.dir);
        let (outcome, exit_code) = self.turn(&req.dir, &req.prompt, &req.env, &req.limits, sink)?;
        // This agent reports no cost or tokens: unknown.
        Ok(RunReport { session, outcome, exit_code, usage: None })
    }

    fn fork_session(&self, req: &ForkRequest) -> Result<SessionId, AgentError> {
        if !self.session_exists(&req.base)? {
            return Err(AgentError::SessionNotFound { id: req.base.clone() });
        }
        Ok(self.new_session(&req.title, &req.dir))
    }

    fn run(&self, req: &RunRequest, sink: &mut dyn EventSink) -> Result<RunReport, AgentError> {
        if !self.session_exists(&req.session)? {
            return Err(AgentError::SessionNotFound { id: req.session.clone() });
        }
        let (outcome, exit_code) = self.turn(&req.dir, &req.prompt, &req.env, &req.limits, sink)?;
        Ok(RunReport { session: req.session.clone(), outcome, exit_code, usage: None })
    }

    fn delete_session(&self, id: &SessionId) -> Result<(), AgentError> {
        match self.sessions().remove(id) {
            Some(_) => Ok(()),
            None => Err(AgentError::SessionNotFound { id: id.clone() }),
        }
    }

    fn session_exists(&self, id: &SessionId) -> Result<bool, AgentError> {
        Ok(self.sessions().contains_key(id))
    }

    fn list_sessions(&self, dir: &Path) -> Result<Vec<AgentSessionInfo>, AgentError> {
        Ok(self.sessions().values().filter(|s| s.directory == dir).cloned().collect())
    }
}

/// Prints what the agent says.
struct Printer;
impl EventSink for Printer {
    fn event(&mut self, event: &AgentEvent) {
        if let AgentEvent::Text { text } = event {
            println!("  agent: {text}");
        }
    }
}

/// A one-commit repository at `dir`, made with the `git` program.
fn sample_repository(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("README.md"), "# app\n")?;
    for args in [&["init", "-q"][..], &["add", "."], &["commit", "-q", "-m", "init"]] {
        let status = Command::new("git")
            .args(["-c", "user.name=example", "-c", "user.email=example@example.invalid"])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("git {args:?} failed in {}", dir.display()).into());
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch: PathBuf =
        std::env::temp_dir().join(format!("kugetsu-own-driver-{}", std::process::id()));
    let upstream = scratch.join("upstream");
    sample_repository(&upstream)?;
    let state = StateDir::new(scratch.join("state"));
    state.ensure()?;
    // Where the base and the PM agent work (the CLI uses a directory in the state directory).
    let workspace = scratch.join("workspace");
    std::fs::create_dir_all(&workspace)?;

    // The agent writes each prompt into NOTES.md in its directory, and says so.
    let agent = ShellAgent::new(r#"printf '%s\n' "$1" >> NOTES.md && echo "noted: $1""#);
    let worktrees = GitWorktrees::new(
        state.mirrors_dir(),
        state.locks_dir(),
        Committer::new("kugetsu", "kugetsu@localhost"),
    )
    .with_git_config(GitConfig::Isolated);
    let orch = Orchestrator::new(
        state.clone(),
        Arc::new(worktrees),
        Arc::new(agent),
        Arc::new(FileSlots::new(&state)),
        Arc::new(StaticEnv::default()),
        Arc::new(SystemClock),
        Settings::new(Arc::new(kugetsu_process::SystemLiveness)),
    );
    let init = orch.init(
        &InitOptions {
            force: false,
            interactive: false,
            session_dir: workspace,
            base_prompt: "you are the base".into(),
            pm_prompt: "you coordinate".into(),
        },
        &mut Printer,
    )?;
    println!("initialized: base {} / pm {}", init.base, init.pm_agent);

    let issue = IssueRef::parse("local.test/example/app#7")?;
    let summary = orch.start(
        &StartOptions {
            source: RepoSource {
                url: upstream.display().to_string(),
                mirror_key: issue.repo().mirror_key(),
                token: None,
            },
            issue: issue.clone(),
            message: "write down the plan".into(),
            base_ref: None,
            force: false,
        },
        &mut NoProgress,
        &AtomicBool::new(false),
        &mut Printer,
    )?;
    println!(
        "{}: {} in {}",
        summary.issue_ref,
        summary.outcome.describe(),
        summary.worktree_path.display()
    );
    // The turn ran in the issue's own worktree, a checkout of the repository.
    assert!(summary.worktree_path.join("README.md").exists());
    let notes = std::fs::read_to_string(summary.worktree_path.join("NOTES.md"))?;
    assert_eq!(notes, "write down the plan\n");
    for entry in orch.list()? {
        println!("  {:<28} {:<8} {}", entry.issue_ref, entry.kind, entry.session_id);
    }
    // NOTES.md is an untracked file: destroying the issue needs `force`.
    orch.destroy_issue(&issue, true)?;

    // A turn that goes silent and does nothing is judged hung at the idle limit and killed,
    // with everything it started, long before its wall-clock limit.
    let sleeper = ShellAgent::new("echo thinking; sleep 60 & wait");
    let report = sleeper.create_session(
        &CreateSessionRequest {
            title: "sleeper".into(),
            prompt: "think hard".into(),
            dir: scratch.clone(),
            env: AgentEnv::default(),
            interactive: false,
            limits: RunLimits {
                timeout: Duration::from_secs(60),
                idle_timeout: Duration::from_secs(1),
                spend_cap: None,
            },
            log_path: scratch.join("sleeper.log"),
        },
        &mut Printer,
    )?;
    println!("a silent turn: {}", report.outcome.describe());
    assert!(matches!(report.outcome, RunOutcome::Hung { .. }), "{:?}", report.outcome);
    std::fs::remove_dir_all(&scratch)?;
    println!("done");
    Ok(())
}
