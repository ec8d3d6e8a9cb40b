//! `kugetsu queue-daemon stop`: the daemon stopped (SIGTERM, then SIGKILL if it ignores it).

use std::io::Write;
use std::time::Duration;

use kugetsu_queue::daemon::{self, StopOutcome};

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `queue-daemon stop`.
#[derive(Debug, clap::Args)]
pub struct DaemonStopArgs {}

/// Stops the daemon and says how.
pub fn cmd_daemon_stop(ui: &mut Ui, ctx: &Ctx, _args: &DaemonStopArgs) -> Result<(), CliError> {
    stop(ctx, ui.stdout())
}

/// Stops the daemon (for `stop` and `restart`).
pub fn stop(ctx: &Ctx, out: &mut dyn Write) -> Result<(), CliError> {
    let outcome = daemon::stop(&ctx.state, Duration::from_secs(8))?;
    let text = match outcome {
        StopOutcome::NotRunning => "the queue daemon is not running".to_string(),
        StopOutcome::Stopped { pid } => format!("queue daemon stopped (pid {pid})"),
        StopOutcome::Killed { pid } => {
            format!("queue daemon killed after it ignored SIGTERM (pid {pid})")
        }
    };
    if ctx.json {
        return ctx.print_json(out, &serde_json::json!({"result": text}));
    }
    writeln!(out, "{text}")?;
    Ok(())
}
