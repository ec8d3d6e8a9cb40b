//! Notifications (`notifications.json`): what the daemon and the PM agent tell the user about
//! queued tasks, read with `kugetsu notify list` and cleared with `kugetsu notify clear`.
//!
//! The file is the original kugetsu's: a JSON array of `{id, timestamp, type, message,
//! issue_ref, read}` objects (an object holding such an array under `notifications` is read too,
//! and written back in the same shape). Several processes append to it, so every change is a
//! locked read-modify-write. Unknown types and fields are kept, and an entry that does not parse
//! is kept verbatim rather than dropped, so one bad line never costs the others. The file is
//! bounded: past [`SOFT_LIMIT`] entries the oldest read ones go, past [`HARD_LIMIT`] the oldest of
//! any kind. Messages end up on screens and in logs, so callers pass them through [`redact`].

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::state::StateDir;
use crate::storage::{self, StorageError};

/// Past this many entries, the oldest read ones are dropped.
pub const SOFT_LIMIT: usize = 1000;
/// Past this many entries, the oldest are dropped even if unread.
pub const HARD_LIMIT: usize = 5000;
/// Longest message kept, in bytes; longer ones are cut at a character boundary.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// The `type` of a notification. Types written by other versions are kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum NotificationType {
    /// A task was enqueued.
    TaskQueued,
    /// The daemon took a task off the queue.
    TaskDequeued,
    /// An agent started on a task.
    TaskStarted,
    /// A task finished.
    TaskCompleted,
    /// A task failed.
    TaskError,
    /// Anything else.
    Other(String),
}

impl NotificationType {
    /// The word stored in the file.
    pub fn as_str(&self) -> &str {
        match self {
            NotificationType::TaskQueued => "task_queued",
            NotificationType::TaskDequeued => "task_dequeued",
            NotificationType::TaskStarted => "task_started",
            NotificationType::TaskCompleted => "task_completed",
            NotificationType::TaskError => "task_error",
            NotificationType::Other(s) => s,
        }
    }
}

impl From<String> for NotificationType {
    fn from(s: String) -> Self {
        match s.as_str() {
            "task_queued" => NotificationType::TaskQueued,
            "task_dequeued" => NotificationType::TaskDequeued,
            "task_started" => NotificationType::TaskStarted,
            "task_completed" => NotificationType::TaskCompleted,
            "task_error" => NotificationType::TaskError,
            _ => NotificationType::Other(s),
        }
    }
}

impl From<NotificationType> for String {
    fn from(t: NotificationType) -> Self {
        t.as_str().to_string()
    }
}

impl fmt::Display for NotificationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notification. Unknown fields are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique id (`n_<unix nanoseconds>`).
    pub id: String,
    /// When it happened. RFC 3339 is written; a timestamp without an offset (as some scripts
    /// write) is read as UTC.
    #[serde(serialize_with = "time::serde::rfc3339::serialize", deserialize_with = "lenient_time")]
    pub timestamp: OffsetDateTime,
    /// What kind of event.
    #[serde(rename = "type")]
    pub kind: NotificationType,
    /// What happened, for people (already redacted).
    pub message: String,
    /// The issue it is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_ref: Option<String>,
    /// Whether `notify clear` has been run since.
    #[serde(default)]
    pub read: bool,
    /// Fields written by other versions, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
    let text = String::deserialize(d)?;
    parse_lenient(&text).ok_or_else(|| {
        serde::de::Error::custom(format!("{text:?} is not an RFC 3339 or ISO 8601 timestamp"))
    })
}

fn parse_lenient(text: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t);
    }
    let format = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day][first [T] [ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    time::PrimitiveDateTime::parse(text, &format).ok().map(|t| t.assume_utc())
}

/// What a caller wants to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// What happened.
    pub kind: NotificationType,
    /// The message; pass it through [`redact`] first.
    pub message: String,
    /// The issue, if any.
    pub issue_ref: Option<String>,
}

