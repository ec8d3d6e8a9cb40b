//! `kugetsu delegate <message>`: queue a plain-language request for the PM agent and return at
//! once; the queue daemon dispatches it.

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `delegate`.
#[derive(Debug, clap::Args)]
pub struct DelegateArgs {
    /// The request (`-` reads it from stdin).
    pub message: String,
}

/// Enqueues the request.
pub fn cmd_delegate(ui: &mut Ui, ctx: &Ctx, args: &DelegateArgs) -> Result<(), CliError> {
    let message = ui.read_message(&args.message)?;
    let item = crate::wiring::enqueue(ctx, &message, None, Default::default())?;
    let daemon = kugetsu_queue::daemon::status(&ctx.state).map(|s| s.running).unwrap_or(false);
    if ctx.json {
        return ctx.print_json(
            ui.stdout(),
            &serde_json::json!({"queued": item.id, "daemon_running": daemon}),
        );
    }
    writeln!(ui.stdout(), "queued {}", item.id)?;
    if !daemon {
        writeln!(
            ui.stderr(),
            "Hint: the queue daemon is not running; start it with `kugetsu queue-daemon start`"
        )?;
    }
    Ok(())
}
