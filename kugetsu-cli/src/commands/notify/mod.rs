//! `kugetsu notify [list|clear|test|outbox|flush]`: what the queue and the agents reported,
//! and its way to the webhooks of `KUGETSU_NOTIFY_URL`; one file per subcommand.

pub mod clear;
pub mod flush;
pub mod list;
pub mod outbox;
pub mod test;

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
    /// Post a test notification to every KUGETSU_NOTIFY_URL at once and say how each answered.
    Test(test::NotifyTestArgs),
    /// Show the webhook deliveries: delivered, pending (with their next try) and failed.
    Outbox(outbox::NotifyOutboxArgs),
    /// Post what the outbox holds now (the queue daemon does this by itself).
    Flush(flush::NotifyFlushArgs),
}

/// Lists, clears, tests, shows or flushes notifications.
pub fn cmd_notify(ui: &mut Ui, ctx: &Ctx, args: &NotifyArgs) -> Result<(), CliError> {
    ctx.state.check()?;
    let notes = Notifications::new(&ctx.state);
    match &args.action {
        None => list::cmd_notify_list(ui, ctx, &notes, &list::NotifyListArgs { all: false }),
        Some(NotifyAction::List(a)) => list::cmd_notify_list(ui, ctx, &notes, a),
        Some(NotifyAction::Clear(a)) => clear::cmd_notify_clear(ui, ctx, &notes, a),
        Some(NotifyAction::Test(a)) => test::cmd_notify_test(ui, ctx, a),
        Some(NotifyAction::Outbox(a)) => outbox::cmd_notify_outbox(ui, ctx, a),
        Some(NotifyAction::Flush(a)) => flush::cmd_notify_flush(ui, ctx, a),
    }
}
