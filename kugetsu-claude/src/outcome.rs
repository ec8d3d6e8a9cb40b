//! How a run ended, in kugetsu's words: the one place that reads Claude Code's exit and events
//! and says `completed`, `failed`, `blocked`, `timed_out`, `hung` or `interrupted`.
//!
//! The exit code alone says little (measured with 2.1.328): a refused tool call exits 0 with a
//! `success` result, an API error after all retries exits 1 with a result whose `subtype` is
//! still `success` (only `is_error` tells), and a SIGINT exits 0 with no result at all. So the
//! events decide, and the signal the driver sent (a stop request, a limit) comes first.
//!
//! A provider's refusal for a limit (see [`crate::events`]) is neither failed nor hung: the
//! driver cuts the run at once, and it ends `rate_limited` however it then ends, unless a stop
//! request ended it first.

use kugetsu_core::agent::RunOutcome;
use kugetsu_core::interrupt::Interrupt;
use kugetsu_process::Ended;

use crate::events::EventLog;

/// The `result` subtype of a turn that reached its `--max-budget-usd`.
const BUDGET_EXHAUSTED: &str = "error_max_budget_usd";

/// What stopped a turn at its spending cap, in [`RunOutcome::Interrupted`]'s words.
pub const SPEND_CAP: &str = "its spending cap";

/// Turns how a run ended and what it printed into an outcome (and the exit code, if it exited).
pub fn classify(ended: Ended, events: &EventLog, stop: &Interrupt) -> (RunOutcome, Option<i32>) {
    match ended.outcome(stop, events.provider_limit.as_ref(), || events.last_tool()) {
        Ok(outcome) => (outcome, None),
        Err(status) => (classify_exit(status.code(), events), status.code()),
    }
}

/// The outcome of a run that exited by itself with `code` (`None`: killed by a signal nobody
/// here sent) after printing `events`.
pub fn classify_exit(code: Option<i32>, events: &EventLog) -> RunOutcome {
    // Stopped by the spending cap the driver gave it (`--max-budget-usd`): the orchestrator
    // tells which budget was reached, as for a turn it stops itself.
    if events.result.as_ref().is_some_and(|r| r.subtype == BUDGET_EXHAUSTED) {
        return RunOutcome::Interrupted { signal: SPEND_CAP.into() };
    }
    if let Some(result) = &events.result
        && result.is_error
    {
        let mut message =
            if result.text.is_empty() { result.subtype.clone() } else { result.text.clone() };
        if let Some(last) = events.retries.last() {
            message.push_str(&format!(
                " (after {} retries; last: {}{})",
                events.retries.len(),
                last.error,
                last.status.map(|s| format!(" {s}")).unwrap_or_default()
            ));
        }
        return RunOutcome::Failed { message };
    }
    // A refused call does not fail the turn in Claude Code's eyes; the work is not done.
    if !events.denials.is_empty() {
        return RunOutcome::Blocked { permission: events.denials.join(", ") };
    }
    match (code, &events.result) {
        (Some(0), Some(_)) => RunOutcome::Completed,
        (Some(0), None) => RunOutcome::Failed {
            message: "claude exited without a result (interrupted from outside?)".into(),
        },
        (Some(c), _) => RunOutcome::Failed {
            message: match &events.last_stderr {
                Some(line) => line.clone(),
                None => format!("claude exited with code {c}"),
            },
        },
        (None, _) => RunOutcome::Failed { message: "claude was killed by a signal".into() },
    }
}
