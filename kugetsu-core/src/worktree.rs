//! The seam between the orchestration and git: what kugetsu needs from a worktree backend.
//!
//! Core decides *which* worktree an issue gets (its path under `worktrees/`, its branch
//! `fix/issue-<id>`, the repository URL); a backend (`kugetsu-git`, or the in-memory fake in
//! [`crate::testing`]) decides *how*. Keeping git behind this trait keeps gix out of core and lets
//! the orchestration be tested without touching a disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::retry::Retry;

/// Where a worktree's repository comes from, with credentials kept apart from the URL so that
/// the URL can be logged, stored and shown while the token never is.
#[derive(Clone, PartialEq, Eq)]
pub struct RepoSource {
    /// Clone URL without credentials (`https://github.com/o/r.git`, `ssh://...`, a local path).
    pub url: String,
    /// A stable, filesystem-safe key naming the repository's mirror (one mirror per repository).
    pub mirror_key: String,
    /// A token for https, if one is configured. Never written anywhere by a backend.
    pub token: Option<Secret>,
}

impl std::fmt::Debug for RepoSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoSource")
            .field("url", &self.url)
            .field("mirror_key", &self.mirror_key)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Whether `url` names a remote reached through `ssh`: `ssh://...`, `git+ssh://...` or git's
/// scp-like `[user@]host:path` (a colon before any slash, and no scheme).
pub fn is_ssh_url(url: &str) -> bool {
    if let Some((scheme, _)) = url.split_once("://") {
        return matches!(scheme, "ssh" | "git+ssh" | "ssh+git");
    }
    match (url.find(':'), url.find('/')) {
        (Some(colon), Some(slash)) => colon > 0 && colon < slash,
        (Some(colon), None) => colon > 0,
        (None, _) => false,
    }
}

pub use crate::secrets::Secret;

/// What `start` asks of a backend: a clean worktree at `path` on a new `branch`.
#[derive(Debug, Clone)]
pub struct WorktreeRequest {
    /// Where the repository is cloned from, and its credentials.
    pub source: RepoSource,
    /// Absolute path of the worktree to create (under the state directory's `worktrees/`).
    pub path: PathBuf,
    /// Branch to create and check out, e.g. `fix/issue-14`.
    pub branch: String,
    /// What to branch from: `None` for the remote's default branch, else a ref the user named.
    pub base_ref: Option<String>,
    /// Recreate even if the old worktree holds uncommitted files or unpushed commits.
    pub force: bool,
}

/// A worktree as a backend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeInfo {
    /// Absolute path of the working directory.
    pub path: PathBuf,
    /// Checked-out branch (short name), if any.
    pub branch: Option<String>,
    /// Commit the worktree's HEAD points at (hex), if any.
    pub head: Option<String>,
    /// The mirror this worktree belongs to.
    pub mirror_key: String,
    /// Registered but its directory is gone: a prune candidate.
    pub prunable: bool,
    /// Locked against removal (`git worktree lock`).
    pub locked: bool,
}

/// Work in a worktree that removing it would lose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsavedWork {
    /// Modified, staged, deleted or untracked paths, relative to the worktree.
    pub changed_files: Vec<String>,
    /// Commits on the branch that no remote-tracking branch contains (`<short id> <summary>`).
    pub unpushed_commits: Vec<String>,
}

impl UnsavedWork {
    /// Nothing would be lost.
    pub fn is_empty(&self) -> bool {
        self.changed_files.is_empty() && self.unpushed_commits.is_empty()
    }
}

/// How to remove a worktree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoveOptions {
    /// Remove even with unsaved work or a lock.
    pub force: bool,
    /// Also delete the worktree's branch.
    pub delete_branch: bool,
}

/// Phases reported to a [`WorktreeProgress`] so a front end can draw bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorktreePhase {
    /// Cloning the mirror for the first time.
    Clone,
    /// Fetching into an existing mirror.
    Fetch,
    /// Checking files out into the worktree.
    Checkout,
}

