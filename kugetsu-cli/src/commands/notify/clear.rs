//! `kugetsu notify clear`: every notification marked as read.

use kugetsu_core::notify::Notifications;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `notify clear`.
#[derive(Debug, clap::Args)]
pub struct NotifyClearArgs {}

/// Marks them read and says how many.
pub fn cmd_notify_clear(
    ui: &mut Ui,
    ctx: &Ctx,
    notes: &Notifications,
    _args: &NotifyClearArgs,
) -> Result<(), CliError> {
    let out = ui.stdout();
    let n = notes.mark_all_read()?;
    if ctx.json {
        return ctx.print_json(out, &serde_json::json!({"marked_read": n}));
    }
    writeln!(out, "marked {n} notification(s) as read")?;
    Ok(())
}
