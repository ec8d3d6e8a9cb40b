//! `kugetsu notify test`: one test notification to every receiver of `KUGETSU_NOTIFY_URL` at
//! once, straight (not through the outbox: the answer is the point), and how each answered.

use kugetsu_core::notify::{Notification, NotificationType};
use kugetsu_core::outbox;
use kugetsu_core::secrets::webhook;
use serde_json::json;

use crate::context::Ctx;
use crate::delivery::{Posted, Sender};
use crate::error::{CliError, exit};
use crate::ui::Ui;

/// Arguments of `notify test`.
#[derive(Debug, clap::Args)]
pub struct NotifyTestArgs {}

/// Posts, then prints one line per receiver (its URL masked); fails if any did not take it.
pub fn cmd_notify_test(ui: &mut Ui, ctx: &Ctx, _args: &NotifyTestArgs) -> Result<(), CliError> {
    let config = ctx.config()?;
    if config.notify_urls.is_empty() {
        return Err(CliError::new(
            exit::FAILURE,
            format!("{} is not set: there is nowhere to send a notification", kugetsu_core::config::KUGETSU_NOTIFY_URL),
        )
        .with_hint("set it in the config file or the environment: one or more http(s) URLs, separated by commas"));
    }
    let now = time::OffsetDateTime::now_utc();
    let note = Notification {
        id: format!("n_{}", now.unix_timestamp_nanos()),
        timestamp: now,
        kind: NotificationType::Other("test".into()),
        message: "a test notification from `kugetsu notify test`".into(),
        issue_ref: None,
        read: false,
        extra: serde_json::Map::new(),
    };
    let event = outbox::webhook_event(&note, false)
        .unwrap_or(outbox::WebhookEvent { event: "test".into(), outcome: None });
    let secrets = crate::notifications::secrets(&ctx.state, Some(&config));
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let body = crate::notifications::redact_body(
        outbox::payload(&note, &event, &crate::notifications::machine()),
        &refs,
    );
    let sender = Sender::new();
    // At once: one receiver that does not answer must not hold up the others' answers.
    let results: Vec<Posted> = std::thread::scope(|scope| {
        let posts: Vec<_> =
            config.notify_urls.iter().map(|url| scope.spawn(|| sender.post(url, &body))).collect();
        posts
            .into_iter()
            .map(|p| p.join().unwrap_or_else(|_| Err("the sender panicked".into())))
            .collect()
    });
    let failed = results.iter().filter(|r| r.is_err()).count();
    let out = ui.stdout();
    if ctx.json {
        let rows: Vec<_> = config
            .notify_urls
            .iter()
            .zip(&results)
            .map(|(url, r)| match r {
                Ok(status) => json!({"url": webhook::redact(url), "ok": true, "status": status}),
                Err(f) => json!({"url": webhook::redact(url), "ok": false, "error": f.why}),
            })
            .collect();
        ctx.print_json(out, &rows)?;
    } else {
        for (url, r) in config.notify_urls.iter().zip(&results) {
            match r {
                Ok(status) => writeln!(out, "{}: ok (HTTP {status})", webhook::redact(url))?,
                Err(f) => writeln!(out, "{}: failed: {}", webhook::redact(url), f.why)?,
            }
        }
    }
    if failed > 0 {
        return Err(CliError::new(
            exit::FAILURE,
            format!("{failed} of {} receivers did not take the test notification", results.len()),
        ));
    }
    Ok(())
}
