//! The durable task queue: one JSON file per item under `queue/items/`.
//!
//! Why files and not a database: the state directory is plain files the user can read, back
//! up and repair by hand, and items written by the original kugetsu load as they are.
//!
//! Rules that make it safe with several processes (CLI, daemon, agents calling the CLI) and
//! with any of them killed at any moment:
//! - every change (enqueue, claim, update, clear) happens under one kernel-released lock
//!   (`locks/queue.lock`) and is written with [`storage::atomic_write`], so a reader sees the
//!   whole old or the whole new item, and exactly one of several concurrent claimers gets any
//!   given item;
//! - ids are `q_<20 digits>`: unix nanoseconds at enqueue, bumped past the last id issued
//!   (`queue/seq`) and past any existing file, all under the lock, so they are unique and sort
//!   in enqueue order across processes even if the wall clock steps back;
//! - a file that cannot be parsed is moved aside by storage (`<name>.corrupt-<time>`) and
//!   reported in [`QueueListing::problems`]; the other items are listed and run as usual;
//! - readers do not take the lock (files are replaced atomically), and a long-lived queue
//!   (the daemon's) caches parsed items keyed by file identity (inode, size, times), so a scan
//!   of 10,000 items costs one `lstat` each, not one parse each.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use kugetsu_core::StateDir;
use kugetsu_core::clock::{Clock, SystemClock};
use kugetsu_core::queue::{
    Claim, NewTask, QueueError, QueueItem, QueueListing, QueueStats, QueueStatus, TaskQueue,
};
use kugetsu_core::storage::{self, StorageError};
use time::OffsetDateTime;

use crate::wake;

/// Longest message accepted (bytes). Requests are sentences, not files; anything bigger is a
/// mistake (a pasted file, a runaway script) and is refused with a clear error.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest issue ref accepted (bytes).
pub const MAX_ISSUE_REF_BYTES: usize = 512;

/// The file-backed [`TaskQueue`] over a state directory.
pub struct FileQueue {
    items_dir: PathBuf,
    lock_path: PathBuf,
    seq_path: PathBuf,
    wake_path: PathBuf,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<String, Cached>>,
}

#[derive(Clone)]
struct Cached {
    key: FileKey,
    item: Arc<QueueItem>,
}

/// What identifies one version of a file without reading it. Item files are only ever
/// replaced by rename (a new inode), so a change of content changes this key.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileKey {
    fn of(meta: &fs::Metadata) -> Self {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// One pass over `queue/items/`.
struct Scan {
    /// Readable items, oldest first.
    items: Vec<Arc<QueueItem>>,
    /// Newly found corrupt files (moved aside now) and files kept aside earlier.
    problems: Vec<String>,
    /// How many of the problems are corrupt files (new or kept aside).
    corrupt: usize,
}

impl std::fmt::Debug for FileQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileQueue").field("items_dir", &self.items_dir).finish_non_exhaustive()
    }
}

impl FileQueue {
    /// The queue of `state`, timestamped with the system clock. Touches nothing on disk.
    pub fn new(state: &StateDir) -> Self {
        Self::with_clock(state, Arc::new(SystemClock))
    }

