//! `kugetsu queue-daemon restart`: `stop`, then `start`.

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `queue-daemon restart`.
#[derive(Debug, clap::Args)]
pub struct DaemonRestartArgs {}

/// Stops the daemon, then starts it again.
pub fn cmd_daemon_restart(
    ui: &mut Ui,
    ctx: &Ctx,
    _args: &DaemonRestartArgs,
) -> Result<(), CliError> {
    super::stop::stop(ctx, ui.stdout())?;
    super::start::start(ctx, ui.stdout())
}
