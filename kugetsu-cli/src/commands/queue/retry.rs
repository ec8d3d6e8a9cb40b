//! `kugetsu queue retry <id>`: a task that ended in `error` put back in line.

use kugetsu_core::queue::TaskQueue;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `queue retry`.
#[derive(Debug, clap::Args)]
pub struct QueueRetryArgs {
    /// The task's id, as `queue list` shows it.
    pub id: String,
}

/// Requeues the task and says so.
pub fn cmd_queue_retry(
    ui: &mut Ui,
    ctx: &Ctx,
    queue: &dyn TaskQueue,
    args: &QueueRetryArgs,
) -> Result<(), CliError> {
    let out = ui.stdout();
    let item = crate::wiring::retry(ctx, queue, &args.id)?;
    if ctx.json {
        return ctx.print_json(out, &item);
    }
    writeln!(out, "{} is pending again", item.id)?;
    Ok(())
}
