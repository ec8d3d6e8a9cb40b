//! `kugetsu status`: the spec's four words, from the state files alone.

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {}

fn turns(t: &kugetsu_core::usage::UsageTotals) -> String {
    match t.turns {
        1 => "1 turn".into(),
        n => format!("{n} turns"),
    }
}

/// Prints `ok`, `kugetsu_not_initialized`, `base_session_missing` or `pm_agent_missing`, then
/// (once a turn ran this month) what today's and this month's turns cost. Exits 0 for `ok` and
/// 3 otherwise, so scripts can test it.
pub fn cmd_status(ui: &mut Ui, ctx: &Ctx, _args: &StatusArgs) -> Result<(), CliError> {
    let out = ui.stdout();
    let view = crate::reads::status(ctx)?;
    if ctx.json {
        ctx.print_json(out, &view)?;
    } else {
        writeln!(out, "{}", view.status.as_str())?;
        // The word stays alone on the first line, for scripts; what was spent follows.
        if let (Some(today), Some(month)) = (&view.today, &view.this_month) {
            let budget = view
                .daily_budget_usd
                .map(|b| format!(" of a daily budget of {b}"))
                .unwrap_or_default();
            writeln!(out, "spent today (UTC): {}{budget} in {}", today.cost_text(), turns(today))?;
            writeln!(out, "spent this month:  {} in {}", month.cost_text(), turns(month))?;
        }
        for line in &view.paused {
            writeln!(out, "{line}")?;
        }
    }
    if view.status == kugetsu_core::orchestrator::Status::Ok {
        Ok(())
    } else {
        Err(CliError::silent(crate::error::exit::STATE))
    }
}
