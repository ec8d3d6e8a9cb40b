//! The seam between the orchestration and the task queue: items, their states, concurrency slots.
//!
//! `delegate` only enqueues; a daemon drains. Both sides, and `start`/`continue` run by hand or
//! by the PM agent, share `MAX_CONCURRENT_AGENTS` slots. The durable file implementation lives in
//! `kugetsu-queue`; an in-memory one in [`crate::testing`].

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::storage::StorageError;

/// State of a queue item, as the spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueStatus {
    /// Waiting; the daemon may pick it up.
    Pending,
    /// Claimed: an agent is working on it.
    Notified,
    /// Finished.
    Completed,
    /// Failed for good (after retries, or for a reason retrying cannot fix).
    Error,
}

impl QueueStatus {
    /// The spec's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueStatus::Pending => "pending",
            QueueStatus::Notified => "notified",
            QueueStatus::Completed => "completed",
            QueueStatus::Error => "error",
        }
    }
    /// Completed or error: nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(self, QueueStatus::Completed | QueueStatus::Error)
    }
}

/// Who holds a claimed item: a live process, recognisable even after pid reuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Pid of the claiming process (the daemon).
    pub owner_pid: u32,
    /// A token unique to that process's life (pid plus its start time), so that an unrelated
    /// process reusing the pid is not mistaken for the owner.
    pub owner_token: String,
    /// When it was claimed.
    #[serde(with = "time::serde::rfc3339")]
    pub claimed_at: OffsetDateTime,
    /// Pid (and process group) of the agent working on it, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_pid: Option<u32>,
}

/// One queued task (`queue/items/<id>.json`). Unknown fields are kept on rewrite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueItem {
    /// `q_<digits>`; ids sort in enqueue order.
    pub id: String,
    /// Current state.
    pub status: QueueStatus,
    /// The plain-language request.
    pub message: String,
    /// The issue it is about, when known (`queue enqueue <ref> <msg>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_ref: Option<String>,
    /// When it was enqueued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last state change.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub updated_at: Option<OffsetDateTime>,
    /// Dispatch attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Not to be retried before this time (backoff).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<OffsetDateTime>,
    /// Who is working on it, while `notified`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    /// What the command that queued it asked for beyond its message.
    #[serde(default, skip_serializing_if = "RunOptions::is_default")]
    pub options: RunOptions,
    /// The identity token (pid, start time, boot) of the agent working on it, while it runs:
    /// a later daemon adopts the agent only if that very process still runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_token: Option<String>,
    /// Set when a daemon adopted the agent of a dead one (`pid <daemon>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted_by: Option<String>,
    /// Fields written by other versions, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The options of a queued `kugetsu start` (with `--no-wait`, when every slot was busy), so the
/// daemon does what the foreground command would have done. Absent from the item's file when
/// none was given (`delegate`, `queue enqueue`, `continue`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    /// It came from `start`: the daemon starts afresh (a new worktree and session) even when
    /// the issue has a session, instead of continuing it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub start: bool,
    /// `--force`: recreate the worktree even if that loses unsaved work.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// `--base-ref`: branch from this ref.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ref: Option<String>,
}

impl RunOptions {
    /// Whether nothing was asked for (what old items and `delegate` carry).
    pub fn is_default(&self) -> bool {
        *self == RunOptions::default()
    }
}

/// What `delegate` / `queue enqueue` hand to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// The request.
    pub message: String,
    /// The issue, if the caller named one.
    pub issue_ref: Option<String>,
    /// What the queuing command asked for beyond the message.
    pub options: RunOptions,
}

/// Counts per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// All items.
    pub total: usize,
    /// Pending.
    pub pending: usize,
    /// Notified.
    pub notified: usize,
    /// Completed.
    pub completed: usize,
    /// Error.
    pub error: usize,
    /// Files that could not be read (kept aside).
    pub corrupt: usize,
}

impl QueueStats {
    /// Counts `statuses` (one per item) into a new tally.
    pub fn count(statuses: impl IntoIterator<Item = QueueStatus>) -> Self {
        let mut s = QueueStats::default();
        for status in statuses {
            s.add(status);
        }
        s
    }

    /// Adds one item in `status`.
    pub fn add(&mut self, status: QueueStatus) {
        self.total += 1;
        match status {
            QueueStatus::Pending => self.pending += 1,
            QueueStatus::Notified => self.notified += 1,
            QueueStatus::Completed => self.completed += 1,
            QueueStatus::Error => self.error += 1,
        }
    }
}

/// Items plus the files that could not be read, so one bad file never hides the rest.
#[derive(Debug, Clone, Default)]
pub struct QueueListing {
    /// Readable items, oldest first.
    pub items: Vec<QueueItem>,
    /// Errors about unreadable item files (each already moved aside).
    pub problems: Vec<String>,
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A state file problem.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// No item with that id.
    #[error("queue item {id} not found")]
    NotFound {
        /// The item id asked for.
        id: String,
    },
    /// The message is empty or too large.
    #[error("invalid task: {reason}")]
    InvalidTask {
        /// Why.
        reason: String,
    },
    /// Waiting for a slot was interrupted or timed out.
    #[error("no agent slot became free within {waited:?} (limit {limit})")]
    NoSlot {
        /// The limit in force.
        limit: usize,
        /// How long it waited.
        waited: Duration,
    },
    /// Any other failure, with the path it is about.
    #[error("{context}: {path}")]
    Other {
        /// What was being done.
        context: String,
        /// The queue file or directory it is about.
        path: PathBuf,
    },
}

/// The durable task queue.
pub trait TaskQueue: Send + Sync {
    /// Adds a pending item; returns it as stored.
    fn enqueue(&self, task: NewTask) -> Result<QueueItem, QueueError>;
    /// Every item, oldest first, and the files that could not be read.
    fn list(&self) -> Result<QueueListing, QueueError>;
    /// Counts per state.
    fn stats(&self) -> Result<QueueStats, QueueError>;
    /// Atomically claims the oldest pending item that is due, for `claim`'s owner. Exactly one
    /// of several concurrent claimers gets any given item.
    fn claim_next(
        &self,
        claim: &Claim,
        now: OffsetDateTime,
    ) -> Result<Option<QueueItem>, QueueError>;
    /// Changes an item under its lock and writes it back atomically.
    fn update(&self, id: &str, f: &mut dyn FnMut(&mut QueueItem)) -> Result<QueueItem, QueueError>;
    /// Removes completed and error items last changed before `older_than`; returns how many.
    fn clear(&self, older_than: OffsetDateTime) -> Result<usize, QueueError>;
}

/// A held concurrency slot; dropping it frees the slot.
pub trait SlotGuard: Send {
    /// Which slot (0-based) is held.
    fn index(&self) -> usize;
}

/// `MAX_CONCURRENT_AGENTS` slots shared by every process on the state directory. Slots are held
/// with kernel-released locks, so a killed holder frees its slot.
pub trait AgentSlots: Send + Sync {
    /// Takes a free slot among the first `limit`, or `None` if all are busy.
    fn try_acquire(&self, limit: usize) -> Result<Option<Box<dyn SlotGuard>>, QueueError>;
    /// Waits up to `timeout` for a slot among the first `limit`.
    fn acquire(&self, limit: usize, timeout: Duration) -> Result<Box<dyn SlotGuard>, QueueError>;
    /// How many slots are held right now (by any process).
    fn active(&self) -> Result<usize, QueueError>;
}
