//! The webhook outbox (`outbox.json`): notifications waiting to be POSTed to the receivers of
//! `KUGETSU_NOTIFY_URL`, each receiver's delivery with its attempts and the time of its next
//! try. Adding one is a file write (core does no network); a sender in the CLI (the queue
//! daemon's thread, `kugetsu notify flush`) takes what is due, posts it and records how that
//! went here, so retries survive a restart.
//!
//! Which notifications are posted is [`webhook_event`]'s choice, what is posted
//! [`payload`]'s. A failed delivery is tried again after [`Backoff::delay`] (doubling, capped),
//! until [`Backoff::give_up_after`] has passed since the notification was added; then it is
//! marked failed. The receivers' URLs are secrets: they are kept here (the file is `0600`, as
//! every state file) so that a notification added by one process is delivered by another to
//! the receivers configured when it happened, and never shown unmasked.
//!
//! The same outbox carries the reports on watched issues ([`crate::report`]): their target is
//! `forge:<issue ref>` instead of a URL, and a newer report replaces one still pending
//! ([`Outbox::replace`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::notify::{Notification, NotificationType};
use crate::state::StateDir;
use crate::storage::{self, StorageError};

/// Past this many finished entries (every delivery delivered or failed), the oldest go.
pub const KEEP_FINISHED: usize = 200;
/// Past this many entries, the oldest go even if still pending.
pub const MAX_ENTRIES: usize = 2000;
/// Longest `text` posted, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// Where one receiver's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet; tried again at `next_try`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up after [`Backoff::give_up_after`].
    Failed,
}

impl DeliveryState {
    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

/// One receiver's delivery of an entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The receiver (a secret: show it with [`crate::secrets::webhook::redact`]).
    pub url: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Tries so far.
    pub attempts: u32,
    /// When it is due (again), while pending.
    #[serde(with = "time::serde::rfc3339")]
    pub next_try: OffsetDateTime,
    /// What the last failed try got (a status or an error, secrets masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it was delivered or given up.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub finished: Option<OffsetDateTime>,
}

/// One notification to post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The notification's id.
    pub id: String,
    /// When it was added.
    #[serde(with = "time::serde::rfc3339")]
    pub added: OffsetDateTime,
    /// The JSON body posted ([`payload`]).
    pub payload: Value,
    /// One per receiver.
    pub deliveries: Vec<Delivery>,
}

impl OutboxEntry {
    fn finished(&self) -> bool {
        self.deliveries.iter().all(|d| d.state != DeliveryState::Pending)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OutboxFile {
    #[serde(default)]
    entries: Vec<OutboxEntry>,
}

/// When a failed delivery is tried again, and when it is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure; each further failure doubles it.
    pub first: Duration,
    /// The longest wait.
    pub cap: Duration,
    /// How long after the notification was added its deliveries are still tried.
    pub give_up_after: Duration,
}

impl Default for Backoff {
    /// 3 s, doubling to at most 10 minutes, for 24 hours: a receiver restarting is caught
    /// quickly, one down for the night still gets the night's news in the morning.
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(3),
            cap: Duration::from_secs(600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl Backoff {
    /// The wait after the `attempts`-th failed try (1 for the first).
    pub fn delay(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
        self.first.saturating_mul(factor).min(self.cap)
    }
}

/// A failed try: why (secrets already masked), and how long the receiver asked to be left
/// alone (an HTTP `Retry-After`), if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What the try got: a status or an error.
    pub why: String,
    /// The receiver's `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl From<String> for Failure {
    fn from(why: String) -> Self {
        Failure { why, retry_after: None }
    }
}

impl From<&str> for Failure {
    fn from(why: &str) -> Self {
        why.to_string().into()
    }
}

/// A delivery that is due: what the sender posts, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// The entry's id.
    pub id: String,
    /// The receiver.
    pub url: String,
    /// The body.
    pub payload: Value,
    /// Tries before this one.
    pub attempts: u32,
}

/// What became of a try, as [`Outbox::record`] wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Delivered.
    Delivered,
    /// Failed; tried again at this time.
    Retry(OffsetDateTime),
    /// Failed, and too long after the notification: marked failed.
    GaveUp,
    /// The entry or delivery is gone (trimmed, or recorded by another sender).
    Gone,
}

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The file could not be read or written (a corrupt file is kept aside, never replaced).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The outbox of a state directory.
#[derive(Debug, Clone)]
pub struct Outbox {
    path: PathBuf,
    lock: PathBuf,
    sender_lock: PathBuf,
}

