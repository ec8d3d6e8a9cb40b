//! Recording notifications from the CLI and the daemon, with every secret from the env files
//! and the shared queue's password redacted first (agent output can echo a token back).

use kugetsu_core::StateDir;
use kugetsu_core::env_file::EnvFiles;
use kugetsu_core::notify::{NewNotification, NotificationType, Notifications};
use kugetsu_core::secrets::redact;

/// Every sensitive value in the env files, and the shared queue's URL with its password (an
/// agent can read it where kugetsu keeps it for the PM agent), for redaction.
pub fn secrets(state: &StateDir, queue_url: Option<&str>) -> Vec<String> {
    let files = EnvFiles::new(state);
    let mut out = crate::launch::withheld_secrets(queue_url);
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
pub fn record_in(
    state: &StateDir,
    queue_url: Option<&str>,
    kind: NotificationType,
    message: &str,
    issue_ref: Option<&str>,
) {
    let secrets = secrets(state, queue_url);
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
    record_in(&ctx.state, queue_url(ctx).as_deref(), kind, message, issue_ref);
}

/// The configured queue's URL, for [`secrets`]; none when the config cannot be read (the
/// command reports that itself).
pub fn queue_url(ctx: &crate::context::Ctx) -> Option<String> {
    ctx.config().ok().and_then(|c| c.queue_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_password_is_masked_like_the_env_files_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        state.ensure().unwrap();
        let url = "postgres://k:Pw%2Fx%3Fy%23z%40planted9@db/q";
        let secrets = secrets(&state, Some(url));
        assert!(secrets.iter().any(|s| s == "Pw/x?y#z@planted9"), "{secrets:?}");
        record_in(
            &state,
            Some(url),
            NotificationType::TaskError,
            "the agent printed Pw/x?y#z@planted9 and Pw%2Fx%3Fy%23z%40planted9",
            None,
        );
        let text = std::fs::read_to_string(Notifications::new(&state).path()).unwrap();
        assert!(text.contains("the agent printed"), "{text}");
        assert!(!text.contains("planted9"), "{text}");
    }
}