    /// The queue of `state`, timestamped with `clock` (tests pin time with it).
    pub fn with_clock(state: &StateDir, clock: Arc<dyn Clock>) -> Self {
        FileQueue {
            items_dir: state.queue_items_dir(),
            lock_path: state.lock_path("queue"),
            seq_path: state.queue_dir().join("seq"),
            wake_path: wake::wake_path(state),
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// `queue/items/`.
    pub fn items_dir(&self) -> &Path {
        &self.items_dir
    }

    /// The file of item `id`, or an error if `id` is not a queue id (so that no id from the
    /// command line can name a file outside `queue/items/`).
    pub fn item_path(&self, id: &str) -> Result<PathBuf, QueueError> {
        if sort_key(id).is_none() {
            return Err(QueueError::NotFound { id: id.to_string() });
        }
        Ok(self.items_dir.join(format!("{id}.json")))
    }

    /// Reads one item.
    pub fn get(&self, id: &str) -> Result<QueueItem, QueueError> {
        let path = self.item_path(id)?;
        let mut item: QueueItem =
            storage::read_json(&path)?.ok_or_else(|| QueueError::NotFound { id: id.into() })?;
        item.id = id.to_string();
        Ok(item)
    }

    /// Like [`TaskQueue::claim_next`], but only among items `filter` accepts (the daemon uses
    /// it to pick an item for the PM agent while every dev slot is busy). FIFO among those.
    pub fn claim_next_matching(
        &self,
        claim: &Claim,
        now: OffsetDateTime,
        filter: &dyn Fn(&QueueItem) -> bool,
    ) -> Result<Option<QueueItem>, QueueError> {
        self.ensure_dirs()?;
        storage::with_exclusive_lock(&self.lock_path, || {
            let scan = self.scan()?;
            for candidate in scan.items.iter().filter(|i| is_due(i, now) && filter(i)) {
                // The cache is a hint; decide on what is on disk now, under the lock.
                let path = self.items_dir.join(format!("{}.json", candidate.id));
                let Some(mut item) = read_item(&path, &candidate.id)? else { continue };
                if !is_due(&item, now) || !filter(&item) {
                    continue;
                }
                item.status = QueueStatus::Notified;
                item.claim = Some(claim.clone());
                item.attempts = item.attempts.saturating_add(1);
                item.updated_at = Some(now);
                storage::write_json(&path, &item)?;
                return Ok(Some(item));
            }
            Ok(None)
        })
    }

    /// The earliest `not_before` among pending items that are not due yet (when the daemon
    /// must look again even if nothing else happens).
    pub fn next_retry_at(&self, now: OffsetDateTime) -> Result<Option<OffsetDateTime>, QueueError> {
        let scan = self.scan()?;
        Ok(scan
            .items
            .iter()
            .filter(|i| i.status == QueueStatus::Pending)
            .filter_map(|i| i.not_before)
            .filter(|t| *t > now)
            .min())
    }

    /// Items currently `notified` (claimed), oldest first.
    pub fn claimed(&self) -> Result<Vec<QueueItem>, QueueError> {
        let scan = self.scan()?;
        Ok(scan
            .items
            .iter()
            .filter(|i| i.status == QueueStatus::Notified)
            .map(|i| (**i).clone())
            .collect())
    }

    fn ensure_dirs(&self) -> Result<(), QueueError> {
        storage::ensure_dir(&self.items_dir)?;
        Ok(())
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the directory, re-parsing only files whose identity changed since the last scan.
    fn scan(&self) -> Result<Scan, QueueError> {
        let entries = match fs::read_dir(&self.items_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Scan { items: Vec::new(), problems: Vec::new(), corrupt: 0 });
            }
            Err(e) => {
                return Err(StorageError::Io {
                    action: "read",
                    path: self.items_dir.clone(),
                    source: e,
                }
                .into());
            }
        };
        let mut items = Vec::new();
        let mut problems = Vec::new();
        let mut corrupt = 0;
        let mut seen = HashMap::new();
        let previous = std::mem::take(&mut *self.cache());
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::Io {
                action: "read",
                path: self.items_dir.clone(),
                source: e,
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if let Some(id) = name.strip_suffix(".json").filter(|id| sort_key(id).is_some()) {
                let meta = match fs::symlink_metadata(&path) {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        problems.push(format!("cannot inspect {}: {e}", path.display()));
                        continue;
                    }
                };
                if meta.file_type().is_symlink() {
                    problems.push(StorageError::Symlink { path: path.clone() }.to_string());
                    continue;
                }
                let key = FileKey::of(&meta);
                let cached = previous.get(id).filter(|c| c.key == key).cloned();
                let cached = match cached {
                    Some(c) => c,
                    None => match read_item(&path, id) {
                        Ok(Some(item)) => Cached { key, item: Arc::new(item) },
                        Ok(None) => continue,
                        Err(QueueError::Storage(e @ StorageError::Corrupt { .. })) => {
                            corrupt += 1;
                            problems.push(e.to_string());
                            continue;
                        }
                        Err(e) => {
                            problems.push(e.to_string());
                            continue;
                        }
                    },
                };
                items.push(cached.item.clone());
                seen.insert(id.to_string(), cached);
            } else if is_kept_aside(name) {
                corrupt += 1;
                problems.push(format!(
                    "{}: a corrupt queue item kept aside earlier; inspect it, then delete it",
                    path.display()
                ));
            }
        }
        *self.cache() = seen;
        items.sort_by(|a, b| sort_key(&a.id).cmp(&sort_key(&b.id)).then_with(|| a.id.cmp(&b.id)));
        problems.sort();
        Ok(Scan { items, problems, corrupt })
    }

    fn next_id(&self) -> Result<String, QueueError> {
        let now = self.clock.now().unix_timestamp_nanos().max(0) as u128;
        // `seq` is only a hint against the clock stepping back: unreadable means "no hint",
        // and it is safe to rewrite (uniqueness comes from the existence check below).
        let last = fs::read_to_string(&self.seq_path)
            .ok()
            .and_then(|s| s.trim().parse::<u128>().ok())
            .unwrap_or(0);
        let mut next = now.max(last.saturating_add(1));
        loop {
            let id = format!("q_{next:020}");
            if fs::symlink_metadata(self.items_dir.join(format!("{id}.json"))).is_err() {
                storage::atomic_write(&self.seq_path, format!("{next}\n").as_bytes())?;
                return Ok(id);
            }
            next += 1;
        }
    }
}

fn is_due(item: &QueueItem, now: OffsetDateTime) -> bool {
    item.status == QueueStatus::Pending && item.not_before.is_none_or(|t| t <= now)
}

