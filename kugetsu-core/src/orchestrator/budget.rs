//! Spending around a turn: the budget check before it, the watch over each step's usage while
//! it runs (a budget reached stops the turn as Ctrl-C would), and the records after it (the
//! session file, the day's ledger, the run log's summary line).

use super::*;
use crate::usage::budget::Exhausted;
use crate::usage::ledger::{Ledger, utc_day};
use crate::usage::{TurnUsage, UsageTotals, Usd};

/// Watches a running turn's steps against the budgets.
pub(super) struct BudgetWatch<'a> {
    orch: &'a Orchestrator,
    /// The issue's totals before the turn.
    issue: UsageTotals,
    /// What the turn's steps reported so far.
    pub(super) running: TurnUsage,
    /// The budget reached, once it was: the turn was stopped for it.
    pub(super) reached: Option<Exhausted>,
}

impl<'a> BudgetWatch<'a> {
    pub(super) fn new(orch: &'a Orchestrator, issue: UsageTotals) -> Self {
        BudgetWatch { orch, issue, running: TurnUsage::default(), reached: None }
    }

    /// One step's usage: stops the turn when it reaches a budget.
    pub(super) fn step(&mut self, usage: &TurnUsage) {
        self.running = self.running.plus(*usage);
        let budgets = self.orch.settings.budgets;
        if self.reached.is_some() || (budgets.issue.is_none() && budgets.daily.is_none()) {
            return;
        }
        // Read at each step: other turns of this host may have ended meanwhile.
        let today =
            if budgets.daily.is_some() { self.orch.today() } else { UsageTotals::default() };
        let running = self.running.cost_usd.unwrap_or(Usd::ZERO);
        if let Some(spent) = budgets.exhausted(&self.issue, &today, running) {
            tracing::info!(%spent, "budget reached: stopping the turn");
            self.reached = Some(spent);
            self.orch.settings.interrupt.trigger(0);
        }
    }

    /// The turn's usage: the driver's total when it gave one, else the sum of the steps.
    pub(super) fn total(&self, reported: Option<TurnUsage>) -> Option<TurnUsage> {
        reported.or((!self.running.is_unknown()).then_some(self.running))
    }

    /// How the turn ended, once the driver said `outcome`: a turn this watch stopped is over
    /// budget, not interrupted.
    pub(super) fn outcome(&self, outcome: RunOutcome) -> RunOutcome {
        match (self.reached, outcome) {
            (Some(spent), RunOutcome::Interrupted { .. }) => RunOutcome::OverBudget {
                budget: spent.budget,
                limit_usd: spent.limit_usd,
                spent_usd: spent.spent_usd,
            },
            (_, outcome) => outcome,
        }
    }
}

impl Orchestrator {
    /// Today's (UTC) totals of this state directory's turns; nothing known when the ledger
    /// cannot be read (a budget then counts only the turn in progress).
    fn today(&self) -> UsageTotals {
        Ledger::new(&self.state).day(utc_day(self.clock.now())).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the spending ledger");
            UsageTotals::default()
        })
    }

    /// What `issue`'s turns have used so far (nothing for an issue without a session).
    pub fn issue_usage(&self, issue: &IssueRef) -> Result<UsageTotals, OrchestratorError> {
        let index = self.index_or_err()?;
        let Some(name) = index.issues.get(&issue.to_string()) else {
            return Ok(UsageTotals::default());
        };
        let file = storage::read_json::<SessionFile>(&self.state.session_path(name))?;
        Ok(file.and_then(|f| f.usage).unwrap_or_default())
    }

    /// The budget a turn of `issue` (`None`: the PM agent, which only the daily budget
    /// limits) would spend from, if it is spent.
    pub fn budget_spent(
        &self,
        issue: Option<&IssueRef>,
    ) -> Result<Option<Exhausted>, OrchestratorError> {
        let budgets = self.settings.budgets;
        if budgets.issue.is_none() && budgets.daily.is_none() {
            return Ok(None);
        }
        let issue_totals = match issue {
            Some(issue) if budgets.issue.is_some() => self.issue_usage(issue)?,
            _ => UsageTotals::default(),
        };
        let today = match budgets.daily {
            Some(_) => Ledger::new(&self.state).day(utc_day(self.clock.now()))?,
            None => UsageTotals::default(),
        };
        Ok(budgets.exhausted(&issue_totals, &today, Usd::ZERO))
    }

    /// The run limits of a turn of `issue` (`None`: the PM agent, which only the daily budget
    /// limits): the configured ones, capped at what is left of its budgets. What cannot be read
    /// caps nothing here: the budget check before the turn reads it too.
    pub(super) fn turn_limits(&self, issue: Option<&IssueRef>) -> RunLimits {
        let mut limits = self.settings.limits;
        let budgets = self.settings.budgets;
        if budgets.issue.is_none() && budgets.daily.is_none() {
            return limits;
        }
        let issue_totals = match issue {
            Some(issue) if budgets.issue.is_some() => self.issue_usage(issue).unwrap_or_default(),
            _ => UsageTotals::default(),
        };
        let issue_budgets =
            crate::usage::budget::Budgets { issue: issue.and(budgets.issue), ..budgets };
        limits.spend_cap = issue_budgets.left(&issue_totals, &self.today());
        limits
    }

    /// Refuses a turn whose budget is spent.
    pub(super) fn check_budget(&self, issue: Option<&IssueRef>) -> Result<(), OrchestratorError> {
        match self.budget_spent(issue)? {
            Some(spent) => Err(OrchestratorError::OverBudget {
                issue: issue.map_or_else(|| PM_AGENT.to_owned(), IssueRef::to_string),
                spent,
            }),
            None => Ok(()),
        }
    }

    /// Counts a finished turn in the day's ledger and appends the run log's summary line. A
    /// failure is logged: the turn itself is recorded in its session file either way.
    pub(super) fn record_spending(
        &self,
        log_path: &Path,
        outcome: &RunOutcome,
        usage: Option<&TurnUsage>,
    ) {
        let now = self.clock.now();
        if counts(outcome, usage)
            && let Err(e) = Ledger::new(&self.state).record(now, usage)
        {
            tracing::warn!(error = %e, "cannot count the turn in the spending ledger");
        }
        let spent = usage.copied().unwrap_or_default().describe();
        let line = format!("=== {} turn {}; {spent}\n", now.unix_timestamp(), outcome.describe());
        let written = storage::open_private(log_path, storage::PrivateOpen::Append)
            .map_err(std::io::Error::other)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(log = %log_path.display(), error = %e, "cannot write the run log's summary");
        }
    }
}

/// Whether a turn counts in what was spent: all do but one its provider refused without the
/// agent reporting anything used (it did not run, and would read as a turn of unknown cost).
pub(super) fn counts(outcome: &RunOutcome, usage: Option<&TurnUsage>) -> bool {
    usage.is_some() || !matches!(outcome, RunOutcome::RateLimited(_))
}