impl Outbox {
    /// The outbox of `state`.
    pub fn new(state: &StateDir) -> Self {
        Outbox {
            path: state.outbox_path(),
            lock: state.lock_path("outbox"),
            sender_lock: state.lock_path("outbox-sender"),
        }
    }

    /// `outbox.json`.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The lock a sender holds while it posts, so that two processes never post the same
    /// delivery twice (take it with [`storage::try_with_exclusive_lock`]).
    pub fn sender_lock_path(&self) -> &std::path::Path {
        &self.sender_lock
    }

    fn update<R>(&self, f: impl FnOnce(&mut OutboxFile) -> R) -> Result<R, OutboxError> {
        storage::update_json(&self.path, &self.lock, OutboxFile::default, |file| {
            Ok::<_, OutboxError>(f(file))
        })
    }

    fn read(&self) -> Result<OutboxFile, OutboxError> {
        Ok(storage::read_json(&self.path)?.unwrap_or_default())
    }

    /// Adds `payload` for each of `urls` (duplicates once), due at once. Nothing when `urls`
    /// is empty.
    pub fn add(
        &self,
        id: &str,
        payload: Value,
        urls: &[String],
        now: OffsetDateTime,
    ) -> Result<(), OutboxError> {
        let mut deliveries: Vec<Delivery> = Vec::new();
        for url in urls {
            if !deliveries.iter().any(|d| &d.url == url) {
                deliveries.push(Delivery {
                    url: url.clone(),
                    state: DeliveryState::Pending,
                    attempts: 0,
                    next_try: now,
                    last_error: None,
                    finished: None,
                });
            }
        }
        if deliveries.is_empty() {
            return Ok(());
        }
        self.update(|file| {
            file.entries.push(OutboxEntry { id: id.to_string(), added: now, payload, deliveries });
            trim(&mut file.entries);
        })
    }

    /// Adds `payload` for the one target `url`, due at once, in place of every delivery to
    /// `url` still pending: for a target that wants the latest state, not each step (a
    /// watched issue's report, [`crate::report`]).
    pub fn replace(
        &self,
        id: &str,
        payload: Value,
        url: &str,
        now: OffsetDateTime,
    ) -> Result<(), OutboxError> {
        self.update(|file| {
            for e in &mut file.entries {
                e.deliveries.retain(|d| !(d.url == url && d.state == DeliveryState::Pending));
            }
            file.entries.retain(|e| !e.deliveries.is_empty());
            let delivery = Delivery {
                url: url.to_string(),
                state: DeliveryState::Pending,
                attempts: 0,
                next_try: now,
                last_error: None,
                finished: None,
            };
            file.entries.push(OutboxEntry {
                id: id.to_string(),
                added: now,
                payload,
                deliveries: vec![delivery],
            });
            trim(&mut file.entries);
        })
    }

    /// The pending deliveries due at `now`, oldest entry first.
    pub fn due(&self, now: OffsetDateTime) -> Result<Vec<Due>, OutboxError> {
        let file = self.read()?;
        let mut out = Vec::new();
        for e in &file.entries {
            for d in &e.deliveries {
                if d.state == DeliveryState::Pending && d.next_try <= now {
                    out.push(Due {
                        id: e.id.clone(),
                        url: d.url.clone(),
                        payload: e.payload.clone(),
                        attempts: d.attempts,
                    });
                }
            }
        }
        Ok(out)
    }

