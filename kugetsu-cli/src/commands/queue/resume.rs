//! `kugetsu queue resume [PROVIDER]`: ends provider pauses now (a quota error's pause ends no
//! other way), and wakes the daemon.

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `queue resume`.
#[derive(Debug, clap::Args)]
pub struct QueueResumeArgs {
    /// Only this provider's pause (as `status` names it); every pause without it.
    pub provider: Option<String>,
}

/// Removes the pauses, says which, and wakes this host's daemon.
pub fn cmd_queue_resume(ui: &mut Ui, ctx: &Ctx, args: &QueueResumeArgs) -> Result<(), CliError> {
    let config = ctx.config()?;
    let pauses = crate::pauses::pauses(ctx, &config);
    let now = time::OffsetDateTime::now_utc();
    let gone = pauses
        .resume(args.provider.as_deref(), now, false)
        .map_err(|e| CliError::new(crate::error::exit::FAILURE, e.to_string()))?;
    kugetsu_queue::wake::poke(&kugetsu_queue::wake::wake_path(&ctx.state));
    let names: Vec<&str> = gone.iter().map(|p| p.limit.provider.as_str()).collect();
    let out = ui.stdout();
    if ctx.json {
        return ctx.print_json(out, &serde_json::json!({ "resumed": names }));
    }
    if names.is_empty() {
        writeln!(out, "no provider is paused")?;
    }
    for name in names {
        writeln!(out, "resumed {name}")?;
    }
    Ok(())
}
