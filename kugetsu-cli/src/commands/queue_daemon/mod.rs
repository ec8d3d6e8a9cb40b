//! `kugetsu queue-daemon start|stop|restart|status|logs|install|uninstall` (and the hidden
//! `run`, the daemon itself in the foreground), one file per subcommand; `install` and
//! `uninstall` share `service`, the daemon as a systemd user service.

pub mod logs;
pub mod restart;
pub mod run;
pub mod service;
pub mod start;
pub mod status;
pub mod stop;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `queue-daemon`.
#[derive(Debug, clap::Args)]
pub struct QueueDaemonArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: DaemonAction,
}

/// `queue-daemon` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DaemonAction {
    /// Start the daemon in the background.
    Start(start::DaemonStartArgs),
    /// Stop it (SIGTERM; running agents are stopped and their tasks requeued).
    Stop(stop::DaemonStopArgs),
    /// Stop it, then start it again.
    Restart(restart::DaemonRestartArgs),
    /// Say whether it is running.
    Status(status::DaemonStatusArgs),
    /// Show its recent log lines.
    Logs(logs::DaemonLogsArgs),
    /// Install it as a systemd user service: started now, at login (at boot with
    /// `loginctl enable-linger`), and again when it fails.
    Install(service::DaemonInstallArgs),
    /// Stop and remove the systemd user service.
    Uninstall(service::DaemonUninstallArgs),
    /// Run the daemon in the foreground (what `start` runs in the background).
    #[command(hide = true)]
    Run(run::DaemonRunArgs),
}

/// Runs a `queue-daemon` subcommand.
pub fn cmd_queue_daemon(ui: &mut Ui, ctx: &Ctx, args: &QueueDaemonArgs) -> Result<(), CliError> {
    ctx.state.ensure()?;
    match &args.action {
        DaemonAction::Start(a) => start::cmd_daemon_start(ui, ctx, a),
        DaemonAction::Stop(a) => stop::cmd_daemon_stop(ui, ctx, a),
        DaemonAction::Restart(a) => restart::cmd_daemon_restart(ui, ctx, a),
        DaemonAction::Status(a) => status::cmd_daemon_status(ui, ctx, a),
        DaemonAction::Logs(a) => logs::cmd_daemon_logs(ui, ctx, a),
        DaemonAction::Install(a) => service::cmd_daemon_install(ui, ctx, a),
        DaemonAction::Uninstall(a) => service::cmd_daemon_uninstall(ui, ctx, a),
        DaemonAction::Run(a) => run::cmd_daemon_run(ui, ctx, a),
    }
}
