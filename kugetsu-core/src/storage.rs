//! Durable, private, crash-safe files for the state directory.
//!
//! Everything kugetsu remembers lives in small files that several processes (the CLI, the daemon,
//! agents calling the CLI) read and rewrite concurrently, and any of them may be killed at any
//! moment. So every write here is atomic and durable (temp file in the same directory, fsync,
//! rename, fsync of the directory), files are created `0600` and directories `0700` from the
//! start (never chmod-ed afterwards, which would leave a window), symlinks are refused, shared
//! files are rewritten under kernel-released locks, and a file that cannot be parsed is moved
//! aside with its bytes intact instead of being replaced by an empty state.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::process::Liveness;

/// Mode of every file kugetsu creates: only the owner may read it (it may hold tokens).
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory kugetsu creates.
pub const DIR_MODE: u32 = 0o700;
/// Largest state file kugetsu will read; anything bigger is treated as corrupt rather than
/// loaded into memory.
pub const MAX_STATE_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A failure reading or writing a state file; every variant names the path it is about.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done ("read", "write", "create directory", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file exists but is not valid; its bytes were kept aside at `kept_at`.
    #[error("{path} is corrupt ({reason}); its contents were kept at {kept_at}")]
    Corrupt {
        /// The state file that could not be parsed.
        path: PathBuf,
        /// Where the unparseable bytes now are.
        kept_at: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A state file or directory is a symbolic link; kugetsu does not follow them.
    #[error("{path} is a symbolic link; kugetsu refuses to follow links in its state directory")]
    Symlink {
        /// The symbolic link found where a state file or directory belongs.
        path: PathBuf,
    },
    /// The state directory belongs to someone else or others may write to it.
    #[error("{path} is not private: {reason}")]
    NotPrivate {
        /// The directory or file concerned.
        path: PathBuf,
        /// Owner or mode problem, in words.
        reason: String,
    },
    /// A value could not be serialized (a programming error, reported rather than panicking).
    #[error("cannot serialize {path}")]
    Serialize {
        /// The file that was to be written.
        path: PathBuf,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// A lock is held by another live process and the caller asked not to wait.
    #[error("{path} is locked by another kugetsu process")]
    WouldBlock {
        /// The lock file.
        path: PathBuf,
    },
}

impl StorageError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        StorageError::Io { action, path: path.to_path_buf(), source }
    }
}

/// Creates `dir` and its missing parents with mode `0700`, refusing symlinks.
pub fn ensure_dir(dir: &Path) -> Result<(), StorageError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(StorageError::Symlink { path: dir.to_path_buf() });
        }
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(StorageError::io(
                "create directory",
                dir,
                io::Error::new(io::ErrorKind::AlreadyExists, "a file is in the way"),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StorageError::io("inspect", dir, e)),
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| StorageError::io("create directory", dir, e))
}

/// Checks that `dir` is owned by the current user and not writable by group or others.
///
/// A state directory others can write to would let them plant session files or symlinks that
/// kugetsu then acts on, so it is refused rather than silently used.
pub fn check_private_dir(dir: &Path) -> Result<(), StorageError> {
    let meta = fs::symlink_metadata(dir).map_err(|e| StorageError::io("inspect", dir, e))?;
    if meta.file_type().is_symlink() {
        return Err(StorageError::Symlink { path: dir.to_path_buf() });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(StorageError::NotPrivate {
            path: dir.to_path_buf(),
            reason: format!("owned by uid {}, not by you (uid {me})", meta.uid()),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(StorageError::NotPrivate {
            path: dir.to_path_buf(),
            reason: format!(
                "mode {mode:o} lets others write to it (run: chmod 700 {})",
                dir.display()
            ),
        });
    }
    Ok(())
}

fn refuse_symlink(path: &Path) -> Result<bool, StorageError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            Err(StorageError::Symlink { path: path.to_path_buf() })
        }
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io("inspect", path, e)),
    }
}

