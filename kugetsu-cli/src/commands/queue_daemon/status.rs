//! `kugetsu queue-daemon status`: whether the daemon runs (and under systemd); exits 1 when it
//! does not.

use kugetsu_queue::daemon;

use crate::context::Ctx;
use crate::error::{CliError, exit};
use crate::ui::Ui;

/// Arguments of `queue-daemon status`.
#[derive(Debug, clap::Args)]
pub struct DaemonStatusArgs {}

/// Says whether the daemon runs.
pub fn cmd_daemon_status(ui: &mut Ui, ctx: &Ctx, _args: &DaemonStatusArgs) -> Result<(), CliError> {
    let out = ui.stdout();
    let st = daemon::status(&ctx.state)?;
    let systemd = super::service::status(ctx, st.pid);
    if ctx.json {
        return ctx.print_json(
            out,
            &serde_json::json!({
                "running": st.running,
                "pid": st.pid,
                "since": st.since.map(kugetsu_core::logs::timestamp),
                "stale_pid_file": st.stale_pid_file,
                "systemd": systemd.map(|(_, json)| json),
            }),
        );
    }
    match (st.running, st.pid) {
        (true, Some(pid)) => writeln!(
            out,
            "running (pid {pid}{})",
            st.since
                .map(|s| format!(", since {}", kugetsu_core::logs::timestamp(s)))
                .unwrap_or_default()
        )?,
        (true, None) => writeln!(out, "running")?,
        (false, _) => writeln!(out, "not running")?,
    }
    if let Some(pid) = st.stale_pid_file {
        writeln!(out, "(a stale pid file names pid {pid}; it is ignored)")?;
    }
    if let Some((text, _)) = systemd {
        writeln!(out, "{text}")?;
    }
    if st.running { Ok(()) } else { Err(CliError::silent(exit::FAILURE)) }
}
