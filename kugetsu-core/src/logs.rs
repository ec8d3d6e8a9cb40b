//! Delegation and run logs (`logs/`): one file per delegation or agent run, for `kugetsu logs`.
//!
//! Each file is named `<UTC timestamp>-<id>.log` (`20260329T161610Z-q_1234567890.log`), so a
//! plain `ls` lists them in order and the name alone says when and what. Files written under
//! other names (older versions, other components) are still listed and pruned, dated by their
//! modification time. Logs may hold what agents printed, so they are created `0600` like every
//! other state file, and pruning only ever removes regular files directly inside `logs/`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;

use crate::state::StateDir;
use crate::storage::{self, StorageError};

/// Logs older than this are deleted (the spec's 7 days).
pub const LOG_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How many logs `kugetsu logs` shows by default.
pub const DEFAULT_LOG_COUNT: usize = 10;
/// Longest log id.
pub const MAX_LOG_ID_LEN: usize = 180;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    /// The id cannot be part of a file name.
    #[error(
        "invalid log id {id:?}: use ASCII letters, digits, '.', '_', '+' and '-' (at most 180), not starting with '.'"
    )]
    BadId {
        /// The id as given.
        id: String,
    },
    /// A file or the directory could not be read, written or removed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// One log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its path.
    pub path: PathBuf,
    /// Its file name.
    pub name: String,
    /// When it was started (from its name), else last written.
    pub time: OffsetDateTime,
    /// Its size in bytes.
    pub size: u64,
}

/// The logs of a state directory.
#[derive(Debug, Clone)]
pub struct Logs {
    dir: PathBuf,
}

fn io_err(action: &'static str, path: &Path, source: std::io::Error) -> StorageError {
    StorageError::Io { action, path: path.to_path_buf(), source }
}

/// `YYYYMMDDTHHMMSSZ` of `t` in UTC (see [`crate::clock::compact`]).
pub fn timestamp(t: OffsetDateTime) -> String {
    crate::clock::compact(t)
}

