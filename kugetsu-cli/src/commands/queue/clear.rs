//! `kugetsu queue clear`: finished tasks older than `QUEUE_CLEANUP_AGE_DAYS` removed.

use kugetsu_core::queue::TaskQueue;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `queue clear`.
#[derive(Debug, clap::Args)]
pub struct QueueClearArgs {}

/// Removes them and says how many.
pub fn cmd_queue_clear(
    ui: &mut Ui,
    ctx: &Ctx,
    queue: &dyn TaskQueue,
    _args: &QueueClearArgs,
) -> Result<(), CliError> {
    let out = ui.stdout();
    let config = ctx.config()?;
    let n = crate::wiring::clear_finished(&config, queue)?;
    if ctx.json {
        return ctx.print_json(out, &serde_json::json!({"removed": n}));
    }
    writeln!(
        out,
        "removed {n} finished task(s) older than {} day(s)",
        config.queue_cleanup_age_days
    )?;
    Ok(())
}
