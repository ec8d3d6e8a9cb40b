//! Library-level tests of the orchestration over the in-memory fakes.

// Test helpers outside #[test] functions unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use kugetsu_core::agent::{NoEvents, RunOutcome};
use kugetsu_core::clock::FixedClock;
use kugetsu_core::orchestrator::{
    InitOptions, MovedHistory, Orchestrator, OrchestratorError, RunSummary, Settings, StartOptions,
    Status,
};
use kugetsu_core::testing::{FakeAgent, FakeTurn, FakeWorktrees, MemorySlots, StaticEnv};
use kugetsu_core::worktree::{NoProgress, RepoSource, UnsavedWork};
use kugetsu_core::{IssueRef, StateDir};

struct Env {
    _tmp: tempfile::TempDir,
    state: StateDir,
    wt: Arc<FakeWorktrees>,
    agent: Arc<FakeAgent>,
    orch: Orchestrator,
}

fn env_with(max_agents: usize) -> Env {
    env_checking_pids(max_agents, false)
}

/// An environment whose orchestration asks the kernel whether recorded pids run (`system`),
/// or the fake agent (which makes its pids up).
fn env_checking_pids(max_agents: usize, system: bool) -> Env {
    env_full(max_agents, system, Duration::from_secs(30))
}

fn env_full(max_agents: usize, system: bool, slot_wait: Duration) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path().join("state"));
    let wt = Arc::new(FakeWorktrees::default());
    let agent = Arc::new(FakeAgent::default());
    let envs = StaticEnv::default();
    envs.0
        .lock()
        .unwrap()
        .insert("default".into(), [("GITHUB_TOKEN".to_string(), "canary-123".to_string())].into());
    let orch = Orchestrator::new(
        state.clone(),
        wt.clone(),
        agent.clone(),
        Arc::new(MemorySlots::default()),
        Arc::new(envs),
        Arc::new(FixedClock(time::macros::datetime!(2026-11-23 12:00 UTC))),
        Settings {
            max_agents: max_agents.into(),
            slot_wait,
            ..Settings::new(if system {
                Arc::new(kugetsu_process::SystemLiveness)
            } else {
                agent.liveness()
            })
        },
    );
    Env { _tmp: tmp, state, wt, agent, orch }
}

fn init(e: &Env) {
    e.orch
        .init(
            &InitOptions {
                force: false,
                interactive: false,
                session_dir: e.state.root().to_path_buf(),
                base_prompt: "you are the base".into(),
                pm_prompt: "you are the PM".into(),
            },
            &mut NoEvents,
        )
        .unwrap();
}

/// Starts `r` with `msg`: fake worktree, no progress, no interrupt, events ignored.
fn start(orch: &Orchestrator, r: &str, msg: &str) -> Result<RunSummary, OrchestratorError> {
    orch.start(&start_opts(r, msg), &mut NoProgress, &AtomicBool::new(false), &mut NoEvents)
}

fn start_opts(r: &str, msg: &str) -> StartOptions {
    let issue = IssueRef::parse(r).unwrap();
    StartOptions {
        source: RepoSource {
            url: "https://example.invalid/o/r.git".into(),
            mirror_key: issue.repo().mirror_key(),
            token: None,
        },
        issue,
        message: msg.into(),
        base_ref: None,
        force: false,
    }
}

#[test]
fn status_walks_through_the_spec_words() {
    let e = env_with(3);
    assert_eq!(e.orch.status().unwrap(), Status::KugetsuNotInitialized);
    init(&e);
    assert_eq!(e.orch.status().unwrap(), Status::Ok);
    e.orch.destroy_pm().unwrap();
    assert_eq!(e.orch.status().unwrap(), Status::PmAgentMissing);
    e.orch.destroy_base().unwrap();
    assert_eq!(e.orch.status().unwrap(), Status::BaseSessionMissing);
}

