//! `kugetsu continue <issue-ref> <message>`: one more turn of the issue's session, in its
//! worktree.

use kugetsu_core::queue::RunOptions;

use crate::context::Ctx;
use crate::error::CliError;
use crate::run::RunFlags;
use crate::ui::Ui;

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
pub fn cmd_continue(ui: &mut Ui, ctx: &Ctx, args: &ContinueArgs) -> Result<(), CliError> {
    let issue = ctx.parse_issue(&args.issue_ref)?;
    let message = ui.read_message(&args.message)?;
    if args.run.detach {
        let flags = args.run.rerun_flags();
        return crate::run::detach(ctx, "continue", &issue, &message, &flags, ui.stdout());
    }
    let config = ctx.config()?;
    let orch = crate::run::orchestrator_for_run(ctx, &config, &args.run)?;
    crate::signals::stop_on_signals(&ctx.interrupt);
    let (out, err) = ui.streams();
    let mut events = crate::progress::EventPrinter::new(
        err,
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
