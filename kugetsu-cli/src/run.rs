//! What `start` and `continue` share: the flags that say how to run the agent, the background
//! (`--detach`) form of a run, and how a run's end is reported and turned into an exit code.

use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use kugetsu_core::config::Config;
use kugetsu_core::orchestrator::{Orchestrator, RunSummary};
use kugetsu_core::queue::RunOptions;
use kugetsu_core::{IssueRef, RunOutcome};

use crate::context::Ctx;
use crate::error::{CliError, exit};
use crate::launch::RunPlace;
use crate::wiring::build_orchestrator;

/// Flags shared by `start` and `continue`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunFlags {
    /// Run in the background; follow it with `kugetsu logs` and `kugetsu list`.
    #[arg(long)]
    pub detach: bool,
    /// If every agent slot is busy, queue the message for the daemon instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
    /// Wait at most this many seconds for a free agent slot (default: as long as it takes).
    #[arg(long, value_name = "SECS", conflicts_with = "no_wait")]
    pub wait: Option<u64>,
}

impl RunFlags {
    /// The slot-waiting flags as command-line flags again (`--detach` itself is not repeated).
    pub fn rerun_flags(&self) -> Vec<OsString> {
        let mut flags = Vec::new();
        if self.no_wait {
            flags.push("--no-wait".into());
        }
        if let Some(w) = self.wait {
            flags.push(format!("--wait={w}").into());
        }
        flags
    }
}

/// The orchestration for `start`/`continue`, with the slot wait the flags ask for.
pub fn orchestrator_for_run(
    ctx: &Ctx,
    config: &Config,
    flags: &RunFlags,
) -> Result<Orchestrator, CliError> {
    let slot_wait = if flags.no_wait {
        Duration::ZERO
    } else {
        flags.wait.map(Duration::from_secs).unwrap_or(Duration::from_secs(60 * 60 * 24 * 365))
    };
    build_orchestrator(ctx, config, RunPlace::Foreground, slot_wait, None)
}

/// Re-runs `kugetsu <verb> <issue> - <flags>` in the background with the message on stdin from
/// a private file, its output going to a log file; prints where to follow it. `flags` are the
/// command's own options as `StartArgs::rerun_flags` gives them back, so the background run does exactly what the foreground one would have.
/// The re-run starts in a session of its own, so closing the terminal or the SSH connection
/// does not stop it.
pub fn detach(
    ctx: &Ctx,
    verb: &str,
    issue: &IssueRef,
    message: &str,
    flags: &[std::ffi::OsString],
    out: &mut dyn std::io::Write,
) -> Result<(), CliError> {
    ctx.state.ensure()?;
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let logs = ctx.state.logs_dir();
    let msg_path = logs.join(format!(".detached-{stamp}.msg"));
    kugetsu_core::storage::atomic_write(&msg_path, message.as_bytes())?;
    let log_path = logs.join(format!("{}-detached-{stamp}.log", issue.file_name()));
    // Just written by `atomic_write`, which refuses links; read at once.
    let stdin = std::fs::File::open(&msg_path).map_err(|e| {
        CliError::new(exit::FAILURE, format!("cannot open {}: {e}", msg_path.display()))
    })?;
    // The message file was opened; unlinking it now keeps it readable by the child only.
    let _ = std::fs::remove_file(&msg_path);
    // Private from creation and never through a link, like every state file: the log holds
    // what the agent printed.
    let log =
        kugetsu_core::storage::open_private(&log_path, kugetsu_core::storage::PrivateOpen::Append)?;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(ctx.child_args()).arg(verb).arg(issue.to_string()).arg("-");
    cmd.args(flags).env_clear().envs(ctx.child_env(&ctx.config()?)?);
    cmd.stdin(stdin).stdout(log.try_clone()?).stderr(log);
    kugetsu_process::detach(&mut cmd);
    let child = cmd.spawn()?;
    if ctx.json {
        return ctx.print_json(
            out,
            &serde_json::json!({"detached": true, "pid": child.id(), "issue_ref": issue.to_string(), "log": log_path}),
        );
    }
    writeln!(out, "{verb} {issue} running in the background (pid {})", child.id())?;
    writeln!(out, "log: {}", log_path.display())?;
    Ok(())
}

/// The notification type of a turn stopped at its budget (posted to the webhooks too).
pub const OVER_BUDGET: &str = "over_budget";

/// Prints a run's summary, queues the message (with `queued`, the command's own options) when
/// all slots were busy and `--no-wait` was given, and maps the outcome to the exit code.
pub fn finish(
    ctx: &Ctx,
    issue: &str,
    message: &str,
    result: Result<RunSummary, kugetsu_core::orchestrator::OrchestratorError>,
    flags: &RunFlags,
    queued: RunOptions,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    // With `--no-wait`, a turn that would wait (every slot busy, the provider paused) is
    // queued for the daemon instead.
    let waits = match &result {
        Err(kugetsu_core::orchestrator::OrchestratorError::Queue(
            kugetsu_core::queue::QueueError::NoSlot { limit, .. },
        )) => Some(format!("all {limit} agent slots are busy")),
        Err(kugetsu_core::orchestrator::OrchestratorError::ProviderPaused { pause }) => {
            Some(format!("the agent's provider is {}", pause.describe()))
        }
        _ => None,
    };
    if let Some(why) = waits.filter(|_| flags.no_wait) {
        let item = crate::wiring::enqueue(ctx, message, Some(issue.to_string()), queued)?;
        if ctx.json {
            return ctx
                .print_json(out, &serde_json::json!({ "queued": item.id, "issue_ref": issue }));
        }
        writeln!(out, "{why}; queued as {} for the daemon", item.id)?;
        return Ok(());
    }
    let summary = result?;
    if ctx.json {
        ctx.print_json(out, &summary)?;
    } else {
        writeln!(out, "{}: {}", summary.issue_ref, summary.outcome.describe())?;
        writeln!(out, "session  {}", summary.session_id)?;
        writeln!(out, "worktree {}", summary.worktree_path.display())?;
        writeln!(out, "log      {}", summary.log_path.display())?;
        let usage = summary.usage.unwrap_or_default();
        writeln!(out, "usage    {}", usage.describe())?;
    }
    if let RunOutcome::OverBudget { .. } = &summary.outcome {
        crate::notifications::record_costed(
            ctx,
            kugetsu_core::notify::NotificationType::Other(OVER_BUDGET.into()),
            &format!("{}: {}", summary.issue_ref, summary.outcome.describe()),
            Some(&summary.issue_ref),
            summary.usage.and_then(|u| u.cost_usd),
        );
    }
    match summary.outcome {
        RunOutcome::Completed => Ok(()),
        // `main` turns this into 128 + the signal that stopped the run.
        RunOutcome::Interrupted { .. } => Err(CliError::silent(exit::INTERRUPTED)),
        // Not failed: the provider refused; the turn runs again once its pause ends.
        RunOutcome::RateLimited(_) => Err(CliError::silent(exit::BUSY)),
        _ => Err(CliError::silent(exit::AGENT)),
    }
}
