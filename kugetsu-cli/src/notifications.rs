//! Recording notifications from the CLI and the daemon, with every secret from the env files
//! redacted first (agent output can echo a token back).

use kugetsu_core::StateDir;
use kugetsu_core::env_file::EnvFiles;
use kugetsu_core::notify::{NewNotification, NotificationType, Notifications};
use kugetsu_core::secrets::redact;

/// Every sensitive value in the env files, for redaction.
pub fn secrets(state: &StateDir) -> Vec<String> {
    let files = EnvFiles::new(state);
    let mut out = Vec::new();
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

/// Adds a notification (redacted). Failures are logged, not raised: a notification must never
/// make the work it reports on fail.
pub fn record_in(state: &StateDir, kind: NotificationType, message: &str, issue_ref: Option<&str>) {
    let secrets = secrets(state);
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let result = Notifications::new(state).add(
        NewNotification {
            kind,
            message: redact(message, &refs),
            issue_ref: issue_ref.map(str::to_string),
        },
        time::OffsetDateTime::now_utc(),
    );
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot record a notification");
    }
}

/// [`record_in`] for a command context.
pub fn record(
    ctx: &crate::context::Ctx,
    kind: NotificationType,
    message: &str,
    issue_ref: Option<&str>,
) {
    record_in(&ctx.state, kind, message, issue_ref);
}
