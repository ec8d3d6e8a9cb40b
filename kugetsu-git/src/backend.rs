//! [`GitWorktrees`]: the gix implementation of [`Worktrees`].
//!
//! Every operation that changes a mirror (clone, fetch, branch, add, remove, prune) runs under
//! that mirror's file lock, and `create` decides everything it may refuse (unsaved work, a lock,
//! a branch checked out elsewhere, a foreign directory in the way) before it changes anything,
//! so a refusal never leaves a worktree half-removed.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use gix::bstr::ByteSlice;
use gix::refs::transaction::PreviousValue;
use kugetsu_core::storage::{self, StorageError};
use kugetsu_core::worktree::{
    RemoveOptions, UnsavedWork, WorktreeError, WorktreeInfo, WorktreePhase, WorktreeProgress,
    WorktreeRequest, Worktrees,
};

use crate::config::GitConfig;
use crate::error::{self, GitError};
use crate::{mirror, progress, ssh, unsaved};

/// Identity recorded in reflogs when git's own `user.name`/`user.email` are not configured.
///
/// Creating a branch or a worktree writes reflog entries, which need a committer; on a fresh
/// server there often is none, and gix then refuses. These values are used only as a fallback:
/// a configured identity wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committer {
    /// Name, e.g. `kugetsu`.
    pub name: String,
    /// Email, e.g. `kugetsu@localhost`.
    pub email: String,
}

impl Committer {
    /// A fallback identity.
    pub fn new(name: impl Into<String>, email: impl Into<String>) -> Self {
        Committer { name: name.into(), email: email.into() }
    }
}

/// Per-issue worktrees over one bare mirror per repository; see the crate docs.
#[derive(Debug, Clone)]
pub struct GitWorktrees {
    mirrors_dir: PathBuf,
    locks_dir: PathBuf,
    committer: Committer,
    config: GitConfig,
}

/// How often a waiting `create` checks its interrupt flag while another process holds the lock.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Lock failures, kept apart from the operation's own errors inside a lock.
struct LockFailure(StorageError);

impl From<StorageError> for LockFailure {
    fn from(e: StorageError) -> Self {
        LockFailure(e)
    }
}

impl GitWorktrees {
    /// A backend keeping mirrors in `mirrors_dir` (as `<mirror_key>.git`) and their lock files
    /// in `locks_dir`. Both are created (mode `0700`) on first use. `committer` is the reflog
    /// identity used when git has none configured.
    pub fn new(
        mirrors_dir: impl Into<PathBuf>,
        locks_dir: impl Into<PathBuf>,
        committer: Committer,
    ) -> Self {
        GitWorktrees {
            mirrors_dir: mirrors_dir.into(),
            locks_dir: locks_dir.into(),
            committer,
            config: GitConfig::default(),
        }
    }

    /// Chooses which git configuration applies (default [`GitConfig::User`]).
    pub fn with_git_config(mut self, config: GitConfig) -> Self {
        self.config = config;
        self
    }

    /// The mirror directory for a repository key (`<mirrors_dir>/<key>.git`).
    pub fn mirror_path(&self, mirror_key: &str) -> Result<PathBuf, WorktreeError> {
        mirror::mirror_path(&self.mirrors_dir, mirror_key)
    }

    fn lock_path(&self, mirror_key: &str) -> PathBuf {
        self.locks_dir.join(format!("mirror-{mirror_key}.lock"))
    }

    /// Runs `f` holding the lock of mirror `key`: clone, fetch, add and remove of one repository
    /// are serialized across processes, other repositories proceed in parallel.
    fn locked<T>(
        &self,
        key: &str,
        f: impl FnOnce() -> Result<T, WorktreeError>,
    ) -> Result<T, WorktreeError> {
        storage::ensure_dir(&self.locks_dir).map_err(error::storage)?;
        let lock = self.lock_path(key);
        match storage::with_exclusive_lock::<_, LockFailure>(&lock, || Ok(f())) {
            Ok(result) => result,
            Err(LockFailure(e)) => Err(error::storage(e)),
        }
    }

