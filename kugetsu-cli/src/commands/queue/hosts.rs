//! `kugetsu queue hosts`: with a shared queue, the hosts holding leases, the issues each keeps,
//! and the issues that moved away from each (it was lost, or released).

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `queue hosts`.
#[derive(Debug, clap::Args)]
pub struct QueueHostsArgs {}

/// Prints each host with its running items, slots and issues.
pub fn cmd_queue_hosts(ui: &mut Ui, ctx: &Ctx, _args: &QueueHostsArgs) -> Result<(), CliError> {
    let out = ui.stdout();
    let hosts = crate::queue_backend::hosts(ctx, &ctx.config()?)?;
    if ctx.json {
        return ctx.print_json(out, &hosts);
    }
    if hosts.is_empty() {
        writeln!(out, "no host holds a lease or an issue")?;
    }
    for h in &hosts {
        let me = if h.this_host { " (this host)" } else { "" };
        writeln!(out, "{}{me}: {} item(s) running, {} slot(s)", h.host, h.items, h.slots)?;
        if !h.issues.is_empty() {
            writeln!(out, "  issues: {}", h.issues.join(" "))?;
        }
        for m in &h.moved_away {
            let to = m.to_host.as_deref().unwrap_or("(not taken yet)");
            writeln!(out, "  moved {} to {to} at {}: {}", m.issue, m.at, m.why)?;
        }
    }
    Ok(())
}
