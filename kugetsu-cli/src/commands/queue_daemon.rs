//! `kugetsu queue-daemon start|stop|restart|status|logs|install|uninstall` (and the hidden
//! `run`, the daemon itself in the foreground); `install`/`uninstall` are in `daemon_service`.

use std::ffi::OsString;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kugetsu_queue::daemon::{self, StopOutcome};
use kugetsu_queue::{Daemon, DaemonOptions, QueueEvent, QueueEventKind};

use crate::context::Ctx;
use crate::error::{CliError, exit};

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
    Start,
    /// Stop it (SIGTERM; running agents are stopped and their tasks requeued).
    Stop,
    /// Stop it, then start it again.
    Restart,
    /// Say whether it is running.
    Status,
    /// Show its recent log lines.
    Logs {
        /// How many lines.
        #[arg(default_value_t = 50)]
        n: usize,
    },
    /// Install it as a systemd user service: started now, at login (at boot with
    /// `loginctl enable-linger`), and again when it fails.
    Install,
    /// Stop and remove the systemd user service.
    Uninstall,
    /// Run the daemon in the foreground (what `start` runs in the background).
    #[command(hide = true)]
    Run,
}

/// Runs a `queue-daemon` subcommand.
pub fn cmd_queue_daemon(
    ctx: &Ctx,
    args: &QueueDaemonArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    ctx.state.ensure()?;
    match &args.action {
        DaemonAction::Start => start(ctx, out),
        DaemonAction::Stop => stop(ctx, out),
        DaemonAction::Restart => {
            stop(ctx, out)?;
            start(ctx, out)
        }
        DaemonAction::Status => {
            let st = daemon::status(&ctx.state)?;
            let systemd = super::daemon_service::status(ctx, st.pid);
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
        DaemonAction::Logs { n } => {
            let secrets = crate::notifications::secrets(&ctx.state);
            let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let lines = daemon::tail_log(&ctx.state, *n)?;
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
        DaemonAction::Install => super::daemon_service::install(ctx, out),
        DaemonAction::Uninstall => super::daemon_service::uninstall(ctx, out),
        DaemonAction::Run => run(ctx),
    }
}

fn start(ctx: &Ctx, out: &mut dyn Write) -> Result<(), CliError> {
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
    ctx.config()?; // a bad config is reported here, not in the background log
    let exe = std::env::current_exe()?;
    let mut argv: Vec<OsString> = ctx.child_args();
    argv.push("queue-daemon".into());
    argv.push("run".into());
    let spawned = daemon::spawn_detached(&exe, &argv, &ctx.env, &ctx.state)?;
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

fn stop(ctx: &Ctx, out: &mut dyn Write) -> Result<(), CliError> {
    let outcome = daemon::stop(&ctx.state, Duration::from_secs(8))?;
    let text = match outcome {
        StopOutcome::NotRunning => "the queue daemon is not running".to_string(),
        StopOutcome::Stopped { pid } => format!("queue daemon stopped (pid {pid})"),
        StopOutcome::Killed { pid } => {
            format!("queue daemon killed after it ignored SIGTERM (pid {pid})")
        }
    };
    if ctx.json {
        return ctx.print_json(out, &serde_json::json!({"result": text}));
    }
    writeln!(out, "{text}")?;
    Ok(())
}

fn notification_kind(kind: QueueEventKind) -> kugetsu_core::notify::NotificationType {
    use kugetsu_core::notify::NotificationType as N;
    match kind {
        QueueEventKind::TaskQueued => N::TaskQueued,
        QueueEventKind::TaskDequeued => N::TaskDequeued,
        QueueEventKind::TaskStarted => N::TaskStarted,
        QueueEventKind::TaskCompleted => N::TaskCompleted,
        QueueEventKind::TaskError => N::TaskError,
    }
}

fn run(ctx: &Ctx) -> Result<(), CliError> {
    let config = ctx.config()?;
    let limit_ctx = ctx.clone();
    let fallback = config.max_concurrent_agents;
    // Re-read every round, so an edit of the config file applies without a restart.
    let limit =
        Arc::new(move || limit_ctx.config().map(|c| c.max_concurrent_agents).unwrap_or(fallback));
    let state = ctx.state.clone();
    let notifier = move |e: &QueueEvent| {
        let message = if e.detail.is_empty() {
            format!("{} {}", e.kind.as_str(), e.item_id)
        } else {
            format!("{}: {}", e.item_id, e.detail)
        };
        crate::notifications::record_in(
            &state,
            notification_kind(e.kind),
            &message,
            e.issue_ref.as_deref(),
        );
    };
    let daemon = Daemon::new(
        ctx.state.clone(),
        Arc::new(crate::dispatcher::CliDispatcher::new(ctx.clone())),
        limit,
    )
    .with_backend(crate::queue_backend::backend(ctx, &config)?)
    .with_notifier(Arc::new(notifier))
    .with_options(DaemonOptions {
        interval: config.queue_daemon_interval(),
        cleanup_age: Some(config.queue_cleanup_age()),
        ..DaemonOptions::default()
    })
    // Forks through a warm agent while this daemon holds its lock; stopped before it lets go.
    .with_companion({
        let (ctx, config) = (ctx.clone(), config.clone());
        Arc::new(move || Box::new(crate::agents::WarmKeeper::start(&ctx, &config)))
    });
    daemon.run_until_signalled()?;
    Ok(())
}