/// Reads an item file; the file name is the id (a hand-edited `id` field cannot make two
/// files claim the same id).
fn read_item(path: &Path, id: &str) -> Result<Option<QueueItem>, QueueError> {
    let item: Option<QueueItem> = storage::read_json(path)?;
    Ok(item.map(|mut i| {
        i.id = id.to_string();
        i
    }))
}

/// The numeric order of an id (`q_<digits>`), or `None` for anything that is not one. Ids of
/// the original kugetsu (`q_<unix seconds>`) sort before ours (nanoseconds), as they should.
fn sort_key(id: &str) -> Option<u128> {
    let digits = id.strip_prefix("q_")?;
    if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn is_kept_aside(name: &str) -> bool {
    name.starts_with("q_") && name.contains(".json.corrupt-")
}

fn validate(task: &NewTask) -> Result<(), QueueError> {
    let invalid = |reason: String| Err(QueueError::InvalidTask { reason });
    if task.message.trim().is_empty() {
        return invalid("the message is empty".into());
    }
    if task.message.len() > MAX_MESSAGE_BYTES {
        return invalid(format!(
            "the message is {} bytes; at most {MAX_MESSAGE_BYTES} are accepted",
            task.message.len()
        ));
    }
    if task.message.contains('\0') {
        return invalid("the message contains a NUL byte".into());
    }
    if let Some(r) = &task.issue_ref {
        if r.is_empty() || r.len() > MAX_ISSUE_REF_BYTES {
            return invalid(format!("issue ref {r:?} is empty or too long"));
        }
        if r.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid(format!("issue ref {r:?} contains spaces or control characters"));
        }
    }
    Ok(())
}

impl TaskQueue for FileQueue {
    fn enqueue(&self, task: NewTask) -> Result<QueueItem, QueueError> {
        validate(&task)?;
        self.ensure_dirs()?;
        let item = storage::with_exclusive_lock(&self.lock_path, || {
            let id = self.next_id()?;
            let now = self.clock.now();
            let item = QueueItem {
                id: id.clone(),
                status: QueueStatus::Pending,
                message: task.message.clone(),
                issue_ref: task.issue_ref.clone(),
                created_at: now,
                updated_at: Some(now),
                attempts: 0,
                last_error: None,
                not_before: None,
                claim: None,
                extra: Default::default(),
            };
            storage::write_json(&self.items_dir.join(format!("{id}.json")), &item)?;
            Ok::<_, QueueError>(item)
        })?;
        wake::poke(&self.wake_path);
        Ok(item)
    }

    fn list(&self) -> Result<QueueListing, QueueError> {
        let scan = self.scan()?;
        Ok(QueueListing {
            items: scan.items.iter().map(|i| (**i).clone()).collect(),
            problems: scan.problems,
        })
    }

    fn stats(&self) -> Result<QueueStats, QueueError> {
        let scan = self.scan()?;
        let mut s = QueueStats { corrupt: scan.corrupt, ..Default::default() };
        for i in &scan.items {
            s.total += 1;
            match i.status {
                QueueStatus::Pending => s.pending += 1,
                QueueStatus::Notified => s.notified += 1,
                QueueStatus::Completed => s.completed += 1,
                QueueStatus::Error => s.error += 1,
            }
        }
        Ok(s)
    }

    fn claim_next(
        &self,
        claim: &Claim,
        now: OffsetDateTime,
    ) -> Result<Option<QueueItem>, QueueError> {
        self.claim_next_matching(claim, now, &|_| true)
    }

    fn update(&self, id: &str, f: &mut dyn FnMut(&mut QueueItem)) -> Result<QueueItem, QueueError> {
        let path = self.item_path(id)?;
        storage::with_exclusive_lock(&self.lock_path, || {
            let mut item =
                read_item(&path, id)?.ok_or_else(|| QueueError::NotFound { id: id.into() })?;
            item.updated_at = Some(self.clock.now());
            f(&mut item);
            item.id = id.to_string();
            storage::write_json(&path, &item)?;
            Ok(item)
        })
    }

    fn clear(&self, older_than: OffsetDateTime) -> Result<usize, QueueError> {
        if fs::symlink_metadata(&self.items_dir).is_err() {
            return Ok(0);
        }
        storage::with_exclusive_lock(&self.lock_path, || {
            let scan = self.scan()?;
            let mut removed = 0;
            for item in scan.items.iter().filter(|i| i.status.is_final()) {
                if item.updated_at.unwrap_or(item.created_at) < older_than {
                    let path = self.items_dir.join(format!("{}.json", item.id));
                    if storage::remove_file(&path)? {
                        removed += 1;
                    }
                }
            }
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_numerically_and_reject_paths() {
        assert!(sort_key("q_1234567890") < sort_key("q_01763900000000000000"));
        assert_eq!(sort_key("q_../x"), None);
        assert_eq!(sort_key("q_"), None);
        assert_eq!(sort_key("x_1"), None);
        assert!(is_kept_aside("q_1.json.corrupt-20260101T000000.000000000Z"));
        assert!(!is_kept_aside("q_1.json"));
    }
}