/// Refuses a state file whose directory is a symlink (`sessions/` planted as a link to
/// somewhere else): following it would read, write or delete files outside the state directory.
/// Only the immediate directory is checked; the root itself is checked by
/// [`check_private_dir`].
fn refuse_symlinked_dir(path: &Path) -> Result<(), StorageError> {
    let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) else { return Ok(()) };
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            Err(StorageError::Symlink { path: dir.to_path_buf() })
        }
        _ => Ok(()),
    }
}

/// Reads a whole state file, or `None` when it does not exist. Symlinks (the file or its
/// directory) are refused and files above [`MAX_STATE_FILE_BYTES`] are reported as corrupt (and
/// kept aside).
pub fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    refuse_symlinked_dir(path)?;
    if !refuse_symlink(path)? {
        return Ok(None);
    }
    // NONBLOCK: opening a FIFO planted where a state file should be must not hang kugetsu; it
    // has no effect on reading regular files.
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(StorageError::Symlink { path: path.to_path_buf() });
        }
        Err(e) => return Err(StorageError::io("read", path, e)),
    };
    let meta = file.metadata().map_err(|e| StorageError::io("read", path, e))?;
    if !meta.is_file() {
        return Err(StorageError::io(
            "read",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    let len = meta.len();
    if len > MAX_STATE_FILE_BYTES {
        return Err(quarantine(path, &format!("{len} bytes is larger than any state file")));
    }
    let mut buf = Vec::with_capacity(len as usize);
    // Bounded even if the file grows while it is read.
    file.take(MAX_STATE_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| StorageError::io("read", path, e))?;
    if buf.len() as u64 > MAX_STATE_FILE_BYTES {
        return Err(quarantine(path, "it grew larger than any state file while being read"));
    }
    Ok(Some(buf))
}

/// Reads and parses a JSON state file, or `None` when it does not exist.
///
/// A file that is not valid JSON of the expected shape is moved aside (see [`quarantine`]) and
/// reported as [`StorageError::Corrupt`]: callers never mistake it for an empty state.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StorageError> {
    let Some(bytes) = read_bytes(path)? else { return Ok(None) };
    match serde_json::from_slice(&bytes) {
        Ok(value) => Ok(Some(value)),
        Err(e) => Err(quarantine(path, &e.to_string())),
    }
}

/// Moves an unparseable file aside as `<name>.corrupt-<timestamp>` and returns the error that
/// reports it. If even the rename fails the file is left where it is, still never overwritten
/// by a reader.
pub fn quarantine(path: &Path, reason: &str) -> StorageError {
    let stamp = time::OffsetDateTime::now_utc();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let suffix = crate::clock::compact_nanos(stamp);
    let kept_at = path.with_file_name(format!("{name}.corrupt-{suffix}"));
    let kept_at = match fs::rename(path, &kept_at) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                let _ = sync_dir(dir);
            }
            tracing::warn!(path = %path.display(), kept_at = %kept_at.display(), reason, "corrupt state file moved aside");
            kept_at
        }
        Err(_) => path.to_path_buf(),
    };
    StorageError::Corrupt { path: path.to_path_buf(), kept_at, reason: reason.to_string() }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically and durably.
///
/// The bytes go to a temp file in the same directory (created `0600`), which is fsynced, renamed
/// over `path`, and the directory is fsynced, so a crash at any point leaves either the whole old
/// or the whole new content. A symlink at `path`, or in place of its directory, is refused
/// rather than replaced or written through.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    refuse_symlinked_dir(path)?;
    refuse_symlink(path)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&tmp)
            .map_err(|e| StorageError::io("write", path, e))?;
        file.write_all(bytes).map_err(|e| StorageError::io("write", path, e))?;
        file.sync_all().map_err(|e| StorageError::io("sync", path, e))?;
        drop(file);
        fs::rename(&tmp, path).map_err(|e| StorageError::io("replace", path, e))?;
        sync_dir(dir).map_err(|e| StorageError::io("sync directory", dir, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes the temp files that writers killed mid-[`atomic_write`] left in `dir`
/// (`.<name>.tmp-<pid>-<n>`), but only those whose writer process is gone, so a write in
/// progress is never disturbed (`writers` says which writer still runs). Returns what it
/// removed. A killed writer never leaves a torn state file, only this litter; `doctor`/`prune`
/// call this to sweep it.
pub fn remove_stale_temp_files(
    dir: &Path,
    writers: &dyn Liveness,
) -> Result<Vec<PathBuf>, StorageError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StorageError::io("list", dir, e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_file_pid) else { continue };
        // The one liveness rule (a zombie writer has exited too: its write will never finish).
        if u32::try_from(pid).is_ok_and(|pid| writers.is_running(pid)) {
            continue;
        }
        let path = entry.path();
        if remove_file(&path)? {
            removed.push(path);
        }
    }
    Ok(removed)
}

