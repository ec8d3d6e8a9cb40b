//! Committing what a completed turn of a watched issue left uncommitted, before its push
//! (`KUGETSU_COMMIT_LEFTOVERS`): agents often end a turn with their changes on disk only, and a
//! branch without new commits gets no pull request. The commit itself is kugetsu-git's.

use std::path::Path;

use kugetsu_core::secrets::redact;
use kugetsu_core::session::SessionFile;
use kugetsu_core::{IssueRef, StateDir};

use crate::wiring::{COMMITTER_EMAIL, COMMITTER_NAME};

/// The longest summary line put in a commit message, in characters.
const MAX_SUBJECT_CHARS: usize = 72;

/// Commits the leftovers of `issue`'s turn in `worktree`; returns what the comment should say
/// was not committed (masked with `secrets`).
pub fn commit(
    state: &StateDir,
    issue: &IssueRef,
    worktree: &Path,
    said: &str,
    secrets: &[String],
) -> Vec<String> {
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let mut message = format!("kugetsu: {issue}");
    if let Some(turn) = turns(state, issue) {
        message.push_str(&format!(" turn {turn}"));
    }
    let line = redact(said, &refs).lines().map(str::trim).find(|l| !l.is_empty()).map(|l| {
        let mut cut: String = l.chars().take(MAX_SUBJECT_CHARS).collect();
        if cut.len() < l.len() {
            cut.push('…');
        }
        cut
    });
    if let Some(line) = line {
        message.push_str(&format!("\n\n{line}\n"));
    }
    let policy = kugetsu_git::CommitPolicy {
        max_file_bytes: kugetsu_git::DEFAULT_MAX_FILE_BYTES,
        secrets: secrets.to_vec(),
        fallback: kugetsu_git::Committer::new(COMMITTER_NAME, COMMITTER_EMAIL),
    };
    match kugetsu_git::commit_changes(worktree, &message, &policy, Default::default()) {
        Ok(done) => {
            if let Some(commit) = done.commit {
                tracing::info!(%commit, files = done.files.len(), "committed what {issue}'s turn left");
            }
            done.skipped.iter().map(|s| redact(&format!("{}: {}", s.path, s.why), &refs)).collect()
        }
        Err(e) => {
            let why = redact(&e.message, &refs);
            tracing::warn!("cannot commit what {issue}'s turn left: {why}");
            vec![format!("kugetsu could not commit the worktree's changes: {why}")]
        }
    }
}

/// How many turns the issue's session has counted, this one included.
fn turns(state: &StateDir, issue: &IssueRef) -> Option<u32> {
    let path = state.issue_session_path(issue);
    let session: SessionFile = kugetsu_core::storage::read_json(&path).ok()??;
    session.usage.map(|u| u.turns).filter(|n| *n > 0)
}
