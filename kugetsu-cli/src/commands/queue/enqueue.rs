//! `kugetsu queue enqueue <issue> <message>`: work on an issue queued for the daemon.

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `queue enqueue`.
#[derive(Debug, clap::Args)]
pub struct QueueEnqueueArgs {
    /// The issue.
    pub issue_ref: String,
    /// The message (`-` reads it from stdin).
    pub message: String,
}

/// Queues the work and prints the item's id.
pub fn cmd_queue_enqueue(ui: &mut Ui, ctx: &Ctx, args: &QueueEnqueueArgs) -> Result<(), CliError> {
    let issue = ctx.parse_issue(&args.issue_ref)?;
    let message = ui.read_message(&args.message)?;
    let item = crate::wiring::enqueue(ctx, &message, Some(issue.to_string()), Default::default())?;
    if ctx.json {
        return ctx.print_json(ui.stdout(), &item);
    }
    writeln!(ui.stdout(), "queued {} for {issue}", item.id)?;
    Ok(())
}
