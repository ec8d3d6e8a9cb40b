//! Embedding kugetsu's orchestration in another Rust program.
//!
//! The program brings its own agent driver (here a tiny one that "answers" by writing a file
//! into the issue's worktree) and reuses kugetsu's in-memory worktrees and slots. The same
//! `Orchestrator` runs under the `kugetsu` CLI with the git, opencode and file-queue backends.
//!
//! Run it with `cargo run -p kugetsu-examples --example embed`.

// An example program talks to its user on stdout.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use kugetsu_core::agent::{
    AgentDriver, AgentError, AgentEvent, AgentSessionInfo, CreateSessionRequest, EventSink,
    ForkRequest, RunOutcome, RunReport, RunRequest, SessionId,
};
use kugetsu_core::clock::SystemClock;
use kugetsu_core::orchestrator::{InitOptions, Orchestrator, Settings, StartOptions};
use kugetsu_core::testing::{FakeWorktrees, MemorySlots, StaticEnv};
use kugetsu_core::worktree::{NoProgress, RepoSource};
use kugetsu_core::{IssueRef, StateDir};

/// An agent that keeps its sessions in memory and, for every turn, writes the prompt into
/// `NOTES.md` in the session's directory.
#[derive(Default)]
struct NotesAgent {
    sessions: Mutex<BTreeMap<SessionId, PathBuf>>,
    next: Mutex<u32>,
}

impl NotesAgent {
    fn new_session(&self, dir: &Path) -> SessionId {
        let mut n = self.next.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        let id = SessionId::new(format!("ses_notes{n:04}")).expect("valid id");
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), dir.into());
        id
    }
}

impl AgentDriver for NotesAgent {
    fn create_session(
        &self,
        req: &CreateSessionRequest,
        _sink: &mut dyn EventSink,
    ) -> Result<RunReport, AgentError> {
        let session = self.new_session(&req.dir);
        // No model, no cost to report: unknown.
        Ok(RunReport { session, outcome: RunOutcome::Completed, exit_code: Some(0), usage: None })
    }

    fn fork_session(&self, req: &ForkRequest) -> Result<SessionId, AgentError> {
        Ok(self.new_session(&req.dir))
    }

    fn run(&self, req: &RunRequest, sink: &mut dyn EventSink) -> Result<RunReport, AgentError> {
        let path = req.dir.join("NOTES.md");
        std::fs::write(&path, &req.prompt).map_err(|source| AgentError::Io {
            action: "write",
            path: path.clone(),
            source,
        })?;
        sink.event(&AgentEvent::ToolUse {
            tool: "write".into(),
            status: kugetsu_core::agent::ToolStatus::Completed,
            title: Some("NOTES.md".into()),
            error: None,
        });
        Ok(RunReport {
            session: req.session.clone(),
            outcome: RunOutcome::Completed,
            exit_code: Some(0),
            usage: None,
        })
    }

    fn delete_session(&self, id: &SessionId) -> Result<(), AgentError> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        Ok(())
    }

    fn session_exists(&self, id: &SessionId) -> Result<bool, AgentError> {
        Ok(self.sessions.lock().unwrap_or_else(|e| e.into_inner()).contains_key(id))
    }

    fn list_sessions(&self, _dir: &Path) -> Result<Vec<AgentSessionInfo>, AgentError> {
        Ok(Vec::new())
    }
}

/// Prints what the agent does.
struct Printer;
impl EventSink for Printer {
    fn event(&mut self, event: &AgentEvent) {
        println!("  event: {event:?}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = std::env::temp_dir().join(format!("kugetsu-embed-{}", std::process::id()));
    let state = StateDir::new(scratch.join("state"));
    let orch = Orchestrator::new(
        state.clone(),
        Arc::new(FakeWorktrees::default()),
        Arc::new(NotesAgent::default()),
        Arc::new(MemorySlots::default()),
        Arc::new(StaticEnv::default()),
        Arc::new(SystemClock),
        // No pid here is made up: the kernel judges them, as in the CLI.
        Settings::new(Arc::new(kugetsu_process::SystemLiveness)),
    );
    let init = orch.init(
        &InitOptions {
            force: false,
            interactive: false,
            session_dir: scratch.clone(),
            base_prompt: "prime".into(),
            pm_prompt: "coordinate".into(),
        },
        &mut Printer,
    )?;
    println!("initialized: base {} / pm {}", init.base, init.pm_agent);

    let issue = IssueRef::parse("github.com/example/app#7")?;
    let summary = orch.start(
        &StartOptions {
            source: RepoSource {
                url: "https://github.com/example/app.git".into(),
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
    println!("{}: {}", summary.issue_ref, summary.outcome.describe());
    let notes = std::fs::read_to_string(summary.worktree_path.join("NOTES.md"))?;
    assert_eq!(notes, "write down the plan");
    for entry in orch.list()? {
        println!("  {:<28} {:<8} {}", entry.issue_ref, entry.kind, entry.session_id);
    }
    orch.destroy_issue(&issue, false)?;
    std::fs::remove_dir_all(&scratch)?;
    println!("done");
    Ok(())
}
