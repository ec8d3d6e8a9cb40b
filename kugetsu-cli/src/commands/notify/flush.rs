//! `kugetsu notify flush`: posts what the outbox holds now, retrying what fails for a short
//! while, and says what is left. What a foreground command adds is flushed so, detached; the
//! queue daemon flushes by itself.

use std::time::Duration;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Retries due within this long are waited for; later ones are left to the next sender.
const WINDOW: Duration = Duration::from_secs(30);
/// The longest a flush runs.
const BUDGET: Duration = Duration::from_secs(120);

/// Arguments of `notify flush`.
#[derive(Debug, clap::Args)]
pub struct NotifyFlushArgs {}

/// Flushes and prints the totals.
pub fn cmd_notify_flush(ui: &mut Ui, ctx: &Ctx, _args: &NotifyFlushArgs) -> Result<(), CliError> {
    let lines = std::cell::RefCell::new(Vec::new());
    let log = |line: &str| lines.borrow_mut().push(line.to_string());
    let pass = crate::delivery::flush(&ctx.state, WINDOW, BUDGET, &log)?;
    for line in lines.take() {
        writeln!(ui.stderr(), "{line}")?;
    }
    let out = ui.stdout();
    if ctx.json {
        return ctx.print_json(
            out,
            &serde_json::json!({
                "delivered": pass.delivered,
                "gave_up": pass.gave_up,
                "pending": pass.retrying,
                "busy": pass.busy,
            }),
        );
    }
    if pass.busy {
        writeln!(out, "another sender (the queue daemon) is posting the outbox")?;
    }
    writeln!(
        out,
        "delivered {}, gave up {}, pending {}",
        pass.delivered, pass.gave_up, pass.retrying
    )?;
    Ok(())
}
