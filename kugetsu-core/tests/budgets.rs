//! Cost and budgets over the in-memory fakes: what a turn used is recorded in its session file
//! and the day's ledger, a turn that reaches a budget is stopped at its next step and recorded
//! `over_budget`, and a turn whose budget is spent is not started.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use kugetsu_core::agent::{NoEvents, RunOutcome};
use kugetsu_core::clock::FixedClock;
use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::orchestrator::{InitOptions, Orchestrator, OrchestratorError, Settings};
use kugetsu_core::session::SessionFile;
use kugetsu_core::testing::{FakeAgent, FakeTurn, FakeWorktrees, MemorySlots, StaticEnv};
use kugetsu_core::usage::budget::{BudgetKind, Budgets};
use kugetsu_core::usage::ledger::Ledger;
use kugetsu_core::usage::{Tokens, TurnUsage, Usd};
use kugetsu_core::worktree::{NoProgress, RepoSource};
use kugetsu_core::{IssueRef, StateDir};

const NOW: time::OffsetDateTime = time::macros::datetime!(2026-12-07 12:00 UTC);

struct World {
    _tmp: tempfile::TempDir,
    state: StateDir,
    wt: Arc<FakeWorktrees>,
    agent: Arc<FakeAgent>,
}

impl World {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().join("state"));
        World {
            _tmp: tmp,
            state,
            wt: Arc::new(FakeWorktrees::default()),
            agent: Arc::new(FakeAgent::default()),
        }
    }

    /// An orchestration with `budgets`, as one command builds it, and its stop request.
    fn orch(&self, budgets: Budgets) -> (Orchestrator, Interrupt) {
        let settings = Settings { budgets, ..Settings::new(self.agent.liveness()) };
        let stop = settings.interrupt.clone();
        let orch = Orchestrator::new(
            self.state.clone(),
            self.wt.clone(),
            self.agent.clone(),
            Arc::new(MemorySlots::default()),
            Arc::new(StaticEnv::default()),
            Arc::new(FixedClock(NOW)),
            settings,
        );
        (orch, stop)
    }
}

fn step(cost: f64) -> TurnUsage {
    TurnUsage {
        cost_usd: Usd::new(cost),
        tokens: Some(Tokens { input: 100, output: 10, cache_read: 5, cache_write: 1 }),
    }
}

fn usd(v: f64) -> Option<Usd> {
    Usd::new(v)
}

fn start(orch: &Orchestrator, r: &str) -> Result<RunOutcome, OrchestratorError> {
    start_summary(orch, r).map(|s| s.outcome)
}

fn start_summary(
    orch: &Orchestrator,
    r: &str,
) -> Result<kugetsu_core::orchestrator::RunSummary, OrchestratorError> {
    let issue = IssueRef::parse(r).unwrap();
    let opts = kugetsu_core::orchestrator::StartOptions {
        source: RepoSource {
            url: "https://example.invalid/o/r.git".into(),
            mirror_key: issue.repo().mirror_key(),
            token: None,
        },
        issue,
        message: "work".into(),
        base_ref: None,
        force: false,
    };
    orch.start(&opts, &mut NoProgress, &AtomicBool::new(false), &mut NoEvents)
}

