//! `kugetsu notify outbox`: the deliveries (webhooks and issue reports), newest last, masked.

use kugetsu_core::outbox::{DeliveryState, Outbox};
use serde_json::json;

use crate::context::{Ctx, human_time};
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `notify outbox`.
#[derive(Debug, clap::Args)]
pub struct NotifyOutboxArgs {}

/// One line per delivery: when the notification was added, its id and event, the receiver,
/// and where the delivery stands.
pub fn cmd_notify_outbox(ui: &mut Ui, ctx: &Ctx, _args: &NotifyOutboxArgs) -> Result<(), CliError> {
    let entries = Outbox::new(&ctx.state).list()?;
    let out = ui.stdout();
    if ctx.json {
        let rows: Vec<_> = entries
            .iter()
            .map(|e| {
                let deliveries: Vec<_> = e
                    .deliveries
                    .iter()
                    .map(|d| {
                        json!({
                            "url": crate::delivery::shown(&d.url),
                            "state": d.state.as_str(),
                            "attempts": d.attempts,
                            "next_try": (d.state == DeliveryState::Pending).then(|| d.next_try.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()),
                            "last_error": d.last_error,
                        })
                    })
                    .collect();
                json!({
                    "id": e.id,
                    "added": e.added.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                    "event": e.payload.get("event"),
                    "outcome": e.payload.get("outcome"),
                    "text": e.payload.get("text"),
                    "deliveries": deliveries,
                })
            })
            .collect();
        return ctx.print_json(out, &rows);
    }
    if entries.is_empty() {
        writeln!(out, "the outbox is empty")?;
    }
    for e in &entries {
        let what = e
            .payload
            .get("outcome")
            .and_then(|v| v.as_str())
            .or_else(|| e.payload.get("event").and_then(|v| v.as_str()))
            .unwrap_or("-");
        for d in &e.deliveries {
            let state = match d.state {
                DeliveryState::Pending => {
                    format!("pending, try {} at {}", d.attempts + 1, human_time(d.next_try))
                }
                DeliveryState::Delivered => format!("delivered after {} attempt(s)", d.attempts),
                DeliveryState::Failed => format!("FAILED after {} attempts", d.attempts),
            };
            let error =
                d.last_error.as_deref().map(|e| format!(" (last: {e})")).unwrap_or_default();
            writeln!(
                out,
                "{}  {}  {what:<10} {}  {state}{error}",
                human_time(e.added),
                e.id,
                crate::delivery::shown(&d.url)
            )?;
        }
    }
    Ok(())
}
