//! Who hears of an issue's turns as they start and end, besides the session file: reporting
//! back on a watched issue ([`crate::report`]) is wired in by the CLI through this seam, so
//! that a turn run by the daemon and one run in the foreground are told alike.

use std::path::Path;

use crate::agent::RunOutcome;
use crate::issue_ref::IssueRef;

/// How a turn ended, for a [`TurnObserver`].
#[derive(Debug)]
pub struct TurnEnd<'a> {
    /// The issue.
    pub issue: &'a IssueRef,
    /// Its worktree.
    pub worktree: &'a Path,
    /// How the turn ended.
    pub outcome: &'a RunOutcome,
    /// The last text the agent said, unmasked (the observer masks what it shows).
    pub said: Option<&'a str>,
    /// What the turn used, as the agent reported it (`None`: nothing reported).
    pub usage: Option<&'a crate::usage::TurnUsage>,
}

/// Told of each turn of an issue. Must not fail the turn nor make it wait on the network:
/// an observer records and returns.
pub trait TurnObserver: Send + Sync {
    /// A turn of `issue` begins in `worktree`.
    fn turn_started(&self, issue: &IssueRef, worktree: &Path);
    /// A turn ended (its outcome already in the session file).
    fn turn_ended(&self, end: &TurnEnd<'_>);
}
