//! Turning gix failures into [`WorktreeError`]s that name what they are about.
//!
//! gix 0.90 reports failures as classified error trees (`gix::Error`), with a few concrete error
//! types (a branch already checked out, an interrupted checkout) kept inside the tree. The
//! helpers here look for those first, then at the classification (not found, unauthenticated,
//! cancelled), and otherwise wrap the error with a sentence naming the repository, branch or path.
//! Errors never contain a token: URLs handed to gix never carry credentials, and the token only
//! travels through the in-memory credential callback.

use std::path::{Path, PathBuf};

use kugetsu_core::storage::StorageError;
use kugetsu_core::worktree::WorktreeError;

/// Failures kugetsu-git detects itself, used as the `source` of [`WorktreeError::Other`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum GitError {
    /// The remote has no branch at all.
    #[error("the repository has no branches (it is empty); push a first commit, then retry")]
    EmptyRepository,
    /// A mirror key that would escape the mirrors directory.
    #[error("mirror key {0:?} must be a non-empty file name without '/', '\\0' or a leading '.'")]
    BadMirrorKey(String),
    /// A URL carrying a password.
    #[error("credentials must be passed as a token, not inside the URL")]
    CredentialsInUrl,
    /// A request that cannot be honoured as given.
    #[error("{0}")]
    Invalid(String),
    /// Checkout reported files it could not write.
    #[error("could not check out: {0}")]
    Checkout(String),
}

/// Wraps any error with a context sentence.
pub(crate) fn other(
    context: impl Into<String>,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> WorktreeError {
    WorktreeError::Other { context: context.into(), source: source.into() }
}

/// Maps a storage failure (lock, directory creation) to a [`WorktreeError`].
pub(crate) fn storage(err: StorageError) -> WorktreeError {
    other("cannot prepare kugetsu's git state", err)
}

/// Maps a clone or fetch failure of `url`.
pub(crate) fn transfer(url: &str, action: &str, err: gix::Error) -> WorktreeError {
    if err.is_cancelled() {
        return WorktreeError::Interrupted;
    }
    if chain_text(&err).contains("clear text") {
        return other(
            format!("refusing to send the token to {url} over plain http; use https"),
            err,
        );
    }
    if err.is_unauthenticated() || err.is_permission_denied() || mentions_auth(&err) {
        return WorktreeError::AuthFailed { url: url.to_string() };
    }
    if err.is_not_found() || mentions_missing_repo(&err) {
        return WorktreeError::RepoNotFound { url: url.to_string(), source: Some(Box::new(err)) };
    }
    // gix passes on the ssh messages it recognizes (handled above) and writes the others, such
    // as "Host key verification failed." or the server's "does not appear to be a git
    // repository", to stderr; what reaches us is only that the connection ended early.
    if kugetsu_core::worktree::is_ssh_url(url) && ended_early(&err) {
        return WorktreeError::SshFailed { url: url.to_string() };
    }
    other(format!("cannot {action} {url}"), err)
}

fn chain_text(err: &gix::Error) -> String {
    let mut text = String::new();
    for e in err.iter_errors() {
        text.push_str(&e.to_string().to_lowercase());
        text.push('\n');
    }
    text
}

/// Transports that do not classify their errors still say what went wrong in words. Only
/// whole phrases are matched: the chain also holds the URL, whose port may contain "401".
fn mentions_auth(err: &gix::Error) -> bool {
    let text = chain_text(err);
    [
        "received http status 401",
        "received http status 403",
        "authentication failed",
        "permission denied (publickey",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// Whether the transport's stream ended before the protocol was done.
fn ended_early(err: &gix::Error) -> bool {
    err.iter_errors().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
    }) || chain_text(err).contains("failed to fill whole buffer")
}

fn mentions_missing_repo(err: &gix::Error) -> bool {
    let text = chain_text(err);
    [
        "received http status 404",
        "does not appear to be a git repository",
        "repository not found",
        "could not read from remote repository",
        "no such file or directory",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// Maps a failure of `git worktree add`'s equivalent at `path` on `branch`.
pub(crate) fn add(path: &Path, branch: &str, err: gix::Error) -> WorktreeError {
    use gix::worktree::add::Error as AddError;
    match err.downcast_any_ref::<AddError>() {
        Some(AddError::CheckedOut { worktree_dirs, .. }) => {
            return WorktreeError::BranchCheckedOut {
                branch: branch.to_string(),
                path: worktree_dirs.first().cloned().unwrap_or_default(),
            };
        }
        Some(AddError::DestinationRegistered { .. }) => {
            return WorktreeError::PathNotWorktree { path: path.to_path_buf() };
        }
        Some(AddError::Interrupted) => return WorktreeError::Interrupted,
        _ => {}
    }
    if err.is_cancelled() {
        return WorktreeError::Interrupted;
    }
    other(format!("cannot create worktree {} on branch {branch}", path.display()), err)
}

/// Maps a failure while removing the worktree at `path`.
pub(crate) fn remove(path: &Path, err: gix::Error) -> WorktreeError {
    use gix::worktree::remove::Error as RemoveError;
    match err.downcast_any_ref::<RemoveError>() {
        Some(RemoveError::Locked { reason, .. }) => WorktreeError::Locked {
            path: path.to_path_buf(),
            reason: reason.as_ref().map(|r| r.to_string()).filter(|r| !r.is_empty()),
        },
        Some(RemoveError::NotFound { .. }) => {
            WorktreeError::NoSuchWorktree { path: path.to_path_buf() }
        }
        _ => other(format!("cannot remove worktree {}", path.display()), err),
    }
}

/// Context for any other gix failure about `path`.
pub(crate) fn at(
    path: &Path,
    action: &str,
    err: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> WorktreeError {
    other(format!("cannot {action} {}", path.display()), err)
}

/// A path-less context, for callers that build their own sentence.
pub(crate) fn ctx(
    context: String,
    err: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> WorktreeError {
    other(context, err)
}

/// Convenience for "`path` is not a worktree".
pub(crate) fn not_worktree(path: PathBuf) -> WorktreeError {
    WorktreeError::PathNotWorktree { path }
}
