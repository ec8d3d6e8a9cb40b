//! `kugetsu queue-daemon start`: the daemon started in the background, and waited for until it
//! holds its lock.

use std::ffi::OsString;
use std::io::Write;
use std::time::{Duration, Instant};

use kugetsu_queue::daemon;

use crate::context::Ctx;
use crate::error::{CliError, exit};
use crate::ui::Ui;

/// Arguments of `queue-daemon start`.
#[derive(Debug, clap::Args)]
pub struct DaemonStartArgs {}

/// Starts the daemon and prints its pid.
pub fn cmd_daemon_start(ui: &mut Ui, ctx: &Ctx, _args: &DaemonStartArgs) -> Result<(), CliError> {
    start(ctx, ui.stdout())
}

/// Starts the daemon (for `start` and `restart`).
pub fn start(ctx: &Ctx, out: &mut dyn Write) -> Result<(), CliError> {
    let st = daemon::status(&ctx.state)?;
    if st.running {
        return Err(CliError::new(
            exit::BUSY,
            format!(
                "the queue daemon is already running{}",
                st.pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            ),
        ));
    }
    let config = ctx.config()?; // a bad config is reported here, not in the background log
    let exe = std::env::current_exe()?;
    let mut argv: Vec<OsString> = ctx.child_args();
    argv.push("queue-daemon".into());
    argv.push("run".into());
    let spawned = daemon::spawn_detached(&exe, &argv, &ctx.child_env(&config)?, &ctx.state)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = daemon::status(&ctx.state)?;
        if st.running && st.pid.is_some() {
            let pid = st.pid.unwrap_or(spawned);
            if ctx.json {
                return ctx.print_json(out, &serde_json::json!({"running": true, "pid": pid}));
            }
            writeln!(out, "queue daemon started (pid {pid})")?;
            return Ok(());
        }
        if Instant::now() > deadline || !kugetsu_process::procfs::is_running(spawned) && !st.running
        {
            let tail = daemon::tail_log(&ctx.state, 5).unwrap_or_default();
            let mut err = CliError::new(exit::FAILURE, "the queue daemon did not start");
            err.causes = tail;
            return Err(err.with_hint("`kugetsu queue-daemon logs` shows its log"));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
