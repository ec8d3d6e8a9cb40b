//! The dispatch policy over core's in-memory fakes: which operation an item becomes, what the
//! lease hears, and what becomes of each kind of failure.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use kugetsu_core::StateDir;
use kugetsu_core::agent::{AgentDriver, NoEvents};
use kugetsu_core::clock::FixedClock;
use kugetsu_core::orchestrator::{InitOptions, Settings};
use kugetsu_core::queue::{NewTask, RunOptions};
use kugetsu_core::testing::{FakeAgent, FakeTurn, FakeWorktrees, MemorySlots, StaticEnv};
use kugetsu_core::worktree::UnsavedWork;

use super::*;

/// Builds orchestrators over shared fakes, as the CLI builds them over its config.
struct Fakes {
    _tmp: tempfile::TempDir,
    state: StateDir,
    wt: Arc<FakeWorktrees>,
    agent: Arc<FakeAgent>,
    env: Arc<StaticEnv>,
    /// A configuration that does not load: `orchestrator` fails.
    broken: AtomicBool,
    /// Repositories nobody knows: `repo_source` fails.
    unknown_repos: AtomicBool,
    /// The interrupts handed to `orchestrator`, to see each dispatch gets its own.
    interrupts: Mutex<Vec<Interrupt>>,
    /// The budgets of the configuration.
    budgets: Mutex<kugetsu_core::usage::budget::Budgets>,
}

impl Fakes {
    fn new() -> Arc<Self> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(tmp.path().join("state"));
        Arc::new(Fakes {
            _tmp: tmp,
            state,
            wt: Arc::default(),
            agent: Arc::default(),
            env: Arc::default(),
            broken: AtomicBool::new(false),
            unknown_repos: AtomicBool::new(false),
            interrupts: Mutex::default(),
            budgets: Mutex::default(),
        })
    }

    fn build(&self, slots: Arc<dyn AgentSlots>, interrupt: Interrupt) -> Orchestrator {
        Orchestrator::new(
            self.state.clone(),
            self.wt.clone(),
            self.agent.clone(),
            slots,
            self.env.clone(),
            Arc::new(FixedClock(time::macros::datetime!(2026-11-23 12:00 UTC))),
            Settings {
                interrupt,
                budgets: *self.budgets.lock().unwrap_or_else(|e| e.into_inner()),
                ..Settings::new(self.agent.liveness())
            },
        )
    }

    fn init(&self) {
        self.build(Arc::new(MemorySlots::default()), Interrupt::new())
            .init(
                &InitOptions {
                    force: false,
                    interactive: false,
                    session_dir: self.state.root().to_path_buf(),
                    base_prompt: "you are the base".into(),
                    pm_prompt: "you are the PM".into(),
                },
                &mut NoEvents,
            )
            .expect("init");
    }

    /// The operations the agent was asked for since `init`, by name.
    fn ops(&self) -> Vec<&'static str> {
        let calls = self.agent.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.iter().skip(2).map(|c| c.op).collect()
    }
}

impl DispatchWiring for Arc<Fakes> {
    fn orchestrator(
        &self,
        slots: Arc<dyn AgentSlots>,
        interrupt: Interrupt,
    ) -> Result<Orchestrator, WiringError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(WiringError::new("config: line 3 does not parse"));
        }
        self.interrupts.lock().unwrap_or_else(|e| e.into_inner()).push(interrupt.clone());
        Ok(self.build(slots, interrupt))
    }

    fn repo_source(&self, issue: &IssueRef) -> Result<RepoSource, WiringError> {
        if self.unknown_repos.load(Ordering::SeqCst) {
            return Err(WiringError::new(format!("no server known for {issue}")));
        }
        Ok(RepoSource {
            url: "https://example.invalid/o/r.git".into(),
            mirror_key: issue.repo().mirror_key(),
            token: None,
        })
    }
}

