//! `kugetsu start <issue-ref> <message>`: a fresh worktree and a forked session for the issue,
//! then the first agent turn, shown as it happens (or in the background with `--detach`).

use std::ffi::OsString;
use std::io::Write;

use kugetsu_core::RunOutcome;
use kugetsu_core::orchestrator::{RunSummary, StartOptions};
use kugetsu_core::queue::RunOptions;

use crate::context::Ctx;
use crate::error::{CliError, exit};

/// Arguments of `start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// The issue: instance/owner/repo#id, an issue URL, or #id with KUGETSU_DEFAULT_REPO.
    pub issue_ref: String,
    /// The first message to the agent (`-` reads it from stdin).
    pub message: String,
    /// Branch from this ref instead of the remote's default branch.
    #[arg(long, value_name = "REF")]
    pub base_ref: Option<String>,
    /// Recreate the worktree even if it holds uncommitted files or unpushed commits.
    #[arg(long)]
    pub force: bool,
    /// How to run the agent.
    #[command(flatten)]
    pub run: RunFlags,
}

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

impl StartArgs {
    /// The options that change what the run does, for the daemon when the run is queued.
    pub fn queued_options(&self) -> RunOptions {
        RunOptions { start: true, force: self.force, base_ref: self.base_ref.clone() }
    }

    /// The options that change what the run does, as command-line flags again: what a detached
    /// re-run is given, so it does what this run would have done.
    pub fn rerun_flags(&self) -> Vec<OsString> {
        let mut flags = self.run.rerun_flags();
        if self.force {
            flags.push("--force".into());
        }
        if let Some(base) = &self.base_ref {
            flags.push(format!("--base-ref={base}").into());
        }
        flags
    }
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

/// Starts the issue.
pub fn cmd_start(ctx: &Ctx, args: &StartArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let issue = ctx.parse_issue(&args.issue_ref)?;
    let message = crate::commands::read_message(&args.message)?;
    if args.run.detach {
        return crate::wiring::detach(ctx, "start", &issue, &message, &args.rerun_flags(), out);
    }
    let config = ctx.config()?;
    let source = crate::wiring::repo_source(ctx, &issue)?;
    let orch = crate::wiring::orchestrator_for_run(ctx, &config, &args.run)?;
    crate::signals::stop_on_signals(&ctx.interrupt);
    let mut bars = crate::progress::Bars::new(ctx.stderr_tty && !ctx.json);
    let mut events = crate::progress::EventPrinter::new(
        std::io::stderr(),
        config.verbosity == kugetsu_core::config::Verbosity::Quiet,
    );
    let opts = StartOptions {
        issue: issue.clone(),
        message: message.clone(),
        source,
        base_ref: args.base_ref.clone(),
        force: args.force,
    };
    // Announce only what will happen: an uninitialized state fails at once, silently here.
    let ready = orch.status()? == kugetsu_core::orchestrator::Status::Ok;
    if ready && !ctx.json {
        writeln!(
            std::io::stderr(),
            "starting {issue} in {}",
            ctx.state.worktree_path(&issue).display()
        )?;
    }
    let result = orch.start(&opts, &mut bars, ctx.interrupt.flag(), &mut events);
    finish(ctx, &issue.to_string(), &message, result, &args.run, args.queued_options(), out)
}

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
    let summary = match result {
        Ok(s) => s,
        Err(kugetsu_core::orchestrator::OrchestratorError::Queue(
            kugetsu_core::queue::QueueError::NoSlot { limit, .. },
        )) if flags.no_wait => {
            let item = crate::wiring::enqueue(ctx, message, Some(issue.to_string()), queued)?;
            if ctx.json {
                return ctx.print_json(
                    out,
                    &serde_json::json!({ "queued": item.id, "issue_ref": issue }),
                );
            }
            writeln!(
                out,
                "all {limit} agent slots are busy; queued as {} for the daemon",
                item.id
            )?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if ctx.json {
        ctx.print_json(out, &summary)?;
    } else {
        writeln!(out, "{}: {}", summary.issue_ref, summary.outcome.describe())?;
        writeln!(out, "session  {}", summary.session_id)?;
        writeln!(out, "worktree {}", summary.worktree_path.display())?;
        writeln!(out, "log      {}", summary.log_path.display())?;
    }
    match summary.outcome {
        RunOutcome::Completed => Ok(()),
        // `main` turns this into 128 + the signal that stopped the run.
        RunOutcome::Interrupted { .. } => Err(CliError::silent(exit::INTERRUPTED)),
        _ => Err(CliError::silent(exit::AGENT)),
    }
}