    /// When the next pending delivery is due, if any is pending.
    pub fn next_try(&self) -> Result<Option<OffsetDateTime>, OutboxError> {
        let file = self.read()?;
        Ok(file
            .entries
            .iter()
            .flat_map(|e| &e.deliveries)
            .filter(|d| d.state == DeliveryState::Pending)
            .map(|d| d.next_try)
            .min())
    }

    /// Records a try of `due` at `now`: `Ok(())` delivered, `Err(failure)` failed. The next
    /// try waits the backoff, or the receiver's `Retry-After` when that is longer (at most the
    /// backoff's cap).
    pub fn record(
        &self,
        due: &Due,
        result: Result<(), Failure>,
        now: OffsetDateTime,
        backoff: &Backoff,
    ) -> Result<Recorded, OutboxError> {
        self.update(|file| {
            let Some(entry) = file.entries.iter_mut().find(|e| e.id == due.id) else {
                return Recorded::Gone;
            };
            let added = entry.added;
            let Some(d) = entry
                .deliveries
                .iter_mut()
                .find(|d| d.url == due.url && d.state == DeliveryState::Pending)
            else {
                return Recorded::Gone;
            };
            d.attempts = d.attempts.saturating_add(1);
            match result {
                Ok(()) => {
                    d.state = DeliveryState::Delivered;
                    d.last_error = None;
                    d.finished = Some(now);
                    Recorded::Delivered
                }
                Err(Failure { why, retry_after }) => {
                    d.last_error = Some(why);
                    let asked = retry_after.unwrap_or_default().min(backoff.cap);
                    let at = now + backoff.delay(d.attempts).max(asked);
                    if at > added + backoff.give_up_after {
                        d.state = DeliveryState::Failed;
                        d.finished = Some(now);
                        Recorded::GaveUp
                    } else {
                        d.next_try = at;
                        Recorded::Retry(at)
                    }
                }
            }
        })
    }

    /// Every entry, oldest first.
    pub fn list(&self) -> Result<Vec<OutboxEntry>, OutboxError> {
        Ok(self.read()?.entries)
    }
}