#[test]
fn init_twice_needs_force() {
    let e = env_with(3);
    init(&e);
    let again = e.orch.init(
        &InitOptions {
            force: false,
            interactive: false,
            session_dir: e.state.root().into(),
            base_prompt: "b".into(),
            pm_prompt: "p".into(),
        },
        &mut NoEvents,
    );
    assert!(matches!(again, Err(OrchestratorError::AlreadyInitialized { .. })), "{again:?}");
}

#[test]
fn start_forks_into_the_worktree_and_runs_there() {
    let e = env_with(3);
    init(&e);
    let summary = start(&e.orch, "github.com/shoko/kugetsu#14", "fix the bug").unwrap();
    assert_eq!(summary.outcome, RunOutcome::Completed);
    let wt = e.state.worktrees_dir().join("github.com-shoko-kugetsu-14");
    assert_eq!(summary.worktree_path, wt);
    assert_eq!(e.agent.dir_of(summary.session_id.as_str()), Some(wt.clone()));
    let created = e.wt.created.lock().unwrap();
    assert_eq!(created[0].branch, "fix/issue-14");
    let calls = e.agent.calls.lock().unwrap();
    let run = calls.iter().find(|c| c.op == "run").unwrap();
    assert_eq!(run.prompt, "fix the bug");
    assert_eq!(run.dir, wt);
    assert_eq!(run.env_keys, ["GITHUB_TOKEN"]);
    let list = e.orch.list().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[2].issue_ref, "github.com/shoko/kugetsu#14");
    assert_eq!(list[2].state, Some(kugetsu_core::SessionState::Idle));
    let index = std::fs::read_to_string(e.state.index_path()).unwrap();
    assert!(
        index.contains("\"github.com/shoko/kugetsu#14\": \"github.com-shoko-kugetsu-14.json\""),
        "{index}"
    );
}

#[test]
fn start_requires_init_and_continue_requires_a_session() {
    let e = env_with(3);
    let r = start(&e.orch, "github.com/o/r#1", "x");
    assert!(matches!(r, Err(OrchestratorError::NotInitialized { .. })));
    init(&e);
    let r =
        e.orch.continue_issue(&IssueRef::parse("github.com/o/r#1").unwrap(), "more", &mut NoEvents);
    assert!(matches!(r, Err(OrchestratorError::UnknownIssue { .. })), "{r:?}");
}

/// A turn the provider refused is recorded `rate_limited` (the session `paused`), pauses the
/// provider, and the next turn waits for the pause as for a slot (here: not at all).
#[test]
fn a_refused_turn_pauses_its_provider_and_holds_the_next_turn() {
    use kugetsu_core::pause::{LimitKind, ProviderLimit};
    let e = env_full(3, false, Duration::ZERO);
    init(&e);
    let until = time::macros::datetime!(2026-11-23 12:05 UTC);
    let limit = ProviderLimit {
        provider: "mock".into(),
        kind: LimitKind::RateLimit,
        until: Some(until),
        message: "slow down".into(),
    };
    e.agent.script([FakeTurn::Outcome(RunOutcome::RateLimited(limit.clone()))]);
    let s = start(&e.orch, "github.com/o/r#2", "x").unwrap();
    assert_eq!(s.outcome, RunOutcome::RateLimited(limit));
    let file =
        std::fs::read_to_string(e.state.sessions_dir().join("github.com-o-r-2.json")).unwrap();
    assert!(file.contains("\"state\": \"paused\""), "{file}");
    assert!(file.contains("\"outcome\": \"rate_limited\""), "{file}");
    let err = start(&e.orch, "github.com/o/r#3", "y").unwrap_err();
    assert_eq!(
        err.to_string(),
        "the agent's provider is paused until 12:05 UTC (mock: rate limit)",
        "{err:?}"
    );
    let now = time::macros::datetime!(2026-11-23 12:00 UTC);
    assert_eq!(e.orch.pauses().resume(None, now, false).unwrap().len(), 1);
    e.agent.script([FakeTurn::Reply("done".into())]);
    let issue = IssueRef::parse("github.com/o/r#2").unwrap();
    let s = e.orch.continue_issue(&issue, "go on", &mut NoEvents).unwrap();
    assert_eq!(s.outcome, RunOutcome::Completed);
}

