//! `kugetsu notify [list|clear]`: what the queue and the agents reported, one file per
//! subcommand.

pub mod clear;
pub mod list;

use kugetsu_core::notify::Notifications;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `notify`.
#[derive(Debug, clap::Args)]
pub struct NotifyArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub action: Option<NotifyAction>,
}

/// `notify` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum NotifyAction {
    /// Show unread notifications (all with --all).
    List(list::NotifyListArgs),
    /// Mark every notification as read.
    Clear(clear::NotifyClearArgs),
}

/// Lists or clears notifications.
pub fn cmd_notify(ui: &mut Ui, ctx: &Ctx, args: &NotifyArgs) -> Result<(), CliError> {
    ctx.state.check()?;
    let notes = Notifications::new(&ctx.state);
    match &args.action {
        None => list::cmd_notify_list(ui, ctx, &notes, &list::NotifyListArgs { all: false }),
        Some(NotifyAction::List(a)) => list::cmd_notify_list(ui, ctx, &notes, a),
        Some(NotifyAction::Clear(a)) => clear::cmd_notify_clear(ui, ctx, &notes, a),
    }
}
