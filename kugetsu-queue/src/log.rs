//! The daemon's log (`queue/daemon.log`), bounded in size.
//!
//! The daemon runs for weeks on servers nobody watches, so its log must never fill the disk:
//! when a write would take the file past its cap, the file is renamed to `daemon.log.1`
//! (replacing the previous one) and a fresh one is started. At most twice the cap is kept.
//! Only the daemon (the holder of `queue/daemon.lock`) writes, so rotation needs no lock.
//! Writing never fails the daemon: a full disk loses log lines, not queue items.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kugetsu_core::storage::{self, StorageError};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Default size cap of `daemon.log` before it is rotated.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 1024 * 1024;

/// An appending, size-capped log file. Cheap to clone (shared); usable as an `io::Write` for a
/// tracing subscriber (`move || log.clone()`).
#[derive(Debug, Clone)]
pub struct DaemonLog {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    max_bytes: u64,
    file: Option<File>,
    size: u64,
}

fn open_append(path: &Path) -> Result<File, StorageError> {
    storage::open_private(path, storage::PrivateOpen::Append)
}

/// Path of the rotated log: `<log>.1`.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".1");
    path.with_file_name(name)
}

impl DaemonLog {
    /// Opens (creating `0600`) the log at `path`, rotated once it would exceed `max_bytes`.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self, StorageError> {
        let file = open_append(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(DaemonLog {
            inner: Arc::new(Mutex::new(Inner {
                path: path.to_path_buf(),
                max_bytes: max_bytes.max(1024),
                file: Some(file),
                size,
            })),
        })
    }

    /// Appends one timestamped line. Newlines inside `message` are escaped so that one event is
    /// always one line (and a hostile task message cannot forge log lines).
    pub fn line(&self, now: OffsetDateTime, message: &str) {
        let stamp = now.format(&Rfc3339).unwrap_or_default();
        let clean = message.replace('\r', "\\r").replace('\n', "\\n");
        let _ = self.clone().write_all(format!("{stamp} {clean}\n").as_bytes());
    }
}

impl Inner {
    fn rotate(&mut self) {
        self.file = None;
        let _ = fs::rename(&self.path, rotated_path(&self.path));
        self.file = open_append(&self.path).ok();
        self.size = 0;
    }
}

impl Write for DaemonLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.size > 0 && inner.size + buf.len() as u64 > inner.max_bytes {
            inner.rotate();
        }
        let Some(file) = inner.file.as_mut() else {
            // The log could not be reopened: drop the bytes rather than fail the caller.
            return Ok(buf.len());
        };
        let n = file.write(buf)?;
        inner.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The last `n` lines of the log at `path` (the rotated part first, then the current one).
/// A missing log reads as no lines.
pub fn tail(path: &Path, n: usize) -> Result<Vec<String>, StorageError> {
    let mut lines = Vec::new();
    for p in [rotated_path(path), path.to_path_buf()] {
        match fs::read(&p) {
            Ok(bytes) => {
                lines.extend(String::from_utf8_lossy(&bytes).lines().map(str::to_string));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(StorageError::Io { action: "read", path: p, source }),
        }
    }
    let skip = lines.len().saturating_sub(n);
    Ok(lines.split_off(skip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_cap_and_tails_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let log = DaemonLog::open(&path, 1024).unwrap();
        for i in 0..200 {
            log.line(OffsetDateTime::UNIX_EPOCH, &format!("event {i}"));
        }
        let cur = fs::metadata(&path).unwrap().len();
        let old = fs::metadata(rotated_path(&path)).unwrap().len();
        assert!(cur <= 1024 && old <= 1024, "{cur} {old}");
        let last = tail(&path, 3).unwrap();
        assert_eq!(last.len(), 3);
        assert!(last[2].ends_with("event 199"), "{last:?}");
        assert!(last[0].ends_with("event 197"), "{last:?}");
    }

    #[test]
    fn one_event_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        DaemonLog::open(&path, 4096).unwrap().line(OffsetDateTime::UNIX_EPOCH, "a\nFAKE line");
        assert_eq!(tail(&path, 10).unwrap().len(), 1);
        assert!(tail(&dir.path().join("none.log"), 5).unwrap().is_empty());
    }
}
