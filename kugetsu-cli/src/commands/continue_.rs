//! `kugetsu continue <issue-ref> <message>`: one more turn of the issue's session, in its
//! worktree.

use std::io::Write;

use kugetsu_core::queue::RunOptions;

use crate::context::Ctx;
use crate::error::CliError;
use crate::run::RunFlags;

/// Arguments of `continue`.
#[derive(Debug, clap::Args)]
pub struct ContinueArgs {
    /// The issue whose session gets the message (full ref, URL or `#14`).
    pub issue_ref: String,
    /// The message to the agent (`-` reads it from stdin).
    pub message: String,
    /// How to run the agent.
    #[command(flatten)]
    pub run: RunFlags,
}

/// Continues the issue's session.
pub fn cmd_continue(ctx: &Ctx, args: &ContinueArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let issue = ctx.parse_issue(&args.issue_ref)?;
    let message = crate::commands::read_message(&args.message)?;
    if args.run.detach {
        return crate::run::detach(ctx, "continue", &issue, &message, &args.run.rerun_flags(), out);
    }
    let config = ctx.config()?;
    let orch = crate::run::orchestrator_for_run(ctx, &config, &args.run)?;
    crate::signals::stop_on_signals(&ctx.interrupt);
    let mut events = crate::progress::EventPrinter::new(
        std::io::stderr(),
        config.verbosity == kugetsu_core::config::Verbosity::Quiet,
    );
    let result = orch.continue_issue(&issue, &message, &mut events);
    crate::run::finish(
        ctx,
        &issue.to_string(),
        &message,
        result,
        &args.run,
        RunOptions::default(),
        out,
    )
}