/// Why a notification operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The file could not be read or written (a corrupt file is kept aside, never replaced).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The file is valid JSON but not a list of notifications.
    #[error(
        "{}: expected a JSON array of notifications, found {found}; its contents were kept at {}",
        path.display(),
        kept_at.display()
    )]
    Shape {
        /// `notifications.json`.
        path: PathBuf,
        /// What was there instead.
        found: &'static str,
        /// Where the file's bytes now are.
        kept_at: PathBuf,
    },
}

/// What `notify list` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationListing {
    /// The notifications asked for, oldest first.
    pub notifications: Vec<Notification>,
    /// Entries that could not be read (kept in the file as they are), for a warning.
    pub unreadable: usize,
}

/// The notifications of a state directory.
#[derive(Debug, Clone)]
pub struct Notifications {
    path: PathBuf,
    lock: PathBuf,
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object without a \"notifications\" array",
    }
}

impl Notifications {
    /// The notifications of `state`.
    pub fn new(state: &StateDir) -> Self {
        Notifications { path: state.notifications_path(), lock: state.lock_path("notifications") }
    }

    /// Where the notifications are kept (`notifications.json`).
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn entries<'v>(&self, file: &'v mut Value) -> Result<&'v mut Vec<Value>, NotifyError> {
        let nested = matches!(file.get("notifications"), Some(Value::Array(_)));
        let target = if nested { &mut file["notifications"] } else { file };
        match target {
            Value::Array(list) => Ok(list),
            // Kept aside like any corrupt state file, so the next notification starts a fresh
            // list instead of every later `add` failing on the same file.
            other => Err(NotifyError::Shape {
                path: self.path.clone(),
                found: kind_of(other),
                kept_at: match storage::quarantine(
                    &self.path,
                    &format!("expected a JSON array of notifications, found {}", kind_of(other)),
                ) {
                    StorageError::Corrupt { kept_at, .. } => kept_at,
                    _ => self.path.clone(),
                },
            }),
        }
    }

    fn update<R>(
        &self,
        f: impl FnOnce(&mut Vec<Value>) -> Result<R, NotifyError>,
    ) -> Result<R, NotifyError> {
        storage::update_json(
            &self.path,
            &self.lock,
            || Value::Array(Vec::new()),
            |file: &mut Value| {
                let list = self.entries(file)?;
                f(list)
            },
        )
    }

    /// Appends a notification stamped `now` and trims the file to its bounds.
    pub fn add(
        &self,
        new: NewNotification,
        now: OffsetDateTime,
    ) -> Result<Notification, NotifyError> {
        self.add_with(new, Map::new(), now)
    }

    /// [`Notifications::add`] with fields beyond the original's (`cost_usd`: what the turn it
    /// tells of cost), kept in [`Notification::extra`].
    pub fn add_with(
        &self,
        new: NewNotification,
        extra: Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<Notification, NotifyError> {
        self.update(|list| {
            let mut nanos = now.unix_timestamp_nanos();
            let taken =
                |id: &str| list.iter().any(|v| v.get("id").and_then(Value::as_str) == Some(id));
            let mut id = format!("n_{nanos}");
            while taken(&id) {
                nanos += 1;
                id = format!("n_{nanos}");
            }
            let notification = Notification {
                id,
                timestamp: now,
                kind: new.kind,
                message: truncate(&new.message, MAX_MESSAGE_LEN),
                issue_ref: new.issue_ref,
                read: false,
                extra,
            };
            let value = serde_json::to_value(&notification)
                .map_err(|source| StorageError::Serialize { path: self.path.clone(), source })?;
            list.push(value);
            trim(list);
            Ok(notification)
        })
    }

    /// Every readable notification (or only unread ones), oldest first.
    pub fn list(&self, unread_only: bool) -> Result<NotificationListing, NotifyError> {
        let Some(mut file) = storage::read_json::<Value>(&self.path)? else {
            return Ok(NotificationListing::default());
        };
        let mut out = NotificationListing::default();
        for v in self.entries(&mut file)?.drain(..) {
            match serde_json::from_value::<Notification>(v) {
                Ok(n) if unread_only && n.read => {}
                Ok(n) => out.notifications.push(n),
                Err(_) => out.unreadable += 1,
            }
        }
        out.notifications.sort_by_key(|n| n.timestamp);
        Ok(out)
    }

    /// Marks every notification read; returns how many were unread.
    pub fn mark_all_read(&self) -> Result<usize, NotifyError> {
        if storage::read_bytes(&self.path)?.is_none() {
            return Ok(0);
        }
        self.update(|list| {
            let mut changed = 0;
            for v in list.iter_mut() {
                if let Value::Object(map) = v
                    && map.get("read") != Some(&Value::Bool(true))
                {
                    map.insert("read".into(), Value::Bool(true));
                    changed += 1;
                }
            }
            Ok(changed)
        })
    }
}

