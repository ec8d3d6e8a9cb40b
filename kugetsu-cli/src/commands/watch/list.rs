//! `kugetsu watch list`: the watched repositories, their labels and what was taken.

use kugetsu_core::watch::Watches;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `watch list`.
#[derive(Debug, clap::Args)]
pub struct WatchListArgs {}

/// Prints the watches.
pub fn cmd_watch_list(
    ui: &mut Ui,
    ctx: &Ctx,
    watches: &Watches,
    _args: &WatchListArgs,
) -> Result<(), CliError> {
    let out = ui.stdout();
    let file = watches.load()?;
    if ctx.json {
        let v: Vec<_> = file
            .watches
            .values()
            .map(|w| {
                serde_json::json!({
                    "repo": w.repo,
                    "label": w.label,
                    "taken": w.taken.keys().collect::<Vec<_>>(),
                    "last_poll": w.last_poll.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
                    "paused_until": w.paused_until.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
                })
            })
            .collect();
        return ctx.print_json(out, &v);
    }
    if file.watches.is_empty() {
        writeln!(out, "no repositories watched")?;
    }
    for w in file.watches.values() {
        let paused = match w.paused_until {
            Some(t) => format!(", paused until {}", kugetsu_core::clock::human(t)),
            None => String::new(),
        };
        let polled = match w.last_poll {
            Some(t) => format!(", last polled {}", kugetsu_core::clock::human(t)),
            None => ", not polled yet".into(),
        };
        writeln!(
            out,
            "{}  label {:?}, {} issues taken{polled}{paused}",
            w.repo,
            w.label,
            w.taken.len()
        )?;
    }
    Ok(())
}
