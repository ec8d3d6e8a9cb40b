//! `kugetsu queue release-host <host>`: with a shared queue, the issues of a host that is gone
//! for good given up (they move elsewhere, with the history it saved) and the items it held
//! requeued.

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `queue release-host`.
#[derive(Debug, clap::Args)]
pub struct QueueReleaseHostArgs {
    /// The host, as `queue hosts` names it.
    pub host: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
}

/// Releases the host after confirming; warns that its unpushed work stays where it was.
pub fn cmd_queue_release_host(
    ui: &mut Ui,
    ctx: &Ctx,
    args: &QueueReleaseHostArgs,
) -> Result<(), CliError> {
    let host = &args.host;
    ctx.confirm(ui, args.yes, &format!("release host {host} (its issues move elsewhere)"))?;
    let (issues, items) = crate::queue_backend::release_host(ctx, &ctx.config()?, host)?;
    if ctx.json {
        return ctx
            .print_json(ui.stdout(), &serde_json::json!({"issues": issues, "requeued": items}));
    }
    writeln!(
        ui.stdout(),
        "released {host}: {} issue(s) will move to another host, {} item(s) requeued",
        issues.len(),
        items.len()
    )?;
    if !issues.is_empty() {
        writeln!(
            ui.stderr(),
            "warning: unpushed work on {host} since the last turn it finished is not moved: {}",
            issues.join(" ")
        )?;
    }
    Ok(())
}