    /// Like [`Self::locked`], but gives up with [`WorktreeError::Interrupted`] when `interrupt`
    /// is set while another process holds the lock (its clone of a large repository may take
    /// minutes, and Ctrl-C must not wait for it).
    fn locked_interruptible<T>(
        &self,
        key: &str,
        interrupt: &AtomicBool,
        f: impl FnOnce() -> Result<T, WorktreeError>,
    ) -> Result<T, WorktreeError> {
        storage::ensure_dir(&self.locks_dir).map_err(error::storage)?;
        let lock = self.lock_path(key);
        let mut f = Some(f);
        let mut waiting = false;
        loop {
            let attempt = storage::try_with_exclusive_lock::<_, LockFailure>(&lock, || {
                Ok(f.take().map(|f| f()))
            });
            match attempt {
                Ok(Some(result)) => return result,
                // Unreachable: the closure only runs once the lock is held, and then returns.
                Ok(None) => return Err(WorktreeError::Interrupted),
                Err(LockFailure(StorageError::WouldBlock { .. })) => {
                    if interrupt.load(Ordering::Relaxed) {
                        return Err(WorktreeError::Interrupted);
                    }
                    if !waiting {
                        tracing::debug!(lock = %lock.display(), "waiting for another kugetsu process");
                        waiting = true;
                    }
                    std::thread::sleep(LOCK_POLL);
                }
                Err(LockFailure(e)) => return Err(error::storage(e)),
            }
        }
    }

    fn open_options(&self) -> gix::open::Options {
        self.open_options_for(None)
    }

    /// Open options for a mirror about to talk to the remote at `url`, if any.
    fn open_options_for(&self, url: Option<&str>) -> gix::open::Options {
        let base = self.config.open_options();
        let mut overrides = vec![
            format!("gitoxide.committer.nameFallback={}", self.committer.name),
            format!("gitoxide.committer.emailFallback={}", self.committer.email),
            // Relative worktree links need a repository extension that git before 2.48 refuses.
            "worktree.useRelativePaths=false".to_string(),
        ];
        if let Some(url) = url {
            overrides.extend(ssh::overrides(self.config, url));
        }
        base.config_overrides(overrides)
    }

    fn open_mirror(&self, path: &Path) -> Result<gix::Repository, WorktreeError> {
        self.open_mirror_with(path, self.open_options())
    }

    fn open_mirror_with(
        &self,
        path: &Path,
        options: gix::open::Options,
    ) -> Result<gix::Repository, WorktreeError> {
        gix::open_opts(path, options).map_err(|e| {
            error::ctx(format!("mirror {} is not a usable git repository", path.display()), e)
        })
    }

