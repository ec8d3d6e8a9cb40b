//! The state directory (`KUGETSU_HOME`, else `~/.kugetsu`) and where each file lives in it.
//!
//! The layout is the spec's, so a directory written by the original kugetsu loads as it is.
//! Core never looks up `HOME` or the environment itself: the CLI resolves the root and hands it
//! over. Every path a command touches comes from here, which is what keeps hostile issue refs
//! from naming anything outside the root.

use std::path::{Path, PathBuf};

use crate::issue_ref::IssueRef;
use crate::storage::{self, StorageError};

/// Name of the environment variable that overrides the state directory.
pub const KUGETSU_HOME_ENV: &str = "KUGETSU_HOME";

/// The state directory and its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// A state directory rooted at `root` (absolute, made so by the caller). Nothing is touched.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    /// Creates the root and its sub-directories (mode `0700`) if needed and checks the root is
    /// private (owned by the current user, not writable by others).
    pub fn ensure(&self) -> Result<(), StorageError> {
        storage::ensure_dir(&self.root)?;
        storage::check_private_dir(&self.root)?;
        for dir in [
            self.sessions_dir(),
            self.worktrees_dir(),
            self.queue_items_dir(),
            self.env_dir(),
            self.logs_dir(),
            self.locks_dir(),
            self.mirrors_dir(),
        ] {
            storage::ensure_dir(&dir)?;
        }
        Ok(())
    }

    /// Checks an existing root is private; `Ok(false)` if it does not exist yet.
    pub fn check(&self) -> Result<bool, StorageError> {
        if !self.root.exists() && self.root.symlink_metadata().is_err() {
            return Ok(false);
        }
        storage::check_private_dir(&self.root)?;
        Ok(true)
    }

    /// The state directory itself (`~/.kugetsu` unless moved).
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `config`: shell-style user overrides.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config")
    }
    /// `index.json`.
    pub fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }
    /// `sessions/`.
    pub fn sessions_dir(&self) -> PathBuf {
        self.root.join("sessions")
    }
    /// `sessions/base.json`.
    pub fn base_session_path(&self) -> PathBuf {
        self.sessions_dir().join("base.json")
    }
    /// `sessions/pm-agent.json`.
    pub fn pm_session_path(&self) -> PathBuf {
        self.sessions_dir().join("pm-agent.json")
    }
    /// `sessions/<name>.json` for a session file name from the index.
    pub fn session_path(&self, file_name: &str) -> PathBuf {
        self.sessions_dir().join(file_name)
    }
    /// `sessions/<issue file name>.json`.
    pub fn issue_session_path(&self, issue: &IssueRef) -> PathBuf {
        self.sessions_dir().join(format!("{}.json", issue.file_name()))
    }
    /// `worktrees/`.
    pub fn worktrees_dir(&self) -> PathBuf {
        self.root.join("worktrees")
    }
    /// `worktrees/<issue file name>/`.
    pub fn worktree_path(&self, issue: &IssueRef) -> PathBuf {
        self.worktrees_dir().join(issue.file_name())
    }
    /// `mirrors/`: one bare mirror per repository.
    pub fn mirrors_dir(&self) -> PathBuf {
        self.root.join("mirrors")
    }
    /// `queue/`.
    pub fn queue_dir(&self) -> PathBuf {
        self.root.join("queue")
    }
    /// `queue/items/`.
    pub fn queue_items_dir(&self) -> PathBuf {
        self.queue_dir().join("items")
    }
    /// `queue/daemon.pid`.
    pub fn daemon_pid_path(&self) -> PathBuf {
        self.queue_dir().join("daemon.pid")
    }
    /// `queue/daemon.lock`.
    pub fn daemon_lock_path(&self) -> PathBuf {
        self.queue_dir().join("daemon.lock")
    }
    /// `queue/daemon.log`.
    pub fn daemon_log_path(&self) -> PathBuf {
        self.queue_dir().join("daemon.log")
    }
    /// `env/`.
    pub fn env_dir(&self) -> PathBuf {
        self.root.join("env")
    }
    /// `logs/`: delegation and run logs.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// `notifications.json`.
    pub fn notifications_path(&self) -> PathBuf {
        self.root.join("notifications.json")
    }
    /// `outbox.json`: the notifications waiting to be posted to `KUGETSU_NOTIFY_URL` (see
    /// [`crate::outbox`]).
    pub fn outbox_path(&self) -> PathBuf {
        self.root.join("outbox.json")
    }
    /// `cache/notify-url`: `KUGETSU_NOTIFY_URL` as a child `kugetsu` (the daemon, a detached
    /// run) reads it (`0600`), so that no environment carries the receivers' tokens.
    pub fn notify_url_path(&self) -> PathBuf {
        self.cache_dir().join("notify-url")
    }
    /// `repos.json`: explicit clone URLs.
    pub fn repos_path(&self) -> PathBuf {
        self.root.join("repos.json")
    }
    /// `servers.json`: named git servers and the default one.
    pub fn servers_path(&self) -> PathBuf {
        self.root.join("servers.json")
    }
    /// `cache/`: what an adapter keeps to save work and can always make again (a driver
    /// may keep the base session's export there, so that a fork spends no process on it).
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }
    /// `cache/queue-url`: the shared queue's URL as the PM agent's `kugetsu` commands read it
    /// (`0600`, written before each of its turns), so that its environment names a file
    /// instead of carrying the password.
    pub fn queue_url_path(&self) -> PathBuf {
        self.cache_dir().join("queue-url")
    }
    /// `stops/`: requests to stop a running turn, one file per issue (see
    /// [`crate::control::StopRequests`]).
    pub fn stops_dir(&self) -> PathBuf {
        self.root.join("stops")
    }
    /// `dashboard.token`: the secret every request to `kugetsu dashboard` must carry.
    pub fn dashboard_token_path(&self) -> PathBuf {
        self.root.join("dashboard.token")
    }
    /// `locks/`: lock files (never deleted).
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }
    /// `locks/<name>.lock`.
    pub fn lock_path(&self, name: &str) -> PathBuf {
        self.locks_dir().join(format!("{name}.lock"))
    }
}
