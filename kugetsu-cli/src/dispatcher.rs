//! How the queue daemon runs an item: over the same orchestration as `kugetsu start` and
//! `continue`, in-process, inside the slot the daemon already holds for it.
//!
//! An item with an issue ref becomes `start` (no session yet) or `continue`; one without goes
//! to the PM agent, which decides and calls `kugetsu start`/`continue` itself. Outcomes map to
//! retry rules: a failed, timed-out or hung run is retried with backoff; a run blocked on a
//! permission, a bad ref or work that would be lost is an error at once (retrying cannot help).

use std::sync::Arc;

use kugetsu_core::agent::{AgentEvent, EventSink, RunOutcome};
use kugetsu_core::orchestrator::{Orchestrator, OrchestratorError, StartOptions};
use kugetsu_core::queue::{AgentSlots, QueueItem};
use kugetsu_core::worktree::NoProgress;
use kugetsu_core::{IssueRef, WorktreeError};
use kugetsu_queue::{DispatchContext, DispatchError, DispatchOutcome, Dispatcher};

use crate::context::Ctx;

/// The CLI's dispatcher.
pub struct CliDispatcher {
    ctx: Ctx,
}

impl CliDispatcher {
    /// A dispatcher for the daemon of `ctx`'s state directory.
    pub fn new(ctx: Ctx) -> Self {
        CliDispatcher { ctx }
    }

    fn orchestrator(&self, slots: Arc<dyn AgentSlots>) -> Result<Orchestrator, DispatchError> {
        let config = self.ctx.config().map_err(|e| DispatchError::Retry(e.message))?;
        // Each dispatch gets a stop request of its own: a stop asked for one issue's turn
        // (`Orchestrator::request_stop`) must not stop the daemon's other turns. The daemon's
        // own shutdown stops agents by signalling their process groups.
        let mut ctx = self.ctx.clone();
        ctx.interrupt = kugetsu_core::interrupt::Interrupt::new();
        crate::wiring::build_orchestrator(
            &ctx,
            &config,
            // With a shared queue an orphaned agent cannot be adopted (its item runs again
            // elsewhere once the lease expires): it ends with its daemon.
            if crate::queue_backend::agents_outlive_daemon(&config) {
                crate::wiring::RunPlace::Daemon
            } else {
                crate::wiring::RunPlace::Foreground
            },
            std::time::Duration::ZERO,
            Some(slots),
        )
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
        other => Err(DispatchError::Retry(format!("{what}: {}", other.describe()))),
    }
}

fn classify(e: OrchestratorError, stop_requested: bool) -> DispatchError {
    let text = e.to_string();
    if stop_requested {
        return DispatchError::Interrupted(text);
    }
    match e {
        OrchestratorError::AlreadyRunning { .. } | OrchestratorError::Queue(_) => {
            DispatchError::Retry(text)
        }
        OrchestratorError::Worktree(WorktreeError::Interrupted) => DispatchError::Interrupted(text),
        OrchestratorError::Worktree(
            WorktreeError::WouldLoseWork { .. }
            | WorktreeError::AuthFailed { .. }
            | WorktreeError::BaseRefNotFound { .. }
            | WorktreeError::PathNotWorktree { .. }
            | WorktreeError::BranchCheckedOut { .. },
        )
        | OrchestratorError::NotInitialized { .. }
        | OrchestratorError::BaseMissing
        | OrchestratorError::PmMissing
        | OrchestratorError::NameCollision { .. }
        | OrchestratorError::CaseVariant { .. }
        | OrchestratorError::UnsafePath { .. } => DispatchError::Fatal(text),
        _ => DispatchError::Retry(text),
    }
}

impl Dispatcher for CliDispatcher {
    fn dispatch(
        &self,
        item: &QueueItem,
        dctx: &mut DispatchContext<'_>,
    ) -> Result<DispatchOutcome, DispatchError> {
        let slots: Arc<dyn AgentSlots> = match dctx.lent_slot() {
            Some(lent) => Arc::new(lent),
            // PM items take no slot; the orchestration's PM path takes none either.
            None => Arc::new(kugetsu_queue::NoSlots),
        };
        let orch = self.orchestrator(slots)?;
        let Some(issue_text) = &item.issue_ref else {
            let stop = dctx.stop_requested();
            let mut sink = LeaseSink { ctx: dctx };
            let outcome =
                orch.message_pm(&item.message, &mut sink).map_err(|e| classify(e, stop))?;
            return outcome_result(outcome, kugetsu_core::orchestrator::PM_AGENT);
        };
        let issue = IssueRef::parse(issue_text)
            .map_err(|e| DispatchError::Fatal(format!("bad issue ref: {e}")))?;
        // A queued `start` starts afresh; anything else continues the issue's session if it has
        // one.
        let has_session = orch.has_session(&issue).map_err(|e| classify(e, false))?;
        if has_session && !item.options.start {
            let mut sink = LeaseSink { ctx: dctx };
            let summary = orch
                .continue_issue(&issue, &item.message, &mut sink)
                .map_err(|e| classify(e, sink.ctx.stop_requested()))?;
            return outcome_result(summary.outcome, &format!("continue {issue}"));
        }
        let source = crate::wiring::repo_source(&self.ctx, &issue)
            .map_err(|e| DispatchError::Fatal(e.message))?;
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
        let summary = orch
            .start(&opts, &mut NoProgress, interrupt, &mut sink)
            .map_err(|e| classify(e, sink.ctx.stop_requested()))?;
        outcome_result(summary.outcome, &format!("start {issue}"))
    }

    fn adopted_exited(&self, item: &QueueItem, pid: u32) -> Result<DispatchOutcome, DispatchError> {
        let unobserved =
            format!("adopted agent pid {pid} exited unobserved (its daemon was killed)");
        // The PM agent's turns keep no running state to settle.
        let Some(issue_text) = &item.issue_ref else {
            return Ok(DispatchOutcome { summary: unobserved });
        };
        let issue = IssueRef::parse(issue_text)
            .map_err(|e| DispatchError::Fatal(format!("bad issue ref: {e}")))?;
        // Settling touches only the session file: no slot is needed.
        let orch = self.orchestrator(Arc::new(kugetsu_queue::NoSlots))?;
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