    /// `(mirror_key, mirror path)` of every mirror present.
    fn mirrors(&self) -> Result<Vec<(String, PathBuf)>, WorktreeError> {
        let entries = match fs::read_dir(&self.mirrors_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(error::at(&self.mirrors_dir, "read", e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| error::at(&self.mirrors_dir, "read", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Some(key) = name.strip_suffix(".git")
                && entry.path().is_dir()
            {
                out.push((key.to_string(), entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The mirror holding a registration for the worktree at `path`.
    fn owner_of(&self, path: &Path) -> Result<(String, PathBuf), WorktreeError> {
        for (key, mirror) in self.mirrors()? {
            let repo = self.open_mirror(&mirror)?;
            let proxies =
                repo.worktrees().map_err(|e| error::at(&mirror, "list worktrees of", e))?;
            if proxies.iter().any(|p| p.base().is_ok_and(|b| same_path(&b, path))) {
                return Ok((key, mirror));
            }
        }
        Err(WorktreeError::NoSuchWorktree { path: path.to_path_buf() })
    }

    fn info(&self, key: &str, proxy: &gix::worktree::Proxy<'_>) -> WorktreeInfo {
        let path = proxy.base().unwrap_or_else(|_| proxy.git_dir().to_path_buf());
        let repo = proxy.clone().into_repo_with_possibly_inaccessible_worktree().ok();
        let branch = repo
            .as_ref()
            .and_then(|r| r.head_name().ok().flatten())
            .map(|n| n.shorten().to_string());
        let head = repo
            .as_ref()
            .and_then(|r| unsaved::head_commit(r).ok().flatten())
            .map(|id| id.to_hex().to_string());
        WorktreeInfo {
            path,
            branch,
            head,
            mirror_key: key.to_string(),
            prunable: proxy.is_prunable(),
            locked: proxy.is_locked(),
        }
    }

    fn create_locked(
        &self,
        req: &WorktreeRequest,
        mirror_path: &Path,
        sink: &mut dyn WorktreeProgress,
        interrupt: &AtomicBool,
    ) -> Result<WorktreeInfo, WorktreeError> {
        let url = req.source.url.as_str();
        let interrupted = || interrupt.load(Ordering::Relaxed);
        // A transfer blocked in a read only notices Ctrl-C when the read ends, often with an
        // I/O error: what the user did is the better explanation.
        let or_interrupted =
            |e: WorktreeError| if interrupted() { WorktreeError::Interrupted } else { e };
        let options = self.open_options_for(Some(url));
        let repo = if mirror_path.exists() {
            let repo = self.open_mirror_with(mirror_path, options)?;
            mirror::fetch(&repo, &req.source, sink, interrupt).map_err(or_interrupted)?;
            repo
        } else {
            mirror::clone(&req.source, mirror_path, options, sink, interrupt)
                .map_err(or_interrupted)?;
            self.open_mirror(mirror_path)?
        };
        if interrupted() {
            return Err(WorktreeError::Interrupted);
        }
        let base = match &req.base_ref {
            Some(base_ref) => mirror::resolve_base(&repo, base_ref, url)?,
            None => mirror::default_branch(&repo, url)?.0,
        };
        let full_name: gix::refs::FullName = format!("refs/heads/{}", req.branch)
            .try_into()
            .map_err(|e| error::ctx(format!("invalid branch name {:?}", req.branch), e))?;

        // Look at what is there now, and refuse before touching anything.
        let proxies =
            repo.worktrees().map_err(|e| error::at(mirror_path, "list worktrees of", e))?;
        let at_path = proxies.iter().find(|p| p.base().is_ok_and(|b| same_path(&b, &req.path)));
        let mut unsaved_work = UnsavedWork::default();
        match at_path {
            // Left half-made or half-removed by a killed process (see `is_half_made`): nobody
            // kept anything in it, so it is replaced without asking.
            Some(proxy) if is_half_made(proxy) => {
                tracing::warn!(path = %req.path.display(), "replacing a worktree left half-made by a killed process");
            }
            Some(proxy) => {
                if proxy.is_locked() && !req.force {
                    return Err(WorktreeError::Locked {
                        path: req.path.clone(),
                        reason: proxy
                            .lock_reason()
                            .map(|r| r.to_string())
                            .filter(|r| !r.is_empty()),
                    });
                }
                unsaved_work = self.unsaved_of(proxy, &req.path)?;
            }
            None => check_free(&req.path)?,
        }
        for proxy in proxies.iter().filter(|p| at_path.is_none_or(|at| at.git_dir() != p.git_dir()))
        {
            let Ok(other) = proxy.clone().into_repo_with_possibly_inaccessible_worktree() else {
                continue;
            };
            if other.head_name().ok().flatten().as_ref() == Some(&full_name) {
                return Err(WorktreeError::BranchCheckedOut {
                    branch: req.branch.clone(),
                    path: proxy.base().unwrap_or_else(|_| proxy.git_dir().to_path_buf()),
                });
            }
        }
        let previous = match repo.try_find_reference(full_name.as_ref()) {
            Ok(Some(mut r)) => Some(
                r.peel_to_id().map_err(|e| error::at(mirror_path, "read branches of", e))?.detach(),
            ),
            Ok(None) => None,
            Err(e) => return Err(error::at(mirror_path, "read branches of", e)),
        };
        if let Some(previous) = previous {
            let commits = unsaved::unpushed_commits(&repo, previous)
                .map_err(|e| error::ctx(format!("cannot inspect branch {}", req.branch), e))?;
            for c in commits {
                if !unsaved_work.unpushed_commits.contains(&c) {
                    unsaved_work.unpushed_commits.push(c);
                }
            }
        }
        if !unsaved_work.is_empty() && !req.force {
            return Err(WorktreeError::WouldLoseWork {
                path: req.path.clone(),
                unsaved: unsaved_work,
            });
        }
        if interrupted() {
            return Err(WorktreeError::Interrupted);
        }

        // From here on things change: the old worktree goes, the branch moves, the new one comes.
        if let Some(proxy) = at_path {
            remove_registered(proxy.clone(), &req.path)?;
        }
        drop(proxies);
        repo.reference(
            full_name.clone(),
            base,
            PreviousValue::Any,
            format!(
                "branch: Created from {}",
                req.base_ref.as_deref().unwrap_or("the default branch")
            ),
        )
        .map_err(|e| error::ctx(format!("cannot create branch {}", req.branch), e))?;
        let restore_branch = |repo: &gix::Repository| {
            let result = match previous {
                Some(id) => repo
                    .reference(full_name.clone(), id, PreviousValue::Any, "kugetsu: restored")
                    .map(drop),
                None => repo.find_reference(full_name.as_ref()).and_then(|r| r.delete()),
            };
            if let Err(e) = result {
                tracing::warn!(branch = %req.branch, error = %e, "could not roll the branch back");
            }
        };
        if let Some(parent) = req.path.parent() {
            storage::ensure_dir(parent).map_err(error::storage)?;
        }
        let worker_repo = repo.clone();
        let head = gix::worktree::add::Head::Attached(full_name.clone());
        let added = progress::run(sink, WorktreePhase::Checkout, "checkout", move |node| {
            worker_repo.add_worktree(&req.path, head, node, interrupt)
        });
        let outcome = match added {
            Ok((_, outcome)) => outcome,
            Err(e) => {
                restore_branch(&repo);
                return Err(error::add(&req.path, &req.branch, e));
            }
        };
        let failures: Vec<String> = outcome
            .collisions
            .iter()
            .map(|c| c.path.to_string())
            .chain(outcome.errors.iter().map(|e| format!("{}: {}", e.path, e.error)))
            .collect();
        if !failures.is_empty() || interrupted() {
            if let Ok(proxy) = find_proxy(&repo, &req.path) {
                let _ = remove_registered(proxy, &req.path);
            }
            restore_branch(&repo);
            if failures.is_empty() {
                return Err(WorktreeError::Interrupted);
            }
            let shown = failures.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            return Err(error::at(&req.path, "check out", GitError::Checkout(shown)));
        }
        Ok(WorktreeInfo {
            path: req.path.clone(),
            branch: Some(req.branch.clone()),
            head: Some(base.to_hex().to_string()),
            mirror_key: req.source.mirror_key.clone(),
            prunable: false,
            locked: false,
        })
    }

    /// Unsaved work of a registered worktree; a missing directory only has its commits.
    fn unsaved_of(
        &self,
        proxy: &gix::worktree::Proxy<'_>,
        path: &Path,
    ) -> Result<UnsavedWork, WorktreeError> {
        let repo = proxy
            .clone()
            .into_repo_with_possibly_inaccessible_worktree()
            .map_err(|e| error::at(path, "open worktree", e))?;
        let mut work = UnsavedWork::default();
        if path.is_dir() {
            work.changed_files = unsaved::changed_files(&repo)
                .map_err(|e| error::at(path, "read the status of", e))?;
        }
        if let Some(tip) =
            unsaved::head_commit(&repo).map_err(|e| error::at(path, "read HEAD of", e))?
        {
            work.unpushed_commits = unsaved::unpushed_commits(&repo, tip)
                .map_err(|e| error::at(path, "list unpushed commits of", e))?;
        }
        Ok(work)
    }
}

/// The lock reason a worktree carries while kugetsu deletes it.
const REMOVING: &str = "kugetsu: removing";

/// Whether `proxy` is a worktree whose creation or removal never finished: gix locks a worktree
/// "initializing" while adding it, and kugetsu locks one [`REMOVING`] before deleting it. Under
/// the mirror lock neither can be in progress, so such a worktree is what a killed process left,
/// holding nothing anyone decided to keep.
fn is_half_made(proxy: &gix::worktree::Proxy<'_>) -> bool {
    proxy.lock_reason().is_some_and(|r| r == "initializing" || r == REMOVING)
}

/// Whether a submodule was initialized in the worktree (git keeps its repository in the
/// worktree's administrative directory); `git worktree remove` refuses those too.
fn has_initialized_submodule(proxy: &gix::worktree::Proxy<'_>) -> bool {
    proxy.git_dir().join("modules").is_dir()
}

fn find_proxy<'r>(
    repo: &'r gix::Repository,
    path: &Path,
) -> Result<gix::worktree::Proxy<'r>, WorktreeError> {
    repo.worktrees()
        .map_err(|e| error::at(repo.path(), "list worktrees of", e))?
        .into_iter()
        .find(|p| p.base().is_ok_and(|b| same_path(&b, path)))
        .ok_or_else(|| WorktreeError::NoSuchWorktree { path: path.to_path_buf() })
}

/// Removes a registered worktree, or only its registration when its directory is gone. The
/// caller has decided that nothing in it is to be kept.
///
/// The worktree is first locked [`REMOVING`]: gix deletes the checkout before the registration,
/// so a process killed in between leaves a registered, half-deleted checkout, which the lock
/// marks as safe to finish off instead of as a worktree full of deleted files.
fn remove_registered(proxy: gix::worktree::Proxy<'_>, path: &Path) -> Result<(), WorktreeError> {
    if fs::symlink_metadata(path).is_ok() {
        proxy
            .set_lock(Some(REMOVING.into()))
            .map_err(|e| error::at(path, "mark for removal", e))?;
        proxy
            .remove(gix::worktree::remove::Force::OverrideLock, gix::progress::Discard)
            .map_err(|e| error::remove(path, e))
    } else {
        let git_dir = proxy.git_dir().to_path_buf();
        fs::remove_dir_all(&git_dir)
            .map_err(|e| error::at(&git_dir, "remove the stale registration", e))
    }
}

/// `path` may become a new worktree: it is absent or an empty directory.
fn check_free(path: &Path) -> Result<(), WorktreeError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(error::at(path, "inspect", e)),
        Ok(meta) if meta.is_dir() => {
            let mut entries = fs::read_dir(path).map_err(|e| error::at(path, "read", e))?;
            if entries.next().is_none() {
                Ok(())
            } else {
                Err(error::not_worktree(path.to_path_buf()))
            }
        }
        Ok(_) => Err(error::not_worktree(path.to_path_buf())),
    }
}

/// Whether two paths name the same place, also when one of them no longer exists.
fn same_path(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn validate(req: &WorktreeRequest) -> Result<(), WorktreeError> {
    if !req.path.is_absolute() {
        // gix matches worktrees by path suffix; a relative path could pick another repository's.
        return Err(error::ctx(
            format!("worktree path {} is not absolute", req.path.display()),
            GitError::Invalid("worktree paths must be absolute".into()),
        ));
    }
    gix::validate::reference::name_partial(req.branch.as_bytes().as_bstr())
        .map_err(|e| error::ctx(format!("invalid branch name {:?}", req.branch), e))?;
    Ok(())
}

impl Worktrees for GitWorktrees {
    fn create(
        &self,
        req: &WorktreeRequest,
        progress: &mut dyn WorktreeProgress,
        interrupt: &AtomicBool,
    ) -> Result<WorktreeInfo, WorktreeError> {
        validate(req)?;
        let mirror_path = self.mirror_path(&req.source.mirror_key)?;
        mirror::parse_url(&req.source.url)?;
        storage::ensure_dir(&self.mirrors_dir).map_err(error::storage)?;
        tracing::debug!(url = %req.source.url, path = %req.path.display(), branch = %req.branch, "creating worktree");
        self.locked_interruptible(&req.source.mirror_key, interrupt, || {
            self.create_locked(req, &mirror_path, progress, interrupt)
        })
    }

    fn remove(&self, path: &Path, opts: RemoveOptions) -> Result<(), WorktreeError> {
        let (key, mirror_path) = self.owner_of(path)?;
        self.locked(&key, || {
            let repo = self.open_mirror(&mirror_path)?;
            let proxy = find_proxy(&repo, path)?;
            let half_made = is_half_made(&proxy);
            if proxy.is_locked() && !opts.force && !half_made {
                return Err(WorktreeError::Locked {
                    path: path.to_path_buf(),
                    reason: proxy.lock_reason().map(|r| r.to_string()).filter(|r| !r.is_empty()),
                });
            }
            if !opts.force && !half_made {
                let mut work = self.unsaved_of(&proxy, path)?;
                if has_initialized_submodule(&proxy) && path.is_dir() {
                    work.changed_files.push("(an initialized submodule)".to_string());
                }
                if !work.is_empty() {
                    return Err(WorktreeError::WouldLoseWork {
                        path: path.to_path_buf(),
                        unsaved: work,
                    });
                }
            }
            let branch = proxy
                .clone()
                .into_repo_with_possibly_inaccessible_worktree()
                .ok()
                .and_then(|r| r.head_name().ok().flatten());
            remove_registered(proxy, path)?;
            if opts.delete_branch
                && let Some(branch) = branch
            {
                let still_used = repo
                    .worktrees()
                    .map_err(|e| error::at(&mirror_path, "list worktrees of", e))?
                    .into_iter()
                    .filter_map(|p| p.into_repo_with_possibly_inaccessible_worktree().ok())
                    .any(|r| r.head_name().ok().flatten().as_ref() == Some(&branch));
                if !still_used && let Ok(Some(reference)) = repo.try_find_reference(branch.as_ref())
                {
                    reference.delete().map_err(|e| {
                        error::ctx(format!("cannot delete branch {}", branch.shorten()), e)
                    })?;
                }
            }
            Ok(())
        })
    }

    fn list(&self) -> Result<Vec<WorktreeInfo>, WorktreeError> {
        let mut out = Vec::new();
        for (key, mirror_path) in self.mirrors()? {
            let repo = self.open_mirror(&mirror_path)?;
            let proxies =
                repo.worktrees().map_err(|e| error::at(&mirror_path, "list worktrees of", e))?;
            out.extend(proxies.iter().map(|p| self.info(&key, p)));
        }
        Ok(out)
    }

    fn unsaved_work(&self, path: &Path) -> Result<UnsavedWork, WorktreeError> {
        let (_, mirror_path) = self.owner_of(path)?;
        let repo = self.open_mirror(&mirror_path)?;
        let proxy = find_proxy(&repo, path)?;
        self.unsaved_of(&proxy, path)
    }

    fn save_unsaved(&self, path: &Path, cap: usize) -> Result<String, WorktreeError> {
        // The cause is the message: a carry error names the worktree and what failed.
        let fail = |e: &dyn std::fmt::Display| {
            error::other(e.to_string(), GitError::Invalid("cannot save the unsaved work".into()))
        };
        let carry = crate::carry::save(path, cap).map_err(|e| fail(&e))?;
        serde_json::to_string(&carry).map_err(|e| fail(&e))
    }

    fn restore_unsaved(&self, path: &Path, saved: &str) -> Result<(), WorktreeError> {
        let fail = |e: &dyn std::fmt::Display| {
            error::other(
                format!("cannot rebuild the carried work in {}: {e}", path.display()),
                GitError::Invalid("cannot rebuild carried work".into()),
            )
        };
        let carry: crate::carry::WorktreeCarry =
            serde_json::from_str(saved).map_err(|e| fail(&e))?;
        // Objects go into the mirror, which other processes may be fetching into.
        let (key, _) = self.owner_of(path)?;
        self.locked(&key, || crate::carry::restore(path, &carry).map_err(|e| fail(&e)))
    }

    fn prune(&self) -> Result<Vec<PathBuf>, WorktreeError> {
        let mut pruned = Vec::new();
        for (key, mirror_path) in self.mirrors()? {
            self.locked(&key, || {
                let repo = self.open_mirror(&mirror_path)?;
                for proxy in
                    repo.worktrees().map_err(|e| error::at(&mirror_path, "list worktrees of", e))?
                {
                    if !proxy.is_prunable() {
                        continue;
                    }
                    let shown = proxy.base().unwrap_or_else(|_| proxy.git_dir().to_path_buf());
                    fs::remove_dir_all(proxy.git_dir()).map_err(|e| {
                        error::at(proxy.git_dir(), "remove the stale registration", e)
                    })?;
                    pruned.push(shown);
                }
                Ok(())
            })?;
        }
        Ok(pruned)
    }
}
