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

/// Who holds a claimed item: a live process, recognisable even after pid reuse, and, with a
/// shared queue, the host it runs on and the lease that fences its writes.
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
    /// The host (a machine and its state directory) of the claimer, when the queue is shared
    /// by several hosts: pids mean nothing on another host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// An id unique to this one claim: the fencing token. Every write a claimer makes about
    /// the item ([`TaskQueue::update_claimed`]) must present it, so a claimer that lost the
    /// item (its lease expired during a pause or a partition, and another took it) cannot
    /// record an outcome over the new owner's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// Until when the lease holds unless renewed (queues whose claimers prove they live by
    /// heartbeats; `None` where the claimer's process is checked instead).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
}

impl Claim {
    /// A claim by process `owner_pid` (identity `owner_token`) at `claimed_at`, on no host in
    /// particular, without a lease.
    pub fn new(owner_pid: u32, owner_token: impl Into<String>, claimed_at: OffsetDateTime) -> Self {
        Claim {
            owner_pid,
            owner_token: owner_token.into(),
            claimed_at,
            agent_pid: None,
            host: None,
            lease: None,
            expires_at: None,
        }
    }

    /// Whether `item` is still held under this very claim (same owner, same lease).
    pub fn holds(&self, item: &QueueItem) -> bool {
        item.status == QueueStatus::Notified
            && item.claim.as_ref().is_some_and(|c| {
                c.owner_token == self.owner_token && c.lease == self.lease && c.host == self.host
            })
    }
}

/// Which items a claim may take: the daemon claims for the PM agent while every dev slot is
/// busy, and only dev work while the PM agent is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimLane {
    /// Any due item.
    Any,
    /// Only items about an issue (dev agents).
    Issues,
    /// Only items without an issue (the PM agent).
    Pm,
}

impl ClaimLane {
    /// Whether an item belongs to this lane.
    pub fn accepts(self, item: &QueueItem) -> bool {
        match self {
            ClaimLane::Any => true,
            ClaimLane::Issues => item.issue_ref.is_some(),
            ClaimLane::Pm => item.issue_ref.is_none(),
        }
    }
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
    /// What the turn that ran it used, as the agent reported it (the result of a dispatched
    /// item; absent while none ran, or when the agent reported nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::usage::TurnUsage>,
    /// Why it waits though due, while a budget it would spend from is spent
    /// (`held: daily budget $5.00 spent ($5.02)`); cleared when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// The key it was queued under by [`TaskQueue::enqueue_once`]: no second item with it is
    /// queued, from any host of a shared queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub once_key: Option<String>,
    /// Fields written by other versions, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl QueueItem {
    /// A new item for `task`, pending since `now`, under the id the queue chose for it: the
    /// one shape every backend stores at enqueue.
    pub fn pending(id: String, task: &NewTask, now: OffsetDateTime) -> Self {
        QueueItem {
            id,
            status: QueueStatus::Pending,
            message: task.message.clone(),
            issue_ref: task.issue_ref.clone(),
            created_at: now,
            updated_at: Some(now),
            attempts: 0,
            last_error: None,
            not_before: None,
            claim: None,
            options: task.options.clone(),
            agent_token: None,
            adopted_by: None,
            usage: None,
            held: None,
            once_key: None,
            extra: Map::new(),
        }
    }
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

/// The longest [`TaskQueue::enqueue_once`] key accepted, in bytes (keys are an issue ref and a
/// little more).
pub const MAX_ONCE_KEY_BYTES: usize = 600;

/// Refuses a [`TaskQueue::enqueue_once`] key that is empty, too long or has control characters.
pub fn validate_once_key(key: &str) -> Result<(), QueueError> {
    if key.is_empty() || key.len() > MAX_ONCE_KEY_BYTES || key.chars().any(char::is_control) {
        return Err(QueueError::InvalidTask {
            reason: format!("once key {key:?} is empty, too long or has control characters"),
        });
    }
    Ok(())
}

/// What [`TaskQueue::enqueue_once`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Once {
    /// The task was queued: this is its item.
    Added(QueueItem),
    /// An item with the key was already queued (by this host or another): this one, unchanged.
    Found(QueueItem),
}