#[test]
fn outcomes_are_recorded_in_the_session_file() {
    let e = env_with(3);
    init(&e);
    e.agent.script([FakeTurn::Outcome(RunOutcome::Blocked {
        permission: "external_directory (/etc/*)".into(),
    })]);
    let s = start(&e.orch, "github.com/o/r#2", "x").unwrap();
    assert!(matches!(s.outcome, RunOutcome::Blocked { .. }));
    let file =
        std::fs::read_to_string(e.state.sessions_dir().join("github.com-o-r-2.json")).unwrap();
    assert!(file.contains("\"state\": \"blocked\""), "{file}");
    assert!(file.contains("external_directory"), "{file}");
    e.agent.script([FakeTurn::Reply("done".into())]);
    let s = e
        .orch
        .continue_issue(&IssueRef::parse("github.com/o/r#2").unwrap(), "go on", &mut NoEvents)
        .unwrap();
    assert_eq!(s.outcome, RunOutcome::Completed);
    let file =
        std::fs::read_to_string(e.state.sessions_dir().join("github.com-o-r-2.json")).unwrap();
    assert!(file.contains("\"state\": \"idle\""), "{file}");
    assert!(!file.contains("canary-123"), "no secret in a session file");
}

#[test]
fn concurrent_starts_never_exceed_the_limit() {
    let e = env_with(2);
    init(&e);
    // Turns long enough that six racing starts surely overlap, even on a loaded machine.
    e.agent.script((0..6).map(|_| FakeTurn::Sleep(Duration::from_millis(400))));
    std::thread::scope(|s| {
        for i in 0..6 {
            let orch = e.orch.clone();
            s.spawn(move || {
                start(&orch, &format!("github.com/o/r#{i}"), "x").unwrap();
            });
        }
    });
    // Reached, not only respected: run one at a time, this fails too.
    assert_eq!(e.agent.max_running.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(e.orch.list().unwrap().len(), 8, "every start recorded");
}

#[test]
fn destroy_refuses_unsaved_work_unless_forced() {
    let e = env_with(3);
    init(&e);
    let issue = IssueRef::parse("github.com/o/r#3").unwrap();
    start(&e.orch, "github.com/o/r#3", "x").unwrap();
    let wt = e.state.worktree_path(&issue);
    e.wt.set_unsaved(
        &wt,
        UnsavedWork { changed_files: vec!["src/lib.rs".into()], unpushed_commits: vec![] },
    );
    let err = e.orch.destroy_issue(&issue, false).unwrap_err();
    assert!(err.to_string().contains("would be lost"), "{err}");
    assert_eq!(e.orch.list().unwrap().len(), 3, "nothing removed");
    let report = e.orch.destroy_issue(&issue, true).unwrap();
    assert_eq!(report.worktrees, [wt]);
    assert_eq!(e.orch.list().unwrap().len(), 2);
}

#[test]
fn destroying_base_also_destroys_the_pm_agent() {
    let e = env_with(3);
    init(&e);
    let report = e.orch.destroy_base().unwrap();
    assert_eq!(report.sessions.len(), 2);
    assert!(!e.state.pm_session_path().exists());
    assert!(!e.state.base_session_path().exists());
}

#[test]
fn prune_keeps_base_and_pm_and_removes_orphans_only_with_force() {
    let e = env_with(3);
    init(&e);
    let orphan = e.state.sessions_dir().join("github.com-x-y-9.json");
    std::fs::write(&orphan, "{}").unwrap();
    let orphan_wt = e.state.worktrees_dir().join("leftover");
    std::fs::create_dir_all(orphan_wt.join("sub")).unwrap();
    // A symlink planted in worktrees/ pointing outside: pruning removes the link, not the target.
    let outside = e.state.root().parent().unwrap().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep.txt"), "x").unwrap();
    std::os::unix::fs::symlink(&outside, e.state.worktrees_dir().join("evil")).unwrap();
    let dry = e.orch.prune(false).unwrap();
    assert_eq!(dry.session_files, std::slice::from_ref(&orphan));
    assert_eq!(dry.worktrees.len(), 2);
    assert!(orphan.exists());
    let done = e.orch.prune(true).unwrap();
    assert!(done.removed);
    assert!(!orphan.exists());
    assert!(!orphan_wt.exists());
    assert!(outside.join("keep.txt").exists(), "nothing outside the worktrees root is deleted");
    assert!(e.state.base_session_path().exists() && e.state.pm_session_path().exists());
}

#[test]
fn a_tampered_session_file_cannot_point_outside_the_worktrees_root() {
    let e = env_with(3);
    init(&e);
    let issue = IssueRef::parse("github.com/o/r#5").unwrap();
    start(&e.orch, "github.com/o/r#5", "x").unwrap();
    let path = e.state.sessions_dir().join("github.com-o-r-5.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let wt = e.state.worktree_path(&issue);
    std::fs::write(&path, text.replace(wt.to_str().unwrap(), "/etc")).unwrap();
    let err = e.orch.destroy_issue(&issue, true).unwrap_err();
    assert!(matches!(err, OrchestratorError::UnsafePath { .. }), "{err}");
    let err = e.orch.continue_issue(&issue, "x", &mut NoEvents).unwrap_err();
    assert!(matches!(err, OrchestratorError::UnsafePath { .. }), "{err}");
}

/// A session id that is no id (hand-edited, or written by a foreign tool) is kept as written:
/// the files still load, `list` and `doctor` show it, `destroy` clears it, and only handing it
/// to the agent is refused, naming the file.
#[test]
fn a_tampered_session_id_is_listed_and_refused_for_runs_not_a_broken_state() {
    let e = env_with(3);
    init(&e);
    let issue = IssueRef::parse("github.com/o/r#9").unwrap();
    let summary = start(&e.orch, "github.com/o/r#9", "x").unwrap();
    let path = e.state.sessions_dir().join("github.com-o-r-9.json");
    let bad = "ses_x'; DROP TABLE session; --";
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace(summary.session_id.as_str(), bad)).unwrap();
    let index = std::fs::read_to_string(e.state.index_path()).unwrap();
    let base = e.orch.read_index().unwrap().unwrap().base.unwrap().to_string();
    std::fs::write(e.state.index_path(), index.replace(&base, "../base")).unwrap();

    let rows = e.orch.list().unwrap();
    assert!(rows.iter().any(|r| r.session_id == bad), "{rows:?}");
    assert!(rows.iter().any(|r| r.session_id == "../base"), "{rows:?}");
    let err = e.orch.continue_issue(&issue, "x", &mut NoEvents).unwrap_err();
    assert!(
        matches!(&err, OrchestratorError::BadSessionId { path: p, id } if *p == path && id == bad),
        "{err}"
    );
    let err = start(&e.orch, "github.com/o/r#10", "x").unwrap_err();
    assert!(matches!(&err, OrchestratorError::BadSessionId { id, .. } if id == "../base"), "{err}");
    let findings = e.orch.doctor(false, false).unwrap();
    assert!(findings.iter().any(|f| f.problem.contains("invalid session id")), "{findings:?}");
    assert!(
        e.agent.calls.lock().unwrap().iter().all(|c| !c.session.contains("DROP")),
        "not handed over"
    );

    // Rewrites keep what the file says, byte for byte in the id.
    e.orch.destroy_pm().unwrap();
    assert!(std::fs::read_to_string(e.state.index_path()).unwrap().contains("\"../base\""));
    e.orch.destroy_issue(&issue, true).unwrap();
    assert!(!path.exists());
}

/// Whether a recorded agent still runs is asked of the liveness the orchestration was given:
/// the fake agent's made-up pids are alive while their turn runs and dead after it, so
/// `doctor` reports no abandoned run during a turn, and one after it if the file still says
/// `running`. (The fake's pids are no real processes: asking the kernel would call the live
/// turn abandoned.)
#[test]
fn liveness_of_recorded_agents_is_asked_of_the_injected_seam() {
    let e = env_with(3);
    init(&e);
    start(&e.orch, "github.com/o/r#11", "x").unwrap();
    e.agent.script([FakeTurn::Sleep(Duration::from_millis(1500))]);
    let issue = IssueRef::parse("github.com/o/r#11").unwrap();
    let path = e.state.sessions_dir().join("github.com-o-r-11.json");
    let abandoned = |e: &Env| {
        e.orch.doctor(false, false).unwrap().iter().any(|f| f.problem.contains("no agent process"))
    };
    std::thread::scope(|scope| {
        let turn = scope.spawn(|| e.orch.continue_issue(&issue, "slow", &mut NoEvents));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&path).unwrap().contains("\"agent_pid\"") {
            assert!(std::time::Instant::now() < deadline, "the turn never recorded its pid");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!abandoned(&e), "a running turn is not abandoned");
        turn.join().unwrap().unwrap();
    });
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(v["agent_pid"].is_null(), "{v}");
    v["state"] = "running".into();
    v["agent_pid"] = kugetsu_core::testing::FAKE_PID_BASE.into();
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    assert!(abandoned(&e), "the turn's pid is gone after it");
}

