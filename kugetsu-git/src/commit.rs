//! Committing what an agent left uncommitted in an issue's worktree, in-process: agents often
//! end a turn with their changes on disk only, and a branch without commits gets no push and
//! no pull request.
//!
//! The changed files are those [`crate::unsaved::changed_files`] finds (modified, deleted,
//! untracked; ignored files are build output and stay out). Each is written as a blob and put
//! into `HEAD`'s tree with gix's tree editor; the commit moves `HEAD`'s branch (with a reflog
//! entry), and the index is rewritten from the new tree so that `git status` is clean after.
//! A file over the size cap, or one that looks like it holds a secret (`.env`, `.env.*`, or
//! content with any of the given secret values in any form kugetsu masks), is left out and
//! named in [`Committed::skipped`]; it stays on disk, uncommitted.

use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::ByteSlice as _;
use gix::objs::tree::EntryKind;

use crate::GitConfig;

/// The default size cap: a file larger than this is not committed.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// What may be committed.
#[derive(Debug, Clone)]
pub struct CommitPolicy {
    /// Files larger than this (bytes) are skipped.
    pub max_file_bytes: u64,
    /// Values a committed file must not hold (the env files' secrets).
    pub secrets: Vec<String>,
    /// The identity used when the repository's configuration has none.
    pub fallback: crate::Committer,
}

/// A file left out of the commit, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Relative to the worktree.
    pub path: String,
    /// Why, e.g. `larger than 10 MB`.
    pub why: String,
}

/// What [`commit_changes`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The new commit, `None` when nothing was left to commit.
    pub commit: Option<ObjectId>,
    /// Files committed (added, changed or removed).
    pub files: Vec<String>,
    /// Files left out.
    pub skipped: Vec<Skipped>,
}

/// Why the worktree's changes could not be committed (nothing was changed then).
#[derive(Debug, thiserror::Error)]
#[error("commit the changes in {path}: {message}")]
pub struct CommitError {
    /// The worktree.
    pub path: PathBuf,
    /// Why.
    pub message: String,
}

