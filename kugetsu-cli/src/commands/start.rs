//! `kugetsu start <issue-ref> <message>`: a fresh worktree and a forked session for the issue,
//! then the first agent turn, shown as it happens (or in the background with `--detach`).

use std::ffi::OsString;

use kugetsu_core::orchestrator::StartOptions;
use kugetsu_core::queue::RunOptions;

use crate::context::Ctx;
use crate::error::CliError;
use crate::run::{RunFlags, finish};
use crate::ui::Ui;

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

/// Starts the issue.
pub fn cmd_start(ui: &mut Ui, ctx: &Ctx, args: &StartArgs) -> Result<(), CliError> {
    let issue = ctx.parse_issue(&args.issue_ref)?;
    let message = ui.read_message(&args.message)?;
    if args.run.detach {
        let flags = args.rerun_flags();
        return crate::run::detach(ctx, "start", &issue, &message, &flags, ui.stdout());
    }
    let config = ctx.config()?;
    // With a shared queue the issue's session will live on this host: record that, or refuse
    // when another host keeps the issue.
    crate::queue_backend::hold_issue(ctx, &config, &issue.to_string())?;
    let source = crate::wiring::repo_source(ctx, &issue)?;
    let orch = crate::run::orchestrator_for_run(ctx, &config, &args.run)?;
    crate::signals::stop_on_signals(&ctx.interrupt);
    let mut bars = crate::progress::Bars::new(ctx.stderr_tty && !ctx.json);
    let opts = StartOptions {
        issue: issue.clone(),
        message: message.clone(),
        source,
        base_ref: args.base_ref.clone(),
        force: args.force,
    };
    let (out, err) = ui.streams();
    // Announce only what will happen: an uninitialized state fails at once, silently here.
    let ready = orch.status()? == kugetsu_core::orchestrator::Status::Ok;
    if ready && !ctx.json {
        writeln!(err, "starting {issue} in {}", ctx.state.worktree_path(&issue).display())?;
    }
    let mut events = crate::progress::EventPrinter::new(
        err,
        config.verbosity == kugetsu_core::config::Verbosity::Quiet,
    );
    let result = orch.start(&opts, &mut bars, ctx.interrupt.flag(), &mut events);
    // After the turn, not before: starting the warm agent takes a core for a second or two.
    crate::commands::warm_agent::spawn_after_start(ctx, &config);
    finish(ctx, &issue.to_string(), &message, result, &args.run, args.queued_options(), out)
}
