//! `MAX_CONCURRENT_AGENTS` as lock files: `locks/slot-<n>.lock`, held with `flock`.
//!
//! The original bash kugetsu counted running sessions and then started an agent, so two
//! `start`s racing between the count and the start both got in. Here a slot *is* a lock the
//! kernel holds for a live process: taking one is atomic, a killed holder frees it at once,
//! and nothing needs cleaning up after a crash.
//!
//! Rules:
//! - Taking a slot happens under a short mutex (`locks/slots.lock`): count the held slots
//!   (try-locking every `slot-*.lock` that exists, whatever its index), and only if fewer
//!   than `limit` are held, lock the lowest free index below `limit`. Because every acquirer
//!   counts and takes under the same mutex, and releases only lower the count, no grant ever
//!   brings the number held above the `limit` of that call. Lowering the limit takes effect at
//!   once: no new slot is granted until the count drops below the new limit.
//! - `limit` is passed on every call, so a config change applies without restarting anything.
//! - The PM agent takes no slot; callers simply do not ask for one.
//! - Racing `start`s: the orchestration waits for a slot in short [`AgentSlots::acquire`] steps
//!   (so a stop request ends the wait) up to the run's wait (`--wait SECS`, as long as it takes
//!   by default, none with `--no-wait`), then fails with [`QueueError::NoSlot`] naming the
//!   limit; with `--no-wait` the CLI then enqueues the whole `start` for the daemon instead of
//!   running it, so the daemon starts it when a slot frees. Either way nothing runs over the
//!   limit and nothing is lost.
//!
//! Why not fd-lock for the held slot: its guard borrows the `RwLock` that owns the file, so it
//! cannot be returned as an owned `Box<dyn SlotGuard>` that lives for a whole agent run. A
//! [`FileSlotGuard`] owns the open `File` and locks it with `rustix::fs::flock` (the same
//! `flock` fd-lock uses, so the two interoperate); dropping the guard closes the file, which
//! releases the lock, and so does the kernel if the process dies. Slot files are opened with
//! `O_CLOEXEC` (Rust's default), so an agent the holder spawns does not inherit the lock.

use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use kugetsu_core::StateDir;
use kugetsu_core::queue::{AgentSlots, QueueError, SlotGuard, poll_for_slot};
use kugetsu_core::storage::{self, StorageError};
use rustix::fs::FlockOperation;

/// Upper bound on `limit`: a typo like `MAX_CONCURRENT_AGENTS=30000` must not open thousands
/// of lock files per call.
pub const MAX_SLOTS: usize = 256;

/// Slots as lock files in `locks/`.
#[derive(Debug, Clone)]
pub struct FileSlots {
    locks_dir: PathBuf,
    mutex_path: PathBuf,
}

/// A held slot: owns the locked file. Dropping it frees the slot.
#[derive(Debug)]
pub struct FileSlotGuard {
    index: usize,
    // Never read: holding the open file is what holds the lock.
    _file: File,
}

impl SlotGuard for FileSlotGuard {
    fn index(&self) -> usize {
        self.index
    }
}

impl FileSlots {
    /// The slots of `state`. Touches nothing on disk.
    pub fn new(state: &StateDir) -> Self {
        FileSlots { locks_dir: state.locks_dir(), mutex_path: state.lock_path("slots") }
    }

    /// `locks/slot-<index>.lock`.
    pub fn slot_path(&self, index: usize) -> PathBuf {
        self.locks_dir.join(format!("slot-{index}.lock"))
    }

