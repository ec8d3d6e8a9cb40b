//! `kugetsu queue list|stats|clear|retry|enqueue|...`: the durable task queue.

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `queue`.
#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: QueueAction,
}

/// `queue` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum QueueAction {
    /// Show queued tasks with their state.
    List,
    /// Count tasks per state.
    Stats,
    /// Remove completed and error tasks older than QUEUE_CLEANUP_AGE_DAYS.
    Clear,
    /// Put a task that ended in `error` back in line, as if it had just been queued.
    Retry {
        /// The task's id, as `queue list` shows it.
        id: String,
    },
    /// Move the pending tasks of this state directory's file queue to a shared PostgreSQL
    /// queue (ids kept, so running it again adds nothing twice).
    Migrate {
        /// The postgres:// URL of the shared queue.
        #[arg(long)]
        to: String,
    },
    /// With a shared queue: the hosts holding leases and the issues each one keeps.
    Hosts,
    /// With a shared queue: give up the issues of a host that is gone for good (they start
    /// afresh elsewhere; its unpushed work is not moved) and requeue the items it held.
    ReleaseHost {
        /// The host, as `queue hosts` names it.
        host: String,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
    },
    /// Queue work on an issue for the daemon (start, or continue if it has a session).
    Enqueue {
        /// The issue.
        issue_ref: String,
        /// The message (`-` reads it from stdin).
        message: String,
    },
}

/// Runs a `queue` subcommand.
pub fn cmd_queue(ui: &mut Ui, ctx: &Ctx, args: &QueueArgs) -> Result<(), CliError> {
    ctx.state.ensure()?;
    let queue = crate::queue_backend::queue(ctx, &ctx.config()?)?;
    match &args.action {
        QueueAction::List => {
            let listing = queue.list()?;
            if ctx.json {
                return ctx.print_json(
                    ui.stdout(),
                    &serde_json::json!({"items": listing.items, "problems": listing.problems}),
                );
            }
            if listing.items.is_empty() {
                writeln!(ui.stdout(), "the queue is empty")?;
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
                if let Some(e) = &item.last_error {
                    line.push_str(&format!("  last error: {}", one_line(e)));
                }
                writeln!(ui.stdout(), "{line}")?;
            }
            for p in &listing.problems {
                writeln!(ui.stderr(), "warning: {p}")?;
            }
        }
        QueueAction::Stats => {
            let s = queue.stats()?;
            if ctx.json {
                return ctx.print_json(ui.stdout(), &s);
            }
            writeln!(ui.stdout(), "total     {}", s.total)?;
            writeln!(ui.stdout(), "pending   {}", s.pending)?;
            writeln!(ui.stdout(), "notified  {}", s.notified)?;
            writeln!(ui.stdout(), "completed {}", s.completed)?;
            writeln!(ui.stdout(), "error     {}", s.error)?;
            if s.corrupt > 0 {
                writeln!(ui.stdout(), "corrupt   {}", s.corrupt)?;
            }
        }
        QueueAction::Clear => {
            let config = ctx.config()?;
            let cutoff = time::OffsetDateTime::now_utc() - config.queue_cleanup_age();
            let n = queue.clear(cutoff)?;
            if ctx.json {
                return ctx.print_json(ui.stdout(), &serde_json::json!({"removed": n}));
            }
            writeln!(
                ui.stdout(),
                "removed {n} finished task(s) older than {} day(s)",
                config.queue_cleanup_age_days
            )?;
        }
        QueueAction::Retry { id } => {
            let item = retry(ctx, queue.as_ref(), id)?;
            if ctx.json {
                return ctx.print_json(ui.stdout(), &item);
            }
            writeln!(ui.stdout(), "{} is pending again", item.id)?;
        }
        QueueAction::Hosts => {
            let hosts = crate::queue_backend::hosts(ctx, &ctx.config()?)?;
            if ctx.json {
                return ctx.print_json(ui.stdout(), &hosts);
            }
            if hosts.is_empty() {
                writeln!(ui.stdout(), "no host holds a lease or an issue")?;
            }
            for h in &hosts {
                let me = if h.this_host { " (this host)" } else { "" };
                writeln!(
                    ui.stdout(),
                    "{}{me}: {} item(s) running, {} slot(s)",
                    h.host,
                    h.items,
                    h.slots
                )?;
                if !h.issues.is_empty() {
                    writeln!(ui.stdout(), "  issues: {}", h.issues.join(" "))?;
                }
            }
        }
        QueueAction::ReleaseHost { host, yes } => {
            ctx.confirm(
                ui,
                *yes,
                &format!("release host {host} (its issues start afresh elsewhere)"),
            )?;
            let (issues, items) = crate::queue_backend::release_host(ctx, &ctx.config()?, host)?;
            if ctx.json {
                return ctx.print_json(
                    ui.stdout(),
                    &serde_json::json!({"issues": issues, "requeued": items}),
                );
            }
            writeln!(
                ui.stdout(),
                "released {host}: {} issue(s) will start afresh on another host, {} item(s) requeued",
                issues.len(),
                items.len()
            )?;
            if !issues.is_empty() {
                writeln!(
                    ui.stderr(),
                    "warning: unpushed work on {host} is not moved: {}",
                    issues.join(" ")
                )?;
            }
        }
        QueueAction::Migrate { to } => {
            let moved = crate::queue_backend::migrate_files_to(ctx, to)?;
            if ctx.json {
                return ctx.print_json(ui.stdout(), &serde_json::json!({"moved": moved}));
            }
            writeln!(
                ui.stdout(),
                "moved {} pending task(s) to {}",
                moved.len(),
                kugetsu_core::secrets::redact_url(to)
            )?;
        }
        QueueAction::Enqueue { issue_ref, message } => {
            let issue = ctx.parse_issue(issue_ref)?;
            let message = ui.read_message(message)?;
            let item =
                crate::wiring::enqueue(ctx, &message, Some(issue.to_string()), Default::default())?;
            if ctx.json {
                return ctx.print_json(ui.stdout(), &item);
            }
            writeln!(ui.stdout(), "queued {} for {issue}", item.id)?;
        }
    }
    Ok(())
}

/// Puts item `id`, which ended in `error`, back in line and wakes this host's daemon (an
/// enqueue does; a retried item would otherwise wait for the next poll).
fn retry(
    ctx: &Ctx,
    queue: &dyn kugetsu_core::queue::TaskQueue,
    id: &str,
) -> Result<kugetsu_core::QueueItem, CliError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(CliError::usage(format!("invalid queue item id {id:?}")));
    }
    let item = kugetsu_core::control::retry_item(queue, id).map_err(|e| match e {
        kugetsu_core::control::RetryError::Queue(q) => CliError::from(q),
        other => CliError::new(crate::error::exit::FAILURE, other.to_string()),
    })?;
    kugetsu_queue::wake::poke(&kugetsu_queue::wake::wake_path(&ctx.state));
    Ok(item)
}

fn one_line(s: &str) -> String {
    crate::wiring::first_line(s, 60)
}
