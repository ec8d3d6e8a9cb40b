//! What removing or recreating a worktree would lose.
//!
//! Two kinds of work live only in a worktree or its branch: files (modified, staged, deleted or
//! untracked; ignored files are build output and are not counted, as `git worktree remove` does
//! not count them either) and commits that no remote-tracking branch contains. `gix`'s own
//! `is_dirty()` ignores untracked files, so the status here walks untracked files explicitly, even
//! when the user's `status.showUntrackedFiles=no` would hide them.

use gix::ObjectId;

/// At most this many unpushed commits are listed; a branch with more is surely worth keeping.
const MAX_LISTED_COMMITS: usize = 200;

/// Paths (relative to the worktree) with changes that are neither committed nor ignored.
pub(crate) fn changed_files(worktree: &gix::Repository) -> Result<Vec<String>, gix::Error> {
    use gix::status::{Item, UntrackedFiles};
    let dirwalk = worktree.dirwalk_options()?;
    let iter = worktree
        .status(gix::progress::Discard)?
        .index_worktree_options_mut(|opts| opts.dirwalk_options = Some(dirwalk))
        .untracked_files(UntrackedFiles::Files)
        // Work inside an initialized submodule is work too.
        .index_worktree_submodules(gix::status::Submodule::AsConfigured { check_dirty: true })
        .into_iter(None)?;
    let mut files = Vec::new();
    for item in iter {
        let item = item?;
        let counts = match &item {
            Item::IndexWorktree(change) => change.summary().is_some(),
            Item::TreeIndex(_) => true,
        };
        if counts {
            files.push(item.location().to_string());
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// Commits reachable from `tip` that no remote-tracking branch contains, newest first, as
/// `<short id> <summary>`.
///
/// Fetches do not prune (git's default), so a branch deleted on the remote after a merge keeps
/// its tracking ref and its commits keep counting as pushed: a squash-merged issue branch can be
/// recreated without force.
pub(crate) fn unpushed_commits(
    repo: &gix::Repository,
    tip: ObjectId,
) -> Result<Vec<String>, gix::Error> {
    let mut out = Vec::new();
    for info in repo.rev_walk([tip]).with_hidden(remote_tips(repo)?).all()?.take(MAX_LISTED_COMMITS)
    {
        let info = info?;
        let commit = info.object()?;
        let summary = commit.message()?.summary().to_string();
        out.push(format!("{} {summary}", info.id.to_hex_with_len(8)));
    }
    Ok(out)
}

/// The commit a worktree's `HEAD` points to, if it is born.
pub(crate) fn head_commit(worktree: &gix::Repository) -> Result<Option<ObjectId>, gix::Error> {
    Ok(worktree.head()?.id().map(|id| id.detach()))
}

/// The tips of the remote-tracking branches.
fn remote_tips(repo: &gix::Repository) -> Result<Vec<ObjectId>, gix::Error> {
    let mut hidden = Vec::new();
    let refs = repo.references()?;
    for reference in refs.remote_branches()? {
        let mut reference = reference?;
        if let Ok(id) = reference.peel_to_id() {
            hidden.push(id.detach());
        }
    }
    Ok(hidden)
}

/// Every commit reachable from `tip` that no remote-tracking branch contains, newest first.
pub(crate) fn unpushed_ids(
    repo: &gix::Repository,
    tip: ObjectId,
) -> Result<Vec<ObjectId>, gix::Error> {
    ids_hiding(repo, tip, remote_tips(repo)?)
}

/// Every commit reachable from `tip` and from none of `hidden`, newest first.
pub(crate) fn ids_hiding(
    repo: &gix::Repository,
    tip: ObjectId,
    hidden: Vec<ObjectId>,
) -> Result<Vec<ObjectId>, gix::Error> {
    let mut out = Vec::new();
    for info in repo.rev_walk([tip]).with_hidden(hidden).all()? {
        out.push(info?.id);
    }
    Ok(out)
}
