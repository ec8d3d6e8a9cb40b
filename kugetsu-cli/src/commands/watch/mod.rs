//! `kugetsu watch add|list|remove`: the repositories whose labelled open issues the queue
//! daemon starts work on, one file per subcommand.

pub mod add;
pub mod list;
pub mod remove;

use kugetsu_core::watch::Watches;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: WatchAction,
}

/// `watch` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WatchAction {
    /// Watch a repository (`github.com/owner/repo`) for open issues with a label.
    Add(add::WatchAddArgs),
    /// List the watched repositories.
    List(list::WatchListArgs),
    /// Stop watching a repository (what was queued stays queued).
    Remove(remove::WatchRemoveArgs),
}

/// Runs a `watch` subcommand.
pub fn cmd_watch(ui: &mut Ui, ctx: &Ctx, args: &WatchArgs) -> Result<(), CliError> {
    ctx.state.ensure()?;
    let watches = Watches::new(&ctx.state);
    match &args.action {
        WatchAction::Add(a) => add::cmd_watch_add(ui, ctx, &watches, a),
        WatchAction::List(a) => list::cmd_watch_list(ui, ctx, &watches, a),
        WatchAction::Remove(a) => remove::cmd_watch_remove(ui, ctx, &watches, a),
    }
}
