//! `kugetsu queue migrate --to <url>`: this state directory's pending file-queue tasks moved to a
//! shared PostgreSQL queue.

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `queue migrate`.
#[derive(Debug, clap::Args)]
pub struct QueueMigrateArgs {
    /// The postgres:// URL of the shared queue.
    #[arg(long)]
    pub to: String,
}

/// Moves the tasks and says how many.
pub fn cmd_queue_migrate(ui: &mut Ui, ctx: &Ctx, args: &QueueMigrateArgs) -> Result<(), CliError> {
    let out = ui.stdout();
    let moved = crate::queue_backend::migrate_files_to(ctx, &args.to)?;
    if ctx.json {
        return ctx.print_json(out, &serde_json::json!({"moved": moved}));
    }
    writeln!(
        out,
        "moved {} pending task(s) to {}",
        moved.len(),
        kugetsu_core::secrets::redact_url(&args.to)
    )?;
    Ok(())
}
