//! Recording notifications from the CLI and the daemon, with every secret from the env files,
//! the shared queue's password and the webhooks' tokens redacted first (agent output can echo
//! a token back); the ones that need a person go to the webhook outbox too.

use std::sync::atomic::{AtomicBool, Ordering};

use kugetsu_core::StateDir;
use kugetsu_core::config::Config;
use kugetsu_core::env_file::EnvFiles;
use kugetsu_core::notify::{NewNotification, NotificationType, Notifications};
use kugetsu_core::outbox::{self, Outbox};
use kugetsu_core::secrets::{redact, webhook};
use kugetsu_core::usage::Usd;

/// Set once this foreground command has added to the outbox (see [`after_command`]).
static OUTBOX_ADDED: AtomicBool = AtomicBool::new(false);

/// Every sensitive value in the env files, the shared queue's URL with its password (an agent
/// can read it where kugetsu keeps it for the PM agent) and the webhooks' URLs with their
/// tokens, for redaction.
pub fn secrets(state: &StateDir, config: Option<&Config>) -> Vec<String> {
    let files = EnvFiles::new(state);
    let mut out = crate::launch::withheld_secrets(config.and_then(|c| c.queue_url.as_deref()));
    for url in config.map(|c| c.notify_urls.as_slice()).unwrap_or_default() {
        out.extend(webhook::secret_parts(url));
    }
    if let Ok(list) = files.list() {
        for summary in list {
            if let Ok(env) = files.merged(&summary.agent) {
                out.extend(env.secret_values());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// This machine's name, as a posted notification tells it.
pub fn machine() -> String {
    kugetsu_process::host::machine_name().unwrap_or_else(|| "localhost".into())
}

/// Adds a notification (redacted), and when it needs a person and `KUGETSU_NOTIFY_URL` is set,
/// its webhook body to the outbox; returns whether it did the latter. Failures are logged, not
/// raised: a notification must never make the work it reports on fail.
pub fn record_in(
    state: &StateDir,
    config: Option<&Config>,
    kind: NotificationType,
    message: &str,
    issue_ref: Option<&str>,
) -> bool {
    record_costed_in(state, config, kind, message, issue_ref, None)
}

/// [`record_in`] of the end of a turn that cost `cost` (kept with the notification and posted
/// as its `cost_usd`; `None`: unknown).
pub fn record_costed_in(
    state: &StateDir,
    config: Option<&Config>,
    kind: NotificationType,
    message: &str,
    issue_ref: Option<&str>,
    cost: Option<Usd>,
) -> bool {
    let secrets = secrets(state, config);
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let mut extra = serde_json::Map::new();
    if let Some(cost) = cost {
        extra.insert("cost_usd".into(), serde_json::json!(cost.get()));
    }
    let result = Notifications::new(state).add_with(
        NewNotification {
            kind,
            message: redact(message, &refs),
            issue_ref: issue_ref.map(str::to_string),
        },
        extra,
        time::OffsetDateTime::now_utc(),
    );
    let note = match result {
        Ok(note) => note,
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a notification");
            return false;
        }
    };
    let Some(config) = config.filter(|c| !c.notify_urls.is_empty()) else { return false };
    let Some(event) = outbox::webhook_event(&note, config.notify_completed) else { return false };
    let body = redact_body(outbox::payload(&note, &event, &machine()), &refs);
    match Outbox::new(state).add(&note.id, body, &config.notify_urls, note.timestamp) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot add a notification to the outbox");
            false
        }
    }
}

/// `body` with every string in it redacted: what is posted leaves the machine.
pub fn redact_body(body: serde_json::Value, secrets: &[&str]) -> serde_json::Value {
    match body {
        serde_json::Value::String(s) => serde_json::Value::String(redact(&s, secrets)),
        serde_json::Value::Object(map) => {
            map.into_iter().map(|(k, v)| (k, redact_body(v, secrets))).collect()
        }
        serde_json::Value::Array(list) => {
            list.into_iter().map(|v| redact_body(v, secrets)).collect()
        }
        other => other,
    }
}

/// [`record_in`] for a foreground command, which [`after_command`] then leaves a sender for.
/// (The daemon calls [`record_in`]: its own thread posts.)
pub fn record(
    ctx: &crate::context::Ctx,
    kind: NotificationType,
    message: &str,
    issue_ref: Option<&str>,
) {
    record_costed(ctx, kind, message, issue_ref, None);
}

/// [`record`] with what the turn it tells of cost.
pub fn record_costed(
    ctx: &crate::context::Ctx,
    kind: NotificationType,
    message: &str,
    issue_ref: Option<&str>,
    cost: Option<Usd>,
) {
    let config = ctx.config().ok();
    if record_costed_in(&ctx.state, config.as_ref(), kind, message, issue_ref, cost) {
        OUTBOX_ADDED.store(true, Ordering::Relaxed);
    }
}

/// Says that this command added to the outbox by other means (a report on a watched issue),
/// so that [`after_command`] leaves a sender for it too.
pub fn outbox_added() {
    OUTBOX_ADDED.store(true, Ordering::Relaxed);
}

/// [`record_in`], and when this is a foreground command, a sender left for it at its end (as
/// [`record`] does); for callers that hold the state directory, not the context.
pub fn record_in_command(
    state: &StateDir,
    config: Option<&Config>,
    kind: NotificationType,
    message: &str,
    issue_ref: Option<&str>,
) {
    if record_in(state, config, kind, message, issue_ref) {
        OUTBOX_ADDED.store(true, Ordering::Relaxed);
    }
}

/// At the end of a command: when it added to the outbox, leaves a sender to post it (the
/// command never waits for a receiver).
pub fn after_command(ctx: &crate::context::Ctx) {
    if OUTBOX_ADDED.swap(false, Ordering::Relaxed) {
        crate::delivery::flush_in_background(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_password_and_webhook_tokens_are_masked_like_the_env_files_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        state.ensure().unwrap();
        let url = "postgres://k:Pw%2Fx%3Fy%23z%40planted9@db/q";
        let mut config = Config::defaults(dir.path());
        config.queue_url = Some(url.into());
        config.notify_urls = vec!["https://hooks.example/services/T0/B0/hooktoken7".into()];
        let secrets = secrets(&state, Some(&config));
        assert!(secrets.iter().any(|s| s == "Pw/x?y#z@planted9"), "{secrets:?}");
        assert!(record_in(
            &state,
            Some(&config),
            NotificationType::TaskError,
            "the agent printed Pw/x?y#z@planted9 and Pw%2Fx%3Fy%23z%40planted9 and hooktoken7",
            None,
        ));
        let text = std::fs::read_to_string(Notifications::new(&state).path()).unwrap();
        assert!(text.contains("the agent printed"), "{text}");
        assert!(!text.contains("planted9") && !text.contains("hooktoken7"), "{text}");
        let entries = Outbox::new(&state).list().unwrap();
        let body = entries[0].payload.to_string();
        assert!(body.contains("the agent printed"), "{body}");
        assert!(!body.contains("planted9") && !body.contains("hooktoken7"), "{body}");
        // Started tasks need nobody.
        assert!(!record_in(&state, Some(&config), NotificationType::TaskStarted, "s", None));
        assert_eq!(Outbox::new(&state).list().unwrap().len(), 1);
    }
}