/// The writer pid of a temp file name made by [`atomic_write`].
fn temp_file_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".tmp-")?;
    let (pid, counter) = tail.split_once('-')?;
    if counter.is_empty() || !counter.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Serializes `value` as pretty JSON (with a trailing newline) and writes it with
/// [`atomic_write`].
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), StorageError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|source| StorageError::Serialize { path: path.to_path_buf(), source })?;
    bytes.push(b'\n');
    atomic_write(path, &bytes)
}

/// How [`open_private`] opens a file for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivateOpen {
    /// Writes go to the end (a log).
    Append,
    /// The file is emptied first (a log that starts again, a hint).
    Truncate,
}

/// The one way a log or other non-atomic state file is opened for writing: created `0600`,
/// never through a symlink (the file or its directory), and only a regular file (a FIFO
/// planted in its place fails at once instead of blocking the writer).
///
/// Logs are appended to while kugetsu runs, so they cannot go through [`atomic_write`]; they
/// still hold what agents print, so they get the same refusals as every other state file.
pub fn open_private(path: &Path, how: PrivateOpen) -> Result<File, StorageError> {
    refuse_symlinked_dir(path)?;
    let mut options = OpenOptions::new();
    match how {
        PrivateOpen::Append => options.append(true),
        PrivateOpen::Truncate => options.write(true).truncate(true),
    };
    // NONBLOCK: opening a FIFO for writing fails (ENXIO) instead of waiting for a reader.
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file =
        options.create(true).mode(FILE_MODE).custom_flags(flags.bits() as i32).open(path).map_err(
            |e| match e.raw_os_error() {
                Some(n) if n == rustix::io::Errno::LOOP.raw_os_error() => {
                    StorageError::Symlink { path: path.to_path_buf() }
                }
                _ => StorageError::io("open", path, e),
            },
        )?;
    let meta = file.metadata().map_err(|e| StorageError::io("open", path, e))?;
    if !meta.is_file() {
        return Err(StorageError::io(
            "open",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    // Back to blocking writes: a full disk must not turn into lost lines.
    rustix::fs::fcntl_getfl(&file)
        .and_then(|f| rustix::fs::fcntl_setfl(&file, f.difference(rustix::fs::OFlags::NONBLOCK)))
        .map_err(|e| StorageError::io("open", path, e.into()))?;
    Ok(file)
}

/// Opens (creating `0600` if needed) a lock file. Lock files are never deleted: deleting one
/// while another process waits on it would let two holders in at once.
pub fn open_lock_file(path: &Path) -> Result<File, StorageError> {
    if let Some(dir) = path.parent() {
        ensure_dir(dir)?;
    }
    refuse_symlink(path)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| StorageError::io("open lock", path, e))
}

/// Runs `f` while holding an exclusive lock on `lock_path`, waiting for other holders.
///
/// The lock is an `flock` through fd-lock, so the kernel drops it when the holder dies: a
/// killed process never leaves the state directory locked.
pub fn with_exclusive_lock<R, E>(lock_path: &Path, f: impl FnOnce() -> Result<R, E>) -> Result<R, E>
where
    E: From<StorageError>,
{
    let file = open_lock_file(lock_path)?;
    let mut lock = fd_lock::RwLock::new(file);
    let _guard = lock.write().map_err(|e| StorageError::io("lock", lock_path, e))?;
    f()
}

/// Like [`with_exclusive_lock`] but returns [`StorageError::WouldBlock`] instead of waiting.
pub fn try_with_exclusive_lock<R, E>(
    lock_path: &Path,
    f: impl FnOnce() -> Result<R, E>,
) -> Result<R, E>
where
    E: From<StorageError>,
{
    let file = open_lock_file(lock_path)?;
    let mut lock = fd_lock::RwLock::new(file);
    let _guard = match lock.try_write() {
        Ok(g) => g,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            return Err(StorageError::WouldBlock { path: lock_path.to_path_buf() }.into());
        }
        Err(e) => return Err(StorageError::io("lock", lock_path, e).into()),
    };
    f()
}

/// Read-modify-write of a JSON file under its lock: loads it (or `default()` when missing),
/// lets `f` change it, and writes it back atomically if `f` succeeds.
///
/// A corrupt file aborts the update with [`StorageError::Corrupt`]; it is never replaced by the
/// default.
pub fn update_json<T, R, E>(
    path: &Path,
    lock_path: &Path,
    default: impl FnOnce() -> T,
    f: impl FnOnce(&mut T) -> Result<R, E>,
) -> Result<R, E>
where
    T: Serialize + DeserializeOwned,
    E: From<StorageError>,
{
    with_exclusive_lock(lock_path, || {
        let mut value = read_json(path)?.unwrap_or_else(default);
        let out = f(&mut value)?;
        write_json(path, &value)?;
        Ok(out)
    })
}

/// Removes a state file if it exists (refusing symlinks, which are left for the user to see,
/// and files reached through a symlinked directory).
pub fn remove_file(path: &Path) -> Result<bool, StorageError> {
    refuse_symlinked_dir(path)?;
    if !refuse_symlink(path)? {
        return Ok(false);
    }
    match fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                let _ = sync_dir(dir);
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io("remove", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO at `path`: what a hostile neighbour plants to make an open wait forever.
    fn mkfifo(path: &Path) {
        let mode = rustix::fs::Mode::from_raw_mode(0o600);
        rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::Fifo, mode, 0).unwrap();
    }

    /// Only this pid runs.
    #[derive(Debug)]
    struct Only(u32);

    impl Liveness for Only {
        fn is_running(&self, pid: u32) -> bool {
            pid == self.0
        }
    }

    #[test]
    fn write_then_read_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_json(&path, &serde_json::json!({"x": 1})).unwrap();
        let v: serde_json::Value = read_json(&path).unwrap().unwrap();
        assert_eq!(v["x"], 1);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[test]
    fn stale_temp_files_of_dead_writers_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = 4_000_001;
        let stale = dir.path().join(format!(".index.json.tmp-{dead}-3"));
        let live = dir.path().join(format!(".index.json.tmp-{}-4", std::process::id()));
        for p in [&stale, &live] {
            fs::write(p, b"{").unwrap();
        }
        fs::write(dir.path().join("index.json"), b"{}").unwrap();
        fs::write(dir.path().join(".notes.tmp-x-1"), b"").unwrap();
        assert_eq!(temp_file_pid(".a.json.tmp-12-0"), Some(12));
        assert_eq!(temp_file_pid("a.json.tmp-12-0"), None);
        assert_eq!(temp_file_pid(".a.json.tmp-12-"), None);
        let removed = remove_stale_temp_files(dir.path(), &Only(std::process::id())).unwrap();
        assert_eq!(removed, vec![stale]);
        assert!(live.exists() && dir.path().join("index.json").exists());
        assert!(dir.path().join(".notes.tmp-x-1").exists());
    }

    #[test]
    fn fifos_and_directories_are_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("index.json");
        mkfifo(&fifo);
        let err = read_json::<serde_json::Value>(&fifo).unwrap_err();
        assert!(matches!(&err, StorageError::Io { path, .. } if *path == fifo), "{err}");
        let err = read_bytes(dir.path()).unwrap_err();
        assert!(matches!(err, StorageError::Io { .. }), "{err}");
    }

    #[test]
    fn missing_file_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let v: Option<serde_json::Value> = read_json(&dir.path().join("nope.json")).unwrap();
        assert!(v.is_none());
    }

    #[test]
    fn corrupt_file_is_moved_aside_with_bytes_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        fs::write(&path, b"{not json\0").unwrap();
        let err = read_json::<serde_json::Value>(&path).unwrap_err();
        let StorageError::Corrupt { kept_at, .. } = &err else { panic!("{err}") };
        assert!(!path.exists());
        assert_eq!(fs::read(kept_at).unwrap(), b"{not json\0");
        assert!(kept_at.file_name().unwrap().to_string_lossy().starts_with("index.json.corrupt-"));
        assert!(err.to_string().contains("index.json"));
    }

    #[test]
    fn update_never_replaces_a_corrupt_file_with_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.json");
        fs::write(&path, b"[1,").unwrap();
        let r: Result<(), StorageError> =
            update_json(&path, &dir.path().join("n.lock"), Vec::<u32>::new, |v| {
                v.push(1);
                Ok(())
            });
        assert!(matches!(r, Err(StorageError::Corrupt { .. })));
        assert!(!path.exists(), "the default was not written in its place");
    }

    #[test]
    fn logs_open_private_and_never_through_a_link_or_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("run.log");
        open_private(&log, PrivateOpen::Append).unwrap().write_all(b"one\n").unwrap();
        open_private(&log, PrivateOpen::Append).unwrap().write_all(b"two\n").unwrap();
        assert_eq!(fs::read_to_string(&log).unwrap(), "one\ntwo\n");
        assert_eq!(fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
        open_private(&log, PrivateOpen::Truncate).unwrap().write_all(b"three\n").unwrap();
        assert_eq!(fs::read_to_string(&log).unwrap(), "three\n");

        // A link planted where the log goes: refused, and its target is neither made nor
        // written.
        let target = dir.path().join("elsewhere");
        let link = dir.path().join("linked.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for how in [PrivateOpen::Append, PrivateOpen::Truncate] {
            assert!(matches!(open_private(&link, how), Err(StorageError::Symlink { .. })));
        }
        assert!(!target.exists());
        // A linked directory: refused too.
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("logs")).unwrap();
        let through = dir.path().join("logs/run.log");
        assert!(matches!(
            open_private(&through, PrivateOpen::Append),
            Err(StorageError::Symlink { .. })
        ));
        assert!(!real.join("run.log").exists());
        // A FIFO: refused at once rather than waiting for a reader.
        let fifo = dir.path().join("fifo.log");
        mkfifo(&fifo);
        assert!(open_private(&fifo, PrivateOpen::Append).is_err());
    }

    #[test]
    fn symlinked_state_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.json");
        fs::write(&target, b"{}").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(read_json::<serde_json::Value>(&link), Err(StorageError::Symlink { .. })));
        assert!(matches!(write_json(&link, &1), Err(StorageError::Symlink { .. })));
        assert_eq!(fs::read(&target).unwrap(), b"{}");
    }

    #[test]
    fn files_in_a_symlinked_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("x.json"), b"{}").unwrap();
        let link = dir.path().join("sessions");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let path = link.join("x.json");
        assert!(matches!(read_json::<serde_json::Value>(&path), Err(StorageError::Symlink { .. })));
        assert!(matches!(write_json(&path, &1), Err(StorageError::Symlink { .. })));
        assert!(matches!(
            write_json(&link.join("new.json"), &1),
            Err(StorageError::Symlink { .. })
        ));
        assert!(matches!(remove_file(&path), Err(StorageError::Symlink { .. })));
        assert_eq!(fs::read(outside.join("x.json")).unwrap(), b"{}");
        assert!(!outside.join("new.json").exists());
    }

    #[test]
    fn private_dir_check_rejects_group_writable() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("state");
        ensure_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        check_private_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_private_dir(&d).unwrap_err();
        assert!(err.to_string().contains("lets others write"), "{err}");
    }

    #[test]
    fn try_lock_reports_would_block_while_held() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("x.lock");
        let inner: Result<(), StorageError> = with_exclusive_lock(&lock, || {
            let r: Result<(), StorageError> = try_with_exclusive_lock(&lock, || Ok(()));
            assert!(matches!(r, Err(StorageError::WouldBlock { .. })));
            Ok(())
        });
        inner.unwrap();
        let again: Result<(), StorageError> = try_with_exclusive_lock(&lock, || Ok(()));
        again.unwrap();
    }
}
