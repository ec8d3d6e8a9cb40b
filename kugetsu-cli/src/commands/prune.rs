//! `kugetsu prune [--force]`: orphaned session files and worktrees, shown or removed.

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Delete the orphans (without it, only show what would be deleted).
    #[arg(long)]
    pub force: bool,
}

/// Shows or removes orphans; base.json and pm-agent.json are always kept.
pub fn cmd_prune(ui: &mut Ui, ctx: &Ctx, args: &PruneArgs) -> Result<(), CliError> {
    let out = ui.stdout();
    let orch = ctx.orchestrator()?;
    let report = orch.prune(args.force)?;
    if ctx.json {
        return ctx.print_json(out, &report);
    }
    let verb = if args.force { "removed" } else { "would remove" };
    if report.session_files.is_empty() && report.worktrees.is_empty() && report.kept.is_empty() {
        writeln!(out, "nothing to prune")?;
    }
    for p in &report.session_files {
        writeln!(out, "{verb} session file {}", p.display())?;
    }
    for p in &report.worktrees {
        writeln!(out, "{verb} worktree {}", p.display())?;
    }
    for (p, why) in &report.kept {
        writeln!(out, "kept {} ({why})", p.display())?;
    }
    for p in &report.registrations {
        writeln!(out, "dropped stale worktree registration {}", p.display())?;
    }
    let nothing = report.session_files.is_empty() && report.worktrees.is_empty();
    if !args.force && !nothing {
        writeln!(out, "run `kugetsu prune --force` to delete them")?;
    }
    Ok(())
}
