//! `kugetsu queue list`: every queued task with its state, one line each: why a held one waits,
//! what a finished one's turn cost.

use kugetsu_core::queue::{QueueStatus, TaskQueue};

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `queue list`.
#[derive(Debug, clap::Args)]
pub struct QueueListArgs {}

/// Prints the tasks; files that could not be read are warned about on stderr.
pub fn cmd_queue_list(
    ui: &mut Ui,
    ctx: &Ctx,
    queue: &dyn TaskQueue,
    _args: &QueueListArgs,
) -> Result<(), CliError> {
    let listing = crate::reads::queue(ctx, queue)?;
    if ctx.json {
        return ctx.print_json(ui.stdout(), &listing);
    }
    let out = ui.stdout();
    for line in &listing.paused {
        writeln!(out, "dispatch {line}")?;
    }
    if listing.items.is_empty() {
        writeln!(out, "the queue is empty")?;
    }
    for item in &listing.items {
        let when = crate::context::human_time(item.created_at);
        let issue = item.issue_ref.as_deref().unwrap_or("(pm-agent)");
        let mut line = format!(
            "{}  {:<9} {when}  {issue}  {}",
            item.id,
            item.status.as_str(),
            one_line(&item.message)
        );
        if let Some(host) = item.claim.as_ref().and_then(|c| c.host.as_deref()) {
            line.push_str(&format!("  [on {host}]"));
        }
        if item.attempts > 0 {
            line.push_str(&format!("  [attempt {}]", item.attempts));
        }
        // Why a due item waits says more than an old error: it is what frees it.
        if let Some(why) = item.held.as_ref().filter(|_| item.status == QueueStatus::Pending) {
            line.push_str(&format!("  ({why})"));
        } else if let Some(e) = &item.last_error {
            line.push_str(&format!("  last error: {}", one_line(e)));
        }
        if let Some(usage) = item.usage.filter(|_| item.status.is_final()) {
            line.push_str(&format!("  [cost {}]", kugetsu_core::usage::cost_text(usage.cost_usd)));
        }
        writeln!(out, "{line}")?;
    }
    for p in &listing.problems {
        writeln!(ui.stderr(), "warning: {p}")?;
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    crate::wiring::first_line(s, 60)
}
