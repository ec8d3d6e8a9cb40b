//! The daemon's dispatch policy over the orchestration: which operation an item becomes, and
//! which failures are retried. The embedder hands in only what it alone knows (how to build an
//! [`Orchestrator`] from its configuration, and where an issue's repository comes from).
//!
//! An item with an issue ref becomes `start` (no session yet, or a queued `start`) or
//! `continue`; one without goes to the PM agent, which decides and calls `kugetsu
//! start`/`continue` itself. Whether a failure is worth a retry is the error's to say
//! ([`OrchestratorError::retry`]); a run's outcome maps as follows: a failed, timed-out or hung
//! run is retried with backoff; a run blocked on a permission, or stopped by the user, is an
//! error at once (retrying cannot help, or was not wanted); a run stopped at its budget is an
//! error too, and an item whose budget is already spent is held: it waits, without counting
//! as an attempt, until the limit is raised or (the daily budget) the next UTC day.

use std::sync::Arc;

use kugetsu_core::IssueRef;
use kugetsu_core::agent::{AgentEvent, EventSink, RunOutcome};
use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::orchestrator::{
    MovedHistory, Orchestrator, OrchestratorError, PM_AGENT, StartOptions,
};
use kugetsu_core::queue::{AgentSlots, QueueItem};
use kugetsu_core::retry::Retry;
use kugetsu_core::usage::budget::Exhausted;
use kugetsu_core::worktree::{NoProgress, RepoSource};

use super::dispatch::{DispatchContext, DispatchError, DispatchOutcome, Dispatcher};
use crate::slots::NoSlots;

/// Why the embedder could not provide what a dispatch needs: a configuration that does not
/// load, a repository nobody knows the address of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WiringError {
    /// What went wrong, as the embedder words it.
    pub message: String,
}

impl WiringError {
    /// An error saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        WiringError { message: message.into() }
    }
}

/// What an [`OrchestratorDispatcher`] is handed by its embedder (the CLI reads its config
/// layers and env files here).
pub trait DispatchWiring: Send + Sync {
    /// An orchestrator for one dispatch, taking its agent slots from `slots` (the slot the
    /// daemon already holds for the item, or none for the PM agent) and obeying `interrupt`.
    /// Built afresh for each dispatch, so a changed configuration applies to the next item. A
    /// failure is retried: the configuration may be fixed meanwhile.
    fn orchestrator(
        &self,
        slots: Arc<dyn AgentSlots>,
        interrupt: Interrupt,
    ) -> Result<Orchestrator, WiringError>;

    /// Where `issue`'s repository comes from, for a `start`. A failure is final: the item
    /// names a repository nobody knows.
    fn repo_source(&self, issue: &IssueRef) -> Result<RepoSource, WiringError>;
}

/// The [`Dispatcher`] that runs items through the orchestration, as `kugetsu start`,
/// `continue` and the PM agent would, in-process and inside the slot the daemon holds.
pub struct OrchestratorDispatcher<W> {
    wiring: W,
}

impl<W: DispatchWiring> OrchestratorDispatcher<W> {
    /// A dispatcher over what `wiring` provides.
    pub fn new(wiring: W) -> Self {
        OrchestratorDispatcher { wiring }
    }

    fn orchestrator(&self, slots: Arc<dyn AgentSlots>) -> Result<Orchestrator, DispatchError> {
        // Each dispatch gets a stop request of its own: a stop asked for one issue's turn
        // (`Orchestrator::request_stop`) must not stop the daemon's other turns. The daemon's
        // own shutdown stops agents by signalling their process groups.
        self.wiring
            .orchestrator(slots, Interrupt::new())
            .map_err(|e| DispatchError::Retry(e.message))
    }
}

/// Reports the agent's pid to the daemon's lease.
struct LeaseSink<'a, 'b> {
    ctx: &'a mut DispatchContext<'b>,
}

impl EventSink for LeaseSink<'_, '_> {
    fn spawned(&mut self, pid: u32) {
        self.ctx.agent_started(pid);
    }
    fn event(&mut self, event: &AgentEvent) {
        if let AgentEvent::ToolUse { tool, title, .. } = event {
            tracing::debug!(tool, title = title.as_deref().unwrap_or(""), "agent tool call");
        }
    }
}