/// Commits the uncommitted changes of `worktree` on the branch its `HEAD` names, with
/// `message`. A detached or unborn `HEAD` is refused: kugetsu's worktrees always have a branch.
pub fn commit_changes(
    worktree: &Path,
    message: &str,
    policy: &CommitPolicy,
    config: GitConfig,
) -> Result<Committed, CommitError> {
    let err = |message: String| CommitError { path: worktree.to_path_buf(), message };
    let options = config.open_options().config_overrides([
        format!("gitoxide.committer.nameFallback={}", policy.fallback.name),
        format!("gitoxide.committer.emailFallback={}", policy.fallback.email),
        format!("gitoxide.author.nameFallback={}", policy.fallback.name),
        format!("gitoxide.author.emailFallback={}", policy.fallback.email),
        // The mirror is bare (no reflogs by default), but a commit a person did not make should
        // leave a trace to undo it by: the branch's and the worktree's HEAD reflog.
        "core.logAllRefUpdates=true".to_string(),
    ]);
    let repo = gix::open_opts(worktree, options).map_err(|e| err(e.to_string()))?;
    let Some(root) = repo.workdir().map(Path::to_path_buf) else {
        return Err(err("not a worktree".into()));
    };
    let head = repo.head().map_err(|e| err(e.to_string()))?;
    if head.referent_name().is_none() {
        return Err(err("HEAD is detached".into()));
    }
    let Some(parent) = head.id().map(|id| id.detach()) else {
        return Err(err("HEAD has no commit yet".into()));
    };
    let paths = crate::unsaved::changed_files(&repo).map_err(|e| err(e.to_string()))?;
    let base_tree = repo
        .find_commit(parent)
        .and_then(|c| c.tree_id())
        .map_err(|e| err(e.to_string()))?
        .detach();
    let mut editor = repo.edit_tree(base_tree).map_err(|e| err(e.to_string()))?;
    let secrets: Vec<&str> = policy.secrets.iter().map(String::as_str).collect();
    let mut out = Committed { commit: None, files: Vec::new(), skipped: Vec::new() };
    // Files whose blob was written from what is on disk now: their index entries get the
    // file's stat, so `git status` need not read them again.
    let mut hashed = Vec::new();
    for path in paths {
        let full = root.join(&path);
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                editor.remove(path.as_str()).map_err(|e| err(e.to_string()))?;
                out.files.push(path);
                continue;
            }
            Err(e) => return Err(err(format!("{path}: {e}"))),
        };
        let skip = |why: String| Skipped { path: path.clone(), why };
        if meta.is_dir() {
            // An initialized submodule with work inside: its own repository, not ours to commit.
            out.skipped.push(skip("a submodule".into()));
            continue;
        }
        if meta.len() > policy.max_file_bytes {
            out.skipped.push(skip(format!("larger than {}", human(policy.max_file_bytes))));
            continue;
        }
        let (kind, bytes) = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full).map_err(|e| err(format!("{path}: {e}")))?;
            let target = gix::path::into_bstr(target).map_err(|e| err(format!("{path}: {e}")))?;
            (EntryKind::Link, target.into_owned().into())
        } else {
            let bytes = std::fs::read(&full).map_err(|e| err(format!("{path}: {e}")))?;
            (if is_executable(&meta) { EntryKind::BlobExecutable } else { EntryKind::Blob }, bytes)
        };
        if is_env_file(&path) {
            out.skipped.push(skip("an env file".into()));
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        if !secrets.is_empty() && kugetsu_core::secrets::redact(&text, &secrets) != text {
            out.skipped.push(skip("holds a secret".into()));
            continue;
        }
        let id = repo.write_blob(&bytes).map_err(|e| err(e.to_string()))?.detach();
        editor.upsert(path.as_str(), kind, id).map_err(|e| err(e.to_string()))?;
        hashed.push((path.clone(), id));
        out.files.push(path);
    }
    let tree = editor.write().map_err(|e| err(e.to_string()))?.detach();
    if tree != base_tree {
        let commit =
            repo.commit("HEAD", message, tree, [parent]).map_err(|e| err(e.to_string()))?;
        out.commit = Some(commit.detach());
    }
    write_index(&repo, tree, &root, &hashed).map_err(err)?;
    Ok(out)
}

/// Rewrites the index as `tree`, keeping the stat of entries that did not change and taking
/// the file's for those just hashed.
fn write_index(
    repo: &gix::Repository,
    tree: ObjectId,
    root: &Path,
    hashed: &[(String, ObjectId)],
) -> Result<(), String> {
    let old = repo.index_or_empty().map_err(|e| e.to_string())?;
    let mut index = repo.index_from_tree(&tree).map_err(|e| e.to_string())?;
    for (entry, path) in index.entries_mut_with_paths() {
        let fresh = hashed.iter().find(|(p, _)| p.as_bytes() == path.as_bytes());
        if let Some((p, id)) = fresh {
            if *id == entry.id
                && let Ok(meta) = gix::index::fs::Metadata::from_path_no_follow(&root.join(p))
                && let Ok(stat) = gix::index::entry::Stat::from_fs(&meta)
            {
                entry.stat = stat;
            }
        } else if let Some(before) = old.entry_by_path(path)
            && before.id == entry.id
            && before.mode == entry.mode
        {
            entry.stat = before.stat;
        }
    }
    index.write(gix::index::write::Options::default()).map_err(|e| e.to_string())
}

/// `.env` and `.env.<anything>`, in any directory: where env files' secrets live.
fn is_env_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name == ".env" || name.starts_with(".env.")
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    false
}

fn human(bytes: u64) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MB", bytes / (1024 * 1024))
    } else {
        format!("{bytes} bytes")
    }
}