/// Finds the first `YYYYMMDDTHHMMSSZ` in a file name.
fn time_in_name(name: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let bytes = name.as_bytes();
    (0..bytes.len().saturating_sub(15)).find_map(|i| {
        let candidate = name.get(i..i + 16)?;
        let shaped = candidate.bytes().enumerate().all(|(j, b)| match j {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
        if !shaped {
            return None;
        }
        time::PrimitiveDateTime::parse(candidate, &format).ok().map(|t| t.assume_utc())
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LOG_ID_LEN
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

impl Logs {
    /// The logs of `state`.
    pub fn new(state: &StateDir) -> Self {
        Logs { dir: state.logs_dir() }
    }

    /// `logs/`, where run logs and the daemon log live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of a new log for `id` started at `now`: `<timestamp>-<id>.log`.
    pub fn path_for(&self, now: OffsetDateTime, id: &str) -> Result<PathBuf, LogsError> {
        if !valid_id(id) {
            return Err(LogsError::BadId { id: id.to_string() });
        }
        Ok(self.dir.join(format!("{}-{id}.log", timestamp(now))))
    }

    /// Opens `path` for appending, creating it (and `logs/`) private; symlinks are refused.
    pub fn open_append(&self, path: &Path) -> Result<File, LogsError> {
        storage::ensure_dir(&self.dir)?;
        Ok(storage::open_private(path, storage::PrivateOpen::Append)?)
    }

    /// Every log, oldest first. Hidden files (temp files) and anything that is not a regular
    /// file are skipped.
    pub fn list(&self) -> Result<Vec<LogEntry>, LogsError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", &self.dir, e).into()),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err("list", &self.dir, e))?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                // Pruned by another process between listing and looking.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("inspect", &path, e).into()),
            };
            if !meta.file_type().is_file() {
                continue;
            }
            let time = match time_in_name(&name) {
                Some(t) => t,
                None => match meta.modified() {
                    Ok(m) => OffsetDateTime::from(m),
                    Err(e) => return Err(io_err("inspect", &path, e).into()),
                },
            };
            out.push(LogEntry { path, name, time, size: meta.len() });
        }
        out.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// The newest `n` logs, oldest first (the order they are printed in).
    pub fn last(&self, n: usize) -> Result<Vec<LogEntry>, LogsError> {
        let mut all = self.list()?;
        let skip = all.len().saturating_sub(n);
        Ok(all.split_off(skip))
    }

    /// Deletes logs older than `max_age` at `now`; returns the files deleted.
    pub fn prune(&self, now: OffsetDateTime, max_age: Duration) -> Result<Vec<PathBuf>, LogsError> {
        let cutoff = now - max_age;
        let mut removed = Vec::new();
        for entry in self.list()? {
            if entry.time < cutoff && storage::remove_file(&entry.path)? {
                removed.push(entry.path);
            }
        }
        Ok(removed)
    }

    /// The last `max_bytes` of a log as text (invalid UTF-8 replaced), for display. The first
    /// line is dropped when the cut falls inside it.
    pub fn tail(&self, entry: &LogEntry, max_bytes: u64) -> Result<String, LogsError> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&entry.path)
            .map_err(|e| io_err("read", &entry.path, e))?;
        let len = file.metadata().map_err(|e| io_err("read", &entry.path, e))?.len();
        let start = len.saturating_sub(max_bytes);
        file.seek(SeekFrom::Start(start)).map_err(|e| io_err("read", &entry.path, e))?;
        let mut buf = Vec::new();
        file.take(max_bytes).read_to_end(&mut buf).map_err(|e| io_err("read", &entry.path, e))?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        if start > 0
            && let Some(nl) = text.find('\n')
        {
            return Ok(text[nl + 1..].to_string());
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use time::macros::datetime;

    fn setup() -> (tempfile::TempDir, Logs) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("k"));
        state.ensure().unwrap();
        (dir, Logs::new(&state))
    }

    #[test]
    fn names_sort_and_parse_back() {
        let (_d, logs) = setup();
        let t = datetime!(2026-03-29 18:16:10 +02:00);
        let p = logs.path_for(t, "q_1234567890").unwrap();
        assert_eq!(p.file_name().unwrap(), "20260329T161610Z-q_1234567890.log");
        assert_eq!(
            time_in_name("github.com-o-r-14-20260329T161610Z.log"),
            Some(datetime!(2026-03-29 16:16:10 UTC))
        );
        assert_eq!(time_in_name("20261399T161610Z-x.log"), None);
        assert_eq!(time_in_name("short"), None);
        for bad in ["", "../x", "a/b", ".hidden", "a b", &"x".repeat(181)] {
            assert!(matches!(logs.path_for(t, bad), Err(LogsError::BadId { .. })), "{bad:?}");
        }
    }

    #[test]
    fn list_last_prune() {
        let (_d, logs) = setup();
        let now = datetime!(2026-04-10 12:00 UTC);
        let mut paths = Vec::new();
        for (days_ago, id) in [(10, "old"), (8, "older-than-week"), (6, "recent"), (0, "today")] {
            let p = logs.path_for(now - time::Duration::days(days_ago), id).unwrap();
            let mut f = logs.open_append(&p).unwrap();
            writeln!(f, "log of {id}").unwrap();
            paths.push(p);
        }
        // A file without a timestamp in its name is dated by its mtime (a day ago: kept).
        let legacy = std::fs::File::create(logs.dir().join("legacy.log")).unwrap();
        legacy.set_modified((now - time::Duration::days(1)).into()).unwrap();
        std::fs::write(logs.dir().join(".20200101T000000Z-tmp.log"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", logs.dir().join("20200101T000000Z-link.log"))
            .unwrap();
        let all = logs.list().unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].name, "20260331T120000Z-old.log");
        assert_eq!(std::fs::metadata(&paths[0]).unwrap().permissions().mode() & 0o777, 0o600);
        let last: Vec<_> = logs.last(2).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(last, ["legacy.log", "20260410T120000Z-today.log"]);
        assert_eq!(logs.last(100).unwrap().len(), 5);
        let removed = logs.prune(now, LOG_RETENTION).unwrap();
        assert_eq!(removed, paths[..2].to_vec());
        assert_eq!(logs.list().unwrap().len(), 3);
        assert!(logs.dir().join(".20200101T000000Z-tmp.log").exists(), "hidden files left alone");
        assert!(
            logs.dir().join("20200101T000000Z-link.log").symlink_metadata().is_ok(),
            "links left alone"
        );
    }

    #[test]
    fn tail_returns_whole_lines_of_the_end() {
        let (_d, logs) = setup();
        let p = logs.path_for(datetime!(2026-01-01 0:00 UTC), "t").unwrap();
        std::fs::write(&p, "first line\nsecond line\nthird\n").unwrap();
        let entry = logs.list().unwrap().remove(0);
        assert_eq!(logs.tail(&entry, 1000).unwrap(), "first line\nsecond line\nthird\n");
        assert_eq!(logs.tail(&entry, 10).unwrap(), "third\n");
    }
}
