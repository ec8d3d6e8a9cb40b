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
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kugetsu_core::StateDir;
use kugetsu_core::clock::{Clock, SystemClock};
use kugetsu_core::queue::{
    Claim, ClaimLane, NewTask, Once, QueueError, QueueItem, QueueListing, QueueStats, QueueStatus,
    TaskQueue,
};
use kugetsu_core::storage::{self, StorageError};
use time::OffsetDateTime;

use crate::wake;

/// How long a scan is reused while `queue/items/` looks unchanged. Editing an item file in
/// place (not through kugetsu, which always writes a new file and renames it) leaves the
/// directory untouched; a long-lived process (the daemon) still sees such an edit within this
/// time. (`queue/items.cache`, used only for counts by fresh processes, notices it at the next
/// change in the directory.)
pub const SCAN_REUSE_FOR: Duration = Duration::from_secs(10);

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
    cache_path: PathBuf,
    clock: Arc<dyn Clock>,
    cache: Mutex<ScanCache>,
}

#[derive(Default)]
struct ScanCache {
    /// Parsed items by file name stem, with the file identity they were read from.
    files: HashMap<String, Cached>,
    /// The last whole scan, reused while the directory itself is unchanged, for at most
    /// [`SCAN_REUSE_FOR`].
    last: Option<(DirKey, Instant, Arc<Scan>)>,
}

