//! `kugetsu queue-daemon logs [n]`: the daemon's newest log lines, secrets masked.

use kugetsu_queue::daemon;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `queue-daemon logs`.
#[derive(Debug, clap::Args)]
pub struct DaemonLogsArgs {
    /// How many lines.
    #[arg(default_value_t = 50)]
    pub n: usize,
}

/// Prints the lines.
pub fn cmd_daemon_logs(ui: &mut Ui, ctx: &Ctx, args: &DaemonLogsArgs) -> Result<(), CliError> {
    let out = ui.stdout();
    let secrets = crate::notifications::secrets(&ctx.state, ctx.config().ok().as_ref());
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let lines = daemon::tail_log(&ctx.state, args.n)?;
    if ctx.json {
        let lines: Vec<String> =
            lines.iter().map(|l| kugetsu_core::notify::redact(l, &refs)).collect();
        return ctx.print_json(out, &lines);
    }
    for l in lines {
        writeln!(out, "{}", kugetsu_core::notify::redact(&l, &refs))?;
    }
    Ok(())
}
