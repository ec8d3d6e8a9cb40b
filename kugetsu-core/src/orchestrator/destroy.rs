//! `destroy`: an issue's worktree, session and state; or the PM agent or the base session.

use super::*;

/// The two sessions that belong to no issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    /// The primed base session every issue forks from.
    Base,
    /// The PM agent.
    PmAgent,
}

/// What destroy removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DestroyReport {
    /// Agent sessions deleted.
    pub sessions: Vec<String>,
    /// Worktrees removed.
    pub worktrees: Vec<PathBuf>,
    /// Session files removed.
    pub files: Vec<PathBuf>,
}

impl Orchestrator {
    /// `destroy <ref>`: removes the issue's worktree (refusing unsaved work unless `force`), its
    /// agent session, its session file and its index entry.
    pub fn destroy_issue(
        &self,
        issue: &IssueRef,
        force: bool,
    ) -> Result<DestroyReport, OrchestratorError> {
        self.with_issue_lock(issue, || {
            let (path, file) = self.issue_session(issue)?;
            // Before anything is removed: the session is only the other driver's to delete.
            self.check_driver(&issue.to_string(), &path, &file)?;
            let mut report = DestroyReport::default();
            let dir = self.checked_worktree(issue, &file)?;
            match self.worktrees.remove(&dir, RemoveOptions { force, delete_branch: false }) {
                Ok(()) => report.worktrees.push(dir),
                Err(WorktreeError::NoSuchWorktree { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            // An id that is no session id names nothing the agent could delete.
            if let Ok(id) = file.agent_session_id.valid() {
                match self.agent.delete_session(id) {
                    Ok(()) => report.sessions.push(id.to_string()),
                    Err(AgentError::SessionNotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            self.update_index(|index| {
                index.issues.remove(&issue.to_string());
                Ok(())
            })?;
            if storage::remove_file(&path)? {
                report.files.push(path);
            }
            Ok(report)
        })
    }

    /// `destroy --pm-agent`.
    pub fn destroy_pm(&self) -> Result<DestroyReport, OrchestratorError> {
        self.destroy_special(Special::PmAgent)
    }

    /// `destroy --base`: also destroys the PM agent, which depends on it.
    pub fn destroy_base(&self) -> Result<DestroyReport, OrchestratorError> {
        let mut report = self.destroy_special(Special::PmAgent)?;
        let base = self.destroy_special(Special::Base)?;
        report.sessions.extend(base.sessions);
        report.files.extend(base.files);
        Ok(report)
    }

    fn destroy_special(&self, which: Special) -> Result<DestroyReport, OrchestratorError> {
        let index = self.index_or_err()?;
        let (id, path, subject) = match which {
            Special::Base => {
                (index.base.clone(), self.state.base_session_path(), "the base session")
            }
            Special::PmAgent => {
                (index.pm_agent.clone(), self.state.pm_session_path(), "the PM agent session")
            }
        };
        // A file that cannot be read says nothing of its driver; the id in the index is
        // deleted as before.
        if let Ok(Some(file)) = storage::read_json::<SessionFile>(&path) {
            self.check_driver(subject, &path, &file)?;
        }
        let mut report = DestroyReport::default();
        if let Some(Ok(id)) = id.as_ref().map(|id| id.valid()) {
            match self.agent.delete_session(id) {
                Ok(()) => report.sessions.push(id.to_string()),
                Err(AgentError::SessionNotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.update_index(|index| {
            match which {
                Special::Base => index.base = None,
                Special::PmAgent => index.pm_agent = None,
            }
            Ok(())
        })?;
        if storage::remove_file(&path)? {
            report.files.push(path);
        }
        Ok(report)
    }
}