fn item(issue: Option<&str>, message: &str, options: RunOptions) -> QueueItem {
    let task = NewTask { message: message.into(), issue_ref: issue.map(str::to_owned), options };
    QueueItem::pending("q_1".into(), &task, time::OffsetDateTime::UNIX_EPOCH)
}

/// Dispatches `item` holding slot 0 (none for a PM item), as a daemon worker would; returns
/// the result and the agent pids reported to the lease.
fn dispatch(
    d: &OrchestratorDispatcher<Arc<Fakes>>,
    item: &QueueItem,
    stop: &AtomicBool,
) -> (Result<DispatchOutcome, DispatchError>, Vec<u32>) {
    let mut pids = Vec::new();
    let mut on_agent = |pid| pids.push(pid);
    let slot = item.issue_ref.is_some().then_some(0);
    let result = d.dispatch(item, &mut DispatchContext::new(slot, stop, &mut on_agent));
    (result, pids)
}

const ISSUE: &str = "local.test/o/r#1";

#[test]
fn an_issue_is_started_then_continued_and_its_agent_reported_to_the_lease() {
    let f = Fakes::new();
    f.init();
    let d = OrchestratorDispatcher::new(f.clone());
    let go = AtomicBool::new(false);
    let (first, pids) = dispatch(&d, &item(Some(ISSUE), "fix it", RunOptions::default()), &go);
    assert_eq!(first, Ok(DispatchOutcome { summary: format!("start {ISSUE}: completed") }));
    assert_eq!(pids.len(), 1, "the agent's pid reached the lease");
    let (again, _) = dispatch(&d, &item(Some(ISSUE), "and more", RunOptions::default()), &go);
    assert_eq!(again, Ok(DispatchOutcome { summary: format!("continue {ISSUE}: completed") }));
    assert_eq!(f.ops(), ["fork", "run", "run"], "one fork, then the same session again");
    let interrupts = f.interrupts.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(interrupts.len(), 2);
    interrupts[0].trigger(0);
    assert!(!interrupts[1].is_triggered(), "each dispatch has a stop request of its own");
}

#[test]
fn a_queued_start_starts_afresh_and_refuses_to_lose_work() {
    let f = Fakes::new();
    f.init();
    let d = OrchestratorDispatcher::new(f.clone());
    let go = AtomicBool::new(false);
    assert!(dispatch(&d, &item(Some(ISSUE), "fix it", RunOptions::default()), &go).0.is_ok());
    let tree = f.wt.created.lock().unwrap_or_else(|e| e.into_inner())[0].path.clone();
    f.wt.set_unsaved(
        &tree,
        UnsavedWork { changed_files: vec!["a.rs".into()], ..Default::default() },
    );
    let start = RunOptions { start: true, ..RunOptions::default() };
    let (result, _) = dispatch(&d, &item(Some(ISSUE), "from scratch", start.clone()), &go);
    assert!(
        matches!(&result, Err(DispatchError::Fatal(m)) if m.contains("would be lost")),
        "retrying cannot save the work: {result:?}"
    );
    let force = RunOptions { force: true, ..start };
    let (result, _) = dispatch(&d, &item(Some(ISSUE), "from scratch", force), &go);
    assert_eq!(result, Ok(DispatchOutcome { summary: format!("start {ISSUE}: completed") }));
}

#[test]
fn an_item_without_an_issue_goes_to_the_pm_agent() {
    let f = Fakes::new();
    f.init();
    let d = OrchestratorDispatcher::new(f.clone());
    let (result, pids) =
        dispatch(&d, &item(None, "triage", RunOptions::default()), &AtomicBool::new(false));
    assert_eq!(result, Ok(DispatchOutcome { summary: format!("{PM_AGENT}: completed") }));
    assert_eq!(pids.len(), 1);
    let calls = f.agent.calls.lock().unwrap_or_else(|e| e.into_inner());
    let pm = calls.iter().find(|c| c.op == "create" && c.prompt == "you are the PM");
    assert_eq!(calls.last().map(|c| &c.session), pm.map(|c| &c.session), "ran the PM session");
}