#[test]
fn doctor_reports_and_fixes_a_dead_running_session() {
    let e = env_with(3);
    init(&e);
    start(&e.orch, "github.com/o/r#6", "x").unwrap();
    let path = e.state.sessions_dir().join("github.com-o-r-6.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"state\": \"idle\"", "\"state\": \"running\"");
    std::fs::write(&path, text).unwrap();
    let findings = e.orch.doctor(false, false).unwrap();
    assert!(
        findings.iter().any(|f| f.problem.contains("no agent process is alive") && !f.fixed),
        "{findings:?}"
    );
    let findings = e.orch.doctor(true, false).unwrap();
    assert!(findings.iter().any(|f| f.problem.contains("no agent process is alive") && f.fixed));
    assert!(std::fs::read_to_string(&path).unwrap().contains("\"state\": \"failed\""));
}

/// Runs start a session in the directory kugetsu recorded for it without asking the agent
/// (the agent put it there, and only a hand-made change moves it); `doctor` is where a session
/// the agent would run elsewhere is caught.
#[test]
fn doctor_reports_a_session_the_agent_would_run_elsewhere() {
    let e = env_with(3);
    init(&e);
    let summary = start(&e.orch, "github.com/o/r#8", "x").unwrap();
    assert!(e.orch.doctor(false, false).unwrap().iter().all(|f| !f.problem.contains("lives in")));
    e.agent.move_session(summary.session_id.as_str(), Path::new("/somewhere/else"));
    let findings = e.orch.doctor(false, false).unwrap();
    assert!(
        findings.iter().any(|f| f.subject == "github.com/o/r#8"
            && f.problem.contains("lives in /somewhere/else")
            && !f.fixed),
        "{findings:?}"
    );
}

