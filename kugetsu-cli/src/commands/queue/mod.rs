//! `kugetsu queue list|stats|clear|retry|migrate|hosts|release-host|enqueue|resume`: the durable task
//! queue, one file per subcommand. Every subcommand works on the queue `queue_backend` builds
//! for this state directory (its files, or the shared PostgreSQL queue).

pub mod clear;
pub mod enqueue;
pub mod hosts;
pub mod list;
pub mod migrate;
pub mod release_host;
pub mod resume;
pub mod retry;
pub mod stats;

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
    List(list::QueueListArgs),
    /// Count tasks per state.
    Stats(stats::QueueStatsArgs),
    /// Remove completed and error tasks older than QUEUE_CLEANUP_AGE_DAYS.
    Clear(clear::QueueClearArgs),
    /// Put a task that ended in `error` back in line, as if it had just been queued.
    Retry(retry::QueueRetryArgs),
    /// Move the pending tasks of this state directory's file queue to a shared PostgreSQL
    /// queue (ids kept, so running it again adds nothing twice).
    Migrate(migrate::QueueMigrateArgs),
    /// With a shared queue: the hosts holding leases and the issues each one keeps.
    Hosts(hosts::QueueHostsArgs),
    /// With a shared queue: give up the issues of a host that is gone for good (they start
    /// afresh elsewhere; its unpushed work is not moved) and requeue the items it held.
    ReleaseHost(release_host::QueueReleaseHostArgs),
    /// Queue work on an issue for the daemon (start, or continue if it has a session).
    Enqueue(enqueue::QueueEnqueueArgs),
    /// End provider pauses now (a quota error pauses until this), and wake the daemon.
    Resume(resume::QueueResumeArgs),
}

/// Runs a `queue` subcommand.
pub fn cmd_queue(ui: &mut Ui, ctx: &Ctx, args: &QueueArgs) -> Result<(), CliError> {
    ctx.state.ensure()?;
    let queue = crate::queue_backend::queue(ctx, &ctx.config()?)?;
    let queue = queue.as_ref();
    match &args.action {
        QueueAction::List(a) => list::cmd_queue_list(ui, ctx, queue, a),
        QueueAction::Stats(a) => stats::cmd_queue_stats(ui, ctx, queue, a),
        QueueAction::Clear(a) => clear::cmd_queue_clear(ui, ctx, queue, a),
        QueueAction::Retry(a) => retry::cmd_queue_retry(ui, ctx, queue, a),
        QueueAction::Migrate(a) => migrate::cmd_queue_migrate(ui, ctx, a),
        QueueAction::Hosts(a) => hosts::cmd_queue_hosts(ui, ctx, a),
        QueueAction::ReleaseHost(a) => release_host::cmd_queue_release_host(ui, ctx, a),
        QueueAction::Enqueue(a) => enqueue::cmd_queue_enqueue(ui, ctx, a),
        QueueAction::Resume(a) => resume::cmd_queue_resume(ui, ctx, a),
    }
}
