//! `kugetsu queue stats`: how many tasks are in each state.

use kugetsu_core::queue::TaskQueue;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `queue stats`.
#[derive(Debug, clap::Args)]
pub struct QueueStatsArgs {}

/// Prints the counts.
pub fn cmd_queue_stats(
    ui: &mut Ui,
    ctx: &Ctx,
    queue: &dyn TaskQueue,
    _args: &QueueStatsArgs,
) -> Result<(), CliError> {
    let out = ui.stdout();
    let s = queue.stats()?;
    if ctx.json {
        return ctx.print_json(out, &s);
    }
    writeln!(out, "total     {}", s.total)?;
    writeln!(out, "pending   {}", s.pending)?;
    writeln!(out, "notified  {}", s.notified)?;
    writeln!(out, "completed {}", s.completed)?;
    writeln!(out, "error     {}", s.error)?;
    if s.corrupt > 0 {
        writeln!(out, "corrupt   {}", s.corrupt)?;
    }
    Ok(())
}