    /// Try-locks slot `index`: `Some(guard)` if it was free.
    fn try_lock(&self, index: usize) -> Result<Option<FileSlotGuard>, QueueError> {
        let path = self.slot_path(index);
        let file = storage::open_lock_file(&path)?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(FileSlotGuard { index, _file: file })),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
            Err(e) => {
                Err(StorageError::Io { action: "lock", path, source: io::Error::from(e) }.into())
            }
        }
    }

    /// Indexes of every slot file present (held or not).
    fn existing(&self) -> Result<Vec<usize>, QueueError> {
        let entries = match fs::read_dir(&self.locks_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(StorageError::Io {
                    action: "read",
                    path: self.locks_dir.clone(),
                    source: e,
                }
                .into());
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_prefix("slot-"))
                .and_then(|n| n.strip_suffix(".lock"))
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            if n < MAX_SLOTS {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Counts held slots; must run under the slots mutex so that our own probes (which lock a
    /// free slot for an instant) never make another acquirer see it busy.
    fn count_held(&self) -> Result<usize, QueueError> {
        let mut held = 0;
        for index in self.existing()? {
            if self.try_lock(index)?.is_none() {
                held += 1;
            }
        }
        Ok(held)
    }
}

impl AgentSlots for FileSlots {
    fn try_acquire(&self, limit: usize) -> Result<Option<Box<dyn SlotGuard>>, QueueError> {
        let limit = limit.min(MAX_SLOTS);
        if limit == 0 {
            return Ok(None);
        }
        storage::ensure_dir(&self.locks_dir)?;
        storage::with_exclusive_lock(&self.mutex_path, || {
            if self.count_held()? >= limit {
                return Ok(None);
            }
            for index in 0..limit {
                if let Some(guard) = self.try_lock(index)? {
                    return Ok(Some(Box::new(guard) as Box<dyn SlotGuard>));
                }
            }
            Ok(None)
        })
    }

    fn acquire(&self, limit: usize, timeout: Duration) -> Result<Box<dyn SlotGuard>, QueueError> {
        let pauses = (Duration::from_millis(5), Duration::from_millis(100));
        poll_for_slot(limit, timeout, pauses, || self.try_acquire(limit))
    }

    fn active(&self) -> Result<usize, QueueError> {
        if fs::symlink_metadata(&self.locks_dir).is_err() {
            return Ok(0);
        }
        storage::with_exclusive_lock(&self.mutex_path, || self.count_held())
    }
}

/// The slot a daemon worker already holds, lent to the code it dispatches.
///
/// The daemon takes a slot *before* it claims an item (so it never claims work it cannot
/// run), and the worker keeps it for the agent's whole run. The orchestration it calls
/// (`start`/`continue`) takes a slot itself; handing it this adapter as its `AgentSlots` makes
/// that inner acquire return the slot already held, instead of taking a second one (which
/// would halve the real concurrency, or deadlock with a limit of 1). Dropping the lent guard
/// frees nothing: the worker's own guard does that when the run is over.
#[derive(Debug, Clone, Copy)]
pub struct LentSlot {
    index: usize,
}

impl LentSlot {
    /// Lends slot `index`, which the caller holds for longer than this adapter lives.
    pub fn new(index: usize) -> Self {
        LentSlot { index }
    }
}

struct LentGuard {
    index: usize,
}

impl SlotGuard for LentGuard {
    fn index(&self) -> usize {
        self.index
    }
}

impl AgentSlots for LentSlot {
    fn try_acquire(&self, _limit: usize) -> Result<Option<Box<dyn SlotGuard>>, QueueError> {
        Ok(Some(Box::new(LentGuard { index: self.index })))
    }

    fn acquire(&self, _limit: usize, _timeout: Duration) -> Result<Box<dyn SlotGuard>, QueueError> {
        Ok(Box::new(LentGuard { index: self.index }))
    }

    fn active(&self) -> Result<usize, QueueError> {
        Ok(1)
    }
}

/// Slots that are never granted: what the daemon hands the orchestration for work that takes
/// no slot (the PM agent's turns, settling an adopted agent's session), so that a slip that
/// asked for one would fail loudly instead of taking a slot nobody accounted for.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSlots;

impl AgentSlots for NoSlots {
    fn try_acquire(&self, _limit: usize) -> Result<Option<Box<dyn SlotGuard>>, QueueError> {
        Ok(None)
    }

    fn acquire(&self, limit: usize, _timeout: Duration) -> Result<Box<dyn SlotGuard>, QueueError> {
        Err(QueueError::NoSlot { limit, waited: Duration::ZERO })
    }

    fn active(&self) -> Result<usize, QueueError> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots() -> (tempfile::TempDir, FileSlots) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        (dir, FileSlots::new(&state))
    }

    #[test]
    fn never_more_than_the_limit_and_drop_frees() {
        let (_dir, slots) = slots();
        let a = slots.try_acquire(2).unwrap().unwrap();
        let b = slots.try_acquire(2).unwrap().unwrap();
        assert_ne!(a.index(), b.index());
        assert!(slots.try_acquire(2).unwrap().is_none());
        assert_eq!(slots.active().unwrap(), 2);
        drop(a);
        assert_eq!(slots.active().unwrap(), 1);
        assert!(slots.try_acquire(2).unwrap().is_some());
    }

    #[test]
    fn lowering_the_limit_counts_slots_above_it() {
        let (_dir, slots) = slots();
        let held: Vec<_> = (0..4).map(|_| slots.try_acquire(4).unwrap().unwrap()).collect();
        assert!(slots.try_acquire(2).unwrap().is_none(), "4 held, new limit 2");
        drop(held);
        assert!(slots.try_acquire(2).unwrap().is_some());
    }

    #[test]
    fn zero_limit_never_grants_and_acquire_times_out() {
        let (_dir, slots) = slots();
        assert!(slots.try_acquire(0).unwrap().is_none());
        let _a = slots.try_acquire(1).unwrap().unwrap();
        let err = slots.acquire(1, Duration::from_millis(30)).err().unwrap();
        assert!(matches!(err, QueueError::NoSlot { limit: 1, .. }), "{err}");
    }
}
