//! `kugetsu watch remove <repo>`: a repository no longer watched.

use kugetsu_core::watch::Watches;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `watch remove`.
#[derive(Debug, clap::Args)]
pub struct WatchRemoveArgs {
    /// The repository, as `watch list` shows it.
    pub repo: String,
}

/// Removes the watch.
pub fn cmd_watch_remove(
    ui: &mut Ui,
    ctx: &Ctx,
    watches: &Watches,
    args: &WatchRemoveArgs,
) -> Result<(), CliError> {
    let removed = watches.remove(&args.repo)?;
    let out = ui.stdout();
    if ctx.json {
        return ctx.print_json(out, &serde_json::json!({"repo": removed.repo}));
    }
    writeln!(out, "no longer watching {}", removed.repo)?;
    Ok(())
}