fn is_read(v: &Value) -> bool {
    v.get("read") == Some(&Value::Bool(true))
}

/// Drops the oldest read entries past [`SOFT_LIMIT`], then the oldest of any kind past
/// [`HARD_LIMIT`]. Entries are in append order, so "oldest" is "first".
fn trim(list: &mut Vec<Value>) {
    let mut excess = list.len().saturating_sub(SOFT_LIMIT);
    if excess > 0 {
        list.retain(|v| {
            if excess > 0 && is_read(v) {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }
    let over = list.len().saturating_sub(HARD_LIMIT);
    if over > 0 {
        list.drain(..over);
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

pub use crate::secrets::redact;

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn setup() -> (tempfile::TempDir, StateDir, Notifications) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("k"));
        state.ensure().unwrap();
        let n = Notifications::new(&state);
        (dir, state, n)
    }

    fn new(kind: NotificationType, msg: &str) -> NewNotification {
        NewNotification { kind, message: msg.into(), issue_ref: None }
    }

    #[test]
    fn add_list_clear() {
        let (_d, _s, n) = setup();
        assert!(n.list(true).unwrap().notifications.is_empty());
        assert_eq!(n.mark_all_read().unwrap(), 0);
        let t = datetime!(2026-03-29 18:16:10 +02:00);
        let a = n.add(new(NotificationType::TaskQueued, "queued"), t).unwrap();
        let b = n
            .add(
                NewNotification {
                    kind: NotificationType::TaskCompleted,
                    message: "done".into(),
                    issue_ref: Some("github.com/o/r#1".into()),
                },
                t,
            )
            .unwrap();
        assert_ne!(a.id, b.id, "same instant, distinct ids");
        let listed = n.list(true).unwrap();
        assert_eq!(listed.notifications.len(), 2);
        assert_eq!(listed.notifications[1].issue_ref.as_deref(), Some("github.com/o/r#1"));
        assert_eq!(n.mark_all_read().unwrap(), 2);
        assert_eq!(n.mark_all_read().unwrap(), 0);
        assert!(n.list(true).unwrap().notifications.is_empty());
        assert_eq!(n.list(false).unwrap().notifications.len(), 2);
        let raw = std::fs::read_to_string(n.path()).unwrap();
        assert!(raw.contains("\"timestamp\": \"2026-03-29T18:16:10+02:00\""), "{raw}");
        assert!(raw.contains("\"type\": \"task_completed\""), "{raw}");
    }

    #[test]
    fn unknown_types_fields_and_bad_entries_are_kept() {
        let (_d, _s, n) = setup();
        std::fs::write(
            n.path(),
            r#"[{"id":"x1","timestamp":"2026-03-29T18:16:10","type":"pr_merged","message":"m","read":false,"by":"pm"},
                {"garbage":true}]"#,
        )
        .unwrap();
        let listed = n.list(false).unwrap();
        assert_eq!(listed.unreadable, 1);
        let first = &listed.notifications[0];
        assert_eq!(first.kind, NotificationType::Other("pr_merged".into()));
        assert_eq!(first.timestamp, datetime!(2026-03-29 18:16:10 UTC));
        assert_eq!(first.extra["by"], "pm");
        n.add(new(NotificationType::TaskError, "e"), datetime!(2026-03-30 0:00 UTC)).unwrap();
        n.mark_all_read().unwrap();
        let raw: Value = serde_json::from_str(&std::fs::read_to_string(n.path()).unwrap()).unwrap();
        assert_eq!(raw[0]["type"], "pr_merged");
        assert_eq!(raw[0]["by"], "pm");
        assert_eq!(raw[1]["garbage"], true);
        assert_eq!(raw.as_array().unwrap().len(), 3);
    }

    #[test]
    fn object_shape_is_kept_and_wrong_shapes_are_refused() {
        let (_d, _s, n) = setup();
        std::fs::write(n.path(), r#"{"version":2,"notifications":[]}"#).unwrap();
        n.add(new(NotificationType::TaskStarted, "s"), datetime!(2026-01-01 0:00 UTC)).unwrap();
        let raw: Value = serde_json::from_str(&std::fs::read_to_string(n.path()).unwrap()).unwrap();
        assert_eq!(raw["version"], 2);
        assert_eq!(raw["notifications"][0]["message"], "s");
        std::fs::write(n.path(), "42").unwrap();
        let err = n
            .add(new(NotificationType::TaskStarted, "s"), datetime!(2026-01-01 0:00 UTC))
            .unwrap_err();
        assert!(
            err.to_string().contains("expected a JSON array of notifications, found a number"),
            "{err}"
        );
        let NotifyError::Shape { kept_at, .. } = &err else { panic!("{err}") };
        assert_eq!(std::fs::read_to_string(kept_at).unwrap(), "42", "kept aside, never replaced");
        assert!(err.to_string().contains(&kept_at.display().to_string()), "{err}");
        // The next notification starts a fresh list.
        n.add(new(NotificationType::TaskStarted, "t"), datetime!(2026-01-01 0:00 UTC)).unwrap();
        assert_eq!(n.list(false).unwrap().notifications.len(), 1);
        assert_eq!(std::fs::read_to_string(kept_at).unwrap(), "42");
    }

    #[test]
    fn corrupt_file_is_reported_and_kept() {
        let (_d, s, n) = setup();
        std::fs::write(n.path(), "[{").unwrap();
        let err = n
            .add(new(NotificationType::TaskQueued, "q"), datetime!(2026-01-01 0:00 UTC))
            .unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        let kept = std::fs::read_dir(s.root())
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with("notifications.json.corrupt-"));
        assert!(kept);
    }

    #[test]
    fn trim_drops_oldest_read_first_then_anything_past_the_hard_limit() {
        let mk = |i: usize, read: bool| serde_json::json!({"id": i.to_string(), "read": read});
        let mut list: Vec<Value> = (0..SOFT_LIMIT + 3).map(|i| mk(i, i % 2 == 1)).collect();
        trim(&mut list);
        assert_eq!(list.len(), SOFT_LIMIT);
        let gone: Vec<usize> = (0..SOFT_LIMIT + 3)
            .filter(|i| !list.iter().any(|v| v["id"].as_str() == Some(i.to_string().as_str())))
            .collect();
        assert_eq!(gone, [1, 3, 5]);
        let mut unread: Vec<Value> = (0..HARD_LIMIT + 2).map(|i| mk(i, false)).collect();
        trim(&mut unread);
        assert_eq!(unread.len(), HARD_LIMIT);
        assert_eq!(unread[0]["id"], "2");
    }

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_LEN);
        let cut = truncate(&long, MAX_MESSAGE_LEN);
        assert!(cut.len() <= MAX_MESSAGE_LEN && cut.ends_with('…'));
        assert_eq!(truncate("short", 10), "short");
    }
}