/// Receives progress; every method has a no-op default.
pub trait WorktreeProgress {
    /// A phase started; `total` is the amount of work if known.
    fn phase(&mut self, _phase: WorktreePhase, _total: Option<u64>) {}
    /// `done` units of the current phase are finished.
    fn advance(&mut self, _done: u64) {}
    /// The current phase finished.
    fn finish(&mut self) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl WorktreeProgress for NoProgress {}

/// Why a worktree operation failed; each variant names what it is about.
#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    /// The repository does not exist or cannot be reached.
    #[error("repository {url} not found or not reachable")]
    RepoNotFound {
        /// The repository URL (never with credentials).
        url: String,
        /// Detail from the backend.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The server refused the credentials (or asked for some and none were configured).
    #[error("authentication failed for {url}")]
    AuthFailed {
        /// The repository URL (never with credentials).
        url: String,
    },
    /// `ssh` ended before the git server answered: an unknown host key, no usable key, or no
    /// repository at that path. `ssh` (or the server) says which on the process's stderr.
    #[error("the ssh connection for {url} closed before the git server answered")]
    SshFailed {
        /// The repository URL.
        url: String,
    },
    /// The named base ref does not exist.
    #[error("base ref {base_ref} not found in {url}")]
    BaseRefNotFound {
        /// The ref the user named.
        base_ref: String,
        /// The repository URL.
        url: String,
    },
    /// The branch is checked out in another worktree.
    #[error("branch {branch} is already checked out at {path}")]
    BranchCheckedOut {
        /// The branch both would use.
        branch: String,
        /// Where it is checked out.
        path: PathBuf,
    },
    /// Something that is not a worktree of this repository is in the way.
    #[error("{path} exists and is not a kugetsu worktree")]
    PathNotWorktree {
        /// The directory in the way.
        path: PathBuf,
    },
    /// The path is not a worktree known to the backend.
    #[error("no worktree at {path}")]
    NoSuchWorktree {
        /// The directory asked for.
        path: PathBuf,
    },
    /// Recreating or removing would lose work, and `force` was not given.
    #[error("{path} has work that would be lost ({} changed file(s), {} unpushed commit(s))", .unsaved.changed_files.len(), .unsaved.unpushed_commits.len())]
    WouldLoseWork {
        /// The worktree holding the work.
        path: PathBuf,
        /// What would be lost.
        unsaved: UnsavedWork,
    },
    /// The worktree is locked.
    #[error("{path} is locked{}", .reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Locked {
        /// The locked worktree.
        path: PathBuf,
        /// The lock's reason, if one was given.
        reason: Option<String>,
    },
    /// The operation was interrupted and rolled back.
    #[error("interrupted; nothing was left half-made")]
    Interrupted,
    /// Any other failure, with what was being done.
    #[error("{context}")]
    Other {
        /// What was being done, naming the repo, branch or path.
        context: String,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl WorktreeError {
    /// Whether the same worktree request may succeed later. An unreachable or unknown
    /// repository, a lock or a missing worktree may be a moment's state; a refusal to lose
    /// work, rejected credentials, a base ref or branch that is not as asked, or a stranger's
    /// directory in the way each need someone to act first.
    pub fn retry(&self) -> Retry {
        match self {
            WorktreeError::RepoNotFound { .. }
            | WorktreeError::SshFailed { .. }
            | WorktreeError::NoSuchWorktree { .. }
            | WorktreeError::Locked { .. }
            | WorktreeError::Other { .. } => Retry::Later,
            WorktreeError::AuthFailed { .. }
            | WorktreeError::BaseRefNotFound { .. }
            | WorktreeError::BranchCheckedOut { .. }
            | WorktreeError::PathNotWorktree { .. }
            | WorktreeError::WouldLoseWork { .. } => Retry::Never,
            WorktreeError::Interrupted => Retry::Stopped,
        }
    }
}

/// A git worktree backend.
///
/// Implementations must be safe to call from several processes at once on the same state
/// directory (serialize per mirror with a kernel-released lock) and must never write a
/// [`Secret`] to disk, a log or an error.
pub trait Worktrees: Send + Sync {
    /// Makes `req.path` a fresh worktree of `req.source` on a new branch `req.branch`, first
    /// cloning or fetching the mirror. If a worktree already exists there it is recreated clean,
    /// unless it holds [`UnsavedWork`] and `req.force` is false, which is
    /// [`WorktreeError::WouldLoseWork`]. Interruption (`interrupt` set) leaves nothing half-made.
    fn create(
        &self,
        req: &WorktreeRequest,
        progress: &mut dyn WorktreeProgress,
        interrupt: &AtomicBool,
    ) -> Result<WorktreeInfo, WorktreeError>;

    /// Removes the worktree at `path` (refusing unsaved work unless `opts.force`).
    fn remove(&self, path: &Path, opts: RemoveOptions) -> Result<(), WorktreeError>;

    /// Every worktree of every mirror this backend manages.
    fn list(&self) -> Result<Vec<WorktreeInfo>, WorktreeError>;

    /// What removing the worktree at `path` would lose.
    fn unsaved_work(&self, path: &Path) -> Result<UnsavedWork, WorktreeError>;

    /// Drops registrations of worktrees whose directories are gone; returns their paths.
    fn prune(&self) -> Result<Vec<PathBuf>, WorktreeError>;

    /// The worktree's unsaved work (unpushed commits, uncommitted files) as a document another
    /// host's backend can rebuild it from ([`Worktrees::restore_unsaved`]), refused when over
    /// `cap` bytes. Default: a backend that cannot.
    fn save_unsaved(&self, path: &Path, cap: usize) -> Result<String, WorktreeError> {
        let _ = cap;
        Err(WorktreeError::Other {
            context: format!("cannot carry the work of {} to another host", path.display()),
            source: "this worktree backend does not support it".into(),
        })
    }

    /// Rebuilds in the fresh worktree at `path` (of the same repository) the unsaved work that
    /// [`Worktrees::save_unsaved`] saved elsewhere. Default: a backend that cannot.
    fn restore_unsaved(&self, path: &Path, saved: &str) -> Result<(), WorktreeError> {
        let _ = saved;
        Err(WorktreeError::Other {
            context: format!("cannot rebuild carried work in {}", path.display()),
            source: "this worktree backend does not support it".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_ssh_url;

    #[test]
    fn ssh_urls_are_told_apart_from_paths_and_other_schemes() {
        for url in [
            "ssh://git@github.com/o/r.git",
            "git+ssh://host/r",
            "git@github.com:o/r.git",
            "host:r",
            "host:/abs/r",
        ] {
            assert!(is_ssh_url(url), "{url}");
        }
        for url in [
            "https://github.com/o/r.git",
            "file:///srv/r",
            "/srv/r",
            "./dir:with-colon",
            ":nohost",
            "r",
        ] {
            assert!(!is_ssh_url(url), "{url}");
        }
    }
}
