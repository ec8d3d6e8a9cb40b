//! Budgets: `KUGETSU_ISSUE_BUDGET_USD` (what one issue's turns may cost in all) and
//! `KUGETSU_DAILY_BUDGET_USD` (what this host's turns may cost in one UTC day). A turn that
//! reaches one is stopped at its next step; a turn whose budget is already spent is not
//! started. Only costs the agent reported count: a turn of unknown cost spends nothing.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{UsageTotals, Usd};

/// The limits in force (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budgets {
    /// `KUGETSU_ISSUE_BUDGET_USD`.
    pub issue: Option<Usd>,
    /// `KUGETSU_DAILY_BUDGET_USD`.
    pub daily: Option<Usd>,
}

/// Which budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetKind {
    /// One issue's.
    Issue,
    /// One UTC day's.
    Daily,
}

impl BudgetKind {
    /// `issue`, `daily`.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetKind::Issue => "issue",
            BudgetKind::Daily => "daily",
        }
    }
}

/// A budget that is spent: `limit` allowed, `spent` used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exhausted {
    /// Which budget.
    pub budget: BudgetKind,
    /// Its limit.
    pub limit_usd: Usd,
    /// What was spent against it.
    pub spent_usd: Usd,
}

impl fmt::Display for Exhausted {
    /// `daily budget $5.00 spent ($5.12)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} budget {} spent ({})", self.budget.as_str(), self.limit_usd, self.spent_usd)
    }
}

impl Exhausted {
    /// When it frees by itself, if it does: a daily budget at the next UTC midnight. (Raising
    /// the limit frees either at once.)
    pub fn frees_at(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        match self.budget {
            BudgetKind::Issue => None,
            BudgetKind::Daily => {
                let next = super::ledger::utc_day(now).next_day()?;
                Some(next.midnight().assume_utc())
            }
        }
    }
}

impl Budgets {
    /// What a turn may still spend before it reaches the first budget (the least left of any),
    /// given `issue` (the issue's totals) and `today` (this host's, today); `None` with no budget.
    pub fn left(&self, issue: &UsageTotals, today: &UsageTotals) -> Option<Usd> {
        let left = |limit: Option<Usd>, totals: &UsageTotals| {
            limit.map(|l| Usd::new((l.get() - totals.spent().get()).max(0.0)).unwrap_or(Usd::ZERO))
        };
        match (left(self.issue, issue), left(self.daily, today)) {
            (Some(a), Some(b)) => Some(if a.get() <= b.get() { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// The first budget `issue` (the issue's totals) or `today` (this host's, today) have
    /// reached, with `running` (what the turn in progress has spent so far) added to both.
    pub fn exhausted(
        &self,
        issue: &UsageTotals,
        today: &UsageTotals,
        running: Usd,
    ) -> Option<Exhausted> {
        let check = |budget, limit: Option<Usd>, totals: &UsageTotals| {
            let limit = limit?;
            let spent = totals.spent() + running;
            (spent >= limit).then_some(Exhausted { budget, limit_usd: limit, spent_usd: spent })
        };
        check(BudgetKind::Issue, self.issue, issue)
            .or_else(|| check(BudgetKind::Daily, self.daily, today))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::TurnUsage;

    #[test]
    fn a_budget_is_reached_at_its_limit_and_the_daily_one_frees_at_utc_midnight() {
        let budgets = Budgets { issue: Usd::new(1.0), daily: Usd::new(5.0) };
        let mut issue = UsageTotals::default();
        issue.add_turn(Some(&TurnUsage { cost_usd: Usd::new(0.6), tokens: None }));
        let mut today = issue;
        today.add_turn(Some(&TurnUsage { cost_usd: Usd::new(4.0), tokens: None }));
        assert_eq!(budgets.exhausted(&issue, &today, Usd::ZERO), None);
        let over = budgets.exhausted(&issue, &today, Usd::new(0.4).unwrap()).unwrap();
        assert_eq!(over.budget, BudgetKind::Issue);
        assert_eq!(over.to_string(), "issue budget $1.00 spent ($1.00)");
        let other_issue = UsageTotals::default();
        let over = budgets.exhausted(&other_issue, &today, Usd::new(0.4).unwrap()).unwrap();
        assert_eq!(over.budget, BudgetKind::Daily);
        let now = time::macros::datetime!(2026-12-07 22:00 -5);
        assert_eq!(over.frees_at(now), Some(time::macros::datetime!(2026-12-09 00:00 UTC)));
        assert_eq!(Budgets::default().exhausted(&issue, &today, Usd::new(99.0).unwrap()), None);
    }
}