fn outcome_result(outcome: RunOutcome, what: &str) -> Result<DispatchOutcome, DispatchError> {
    match outcome {
        RunOutcome::Completed => Ok(DispatchOutcome { summary: format!("{what}: completed") }),
        RunOutcome::Blocked { permission } => {
            Err(DispatchError::Fatal(format!("{what}: blocked: permission rejected: {permission}")))
        }
        // Only a stop request interrupts a daemon's turn (see `orchestrator`): the user
        // stopped it, so it is not retried; `error` lets them retry it when they choose.
        RunOutcome::Interrupted { signal } => {
            Err(DispatchError::Fatal(format!("{what}: stopped by {signal}")))
        }
        // Stopped at its budget: not retried (it would spend again), and the items behind it
        // that would spend from the same budget wait.
        over @ RunOutcome::OverBudget { .. } => {
            Err(DispatchError::OverBudget(format!("{what}: {}", over.describe())))
        }
        // Not done and not failed: the provider's pause holds the item until it ends.
        RunOutcome::RateLimited(limit) => {
            Err(DispatchError::Paused(format!("{what}: {}", limit.describe())))
        }
        other => Err(DispatchError::Retry(format!("{what}: {}", other.describe()))),
    }
}

/// An item that would spend from `spent`: it waits.
fn held(spent: Exhausted) -> DispatchError {
    DispatchError::Held {
        reason: format!("held: {spent}"),
        frees_at: spent.frees_at(time::OffsetDateTime::now_utc()),
    }
}

/// Holds the item when a budget it would spend from (`issue`'s; the daily one) is spent.
fn check_budget(orch: &Orchestrator, issue: Option<&IssueRef>) -> Result<(), DispatchError> {
    match orch.budget_spent(issue) {
        Ok(Some(spent)) => Err(held(spent)),
        Ok(None) => Ok(()),
        Err(e) => Err(classify(e, false)),
    }
}

/// What becomes of an item whose orchestration failed with `e`.
fn classify(e: OrchestratorError, stop_requested: bool) -> DispatchError {
    let text = e.to_string();
    // Whatever broke while the daemon was stopping, it broke because of the stop.
    if stop_requested {
        return DispatchError::Interrupted(text);
    }
    if let OrchestratorError::OverBudget { spent, .. } = e {
        return held(spent);
    }
    if let OrchestratorError::ProviderPaused { pause } = &e {
        return DispatchError::Paused(pause.describe());
    }
    match e.retry() {
        Retry::Later => DispatchError::Retry(text),
        Retry::Never => DispatchError::Fatal(text),
        Retry::Stopped => DispatchError::Interrupted(text),
    }
}

/// On a shared queue, keeps what another host needs to carry `issue` on after a turn of it
/// here; a failure to keep it is logged, and a later move then says what it lacks.
fn save_history(orch: &Orchestrator, issue: &IssueRef, dctx: &DispatchContext<'_>) {
    let Some((hosts, cap)) = dctx.hosts() else { return };
    let saved = match orch.save_history(issue, cap) {
        Ok(saved) => saved,
        Err(e) => {
            tracing::warn!(%issue, error = %e, "cannot save the issue's history for other hosts");
            MovedHistory { missing: vec![e.to_string()], ..MovedHistory::default() }
        }
    };
    let doc = match serde_json::to_string(&saved) {
        Ok(doc) => doc,
        Err(e) => return tracing::warn!(%issue, error = %e, "cannot encode the issue's history"),
    };
    if let Err(e) = hosts.save_history(&issue.to_string(), &doc) {
        tracing::warn!(%issue, error = %e, "cannot keep the issue's history for other hosts");
    }
}

/// The history another host saved for `issue`, with that host, when the issue moved here.
fn moved_history(issue: &IssueRef, dctx: &DispatchContext<'_>) -> Option<(String, MovedHistory)> {
    let (hosts, _) = dctx.hosts()?;
    let (from, doc) = match hosts.history(&issue.to_string()) {
        Ok(found) => found?,
        Err(e) => {
            tracing::warn!(%issue, error = %e, "cannot read the issue's saved history");
            return None;
        }
    };
    match serde_json::from_str(&doc) {
        Ok(history) => Some((from, history)),
        Err(e) => {
            tracing::warn!(%issue, error = %e, "the issue's saved history is unreadable");
            None
        }
    }
}

