//! What the queue daemon's dispatcher is handed by the command line: orchestrators built from
//! this context's config layers, and repositories found through its servers, `repos.json` and
//! env files. Which operation an item becomes and which failures are retried is the queue
//! library's policy ([`OrchestratorDispatcher`]).

use std::sync::Arc;

use kugetsu_core::IssueRef;
use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::orchestrator::Orchestrator;
use kugetsu_core::queue::AgentSlots;
use kugetsu_core::worktree::RepoSource;
use kugetsu_queue::{DispatchWiring, Dispatcher, OrchestratorDispatcher, WiringError};

use crate::context::Ctx;
use crate::wiring::RunPlace;

/// The dispatcher of the daemon of `ctx`'s state directory.
pub fn dispatcher(ctx: Ctx) -> Arc<dyn Dispatcher> {
    Arc::new(OrchestratorDispatcher::new(CliWiring { ctx }))
}

/// The command line's context, as the dispatcher's source of orchestrators.
struct CliWiring {
    ctx: Ctx,
}

impl DispatchWiring for CliWiring {
    fn orchestrator(
        &self,
        slots: Arc<dyn AgentSlots>,
        interrupt: Interrupt,
    ) -> Result<Orchestrator, WiringError> {
        let config = self.ctx.config().map_err(|e| WiringError::new(e.message))?;
        let mut ctx = self.ctx.clone();
        ctx.interrupt = interrupt;
        // With a shared queue an orphaned agent cannot be adopted (its item runs again
        // elsewhere once the lease expires): it ends with its daemon.
        let place = if crate::queue_backend::agents_outlive_daemon(&config) {
            RunPlace::Daemon
        } else {
            RunPlace::Foreground
        };
        crate::wiring::build_orchestrator(
            &ctx,
            &config,
            place,
            std::time::Duration::ZERO,
            Some(slots),
        )
        .map_err(|e| WiringError::new(e.message))
    }

    fn repo_source(&self, issue: &IssueRef) -> Result<RepoSource, WiringError> {
        crate::wiring::repo_source(&self.ctx, issue).map_err(|e| WiringError::new(e.message))
    }
}