/// What the daemon calls once an agent it adopted has exited: a session still marked running
/// whose agent is gone (even as an unreaped zombie) becomes failed; one whose agent lives, or
/// one not marked running, is left alone.
#[test]
fn an_abandoned_run_is_settled_only_when_its_agent_is_gone() {
    let e = env_checking_pids(3, true);
    init(&e);
    let issue = IssueRef::parse("github.com/o/r#7").unwrap();
    start(&e.orch, "github.com/o/r#7", "x").unwrap();
    let path = e.state.sessions_dir().join("github.com-o-r-7.json");
    let mark_running = |pid: u32| {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v["state"] = "running".into();
        v["agent_pid"] = pid.into();
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    };
    let state = || {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v["state"].as_str().unwrap().to_string()
    };

    assert!(!e.orch.settle_abandoned_run(&issue).unwrap(), "idle is left alone");
    assert_eq!(state(), "idle");

    mark_running(std::process::id());
    assert!(!e.orch.settle_abandoned_run(&issue).unwrap(), "a live agent is left alone");
    assert_eq!(state(), "running");

    // An agent that exited and was not reaped yet.
    let mut zombie = std::process::Command::new("true").spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while kugetsu_process::procfs::is_running(zombie.id()) {
        assert!(std::time::Instant::now() < deadline, "`true` did not exit");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    mark_running(zombie.id());
    assert!(e.orch.settle_abandoned_run(&issue).unwrap());
    assert_eq!(state(), "failed");
    zombie.wait().unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(v["agent_pid"].is_null(), "{v}");
}

/// Forges match owners and repositories case-insensitively: a ref that differs from an existing
/// session's only there is refused, naming the existing one. Ids keep their case.
#[test]
fn a_ref_differing_only_in_case_is_the_same_issue() {
    let e = env_with(3);
    init(&e);
    start(&e.orch, "github.com/Shoko/Kugetsu#14", "x").unwrap();
    match start(&e.orch, "github.com/shoko/kugetsu#14", "x") {
        Err(OrchestratorError::CaseVariant { issue, existing }) => {
            assert_eq!(issue, "github.com/shoko/kugetsu#14");
            assert_eq!(existing, "github.com/Shoko/Kugetsu#14");
        }
        other => panic!("expected CaseVariant, got {other:?}"),
    }
    start(&e.orch, "github.com/shoko/kugetsu#15", "x").unwrap();
    start(&e.orch, "github.com/Shoko/Kugetsu#-Notes", "x").unwrap();
    start(&e.orch, "github.com/Shoko/Kugetsu#-notes", "x").unwrap();
    assert_eq!(e.orch.list().unwrap().len(), 2 + 4, "base, PM and four issues");
}

/// The orchestration of `e`'s state and fakes with another driver configured.
fn with_driver(e: &Env, driver: &str) -> Orchestrator {
    Orchestrator::new(
        e.state.clone(),
        e.wt.clone(),
        e.agent.clone(),
        Arc::new(MemorySlots::default()),
        Arc::new(StaticEnv::default()),
        Arc::new(FixedClock(time::macros::datetime!(2026-11-23 12:00 UTC))),
        Settings { driver: driver.into(), ..Settings::new(e.agent.liveness()) },
    )
}

fn session_json(e: &Env, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(e.state.sessions_dir().join(name)).unwrap()).unwrap()
}

