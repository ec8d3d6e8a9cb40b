//! `kugetsu notify [list|clear]`: what the queue and the agents reported.

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
    List {
        /// Include the ones already read.
        #[arg(long)]
        all: bool,
    },
    /// Mark every notification as read.
    Clear,
}

/// Lists or clears notifications.
pub fn cmd_notify(ui: &mut Ui, ctx: &Ctx, args: &NotifyArgs) -> Result<(), CliError> {
    let out = ui.stdout();
    ctx.state.check()?;
    let notes = Notifications::new(&ctx.state);
    match args.action.as_ref().unwrap_or(&NotifyAction::List { all: false }) {
        NotifyAction::List { all } => {
            let listing = notes.list(!all)?;
            if ctx.json {
                return ctx.print_json(
                    out,
                    &serde_json::json!({"notifications": listing.notifications, "unreadable": listing.unreadable}),
                );
            }
            if listing.notifications.is_empty() {
                writeln!(out, "no {}notifications", if *all { "" } else { "unread " })?;
            }
            for n in &listing.notifications {
                let when = crate::context::human_time(n.timestamp);
                let issue = n.issue_ref.as_deref().unwrap_or("-");
                writeln!(out, "{when}  {:<14} {issue}  {}", n.kind.as_str(), n.message)?;
            }
            if listing.unreadable > 0 {
                writeln!(out, "({} entries could not be read)", listing.unreadable)?;
            }
        }
        NotifyAction::Clear => {
            let n = notes.mark_all_read()?;
            if ctx.json {
                return ctx.print_json(out, &serde_json::json!({"marked_read": n}));
            }
            writeln!(out, "marked {n} notification(s) as read")?;
        }
    }
    Ok(())
}