fn parse_issue(text: &str) -> Result<IssueRef, DispatchError> {
    IssueRef::parse(text).map_err(|e| DispatchError::Fatal(format!("bad issue ref: {e}")))
}

impl<W: DispatchWiring> Dispatcher for OrchestratorDispatcher<W> {
    fn dispatch(
        &self,
        item: &QueueItem,
        dctx: &mut DispatchContext<'_>,
    ) -> Result<DispatchOutcome, DispatchError> {
        let slots: Arc<dyn AgentSlots> = match dctx.lent_slot() {
            Some(lent) => Arc::new(lent),
            // PM items take no slot; the orchestration's PM path takes none either.
            None => Arc::new(NoSlots),
        };
        let orch = self.orchestrator(slots)?;
        let Some(issue_text) = &item.issue_ref else {
            check_budget(&orch, None)?;
            let mut sink = LeaseSink { ctx: dctx };
            let outcome = orch
                .message_pm(&item.message, &mut sink)
                .map_err(|e| classify(e, sink.ctx.stop_requested()))?;
            return outcome_result(outcome, PM_AGENT);
        };
        let issue = parse_issue(issue_text)?;
        check_budget(&orch, Some(&issue))?;
        // A queued `start` starts afresh; anything else continues the issue's session if it has
        // one.
        let has_session = orch.has_session(&issue).map_err(|e| classify(e, false))?;
        if has_session && !item.options.start {
            let mut sink = LeaseSink { ctx: dctx };
            let summary = orch
                .continue_issue(&issue, &item.message, &mut sink)
                .map_err(|e| classify(e, sink.ctx.stop_requested()))?;
            sink.ctx.record_usage(summary.usage);
            save_history(&orch, &issue, dctx);
            return outcome_result(summary.outcome, &format!("continue {issue}"));
        }
        // An issue that moved here from a lost host carries on with the history it saved.
        let moved = if item.options.start { None } else { moved_history(&issue, dctx) };
        let source =
            self.wiring.repo_source(&issue).map_err(|e| DispatchError::Fatal(e.message))?;
        let opts = StartOptions {
            issue: issue.clone(),
            message: item.message.clone(),
            source,
            base_ref: item.options.base_ref.clone(),
            force: item.options.force,
        };
        // The daemon's stop flag interrupts a clone or checkout in progress.
        let interrupt = dctx.stop_flag();
        let mut sink = LeaseSink { ctx: dctx };
        let (summary, what) = match &moved {
            Some((from, history)) => (
                orch.start_moved(&opts, history, &mut NoProgress, interrupt, &mut sink),
                format!("start {issue} with its history from {from}"),
            ),
            None => {
                (orch.start(&opts, &mut NoProgress, interrupt, &mut sink), format!("start {issue}"))
            }
        };
        let summary = summary.map_err(|e| classify(e, sink.ctx.stop_requested()))?;
        sink.ctx.record_usage(summary.usage);
        save_history(&orch, &issue, dctx);
        outcome_result(summary.outcome, &what)
    }

    fn adopted_exited(&self, item: &QueueItem, pid: u32) -> Result<DispatchOutcome, DispatchError> {
        let unobserved =
            format!("adopted agent pid {pid} exited unobserved (its daemon was killed)");
        // The PM agent's turns keep no running state to settle.
        let Some(issue_text) = &item.issue_ref else {
            return Ok(DispatchOutcome { summary: unobserved });
        };
        let issue = parse_issue(issue_text)?;
        // Settling touches only the session file: no slot is needed.
        let orch = self.orchestrator(Arc::new(NoSlots))?;
        match orch.settle_abandoned_run(&issue) {
            Ok(true) => Err(DispatchError::Fatal(format!(
                "{unobserved}; nobody read how its turn ended, so {issue} is marked failed: \
                 `kugetsu continue {issue}` resumes it"
            ))),
            Ok(false) => Ok(DispatchOutcome { summary: unobserved }),
            Err(e) => {
                Err(DispatchError::Fatal(format!("{unobserved}; cannot settle {issue}: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests;