/// Every session file names the driver that made it, and keeps the id under the original
/// kugetsu's key whatever the driver.
#[test]
fn session_files_record_their_driver_and_keep_the_original_id_key() {
    let e = env_with(3);
    init(&e);
    let summary = start(&e.orch, "github.com/o/r#1", "x").unwrap();
    let file = session_json(&e, "github.com-o-r-1.json");
    assert_eq!(file["agent"], "opencode", "{file}");
    assert_eq!(file["opencode_session_id"], summary.session_id.as_str(), "{file}");
    assert!(file.get("agent_session_id").is_none(), "{file}");
    for name in ["base.json", "pm-agent.json"] {
        assert_eq!(session_json(&e, name)["agent"], "opencode", "{name}");
    }
    let rows = e.orch.list().unwrap();
    assert!(rows.iter().all(|r| r.agent.as_deref() == Some("opencode")), "{rows:?}");

    // A state directory initialized with another driver records that one.
    let e2 = env_with(3);
    let orch = with_driver(&e2, "claude-code");
    orch.init(
        &InitOptions {
            force: false,
            interactive: false,
            session_dir: e2.state.root().to_path_buf(),
            base_prompt: "b".into(),
            pm_prompt: "p".into(),
        },
        &mut NoEvents,
    )
    .unwrap();
    start(&orch, "github.com/o/r#2", "x").unwrap();
    assert_eq!(session_json(&e2, "github.com-o-r-2.json")["agent"], "claude-code");
    assert_eq!(session_json(&e2, "base.json")["agent"], "claude-code");
}

