//! Per-issue git worktrees over one bare mirror per repository, in pure Rust with gitoxide.
//!
//! # Why it is built this way
//!
//! kugetsu gives every issue its own checkout so that agents working on different issues never
//! see each other's files. Full clones per issue would copy the object store each time; instead
//! each repository has **one bare mirror** (`<mirrors>/<mirror_key>.git`) and every issue gets a
//! **linked worktree** of it (what `git worktree add` makes), sharing objects. The mirror keeps the
//! remote's branches as `refs/remotes/origin/*`, leaving `refs/heads/*` to the issue branches
//! (`fix/issue-14`), so fetching can never move an issue branch.
//!
//! Everything runs in-process with [`gix`]: no `git` program is needed to add, list, inspect or
//! remove worktrees, and https clones and fetches are in-process too (local-path and `file://`
//! remotes make gix spawn `git upload-pack`, `ssh://` spawns `ssh`). The worktrees it makes are
//! ordinary git worktrees: `git worktree list`, `git status` and `git worktree remove` work on
//! them, and this crate removes worktrees that `git` made.
//!
//! # Guarantees
//!
//! - **No lost work.** Recreating a worktree, or removing one, is refused with
//!   [`WorktreeError::WouldLoseWork`] (listing the files and commits) when it holds modified,
//!   staged or untracked files, or commits that no remote branch contains, unless forced.
//! - **Serialized per repository.** Clone, fetch, add and remove of one mirror run under an
//!   `flock` on `<locks>/mirror-<mirror_key>.lock` (kernel-released if a process dies);
//!   different repositories never wait for each other.
//! - **Nothing half-made.** A first clone is built beside the mirror and renamed into place; an
//!   interrupted or failed checkout removes the new worktree and puts the branch back as it was.
//! - **Tokens stay in memory.** [`RepoSource::token`](kugetsu_core::worktree::RepoSource) is
//!   handed to the server through gix's credential callback; it never appears in a URL, a config
//!   file, a log line or an error, and git's own credential helpers and prompts are not used.
//! - **No prompts, no hangs.** `ssh` runs with `BatchMode=yes` unless the user chose an ssh
//!   command; a silent https server fails the transfer after 30 s without data; an interrupt
//!   during a blocked transfer is reported as [`WorktreeError::Interrupted`].
//!
//! # Use
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use kugetsu_core::worktree::{NoProgress, RepoSource, Secret, WorktreeRequest, Worktrees};
//! use kugetsu_git::{Committer, GitWorktrees};
//!
//! let state = std::path::Path::new("/var/lib/kugetsu");
//! let worktrees = GitWorktrees::new(
//!     state.join("mirrors"),
//!     state.join("locks"),
//!     Committer::new("kugetsu", "kugetsu@localhost"),
//! );
//! let request = WorktreeRequest {
//!     source: RepoSource {
//!         url: "https://github.com/owner/repo.git".into(),
//!         mirror_key: "github.com-owner-repo".into(),
//!         token: Some(Secret::new("ghp_...")),
//!     },
//!     path: state.join("worktrees/github.com-owner-repo-14"),
//!     branch: "fix/issue-14".into(),
//!     base_ref: None,
//!     force: false,
//! };
//! // Set the flag (e.g. from a SIGINT handler) to stop and roll back.
//! let interrupt = AtomicBool::new(false);
//! let info = worktrees.create(&request, &mut NoProgress, &interrupt)?;
//! assert_eq!(info.branch.as_deref(), Some("fix/issue-14"));
//! # Ok::<(), kugetsu_core::worktree::WorktreeError>(())
//! ```
//!
//! Progress arrives on the calling thread as [`WorktreePhase`]s `Clone` or `Fetch` (objects
//! indexed), then `Checkout` (files written), each with a total once known.
//!
//! [`WorktreeError::WouldLoseWork`]: kugetsu_core::worktree::WorktreeError::WouldLoseWork
//! [`WorktreeError::Interrupted`]: kugetsu_core::worktree::WorktreeError::Interrupted
//! [`WorktreePhase`]: kugetsu_core::worktree::WorktreePhase

mod backend;
mod carry;
mod commit;
mod config;
mod error;
mod mirror;
mod progress;
mod push;
mod ssh;
mod unsaved;

pub use backend::{Committer, GitWorktrees};
pub use carry::{
    CARRY_FORMAT, CarriedFile, CarriedObject, CarryError, WorktreeCarry, restore as restore_carry,
    save as save_carry,
};
pub use commit::{
    CommitError, CommitPolicy, Committed, DEFAULT_MAX_FILE_BYTES, Skipped, commit_changes,
};
pub use config::GitConfig;
pub use push::{PushError, PushOutcome, push_branch};
