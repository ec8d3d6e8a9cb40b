//! Steering work from outside the process that runs it: asking for a running turn to stop, and
//! putting a queue item that ended in `error` back in line. A dashboard, a script or another
//! command makes these requests; the process that supervises the turn (a foreground `start` or
//! `continue`, or the queue daemon's worker) or the queue itself carries them out.
//!
//! A stop request is a file, `stops/<issue file name>.stop`, because the supervisor may be any
//! process on the machine: it needs no pid, no signal that would also stop a daemon's other
//! turns, and it survives nothing (the supervisor deletes it when a turn begins and ends), so a
//! request can never stop a later turn. The supervisor watches for it and triggers its turn's
//! [`crate::interrupt::Interrupt`], the very request Ctrl-C triggers: the turn is recorded as
//! `interrupted` in the same way.

use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;

use crate::issue_ref::IssueRef;
use crate::queue::{QueueError, QueueItem, QueueStatus, TaskQueue};
use crate::state::StateDir;
use crate::storage::{self, StorageError};

/// How often a supervisor looks for a stop request while its agent runs: well within the
/// second a user waits for a button to act.
pub const STOP_POLL: Duration = Duration::from_millis(100);

/// The stop requests of a state directory.
#[derive(Debug, Clone)]
pub struct StopRequests {
    dir: PathBuf,
}

impl StopRequests {
    /// The stop requests of `state` (`stops/`).
    pub fn new(state: &StateDir) -> Self {
        StopRequests { dir: state.stops_dir() }
    }

    /// The request file of `issue`; its name comes from the issue's file name, like every
    /// state file of an issue, so no ref can name a path outside `stops/`.
    pub fn path(&self, issue: &IssueRef) -> PathBuf {
        self.dir.join(format!("{}.stop", issue.file_name()))
    }

    /// Asks the supervisor of `issue`'s turn to stop it (what asked and when go in the file,
    /// for whoever looks).
    pub fn request(
        &self,
        issue: &IssueRef,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        storage::ensure_dir(&self.dir)?;
        let text = format!("{} {by}\n", crate::clock::compact(now));
        storage::atomic_write(&self.path(issue), text.as_bytes())
    }

    /// Whether a stop of `issue`'s turn was asked for.
    pub fn is_requested(&self, issue: &IssueRef) -> bool {
        self.path(issue).symlink_metadata().is_ok()
    }

    /// Forgets the request for `issue`; whether there was one.
    pub fn clear(&self, issue: &IssueRef) -> Result<bool, StorageError> {
        storage::remove_file(&self.path(issue))
    }
}

/// Why a queue item cannot be retried.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// Only an item in `error` is retried; any other is still in line or done.
    #[error("queue item {id} is {status}, not error; only failed items are retried")]
    NotFailed {
        /// The item.
        id: String,
        /// Its state.
        status: &'static str,
    },
    /// The queue could not be read or written.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Puts the item `id` that ended in `error` back in line as a fresh `pending` item (attempts,
/// error and backoff forgotten), as if it had just been queued. The check and the change are
/// one update, so an item another process changed meanwhile is left alone.
pub fn retry_item(queue: &dyn TaskQueue, id: &str) -> Result<QueueItem, RetryError> {
    let mut found = None;
    let item = queue.update(id, &mut |it| {
        found = Some(it.status);
        if it.status == QueueStatus::Error {
            it.status = QueueStatus::Pending;
            it.attempts = 0;
            it.last_error = None;
            it.not_before = None;
            it.claim = None;
            it.agent_token = None;
        }
    })?;
    match found {
        Some(QueueStatus::Error) | None => Ok(item),
        Some(status) => Err(RetryError::NotFailed { id: id.to_owned(), status: status.as_str() }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::queue::NewTask;
    use crate::testing::MemoryQueue;

    #[test]
    fn a_stop_request_is_one_file_per_issue_inside_stops() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("k"));
        state.ensure().unwrap();
        let stops = StopRequests::new(&state);
        let issue = IssueRef::parse("github.com/o/r#14").unwrap();
        let other = IssueRef::parse("github.com/o/r#15").unwrap();
        assert!(!stops.is_requested(&issue));
        stops.request(&issue, "test", OffsetDateTime::UNIX_EPOCH).unwrap();
        assert!(stops.is_requested(&issue));
        assert!(!stops.is_requested(&other));
        assert!(stops.path(&issue).starts_with(state.stops_dir()));
        assert!(stops.clear(&issue).unwrap());
        assert!(!stops.is_requested(&issue));
        assert!(!stops.clear(&issue).unwrap());
    }

    #[test]
    fn only_an_item_in_error_is_retried() {
        let queue = MemoryQueue::default();
        let item = queue
            .enqueue(NewTask { message: "m".into(), issue_ref: None, options: Default::default() })
            .unwrap();
        assert!(matches!(retry_item(&queue, &item.id), Err(RetryError::NotFailed { .. })));
        queue
            .update(&item.id, &mut |it| {
                it.status = QueueStatus::Error;
                it.attempts = 3;
                it.last_error = Some("boom".into());
            })
            .unwrap();
        let again = retry_item(&queue, &item.id).unwrap();
        assert_eq!(
            (again.status, again.attempts, again.last_error),
            (QueueStatus::Pending, 0, None)
        );
        assert!(matches!(retry_item(&queue, "q_missing"), Err(RetryError::Queue(_))));
    }
}