impl Once {
    /// The item, new or found.
    pub fn item(&self) -> &QueueItem {
        match self {
            Once::Added(item) | Once::Found(item) => item,
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
    /// The claimer no longer holds the item: its lease ended and the item went back to the
    /// queue or to another claimer. Nothing was written.
    #[error("queue item {id} is no longer held under this claim (its lease was lost)")]
    LeaseLost {
        /// The item id.
        id: String,
    },
    /// The shared queue's server cannot be reached or refused the request; nothing was
    /// changed. `target` is the server with its credentials masked.
    #[error("queue server {target}: {message}")]
    Unavailable {
        /// Where the queue is (credentials masked).
        target: String,
        /// What went wrong.
        message: String,
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

/// The durable task queue. Implementations: the files of one state directory (the default)
/// and a database shared by several hosts. Both give the same guarantees, checked by the same
/// conformance tests: one winner per claim, fenced writes, nothing lost when a process dies.
pub trait TaskQueue: Send + Sync {
    /// Adds a pending item; returns it as stored. Either the whole item is stored or nothing.
    fn enqueue(&self, task: NewTask) -> Result<QueueItem, QueueError>;
    /// Adds a pending item for `task` under `key` unless an item with that key is stored already
    /// (in any state; [`TaskQueue::clear`] forgets it with its item). The check and the add are
    /// one step against every other `enqueue_once` on the same queue, from any host of a shared
    /// one: how two hosts watching one repository queue each issue once.
    ///
    /// The default lists, then enqueues, then records the key: atomic only for a queue that
    /// nothing else writes at the same time. The file and PostgreSQL queues do it atomically.
    fn enqueue_once(&self, task: NewTask, key: &str) -> Result<Once, QueueError> {
        validate_once_key(key)?;
        if let Some(found) =
            self.list()?.items.into_iter().find(|i| i.once_key.as_deref() == Some(key))
        {
            return Ok(Once::Found(found));
        }
        let item = self.enqueue(task)?;
        let item = self.update(&item.id, &mut |i| i.once_key = Some(key.to_string()))?;
        Ok(Once::Added(item))
    }
    /// Every item, oldest first, and the files that could not be read.
    fn list(&self) -> Result<QueueListing, QueueError>;
    /// Counts per state.
    fn stats(&self) -> Result<QueueStats, QueueError>;
    /// Atomically claims the oldest due pending item of `lane` that this claimer may take, for
    /// `claim`'s owner. Exactly one of several concurrent claimers gets any given item.
    fn claim_next_in(
        &self,
        claim: &Claim,
        now: OffsetDateTime,
        lane: ClaimLane,
    ) -> Result<Option<QueueItem>, QueueError>;
    /// [`TaskQueue::claim_next_in`] over every lane.
    fn claim_next(
        &self,
        claim: &Claim,
        now: OffsetDateTime,
    ) -> Result<Option<QueueItem>, QueueError> {
        self.claim_next_in(claim, now, ClaimLane::Any)
    }
    /// Changes an item under its lock and writes it back atomically.
    fn update(&self, id: &str, f: &mut dyn FnMut(&mut QueueItem)) -> Result<QueueItem, QueueError>;
    /// Changes an item only if `claim` still holds it ([`Claim::holds`]), atomically with that
    /// check; otherwise writes nothing and fails with [`QueueError::LeaseLost`]. Every write a
    /// claimer makes about its item goes through here (fencing).
    fn update_claimed(
        &self,
        id: &str,
        claim: &Claim,
        f: &mut dyn FnMut(&mut QueueItem),
    ) -> Result<QueueItem, QueueError> {
        let mut held = false;
        let item = self.update(id, &mut |it| {
            held = claim.holds(it);
            if held {
                f(it);
            }
        })?;
        if held { Ok(item) } else { Err(QueueError::LeaseLost { id: id.to_string() }) }
    }
    /// Removes completed and error items last changed before `older_than`; returns how many.
    fn clear(&self, older_than: OffsetDateTime) -> Result<usize, QueueError>;
    /// One item.
    fn get(&self, id: &str) -> Result<QueueItem, QueueError> {
        self.list()?
            .items
            .into_iter()
            .find(|i| i.id == id)
            .ok_or_else(|| QueueError::NotFound { id: id.to_string() })
    }
    /// Items currently `notified` (claimed), oldest first.
    fn claimed(&self) -> Result<Vec<QueueItem>, QueueError> {
        Ok(self.list()?.items.into_iter().filter(|i| i.status == QueueStatus::Notified).collect())
    }
    /// The earliest `not_before` among pending items that are not due yet (when a daemon must
    /// look again even if nothing else happens).
    fn next_retry_at(&self, now: OffsetDateTime) -> Result<Option<OffsetDateTime>, QueueError> {
        Ok(earliest_retry(&self.list()?.items, now))
    }
    /// What could not be read (see [`QueueListing::problems`]).
    fn problems(&self) -> Result<Vec<String>, QueueError> {
        Ok(self.list()?.problems)
    }
    /// Renews the leases of the claims a daemon holds (its heartbeat) and returns those it
    /// still holds; a claim missing from the answer was lost (see [`Claim::lease`]). Queues
    /// without expiring leases just say which claims still hold their items.
    fn renew(&self, claims: &[(String, Claim)]) -> Result<Vec<String>, QueueError> {
        let items = self.claimed()?;
        Ok(claims
            .iter()
            .filter(|(id, c)| items.iter().any(|i| &i.id == id && c.holds(i)))
            .map(|(id, _)| id.clone())
            .collect())
    }
    /// How long a lease lasts without renewal, for queues whose leases expire (the daemon
    /// renews at a third of it); `None` where a claim lives as long as its claimer's process.
    fn lease_ttl(&self) -> Option<Duration> {
        None
    }
}

/// A held concurrency slot; dropping it frees the slot.
pub trait SlotGuard: Send {
    /// Which slot (0-based) is held.
    fn index(&self) -> usize;
}

/// `MAX_CONCURRENT_AGENTS` slots shared by every process on the state directory (and, with a
/// shared queue, a global limit across hosts). A killed holder's slot is freed: at once by the
/// kernel for lock files, when its lease expires for a database.
pub trait AgentSlots: Send + Sync {
    /// Takes a free slot among the first `limit` of this host, or `None` if all are busy (or
    /// a limit shared with other hosts is reached).
    fn try_acquire(&self, limit: usize) -> Result<Option<Box<dyn SlotGuard>>, QueueError>;
    /// Waits up to `timeout` for a slot among the first `limit`.
    fn acquire(&self, limit: usize, timeout: Duration) -> Result<Box<dyn SlotGuard>, QueueError>;
    /// How many slots are held right now (by any process of this host).
    fn active(&self) -> Result<usize, QueueError>;
}

/// The earliest `not_before` after `now` among the pending `items`: when a waiting retry falls
/// due ([`TaskQueue::next_retry_at`] of any backend that holds its items in memory).
pub fn earliest_retry<'a>(
    items: impl IntoIterator<Item = &'a QueueItem>,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    items
        .into_iter()
        .filter(|i| i.status == QueueStatus::Pending)
        .filter_map(|i| i.not_before)
        .filter(|t| *t > now)
        .min()
}

/// [`AgentSlots::acquire`] for slots nothing can wait on (lock files, database rows): asks
/// `try_acquire` until it grants one or `timeout` has passed, pausing between tries from
/// `pause` up, doubling, to `max_pause`.
pub fn poll_for_slot(
    limit: usize,
    timeout: Duration,
    (mut pause, max_pause): (Duration, Duration),
    mut try_acquire: impl FnMut() -> Result<Option<Box<dyn SlotGuard>>, QueueError>,
) -> Result<Box<dyn SlotGuard>, QueueError> {
    let start = std::time::Instant::now();
    loop {
        if let Some(guard) = try_acquire()? {
            return Ok(guard);
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(QueueError::NoSlot { limit, waited: timeout });
        }
        std::thread::sleep(pause.min(timeout - waited));
        pause = (pause * 2).min(max_pause);
    }
}

/// Whether the holder of a claim, or its agent, still lives: how a daemon tells a crashed
/// peer's items (to recover) from a live peer's (to leave alone). One state directory checks
/// process identity tokens; a queue shared by hosts checks lease expiry, since a pid means
/// nothing on another host.
pub trait Liveness: Send + Sync {
    /// The identity of this process, recorded in its claims.
    fn own_token(&self) -> String;
    /// Whether the claimer of `claim` still holds it at `now`.
    fn holder_alive(&self, claim: &Claim, now: OffsetDateTime) -> bool;
    /// Whether the agent with `agent_token` recorded under `claim` still runs where this
    /// process can watch and signal it (on this host).
    fn agent_alive(&self, claim: &Claim, agent_token: &str) -> bool;
}

/// How a daemon learns at once that work was enqueued, instead of at its next poll. A lost
/// wake-up only costs latency: daemons also poll.
pub trait WakeUp: Send + Sync {
    /// Blocks, calling `on_wake` for every wake-up, until `on_wake` returns `false` or the
    /// source fails for good (returned as text for the daemon's log). Runs on its own thread.
    fn listen(&self, on_wake: &mut dyn FnMut() -> bool) -> Result<(), String>;
}
