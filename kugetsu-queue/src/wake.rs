//! Waking the daemon the moment something is enqueued, instead of at its next poll.
//!
//! The daemon keeps a FIFO (`queue/daemon.wake`) open for reading *and* writing, so the FIFO
//! always has a reader while the daemon lives and never reads end-of-file. `enqueue` opens it
//! write-only and non-blocking: that fails with `ENXIO` when no daemon is running (nothing to
//! wake) and never blocks; a full pipe means a wake-up is already pending. A FIFO rather than a
//! unix socket because socket paths are limited to ~108 bytes and state directories are not.
//! Every failure here is ignored on purpose: the daemon also polls, so a lost poke only costs
//! latency, never an item.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use kugetsu_core::StateDir;

/// Where the wake-up FIFO lives.
pub fn wake_path(state: &StateDir) -> PathBuf {
    state.queue_dir().join("daemon.wake")
}

/// Pokes a running daemon; silently does nothing when none listens.
pub fn poke(path: &Path) {
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW;
    let Ok(mut fifo) = OpenOptions::new().write(true).custom_flags(flags.bits() as i32).open(path)
    else {
        return;
    };
    // Only ever write into a FIFO, never into a regular file someone put in its place.
    if fifo.metadata().is_ok_and(|m| m.file_type().is_fifo()) {
        let _ = fifo.write(&[1]);
    }
}

/// Creates (or re-creates) the FIFO and opens it for the daemon. Only the holder of the daemon
/// lock calls this, so replacing a stale non-FIFO file in its place is safe.
pub(crate) fn open_listener(path: &Path) -> io::Result<File> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_fifo() => {}
        Ok(_) => {
            std::fs::remove_file(path)?;
            make_fifo(path)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => make_fifo(path)?,
        Err(e) => return Err(e),
    }
    // O_RDWR on a FIFO never blocks on Linux and keeps a writer open, so reads never see EOF.
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

fn make_fifo(path: &Path) -> io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .map_err(io::Error::from)
}

/// Forwards every poke to `tx` until the receiver is gone. Runs on its own thread: a blocking
/// read is the simplest correct wait on a FIFO, and the thread ends with the process.
pub(crate) fn forward(mut fifo: File, tx: Sender<()>) {
    let mut buf = [0u8; 64];
    loop {
        match fifo.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {
                if tx.send(()).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