fn session(w: &World, r: &str) -> SessionFile {
    let issue = IssueRef::parse(r).unwrap();
    let path = w.state.session_path(&format!("{}.json", issue.file_name()));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn runs(w: &World) -> usize {
    w.agent.calls.lock().unwrap().iter().filter(|c| c.op == "run").count()
}

fn init(w: &World) {
    let (orch, _) = w.orch(Budgets::default());
    orch.init(
        &InitOptions {
            force: false,
            interactive: false,
            session_dir: w.state.root().to_path_buf(),
            base_prompt: "b".into(),
            pm_prompt: "p".into(),
        },
        &mut NoEvents,
    )
    .unwrap();
}

#[test]
fn a_turn_reaching_the_issue_budget_is_stopped_at_its_next_step_and_the_next_refused() {
    let w = World::new();
    init(&w);
    let (orch, stop) = w.orch(Budgets { issue: usd(1.0), daily: None });
    w.agent.script([FakeTurn::Steps(vec![step(0.4), step(0.4), step(0.4), step(0.4)], stop)]);
    let summary = start_summary(&orch, "github.com/o/r#1").unwrap();
    let outcome = summary.outcome.clone();
    let RunOutcome::OverBudget { budget, limit_usd, spent_usd } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!((budget, Some(limit_usd)), (BudgetKind::Issue, usd(1.0)));
    // Stopped after the third step: the fourth never ran.
    assert!((spent_usd.get() - 1.2).abs() < 1e-9, "{spent_usd:?}");
    let file = session(&w, "github.com/o/r#1");
    let totals = file.usage.unwrap();
    assert_eq!((totals.turns, totals.tokens.input, totals.tokens.cache_write), (1, 300, 3));
    let last = file.last_run.unwrap();
    assert_eq!(last.usage.unwrap().tokens.unwrap().output, 30);
    assert!(last.outcome.describe().starts_with("over budget: issue budget $1.00 spent"));
    let today = Ledger::new(&w.state).day(NOW.date()).unwrap();
    assert!((today.spent().get() - 1.2).abs() < 1e-9, "{today:?}");
    assert_eq!(summary.usage.and_then(|u| u.cost_usd), Some(spent_usd));
    let log = std::fs::read_to_string(&summary.log_path).unwrap();
    assert!(
        log.contains("turn over budget: issue budget $1.00 spent ($1.20); cost $1.20"),
        "{log}"
    );

    // The next command: the issue's budget is spent, so no turn starts.
    let (orch, _) = w.orch(Budgets { issue: usd(1.0), daily: None });
    let issue = IssueRef::parse("github.com/o/r#1").unwrap();
    let before = runs(&w);
    let refused = orch.continue_issue(&issue, "more", &mut NoEvents);
    let Err(e @ OrchestratorError::OverBudget { .. }) = refused else { panic!("{refused:?}") };
    assert!(e.to_string().contains("issue budget $1.00 spent"), "{e}");
    assert!(e.to_string().contains("KUGETSU_ISSUE_BUDGET_USD"), "{e}");
    assert_eq!(runs(&w), before);
    // Raising the limit frees it.
    let (orch, _) = w.orch(Budgets { issue: usd(2.0), daily: None });
    assert_eq!(
        orch.continue_issue(&issue, "more", &mut NoEvents).unwrap().outcome,
        RunOutcome::Completed
    );
}

#[test]
fn the_daily_budget_counts_every_issue_and_unknown_cost_stays_unknown() {
    let w = World::new();
    init(&w);
    let (orch, stop) = w.orch(Budgets::default());
    w.agent.script([FakeTurn::Steps(vec![step(0.75), step(0.5)], stop)]);
    assert_eq!(start(&orch, "github.com/o/r#1").unwrap(), RunOutcome::Completed);
    // A turn whose agent reported nothing: unknown, not 0.
    let (orch, _) = w.orch(Budgets::default());
    assert_eq!(start(&orch, "github.com/o/r#2").unwrap(), RunOutcome::Completed);
    let file = session(&w, "github.com/o/r#2");
    assert_eq!(file.last_run.unwrap().usage, None);
    assert_eq!(file.usage.unwrap().cost_text(), "unknown");
    let today = Ledger::new(&w.state).day(NOW.date()).unwrap();
    assert_eq!((today.turns, today.unknown_turns), (2, 1));

    let (orch, _) = w.orch(Budgets { issue: None, daily: usd(1.25) });
    let before = runs(&w);
    let refused = start(&orch, "github.com/o/r#3");
    let Err(OrchestratorError::OverBudget { spent, .. }) = refused else { panic!("{refused:?}") };
    assert_eq!(spent.budget, BudgetKind::Daily);
    assert_eq!(runs(&w), before);
    assert!(orch.budget_spent(None).unwrap().is_some());
    let (orch, _) = w.orch(Budgets { issue: None, daily: usd(5.0) });
    assert_eq!(orch.budget_spent(None).unwrap(), None);
    assert_eq!(start(&orch, "github.com/o/r#3").unwrap(), RunOutcome::Completed);
}

/// Each turn is told what it may still spend: the least left of the budgets that apply to it
/// (the PM agent's, the daily one only).
#[test]
fn a_turn_is_given_what_is_left_of_its_budgets_as_its_spending_cap() {
    let w = World::new();
    init(&w);
    let last_cap = |w: &World| {
        let calls = w.agent.calls.lock().unwrap();
        calls.iter().rfind(|c| c.op == "run").unwrap().spend_cap.map(Usd::get)
    };
    let (orch, stop) = w.orch(Budgets::default());
    w.agent.script([FakeTurn::Steps(vec![step(0.4)], stop)]);
    assert_eq!(start(&orch, "github.com/o/r#1").unwrap(), RunOutcome::Completed);
    assert_eq!(last_cap(&w), None, "no budget, no cap");
    let issue = IssueRef::parse("github.com/o/r#1").unwrap();
    let cap_with = |budgets: Budgets| {
        let (orch, _) = w.orch(budgets);
        orch.continue_issue(&issue, "more", &mut NoEvents).unwrap();
        last_cap(&w).unwrap()
    };
    // $0.40 spent by the issue and today: $0.60 left of $1.00 of either.
    assert!((cap_with(Budgets { issue: usd(1.0), daily: None }) - 0.6).abs() < 1e-9);
    assert!((cap_with(Budgets { issue: None, daily: usd(1.0) }) - 0.6).abs() < 1e-9);
    // The tighter of the two.
    let both = cap_with(Budgets { issue: usd(3.0), daily: usd(0.5) });
    assert!((both - 0.1).abs() < 1e-9, "{both}");
    // The PM agent is limited by the daily budget only.
    let (orch, _) = w.orch(Budgets { issue: usd(0.45), daily: usd(2.0) });
    orch.message_pm("hi", &mut NoEvents).unwrap();
    assert!((last_cap(&w).unwrap() - 1.6).abs() < 1e-9, "{:?}", last_cap(&w));
}

#[test]
fn old_session_files_without_usage_still_load() {
    let file: SessionFile = serde_json::from_value(serde_json::json!({
        "type": "forked",
        "issue_ref": "github.com/o/r#1",
        "opencode_session_id": "ses_1",
        "created_at": "2026-03-29T18:16:10+02:00",
        "state": "idle",
        "last_run": {"outcome": "completed", "started_at": "2026-03-29T18:16:10+02:00",
                     "finished_at": "2026-03-29T18:17:10+02:00"},
    }))
    .unwrap();
    assert_eq!(file.usage, None);
    assert_eq!(file.last_run.unwrap().usage, None);
}

#[test]
fn starting_an_issue_again_keeps_what_it_spent() {
    let w = World::new();
    init(&w);
    let (orch, stop) = w.orch(Budgets::default());
    w.agent.script([
        FakeTurn::Steps(vec![step(0.5)], stop.clone()),
        FakeTurn::Steps(vec![step(0.25)], stop),
    ]);
    assert_eq!(start(&orch, "github.com/o/r#1").unwrap(), RunOutcome::Completed);
    let (orch, _) = w.orch(Budgets::default());
    assert_eq!(start(&orch, "github.com/o/r#1").unwrap(), RunOutcome::Completed);
    let totals = session(&w, "github.com/o/r#1").usage.unwrap();
    assert_eq!((totals.turns, totals.cost_usd), (2, usd(0.75)));
}
