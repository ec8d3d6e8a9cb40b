//! Cleanup that never loses work: which taken issues of a watched repository are over (their
//! pull request merged, or the issue closed), so that the caller removes their worktree and
//! agent session, and the record of what became of them.
//!
//! The removal itself is [`crate::orchestrator::Orchestrator::destroy_issue`] without force:
//! a worktree with uncommitted files or commits no remote branch has is kept, and the caller
//! reports it. Either way the issue is [`record`]ed as cleaned up, and not looked at again.

use time::OffsetDateTime;

use crate::forge::{Forge, ForgeError};
use crate::queue::{QueueStatus, TaskQueue};
use crate::watch::{WatchError, Watches};

/// Why an issue is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// Its pull request was merged.
    Merged,
    /// The issue was closed.
    Closed,
}

impl Over {
    /// The word shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Over::Merged => "its pull request was merged",
            Over::Closed => "it was closed",
        }
    }
}

/// The taken issues of the watch of `repo` that are over and not cleaned up yet, with no turn
/// pending or running: `(number, issue ref, why)`. Nothing is asked while the forge has asked
/// us to wait; a forge that asks now pauses the repository.
pub fn due(
    watches: &Watches,
    repo: &str,
    forge: &dyn Forge,
    forge_repo: &str,
    queue: &dyn TaskQueue,
    now: OffsetDateTime,
) -> Result<Vec<(u64, String, Over)>, WatchError> {
    let Some(watch) = watches.load()?.watches.remove(repo) else {
        return Err(WatchError::NotFound { repo: repo.to_string() });
    };
    if watch.paused_until.is_some_and(|t| t > now) {
        return Ok(Vec::new());
    }
    let forge_err = |source| WatchError::Forge { repo: repo.to_string(), source };
    let mut out = Vec::new();
    for (number, taken) in watch.taken.iter().filter(|(_, t)| t.cleaned.is_none()) {
        let branch = format!("fix/issue-{number}");
        let over = (|| {
            if forge.find_pull(forge_repo, &branch)?.is_some_and(|p| p.merged) {
                return Ok(Some(Over::Merged));
            }
            // Only an issue that left the listing can be closed.
            if taken.stopped && !forge.get_issue(forge_repo, *number)?.open {
                return Ok(Some(Over::Closed));
            }
            Ok::<_, ForgeError>(None)
        })();
        let over = match over {
            Err(ForgeError::RateLimited { wait, .. }) => {
                watches.update_watch(repo, |w| w.paused_until = Some(now + wait))?;
                return Ok(Vec::new());
            }
            other => other.map_err(forge_err)?,
        };
        if let Some(over) = over {
            out.push((*number, format!("{repo}#{number}"), over));
        }
    }
    if out.is_empty() {
        return Ok(out);
    }
    let items =
        queue.list().map_err(|source| WatchError::Queue { repo: repo.to_string(), source })?.items;
    out.retain(|(_, issue_ref, _)| {
        !items.iter().any(|i| {
            i.issue_ref.as_deref() == Some(issue_ref.as_str())
                && matches!(i.status, QueueStatus::Pending | QueueStatus::Notified)
        })
    });
    Ok(out)
}

/// Records that issue `number` of `repo` is cleaned up, and how (`removed …`, `kept: …`).
pub fn record(watches: &Watches, repo: &str, number: u64, how: &str) -> Result<(), WatchError> {
    watches.update_watch(repo, |w| {
        if let Some(t) = w.taken.get_mut(&number) {
            t.cleaned = Some(how.to_string());
        }
    })
}
