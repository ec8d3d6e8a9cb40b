//! Why a daemon operation (running it, or `queue-daemon status|stop|logs|start` from outside)
//! failed.

use std::io;
use std::path::PathBuf;

use kugetsu_core::queue::QueueError;
use kugetsu_core::storage::StorageError;

/// Why a daemon operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon holds the lock for this state directory.
    #[error("the queue daemon is already running{}", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyRunning {
        /// Its pid, when the pid file names a live holder.
        pid: Option<u32>,
    },
    /// The lock is held but no process could be verified as the daemon (it may be starting).
    #[error("the queue daemon lock {path} is held, but {pid_path} names no live daemon")]
    Unverified {
        /// The lock file.
        path: PathBuf,
        /// The pid file.
        pid_path: PathBuf,
    },
    /// The daemon did not exit after SIGTERM and SIGKILL.
    #[error("the queue daemon (pid {pid}) did not exit")]
    DidNotExit {
        /// Its pid.
        pid: u32,
    },
    /// Spawning the background process failed.
    #[error("cannot start {program}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A state file problem.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A queue problem.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Another daemon already runs as this host on the shared queue.
    #[error(
        "another queue daemon already runs as host {host} on the shared queue (the same machine \
         name and state directory on another machine?)"
    )]
    HostTaken {
        /// The host name.
        host: String,
    },
}