#[test]
fn run_outcomes_decide_between_retry_and_error() {
    let f = Fakes::new();
    f.init();
    let d = OrchestratorDispatcher::new(f.clone());
    let go = AtomicBool::new(false);
    let run = |outcome: RunOutcome| {
        f.agent.script([FakeTurn::Outcome(outcome)]);
        dispatch(&d, &item(Some(ISSUE), "go", RunOptions::default()), &go).0
    };
    let failed = run(RunOutcome::Failed { message: "crashed".into() });
    assert!(matches!(failed, Err(DispatchError::Retry(_))), "{failed:?}");
    let hung = run(RunOutcome::TimedOut { after_secs: 60 });
    assert!(matches!(hung, Err(DispatchError::Retry(_))), "{hung:?}");
    let blocked = run(RunOutcome::Blocked { permission: "bash".into() });
    assert!(matches!(blocked, Err(DispatchError::Fatal(_))), "{blocked:?}");
    let stopped = run(RunOutcome::Interrupted { signal: "SIGTERM".into() });
    assert!(matches!(stopped, Err(DispatchError::Fatal(_))), "the user stopped it: {stopped:?}");
}

#[test]
fn a_spent_budget_holds_the_item_and_a_turn_stopped_at_it_is_an_error() {
    use kugetsu_core::usage::budget::{BudgetKind, Budgets};
    use kugetsu_core::usage::{TurnUsage, Usd};
    let f = Fakes::new();
    f.init();
    let d = OrchestratorDispatcher::new(f.clone());
    let go = AtomicBool::new(false);
    let plain = item(Some(ISSUE), "go", RunOptions::default());
    let spent = RunOutcome::OverBudget {
        budget: BudgetKind::Issue,
        limit_usd: Usd::new(1.0).expect("usd"),
        spent_usd: Usd::new(1.5).expect("usd"),
    };
    f.agent.script([FakeTurn::Outcome(spent)]);
    let (stopped, _) = dispatch(&d, &plain, &go);
    let Err(DispatchError::OverBudget(why)) = stopped else { panic!("{stopped:?}") };
    assert!(why.ends_with("over budget: issue budget $1.00 spent ($1.50)"), "{why}");

    // Today's turns spent the daily budget: every item waits, the PM agent's too, and no
    // agent runs.
    let ledger = kugetsu_core::usage::ledger::Ledger::new(&f.state);
    let today = time::macros::datetime!(2026-11-23 09:00 UTC);
    let usage = TurnUsage { cost_usd: Usd::new(2.0), tokens: None };
    ledger.record(today, Some(&usage)).expect("ledger");
    *f.budgets.lock().expect("budgets") = Budgets { issue: None, daily: Usd::new(2.0) };
    let ops = f.ops().len();
    for issue in [Some(ISSUE), None] {
        let (held, _) = dispatch(&d, &item(issue, "go", RunOptions::default()), &go);
        let Err(DispatchError::Held { reason, frees_at }) = held else { panic!("{held:?}") };
        assert_eq!(reason, "held: daily budget $2.00 spent ($2.00)");
        assert!(frees_at.is_some(), "the next UTC day frees it");
    }
    assert_eq!(f.ops().len(), ops, "no agent ran");
    // A raised limit lets it run.
    *f.budgets.lock().expect("budgets") = Budgets { issue: None, daily: Usd::new(3.0) };
    assert!(dispatch(&d, &plain, &go).0.is_ok());
}

