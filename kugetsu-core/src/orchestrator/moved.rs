//! An issue's history as another host needs it to carry on: saved at the end of each of its
//! turns on a shared queue ([`Orchestrator::save_history`]), used when the issue moves to
//! another host because its own is lost ([`Orchestrator::start_moved`]).

use super::*;

/// What another host needs to carry an issue on, and what could not be saved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MovedHistory {
    /// The agent session's export (secrets masked), when it could be made.
    pub session: Option<String>,
    /// The worktree's unsaved work (unpushed commits and uncommitted files), when it could be
    /// saved within the cap.
    pub worktree: Option<String>,
    /// What could not be saved, and why, in words.
    pub missing: Vec<String>,
}

impl Orchestrator {
    /// Saves what another host needs to carry `issue` on: its session's export and its
    /// worktree's unsaved work, the latter only within `cap` bytes. What cannot be saved is
    /// said in [`MovedHistory::missing`], not an error: the turn that just ended stands.
    pub fn save_history(
        &self,
        issue: &IssueRef,
        cap: usize,
    ) -> Result<MovedHistory, OrchestratorError> {
        let (path, file) = self.issue_session(issue)?;
        let mut saved = MovedHistory::default();
        let env = self.env.agent_env(DEFAULT_AGENT)?;
        match agent_session_id(&file.agent_session_id, &path) {
            Ok(id) => match self.agent.export_session(&id, &env) {
                Ok(export) if export.len() <= cap => saved.session = Some(export),
                Ok(export) => saved.missing.push(format!(
                    "the agent session: {} bytes, over the cap of {cap}",
                    export.len()
                )),
                Err(e) => saved.missing.push(format!("the agent session: {e}")),
            },
            Err(e) => saved.missing.push(format!("the agent session: {e}")),
        }
        match &file.worktree_path {
            Some(dir) => match self.worktrees.save_unsaved(dir, cap) {
                Ok(work) => saved.worktree = Some(work),
                Err(e) => saved.missing.push(format!("the worktree's unsaved work: {e}")),
            },
            None => saved.missing.push("the worktree's unsaved work: no worktree recorded".into()),
        }
        Ok(saved)
    }
}