/// A session another driver made is never handed to the configured one: `continue`,
/// `destroy` and a `start` from its base refuse before anything changes, `list` says whose it
/// is and `doctor` reports it instead of asking the wrong agent about it.
#[test]
fn sessions_of_another_driver_are_refused_not_handed_over() {
    let e = env_with(3);
    init(&e);
    let issue = IssueRef::parse("github.com/o/r#3").unwrap();
    let summary = start(&e.orch, "github.com/o/r#3", "x").unwrap();
    let path = e.state.sessions_dir().join("github.com-o-r-3.json");
    let before = std::fs::read(&path).unwrap();
    let calls = e.agent.calls.lock().unwrap().len();

    let claude = with_driver(&e, "claude-code");
    let err = claude.continue_issue(&issue, "more", &mut NoEvents).unwrap_err();
    assert!(
        matches!(&err, OrchestratorError::OtherDriver { subject, made_by, configured, path: p }
            if *subject == issue.to_string() && made_by == "opencode"
                && configured == "claude-code" && *p == path),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "github.com/o/r#3 was made by the agent driver opencode, but claude-code is configured"
    );
    let err = claude.destroy_issue(&issue, true).unwrap_err();
    assert!(matches!(err, OrchestratorError::OtherDriver { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the session file is untouched");
    assert!(summary.worktree_path.is_dir(), "the worktree is kept");
    let err = start(&claude, "github.com/o/r#4", "x").unwrap_err();
    assert!(
        matches!(&err, OrchestratorError::OtherDriver { subject, .. } if subject == "the base session"),
        "{err:?}"
    );
    let err = claude.destroy_pm().unwrap_err();
    assert!(matches!(err, OrchestratorError::OtherDriver { .. }), "{err:?}");
    assert_eq!(e.agent.calls.lock().unwrap().len(), calls, "the agent was never asked");

    let rows = claude.list().unwrap();
    let row = rows.iter().find(|r| r.issue_ref == issue.to_string()).unwrap();
    assert_eq!(row.agent.as_deref(), Some("opencode"));
    assert_eq!(row.session_id, summary.session_id.as_str());
    let findings = claude.doctor(false, false).unwrap();
    let about: Vec<_> = findings
        .iter()
        .filter(|f| f.problem.contains("made by the agent driver opencode"))
        .collect();
    assert_eq!(about.len(), 3, "base, PM agent and the issue: {findings:?}");
    assert!(about.iter().all(|f| f.remedy == "set KUGETSU_AGENT=opencode to work on it"));

    // The driver that made it still works on it.
    e.orch.continue_issue(&issue, "more", &mut NoEvents).unwrap();
    e.orch.destroy_issue(&issue, true).unwrap();
}

/// A newer major version of the agent continues an older one's sessions and records itself;
/// going back to the older one is refused before the agent is asked, and `doctor` says why.
#[test]
fn sessions_last_run_by_a_newer_agent_major_are_refused_by_an_older_one() {
    use std::sync::atomic::Ordering;
    let e = env_with(3);
    init(&e);
    let issue = IssueRef::parse("github.com/o/r#5").unwrap();
    start(&e.orch, "github.com/o/r#5", "x").unwrap();
    let name = "github.com-o-r-5.json";
    assert!(session_json(&e, name).get("agent_major").is_none(), "1 is not written");

    e.agent.major.store(2, Ordering::SeqCst);
    e.orch.continue_issue(&issue, "more", &mut NoEvents).unwrap();
    assert_eq!(session_json(&e, name)["agent_major"], 2);
    assert!(session_json(&e, "base.json").get("agent_major").is_none(), "the base did not run");

    e.agent.major.store(1, Ordering::SeqCst);
    let calls = e.agent.calls.lock().unwrap().len();
    let err = e.orch.continue_issue(&issue, "back", &mut NoEvents).unwrap_err();
    assert!(
        matches!(&err, OrchestratorError::NewerAgent { ran_with: 2, configured: 1, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "github.com/o/r#5 was last run by opencode 2.x, but the configured opencode program is \
         1.x, which cannot continue it; use opencode 2.x or newer"
    );
    assert_eq!(e.agent.calls.lock().unwrap().len(), calls, "the agent was never asked");
    let findings = e.orch.doctor(false, false).unwrap();
    assert!(
        findings.iter().any(|f| f.subject == issue.to_string() && f.problem.contains("2.x")),
        "{findings:?}"
    );
}

/// A file of the original kugetsu names no driver: it is the default one's, and rewriting it
/// adds none.
#[test]
fn a_session_file_naming_no_driver_is_the_default_drivers() {
    let e = env_with(3);
    init(&e);
    let issue = IssueRef::parse("github.com/o/r#5").unwrap();
    start(&e.orch, "github.com/o/r#5", "x").unwrap();
    let path = e.state.sessions_dir().join("github.com-o-r-5.json");
    let mut file = session_json(&e, "github.com-o-r-5.json");
    file.as_object_mut().unwrap().remove("agent");
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();

    let err = with_driver(&e, "claude-code").continue_issue(&issue, "x", &mut NoEvents);
    assert!(matches!(err, Err(OrchestratorError::OtherDriver { .. })), "{err:?}");
    e.orch.continue_issue(&issue, "again", &mut NoEvents).unwrap();
    let after = session_json(&e, "github.com-o-r-5.json");
    assert!(after.get("agent").is_none(), "{after}");
    assert_eq!(after["opencode_session_id"], file["opencode_session_id"]);
}

/// What cannot be saved for another host is said, never dropped (these fakes can neither
/// export a session nor carry a worktree's work); a moved start with nothing carried makes its
/// session as `start` does, and one with a session export imports it.
#[test]
fn a_history_that_cannot_be_saved_says_what_is_missing() {
    let e = env_with(3);
    init(&e);
    start(&e.orch, "github.com/o/r#5", "first").unwrap();
    let issue = IssueRef::parse("github.com/o/r#5").unwrap();
    let saved = e.orch.save_history(&issue, 1 << 20).unwrap();
    assert_eq!((saved.session.as_deref(), saved.worktree.as_deref()), (None, None));
    assert_eq!(saved.missing.len(), 2, "{:?}", saved.missing);
    assert!(saved.missing[0].contains("cannot export a session"), "{:?}", saved.missing);
    assert!(saved.missing[1].starts_with("the worktree's unsaved work"), "{:?}", saved.missing);
    let moved = |history: &MovedHistory, r: &str| {
        e.orch.start_moved(
            &start_opts(r, "go on"),
            history,
            &mut NoProgress,
            &AtomicBool::new(false),
            &mut NoEvents,
        )
    };
    let nothing = MovedHistory { missing: saved.missing, ..MovedHistory::default() };
    assert_eq!(moved(&nothing, "github.com/o/r#6").unwrap().outcome, RunOutcome::Completed);
    let export = MovedHistory { session: Some("{}".into()), ..MovedHistory::default() };
    let err = moved(&export, "github.com/o/r#7").unwrap_err();
    assert!(err.to_string().contains("cannot import a session"), "{err}");
}