#[test]
fn failures_before_the_run_are_retried_only_when_that_can_help() {
    let f = Fakes::new();
    let d = OrchestratorDispatcher::new(f.clone());
    let go = AtomicBool::new(false);
    let plain = item(Some(ISSUE), "go", RunOptions::default());
    let (uninitialized, _) = dispatch(&d, &plain, &go);
    assert!(matches!(uninitialized, Err(DispatchError::Fatal(_))), "{uninitialized:?}");
    f.init();
    let (bad_ref, _) = dispatch(&d, &item(Some("not a ref"), "go", RunOptions::default()), &go);
    assert!(matches!(bad_ref, Err(DispatchError::Fatal(m)) if m.starts_with("bad issue ref")));
    f.unknown_repos.store(true, Ordering::SeqCst);
    let (unknown, _) = dispatch(&d, &plain, &go);
    assert_eq!(unknown, Err(DispatchError::Fatal(format!("no server known for {ISSUE}"))));
    f.unknown_repos.store(false, Ordering::SeqCst);
    f.broken.store(true, Ordering::SeqCst);
    let (broken, _) = dispatch(&d, &plain, &go);
    assert_eq!(broken, Err(DispatchError::Retry("config: line 3 does not parse".into())));
    f.broken.store(false, Ordering::SeqCst);
    // The daemon is stopping: the checkout gives up, and the item waits for the next daemon.
    let (stopping, _) = dispatch(&d, &plain, &AtomicBool::new(true));
    assert!(matches!(stopping, Err(DispatchError::Interrupted(_))), "{stopping:?}");
    assert!(f.ops().is_empty(), "no agent ran");
}

/// Whatever fails while the daemon is stopping failed because of the stop: the item goes back
/// untouched, even when the same failure would otherwise be retried or final.
#[test]
fn a_failure_while_the_daemon_stops_hands_the_item_back() {
    let f = Fakes::new();
    f.init();
    let d = OrchestratorDispatcher::new(f.clone());
    let plain = item(Some(ISSUE), "go", RunOptions::default());
    assert!(dispatch(&d, &plain, &AtomicBool::new(false)).0.is_ok());
    // The agent lost the issue's session: `continue` fails.
    let forked = f.agent.calls.lock().unwrap_or_else(|e| e.into_inner())[2].session.clone();
    let id = kugetsu_core::SessionId::new(forked).expect("id");
    f.agent.delete_session(&id).expect("delete");
    let (lost, _) = dispatch(&d, &plain, &AtomicBool::new(false));
    assert!(matches!(lost, Err(DispatchError::Retry(_))), "{lost:?}");
    let (stopping, _) = dispatch(&d, &plain, &AtomicBool::new(true));
    assert!(matches!(stopping, Err(DispatchError::Interrupted(_))), "{stopping:?}");
}

#[test]
fn an_adopted_agent_that_exited_leaves_its_turn_failed() {
    let f = Fakes::new();
    f.init();
    let d = OrchestratorDispatcher::new(f.clone());
    let go = AtomicBool::new(false);
    assert!(dispatch(&d, &item(Some(ISSUE), "fix it", RunOptions::default()), &go).0.is_ok());
    // Its daemon was killed mid-turn: the session file still says `running`.
    let issue = IssueRef::parse(ISSUE).expect("ref");
    let path = f.state.issue_session_path(&issue);
    let text = std::fs::read_to_string(&path).expect("session file");
    let running = text.replacen("\"idle\"", "\"running\"", 1);
    assert_ne!(text, running, "the session file names its state");
    std::fs::write(&path, running).expect("write");
    let result = d.adopted_exited(&item(Some(ISSUE), "fix it", RunOptions::default()), 42);
    assert!(
        matches!(&result, Err(DispatchError::Fatal(m)) if m.contains("marked failed")),
        "{result:?}"
    );
    let result = d.adopted_exited(&item(Some(ISSUE), "fix it", RunOptions::default()), 42);
    assert!(result.is_ok(), "nothing left to settle: {result:?}");
    let pm = d.adopted_exited(&item(None, "triage", RunOptions::default()), 43);
    assert!(pm.is_ok(), "{pm:?}");
}