/// The identity of `queue/items/` itself. Every create, rename and delete of an entry (and
/// every atomic rewrite is a rename) changes its mtime/ctime.
#[derive(Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct DirKey {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl DirKey {
    fn of(meta: &fs::Metadata) -> Self {
        DirKey {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether a scan that started at `start` may be trusted while this key stays the same.
    /// Directory times have coarse granularity: a change in the same tick as the scan would
    /// leave the key unchanged, so a directory changed within the last second is never
    /// trusted (git's "racily clean" rule, with a wide margin).
    fn settled_before(&self, start: SystemTime) -> bool {
        let changed = UNIX_EPOCH
            + Duration::new(self.mtime.0.max(0) as u64, self.mtime.1.clamp(0, 999_999_999) as u32)
                .max(Duration::new(
                    self.ctime.0.max(0) as u64,
                    self.ctime.1.clamp(0, 999_999_999) as u32,
                ));
        start.duration_since(changed).is_ok_and(|d| d >= Duration::from_secs(1))
    }
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
    // `Stat` field types differ between targets; the casts are no-ops on some of them.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn of(st: &rustix::fs::Stat) -> Self {
        FileKey {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: st.st_size as u64,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
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
            cache_path: state.queue_dir().join("items.cache"),
            wake_path: wake::wake_path(state),
            clock,
            cache: Mutex::new(ScanCache::default()),
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

    fn ensure_dirs(&self) -> Result<(), QueueError> {
        storage::ensure_dir(&self.items_dir)?;
        Ok(())
    }

    fn cache(&self) -> MutexGuard<'_, ScanCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the directory, re-parsing only files whose identity changed since the last scan,
    /// and not even listing it when the directory is unchanged since a settled scan.
    fn scan(&self) -> Result<Arc<Scan>, QueueError> {
        let start = SystemTime::now();
        let dir_key = match fs::symlink_metadata(&self.items_dir) {
            Ok(m) => DirKey::of(&m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Arc::new(Scan { items: Vec::new(), problems: Vec::new(), corrupt: 0 }));
            }
            Err(e) => return Err(self.dir_error(e)),
        };
        if let Some((_, _, scan)) = self
            .cache()
            .last
            .as_ref()
            .filter(|(k, at, _)| *k == dir_key && at.elapsed() < SCAN_REUSE_FOR)
        {
            return Ok(scan.clone());
        }
        let mut items = Vec::new();
        let mut problems = Vec::new();
        let mut corrupt = 0;
        let mut seen = HashMap::new();
        let previous = std::mem::take(&mut self.cache().files);
        let dir = self.open_dir()?;
        for entry in fs::read_dir(&self.items_dir).map_err(|e| self.dir_error(e))? {
            let entry = entry.map_err(|e| self.dir_error(e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if let Some(id) = item_stem(name) {
                let Some(key) = self.item_key(&dir, name, &mut problems) else { continue };
                let cached = previous.get(id).filter(|c| c.key == key).cloned();
                let cached = match cached {
                    Some(c) => c,
                    None => match read_item(&path, id) {
                        Ok(Some(item)) => Cached { key, item: Arc::new(item) },
                        Ok(None) => continue,
                        Err(e) => {
                            corrupt += usize::from(is_corrupt(&e));
                            problems.push(e.to_string());
                            continue;
                        }
                    },
                };
                items.push(cached.item.clone());
                seen.insert(id.to_string(), cached);
            } else if is_kept_aside(name) {
                corrupt += 1;
                problems.push(kept_aside_problem(&path));
            }
        }
        items.sort_by_cached_key(|i| (sort_key(&i.id), i.id.clone()));
        problems.sort();
        let scan = Arc::new(Scan { items, problems, corrupt });
        let mut cache = self.cache();
        cache.files = seen;
        cache.last = dir_key.settled_before(start).then(|| (dir_key, Instant::now(), scan.clone()));
        Ok(scan)
    }

    fn dir_error(&self, source: io::Error) -> QueueError {
        StorageError::Io { action: "read", path: self.items_dir.clone(), source }.into()
    }

    /// Opens `queue/items/` so that entries are inspected relative to it (`fstatat` on a
    /// name instead of resolving the whole path 10,000 times).
    fn open_dir(&self) -> Result<OwnedFd, QueueError> {
        use rustix::fs::{Mode, OFlags};
        rustix::fs::open(
            &self.items_dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.dir_error(e.into()))
    }

    /// The identity of an item file, or `None` (with a problem noted) if it is gone, a
    /// symlink, or cannot be inspected.
    fn item_key(&self, dir: &OwnedFd, name: &str, problems: &mut Vec<String>) -> Option<FileKey> {
        use rustix::fs::{AtFlags, FileType};
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                problems
                    .push(StorageError::Symlink { path: self.items_dir.join(name) }.to_string());
                None
            }
            Ok(st) => Some(FileKey::of(&st)),
            Err(rustix::io::Errno::NOENT) => None,
            Err(e) => {
                problems
                    .push(format!("cannot inspect {}: {e}", self.items_dir.join(name).display()));
                None
            }
        }
    }

    /// `stats` for a process that has scanned nothing yet (the CLI's `queue stats`): counts
    /// from `queue/items.cache`, a disposable summary (file identity and status per item)
    /// that any `stats` refreshes. With an unchanged, settled directory this reads one small
    /// file; otherwise only items whose identity changed are parsed. The cache is never
    /// trusted over the items: a wrong or unreadable cache just means more parsing.
    fn stats_cold(&self) -> Result<QueueStats, QueueError> {
        let start = SystemTime::now();
        let dir_key = match fs::symlink_metadata(&self.items_dir) {
            Ok(m) => DirKey::of(&m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(QueueStats::default()),
            Err(e) => return Err(self.dir_error(e)),
        };
        let old: StatsCache = fs::read(&self.cache_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|c: &StatsCache| c.version == STATS_CACHE_VERSION)
            .unwrap_or_default();
        if old.dir == Some(dir_key) {
            return Ok(old.counts);
        }
        let mut new = StatsCache { version: STATS_CACHE_VERSION, ..Default::default() };
        let mut problems = Vec::new();
        let dir = self.open_dir()?;
        for entry in fs::read_dir(&self.items_dir).map_err(|e| self.dir_error(e))? {
            let entry = entry.map_err(|e| self.dir_error(e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if let Some(id) = item_stem(name) {
                let Some(key) = self.item_key(&dir, name, &mut problems) else { continue };
                let status = match old.files.get(id).filter(|(k, _)| *k == key) {
                    Some((_, status)) => *status,
                    None => match read_item(&path, id) {
                        Ok(Some(item)) => item.status,
                        Ok(None) => continue,
                        Err(e) => {
                            new.counts.corrupt += usize::from(is_corrupt(&e));
                            continue;
                        }
                    },
                };
                new.counts.add(status);
                new.files.insert(id.to_string(), (key, status));
            } else if is_kept_aside(name) {
                new.counts.corrupt += 1;
            }
        }
        let counts = new.counts;
        new.dir = dir_key.settled_before(start).then_some(dir_key);
        if new.files != old.files || new.dir != old.dir {
            // Best effort: a cache that cannot be written only costs speed.
            if let Ok(bytes) = serde_json::to_vec(&new) {
                let _ = storage::atomic_write(&self.cache_path, &bytes);
            }
        }
        Ok(counts)
    }

    fn next_id(&self) -> Result<String, QueueError> {
        let now = self.clock.now().unix_timestamp_nanos().max(0) as u128;
        // `seq` is only a hint against the clock stepping back: unreadable means "no hint",
        // and it is safe to rewrite (uniqueness comes from the existence check below). So it
        // is written plainly, without the two fsyncs of a durable write: losing it in a crash
        // loses nothing but the hint, and the wall clock has moved on by then anyway.
        let last = fs::read_to_string(&self.seq_path)
            .ok()
            .and_then(|s| s.trim().parse::<u128>().ok())
            .unwrap_or(0);
        let mut next = now.max(last.saturating_add(1));
        loop {
            let id = format!("q_{next:020}");
            if fs::symlink_metadata(self.items_dir.join(format!("{id}.json"))).is_err() {
                write_hint(&self.seq_path, format!("{next}\n").as_bytes());
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

/// Writes a file that is only a hint (not state): private like every kugetsu file, never
/// through a symlink, but without fsync; errors are ignored by design.
fn write_hint(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    if let Ok(mut f) = storage::open_private(path, storage::PrivateOpen::Truncate) {
        let _ = f.write_all(bytes);
    }
}

/// `q_<digits>` from `q_<digits>.json`, or `None` for any other file.
fn item_stem(name: &str) -> Option<&str> {
    name.strip_suffix(".json").filter(|id| sort_key(id).is_some())
}

fn is_corrupt(e: &QueueError) -> bool {
    matches!(e, QueueError::Storage(StorageError::Corrupt { .. }))
}

fn kept_aside_problem(path: &Path) -> String {
    format!(
        "{}: a corrupt queue item kept aside earlier; inspect it, then delete it",
        path.display()
    )
}

const STATS_CACHE_VERSION: u32 = 1;

/// `queue/items.cache`: see [`FileQueue::stats_cold`].
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct StatsCache {
    version: u32,
    /// The directory identity the counts are valid for, when it had settled.
    dir: Option<DirKey>,
    counts: QueueStats,
    /// Per item: `[name, dev, ino, size, mtime s, mtime ns, ctime s, ctime ns, status]`, as
    /// arrays rather than objects to keep the file small and quick to parse.
    #[serde(with = "compact_files")]
    files: HashMap<String, (FileKey, QueueStatus)>,
}

mod compact_files {
    use std::collections::HashMap;

    use kugetsu_core::queue::QueueStatus;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::FileKey;

    type Row = (String, u64, u64, u64, i64, i64, i64, i64, QueueStatus);

    pub fn serialize<S: Serializer>(
        files: &HashMap<String, (FileKey, QueueStatus)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let rows: Vec<Row> = files
            .iter()
            .map(|(n, (k, st))| {
                (n.clone(), k.dev, k.ino, k.size, k.mtime.0, k.mtime.1, k.ctime.0, k.ctime.1, *st)
            })
            .collect();
        rows.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<HashMap<String, (FileKey, QueueStatus)>, D::Error> {
        let rows = Vec::<Row>::deserialize(d)?;
        Ok(rows
            .into_iter()
            .map(|(n, dev, ino, size, ms, mns, cs, cns, st)| {
                (n, (FileKey { dev, ino, size, mtime: (ms, mns), ctime: (cs, cns) }, st))
            })
            .collect())
    }
}

fn is_kept_aside(name: &str) -> bool {
    name.starts_with("q_") && name.contains(".json.corrupt-")
}

pub(crate) fn validate(task: &NewTask) -> Result<(), QueueError> {
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

impl FileQueue {
    /// Writes a new pending item for `task` (under the queue lock, which the caller holds).
    fn add_locked(&self, task: &NewTask, once_key: Option<&str>) -> Result<QueueItem, QueueError> {
        let id = self.next_id()?;
        let mut item = QueueItem::pending(id.clone(), task, self.clock.now());
        item.once_key = once_key.map(str::to_string);
        storage::write_json(&self.items_dir.join(format!("{id}.json")), &item)?;
        Ok(item)
    }
}

impl TaskQueue for FileQueue {
    fn enqueue(&self, task: NewTask) -> Result<QueueItem, QueueError> {
        validate(&task)?;
        self.ensure_dirs()?;
        let item = storage::with_exclusive_lock(&self.lock_path, || self.add_locked(&task, None))?;
        wake::poke(&self.wake_path);
        Ok(item)
    }

    fn enqueue_once(&self, task: NewTask, key: &str) -> Result<Once, QueueError> {
        validate(&task)?;
        kugetsu_core::queue::validate_once_key(key)?;
        self.ensure_dirs()?;
        let once = storage::with_exclusive_lock(&self.lock_path, || {
            // Under the lock every item written before is on disk, and a key never changes; the
            // directory is listed anew (its mtime may not have ticked since the last listing).
            self.cache().last = None;
            let scan = self.scan()?;
            if let Some(found) = scan.items.iter().find(|i| i.once_key.as_deref() == Some(key)) {
                return Ok::<_, QueueError>(Once::Found((**found).clone()));
            }
            self.add_locked(&task, Some(key)).map(Once::Added)
        })?;
        if matches!(once, Once::Added(_)) {
            wake::poke(&self.wake_path);
        }
        Ok(once)
    }

    fn list(&self) -> Result<QueueListing, QueueError> {
        let scan = self.scan()?;
        Ok(QueueListing {
            items: scan.items.iter().map(|i| (**i).clone()).collect(),
            problems: scan.problems.clone(),
        })
    }

    fn stats(&self) -> Result<QueueStats, QueueError> {
        if self.cache().files.is_empty() {
            return self.stats_cold();
        }
        let scan = self.scan()?;
        let mut s = QueueStats::count(scan.items.iter().map(|i| i.status));
        s.corrupt = scan.corrupt;
        Ok(s)
    }

    fn claim_next_in(
        &self,
        claim: &Claim,
        now: OffsetDateTime,
        lane: ClaimLane,
    ) -> Result<Option<QueueItem>, QueueError> {
        self.ensure_dirs()?;
        storage::with_exclusive_lock(&self.lock_path, || {
            let scan = self.scan()?;
            for candidate in scan.items.iter().filter(|i| is_due(i, now) && lane.accepts(i)) {
                // The cache is a hint; decide on what is on disk now, under the lock.
                let path = self.items_dir.join(format!("{}.json", candidate.id));
                let Some(mut item) = read_item(&path, &candidate.id)? else { continue };
                if !is_due(&item, now) || !lane.accepts(&item) {
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

    fn update_claimed(
        &self,
        id: &str,
        claim: &Claim,
        f: &mut dyn FnMut(&mut QueueItem),
    ) -> Result<QueueItem, QueueError> {
        let path = self.item_path(id)?;
        storage::with_exclusive_lock(&self.lock_path, || {
            let mut item =
                read_item(&path, id)?.ok_or_else(|| QueueError::NotFound { id: id.into() })?;
            // Checked under the queue lock, so no claim can change hands in between.
            if !claim.holds(&item) {
                return Err(QueueError::LeaseLost { id: id.into() });
            }
            item.updated_at = Some(self.clock.now());
            f(&mut item);
            item.id = id.to_string();
            storage::write_json(&path, &item)?;
            Ok(item)
        })
    }

    fn get(&self, id: &str) -> Result<QueueItem, QueueError> {
        let path = self.item_path(id)?;
        let mut item: QueueItem =
            storage::read_json(&path)?.ok_or_else(|| QueueError::NotFound { id: id.into() })?;
        item.id = id.to_string();
        Ok(item)
    }

    fn next_retry_at(&self, now: OffsetDateTime) -> Result<Option<OffsetDateTime>, QueueError> {
        Ok(kugetsu_core::queue::earliest_retry(self.scan()?.items.iter().map(|i| &**i), now))
    }

    /// Without cloning every item as [`TaskQueue::list`] does.
    fn problems(&self) -> Result<Vec<String>, QueueError> {
        Ok(self.scan()?.problems.clone())
    }

    fn claimed(&self) -> Result<Vec<QueueItem>, QueueError> {
        let scan = self.scan()?;
        Ok(scan
            .items
            .iter()
            .filter(|i| i.status == QueueStatus::Notified)
            .map(|i| (**i).clone())
            .collect())
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
