//! `kugetsu destroy <ref> | --pm-agent | --base [-y]`: deletes sessions and worktrees, after
//! confirmation on a terminal and only with `-y` without one.

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `destroy`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["issue_ref", "pm_agent", "base"])))]
pub struct DestroyArgs {
    /// The issue whose session and worktree to delete.
    pub issue_ref: Option<String>,
    /// Delete the PM agent session.
    #[arg(long)]
    pub pm_agent: bool,
    /// Delete the base session (and the PM agent, which depends on it).
    #[arg(long)]
    pub base: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
    /// Also discard uncommitted changes and unpushed commits in the worktree.
    #[arg(long)]
    pub force: bool,
}

/// Deletes what was asked after confirming.
pub fn cmd_destroy(ui: &mut Ui, ctx: &Ctx, args: &DestroyArgs) -> Result<(), CliError> {
    let orch = ctx.orchestrator()?;
    let (what, report) = if let Some(r) = &args.issue_ref {
        let issue = ctx.parse_issue(r)?;
        ctx.confirm(ui, args.yes, &format!("delete the session and worktree of {issue}"))?;
        (issue.to_string(), orch.destroy_issue(&issue, args.force)?)
    } else if args.base {
        ctx.confirm(ui, args.yes, "delete the base session and the PM agent session")?;
        ("base and pm-agent".to_string(), orch.destroy_base()?)
    } else {
        ctx.confirm(ui, args.yes, "delete the PM agent session")?;
        (kugetsu_core::orchestrator::PM_AGENT.to_string(), orch.destroy_pm()?)
    };
    let out = ui.stdout();
    if ctx.json {
        return ctx.print_json(out, &serde_json::json!({ "destroyed": what, "report": report }));
    }
    for s in &report.sessions {
        writeln!(out, "deleted session {s}")?;
    }
    for w in &report.worktrees {
        writeln!(out, "removed worktree {}", w.display())?;
    }
    writeln!(out, "destroyed {what}")?;
    Ok(())
}
