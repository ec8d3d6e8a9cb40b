//! `kugetsu queue-daemon run` (hidden): the daemon itself, in the foreground, until signalled;
//! what `start` runs in the background and the systemd unit runs.

use std::sync::Arc;

use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::storage::StorageError;
use kugetsu_queue::daemon;
use kugetsu_queue::log::{DEFAULT_LOG_MAX_BYTES, DaemonLog};
use kugetsu_queue::{Daemon, DaemonOptions, QueueEvent, QueueEventKind};

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `queue-daemon run`.
#[derive(Debug, clap::Args)]
pub struct DaemonRunArgs {}

/// Runs the daemon until it is signalled.
pub fn cmd_daemon_run(_ui: &mut Ui, ctx: &Ctx, _args: &DaemonRunArgs) -> Result<(), CliError> {
    run(ctx)
}

fn notification_kind(kind: QueueEventKind) -> kugetsu_core::notify::NotificationType {
    use kugetsu_core::notify::NotificationType as N;
    match kind {
        QueueEventKind::TaskQueued => N::TaskQueued,
        QueueEventKind::TaskDequeued => N::TaskDequeued,
        QueueEventKind::TaskStarted => N::TaskStarted,
        QueueEventKind::TaskCompleted => N::TaskCompleted,
        QueueEventKind::TaskError => N::TaskError,
        QueueEventKind::OverBudget => N::Other(crate::run::OVER_BUDGET.into()),
    }
}

fn run(ctx: &Ctx) -> Result<(), CliError> {
    let config = ctx.config()?;
    let limit_ctx = ctx.clone();
    let fallback = config.max_concurrent_agents;
    // Re-read every round, so an edit of the config file applies without a restart.
    let limit =
        Arc::new(move || limit_ctx.config().map(|c| c.max_concurrent_agents).unwrap_or(fallback));
    let (state, notify_config) = (ctx.state.clone(), config.clone());
    let notifier = move |e: &QueueEvent| {
        let message = if e.detail.is_empty() {
            format!("{} {}", e.kind.as_str(), e.item_id)
        } else {
            format!("{}: {}", e.item_id, e.detail)
        };
        crate::notifications::record_costed_in(
            &state,
            Some(&notify_config),
            notification_kind(e.kind),
            &message,
            e.issue_ref.as_deref(),
            e.cost_usd,
        );
    };
    let log = DaemonLog::open(&ctx.state.daemon_log_path(), DEFAULT_LOG_MAX_BYTES)?;
    let daemon = Daemon::new(ctx.state.clone(), crate::dispatcher::dispatcher(ctx.clone()), limit)
        .with_log(log.clone())
        .with_backend(crate::queue_backend::backend(ctx, &config)?)
        .with_notifier(Arc::new(notifier))
        .with_gate(crate::pauses::gate(
            crate::pauses::pauses(ctx, &config),
            crate::agents::driver(ctx, &config, crate::wiring::RunPlace::Daemon)
                .ok()
                .and_then(|d| d.provider()),
        ))
        .with_options(DaemonOptions {
            interval: config.queue_daemon_interval(),
            cleanup_age: Some(config.queue_cleanup_age()),
            history_cap: usize::try_from(config.move_max_mb << 20).unwrap_or(usize::MAX),
            ..DaemonOptions::default()
        })
        // Forks through a warm agent, posts the notification outbox and polls the watched
        // trackers while this daemon holds its lock; all stopped before it lets go.
        .with_companion({
            let (ctx, config) = (ctx.clone(), config.clone());
            Arc::new(move || {
                let log = log.clone();
                let line = move |text: &str| log.line(time::OffsetDateTime::now_utc(), text);
                let line: crate::watcher::LogLine = Arc::new(line);
                Box::new((
                    crate::agents::WarmKeeper::start(&ctx, &config),
                    crate::delivery::SenderThread::start(ctx.state.clone(), line.clone()),
                    crate::watcher::WatchThread::start(ctx.clone(), line),
                ))
            })
        });
    let stop = Interrupt::new();
    let (state, on_signal) = (ctx.state.clone(), stop.clone());
    crate::signals::stop_service_on_signals(move |sig| {
        daemon::request_stop(&state, &on_signal, sig)
    })
    .map_err(|source| StorageError::Io {
        action: "install signal handlers for",
        path: ctx.state.daemon_lock_path(),
        source,
    })?;
    daemon.run(&stop)?;
    Ok(())
}