/// Drops the oldest finished entries past [`KEEP_FINISHED`], then the oldest of any kind past
/// [`MAX_ENTRIES`]. Entries are in the order they were added.
fn trim(entries: &mut Vec<OutboxEntry>) {
    let finished = entries.iter().filter(|e| e.finished()).count();
    let mut excess = finished.saturating_sub(KEEP_FINISHED);
    if excess > 0 {
        entries.retain(|e| {
            if excess > 0 && e.finished() {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }
    let over = entries.len().saturating_sub(MAX_ENTRIES);
    if over > 0 {
        entries.drain(..over);
    }
}

/// What a posted notification is about: its `event` (the notification's type) and, for a
/// task's end, the run's `outcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// `task_error`, `task_completed`, ... (the notification's type).
    pub event: String,
    /// `blocked`, `hung`, `timed_out`, `interrupted`, `failed`, `completed`, or none.
    pub outcome: Option<&'static str>,
}

/// Types posted besides `task_error` (and `task_completed` when asked): the ones that need a
/// person, as later versions add them.
const NEEDS_A_PERSON: &[&str] =
    &["over_budget", "paused", "resumed", "test", "loop_limit", "cleanup_kept"];

/// Whether `n` is posted (`completed`: `KUGETSU_NOTIFY_COMPLETED`), and as what. Queued,
/// dequeued and started tasks are not: they need nobody.
pub fn webhook_event(n: &Notification, completed: bool) -> Option<WebhookEvent> {
    let event = n.kind.as_str().to_string();
    let outcome = match &n.kind {
        NotificationType::TaskError => Some(outcome_of(&n.message)),
        NotificationType::TaskCompleted if completed => Some("completed"),
        NotificationType::Other(kind) if NEEDS_A_PERSON.contains(&kind.as_str()) => None,
        _ => return None,
    };
    Some(WebhookEvent { event, outcome })
}

/// A failed task's outcome, from its message: the daemon words a run's end as
/// `<what>: <outcome described>` (see [`crate::RunOutcome::describe`]); the first of those
/// words in the message is the one. Anything else failed.
fn outcome_of(message: &str) -> &'static str {
    const MARKS: &[(&str, &str)] = &[
        (": blocked: ", "blocked"),
        (": hung: ", "hung"),
        (": timed out after ", "timed_out"),
        (": stopped by ", "interrupted"),
        (": over budget: ", "over_budget"),
        (": interrupted by ", "interrupted"),
        (": failed: ", "failed"),
    ];
    MARKS
        .iter()
        .filter_map(|(mark, word)| message.find(mark).map(|at| (at, *word)))
        .min_by_key(|(at, _)| *at)
        .map_or("failed", |(_, word)| word)
}

/// The JSON posted for `n`: `text` (one line for people, which Slack, Mattermost and ntfy-style
/// receivers show) and the fields a program reads: `event`, `outcome`, `issue_ref`, `message`,
/// `cost_usd` (what the turn it tells of cost, from the notification's `cost_usd`; null when
/// unknown or about no turn), `host`, `time`, `id`. `n`'s message is already redacted;
/// the caller redacts the whole again with its secrets.
pub fn payload(n: &Notification, event: &WebhookEvent, host: &str) -> Value {
    let what = event.outcome.unwrap_or(event.event.as_str());
    let about = n.issue_ref.as_deref().map(|r| format!(" {r}")).unwrap_or_default();
    let mut text = format!("kugetsu on {host}: {what}{about}: {}", n.message);
    text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > MAX_TEXT_CHARS {
        text = text.chars().take(MAX_TEXT_CHARS - 1).collect::<String>() + "…";
    }
    json!({
        "text": text,
        "event": event.event,
        "outcome": event.outcome,
        "issue_ref": n.issue_ref,
        "message": n.message,
        "cost_usd": n.extra.get("cost_usd").filter(|c| c.is_number()).cloned().unwrap_or(Value::Null),
        "host": host,
        "time": n.timestamp.format(&Rfc3339).unwrap_or_default(),
        "id": n.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;
    use time::macros::datetime;

    fn setup() -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("k"));
        state.ensure().unwrap();
        (dir, Outbox::new(&state))
    }

    fn note(kind: NotificationType, message: &str) -> Notification {
        Notification {
            id: "n_1".into(),
            timestamp: datetime!(2026-12-07 03:04:05 UTC),
            kind,
            message: message.into(),
            issue_ref: Some("github.com/o/r#14".into()),
            read: false,
            extra: Map::new(),
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff::default();
        let secs: Vec<u64> = (1..=10).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, [3, 6, 12, 24, 48, 96, 192, 384, 600, 600]);
        assert_eq!(b.delay(u32::MAX), b.cap);
    }

    #[test]
    fn a_failed_delivery_is_retried_later_then_delivered_and_survives_a_reopen() {
        let (dir, outbox) = setup();
        let t0 = datetime!(2026-12-07 03:00 UTC);
        let urls = vec!["http://a/x1".to_string(), "http://b/y2".to_string(), "http://a/x1".into()];
        outbox.add("n_1", json!({"text": "hi"}), &urls, t0).unwrap();
        let due = outbox.due(t0).unwrap();
        assert_eq!(due.len(), 2, "one delivery per receiver: {due:?}");
        let b = Backoff::default();
        assert_eq!(
            outbox.record(&due[0], Err("HTTP 500".into()), t0, &b).unwrap(),
            Recorded::Retry(t0 + Duration::from_secs(3))
        );
        assert_eq!(outbox.record(&due[1], Ok(()), t0, &b).unwrap(), Recorded::Delivered);
        assert_eq!(outbox.record(&due[1], Ok(()), t0, &b).unwrap(), Recorded::Gone, "not twice");
        assert!(outbox.due(t0 + Duration::from_secs(2)).unwrap().is_empty());
        assert_eq!(outbox.next_try().unwrap(), Some(t0 + Duration::from_secs(3)));
        // Another process (a restarted daemon) sees the same state.
        let again = Outbox::new(&StateDir::new(dir.path().join("k")));
        let due = again.due(t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].url.as_str(), due[0].attempts), ("http://a/x1", 1));
        assert_eq!(
            again.record(&due[0], Ok(()), t0 + Duration::from_secs(3), &b).unwrap(),
            Recorded::Delivered
        );
        let entry = &again.list().unwrap()[0];
        assert_eq!(entry.deliveries[0].attempts, 2);
        assert!(entry.deliveries.iter().all(|d| d.state == DeliveryState::Delivered));
        assert_eq!(again.next_try().unwrap(), None);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(again.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_receivers_retry_after_is_honoured_up_to_the_cap() {
        let (_d, outbox) = setup();
        let t0 = datetime!(2026-12-07 03:00 UTC);
        outbox.add("n_1", json!({}), &["http://busy/h1".to_string()], t0).unwrap();
        let b = Backoff::default();
        let busy =
            |secs| Failure { why: "HTTP 429".into(), retry_after: Some(Duration::from_secs(secs)) };
        let due = outbox.due(t0).unwrap();
        let at = outbox.record(&due[0], Err(busy(30)), t0, &b).unwrap();
        assert_eq!(at, Recorded::Retry(t0 + Duration::from_secs(30)), "longer than the backoff");
        let due = outbox.due(t0 + Duration::from_secs(30)).unwrap();
        let at = outbox.record(&due[0], Err(busy(1)), t0, &b).unwrap();
        assert_eq!(at, Recorded::Retry(t0 + Duration::from_secs(6)), "never shorter than it");
        let due = outbox.due(t0 + Duration::from_secs(6)).unwrap();
        let at = outbox.record(&due[0], Err(busy(86_400)), t0, &b).unwrap();
        assert_eq!(at, Recorded::Retry(t0 + b.cap), "a day is capped");
    }

    #[test]
    fn a_delivery_is_given_up_after_the_bounded_time() {
        let (_d, outbox) = setup();
        let t0 = datetime!(2026-12-07 03:00 UTC);
        outbox.add("n_1", json!({}), &["http://down/h".to_string()], t0).unwrap();
        let b = Backoff {
            first: Duration::from_secs(60),
            cap: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(4 * 3600),
        };
        let mut now = t0;
        let mut tries = 0;
        loop {
            let due = outbox.due(now).unwrap();
            assert_eq!(due.len(), 1);
            tries += 1;
            match outbox.record(&due[0], Err("connection refused".into()), now, &b).unwrap() {
                Recorded::Retry(at) => now = at,
                Recorded::GaveUp => break,
                other => panic!("{other:?}"),
            }
        }
        // Tried at 0, 1, 3, 7, 15, 31, 63, 123 and 183 minutes: the next, at 243, is past 4 hours.
        assert_eq!(tries, 9);
        let d = &outbox.list().unwrap()[0].deliveries[0];
        assert_eq!(
            (d.state, d.last_error.as_deref()),
            (DeliveryState::Failed, Some("connection refused"))
        );
        assert!(outbox.due(now + Duration::from_secs(86400)).unwrap().is_empty());
    }

    #[test]
    fn no_receiver_no_entry_and_finished_entries_are_trimmed() {
        let (_d, outbox) = setup();
        let t0 = datetime!(2026-12-07 03:00 UTC);
        outbox.add("n_0", json!({}), &[], t0).unwrap();
        assert!(outbox.list().unwrap().is_empty());
        let url = vec!["http://r/h1".to_string()];
        for i in 0..KEEP_FINISHED + 5 {
            outbox.add(&format!("n_{i}"), json!({}), &url, t0).unwrap();
        }
        outbox.add("pending", json!({}), &url, t0).unwrap();
        for due in outbox.due(t0).unwrap().into_iter().filter(|d| d.id != "pending") {
            outbox.record(&due, Ok(()), t0, &Backoff::default()).unwrap();
        }
        outbox.add("last", json!({}), &url, t0).unwrap();
        let ids: Vec<String> = outbox.list().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), KEEP_FINISHED + 2);
        assert_eq!(ids[0], "n_5", "the oldest finished ones went");
        assert!(ids.contains(&"pending".to_string()));
    }

    #[test]
    fn what_is_posted_and_what_is_not() {
        let blocked = note(
            NotificationType::TaskError,
            "q_1: start github.com/o/r#14: blocked: permission rejected: bash",
        );
        let e = webhook_event(&blocked, false).unwrap();
        assert_eq!((e.event.as_str(), e.outcome), ("task_error", Some("blocked")));
        let body = payload(&blocked, &e, "box");
        assert_eq!(
            body["text"],
            "kugetsu on box: blocked github.com/o/r#14: q_1: start github.com/o/r#14: blocked: permission rejected: bash"
        );
        assert_eq!(body["cost_usd"], Value::Null);
        assert_eq!(body["time"], "2026-12-07T03:04:05Z");
        assert_eq!(body["issue_ref"], "github.com/o/r#14");
        assert_eq!(body["host"], "box");
        let hung = note(
            NotificationType::TaskError,
            "q_1: failed after 3 attempts: start x: hung: no output for 15 min",
        );
        assert_eq!(webhook_event(&hung, false).unwrap().outcome, Some("hung"));
        let other = note(NotificationType::TaskError, "q_1: bad issue ref: nope");
        assert_eq!(webhook_event(&other, false).unwrap().outcome, Some("failed"));
        let done = note(NotificationType::TaskCompleted, "q_1: start x: completed");
        assert_eq!(webhook_event(&done, false), None);
        assert_eq!(webhook_event(&done, true).unwrap().outcome, Some("completed"));
        for quiet in [
            NotificationType::TaskQueued,
            NotificationType::TaskStarted,
            NotificationType::TaskDequeued,
        ] {
            assert_eq!(webhook_event(&note(quiet, "m"), true), None);
        }
        let paused =
            webhook_event(&note(NotificationType::Other("paused".into()), "m"), false).unwrap();
        assert_eq!((paused.event.as_str(), paused.outcome), ("paused", None));
        let mut over = note(
            NotificationType::Other("over_budget".into()),
            "q_2: start x: over budget: daily budget $5.00 spent ($5.10)",
        );
        over.extra.insert("cost_usd".into(), serde_json::json!(0.25));
        let event = webhook_event(&over, false).unwrap();
        assert_eq!((event.event.as_str(), event.outcome), ("over_budget", None));
        assert_eq!(payload(&over, &event, "h")["cost_usd"], 0.25);
        let stopped = note(NotificationType::TaskError, "q_2: start x: over budget: issue budget");
        assert_eq!(webhook_event(&stopped, false).unwrap().outcome, Some("over_budget"));
        let multi = note(NotificationType::TaskError, "line one\nline two");
        let body = payload(&multi, &webhook_event(&multi, false).unwrap(), "h");
        assert!(!body["text"].as_str().unwrap().contains('\n'), "{body}");
    }

    #[test]
    fn a_report_replaces_the_pending_one_of_its_target_only() {
        let (_d, outbox) = setup();
        let now = datetime!(2026-01-01 00:00 UTC);
        let hook = "https://hooks.example/x".to_string();
        outbox.add("n_1", json!({"n": 1}), std::slice::from_ref(&hook), now).unwrap();
        outbox.replace("r_1", json!({"r": 1}), "forge:h/o/r#1", now).unwrap();
        outbox.replace("r_2", json!({"r": 2}), "forge:h/o/r#2", now).unwrap();
        let due = outbox.due(now).unwrap();
        let r1 = due.iter().find(|d| d.id == "r_1").unwrap().clone();
        outbox.record(&r1, Ok(()), now, &Backoff::default()).unwrap();
        outbox.replace("r_3", json!({"r": 3}), "forge:h/o/r#2", now).unwrap();
        outbox.replace("r_4", json!({"r": 4}), "forge:h/o/r#1", now).unwrap();
        let ids: Vec<String> = outbox.due(now).unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(ids, ["n_1", "r_3", "r_4"]);
        // A delivered report stays on the record.
        assert!(outbox.list().unwrap().iter().any(|e| e.id == "r_1"));
    }
}
