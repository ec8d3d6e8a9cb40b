//! `kugetsu list`: every tracked session, as the spec's table (with what each cost, as the
//! agent reported it) or as JSON.

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {}

/// Prints the session table.
pub fn cmd_list(ui: &mut Ui, ctx: &Ctx, _args: &ListArgs) -> Result<(), CliError> {
    let out = ui.stdout();
    let config = ctx.config()?;
    let entries = crate::reads::sessions(ctx)?;
    if ctx.json {
        return ctx.print_json(out, &entries);
    }
    // Only a session of another driver says whose it is: the rest are the configured one's.
    let state = |e: &kugetsu_core::orchestrator::ListEntry| {
        let state = e.state.as_ref().map_or_else(|| "?".into(), ToString::to_string);
        match &e.agent {
            Some(agent) if *agent != config.agent => format!("{state} ({agent})"),
            _ => state,
        }
    };
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            [
                e.issue_ref.clone(),
                e.kind.as_str().to_string(),
                if e.session_id.is_empty() { "-".into() } else { e.session_id.clone() },
                state(e),
                e.cost_text(),
                match (&e.worktree, &e.problem) {
                    (_, Some(p)) => format!("({p})"),
                    (Some(w), None) => w.display().to_string(),
                    (None, None) => "N/A".into(),
                },
            ]
        })
        .collect();
    let header = ["ISSUE_REF", "TYPE", "SESSION_ID", "STATE", "COST", "WORKTREE"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s
    };
    writeln!(out, "{}", line(header))?;
    let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    writeln!(out, "{}", "─".repeat(total.min(120)))?;
    for r in &rows {
        writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]))?;
    }
    if let Some(host) = crate::queue_backend::shared_host(ctx)? {
        writeln!(
            out,
            "(sessions of host {host}; `kugetsu queue hosts` shows every host's issues)"
        )?;
    }
    Ok(())
}
