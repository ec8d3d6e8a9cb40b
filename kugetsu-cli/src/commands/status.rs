//! `kugetsu status`: the spec's four words, from the state files alone.

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {}

/// Prints `ok`, `kugetsu_not_initialized`, `base_session_missing` or `pm_agent_missing`.
/// Exits 0 for `ok` and 3 otherwise, so scripts can test it.
pub fn cmd_status(ui: &mut Ui, ctx: &Ctx, _args: &StatusArgs) -> Result<(), CliError> {
    let out = ui.stdout();
    let view = crate::reads::status(ctx)?;
    if ctx.json {
        ctx.print_json(out, &view)?;
    } else {
        writeln!(out, "{}", view.status.as_str())?;
        for line in &view.paused {
            writeln!(out, "{line}")?;
        }
    }
    if view.status == kugetsu_core::orchestrator::Status::Ok {
        Ok(())
    } else {
        Err(CliError::silent(crate::error::exit::STATE))
    }
}
