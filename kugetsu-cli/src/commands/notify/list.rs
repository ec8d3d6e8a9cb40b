//! `kugetsu notify list [--all]`: the unread notifications (or all), oldest first.

use kugetsu_core::notify::Notifications;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `notify list`.
#[derive(Debug, clap::Args)]
pub struct NotifyListArgs {
    /// Include the ones already read.
    #[arg(long)]
    pub all: bool,
}

/// Prints the notifications, one a line.
pub fn cmd_notify_list(
    ui: &mut Ui,
    ctx: &Ctx,
    notes: &Notifications,
    args: &NotifyListArgs,
) -> Result<(), CliError> {
    let out = ui.stdout();
    let listing = crate::reads::notifications(notes, args.all)?;
    if ctx.json {
        return ctx.print_json(out, &listing);
    }
    if listing.notifications.is_empty() {
        writeln!(out, "no {}notifications", if args.all { "" } else { "unread " })?;
    }
    for n in &listing.notifications {
        let when = crate::context::human_time(n.timestamp);
        let issue = n.issue_ref.as_deref().unwrap_or("-");
        writeln!(out, "{when}  {:<14} {issue}  {}", n.kind.as_str(), n.message)?;
    }
    if listing.unreadable > 0 {
        writeln!(out, "({} entries could not be read)", listing.unreadable)?;
    }
    Ok(())
}
