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
    let status = ctx.orchestrator()?.status()?;
    if ctx.json {
        let mut value = serde_json::json!({ "status": status.as_str() });
        // With a shared queue: which host this is (its issues' sessions live here).
        if let Some(host) = crate::queue_backend::shared_host(ctx)? {
            value["host"] = host.into();
        }
        ctx.print_json(out, &value)?;
    } else {
        writeln!(out, "{}", status.as_str())?;
    }
    if status == kugetsu_core::orchestrator::Status::Ok {
        Ok(())
    } else {
        Err(CliError::silent(crate::error::exit::STATE))
    }
}
