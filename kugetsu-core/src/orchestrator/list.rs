//! `list`: every session kugetsu tracks, read from the state files (no agent calls), with turns
//! whose supervisor died settled as they are read.

use super::*;

/// One row of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListEntry {
    /// The issue, or `(base)` / `(pm-agent)`.
    pub issue_ref: String,
    /// Base, PM agent or forked (`type` in JSON, the session file's word).
    #[serde(rename = "type")]
    pub kind: SessionKind,
    /// The agent session id.
    pub session_id: String,
    /// The driver that made the session (`KUGETSU_AGENT`), if its file could be read.
    pub agent: Option<String>,
    /// The worktree, if any.
    pub worktree: Option<PathBuf>,
    /// The session state, if its file could be read.
    pub state: Option<SessionState>,
    /// A problem with this entry (missing or corrupt session file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// What the session's turns cost in all, as the agent reported it (`null`: unknown; turns
    /// of unknown cost add nothing).
    pub cost_usd: Option<crate::usage::Usd>,
    /// The tokens of its turns (`null` before its first turn).
    pub tokens: Option<crate::usage::Tokens>,
    /// Its turns whose agent reported no cost (shown, so a sum with unknown parts is not read
    /// as whole).
    #[serde(skip_serializing_if = "is_zero")]
    pub unknown_cost_turns: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The usage columns of a row, from its session file.
fn usage_of(
    file: Option<&SessionFile>,
) -> (Option<crate::usage::Usd>, Option<crate::usage::Tokens>, u32) {
    match file.and_then(|f| f.usage) {
        Some(u) => (u.cost_usd, Some(u.tokens), u.unknown_turns),
        None => (None, None, 0),
    }
}

impl ListEntry {
    /// The cost as `list` shows it: `$1.23`, `$1.23+?` (some turns unknown), `unknown`, or `-`
    /// before the first turn.
    pub fn cost_text(&self) -> String {
        match (self.cost_usd, self.unknown_cost_turns, self.tokens.is_some()) {
            (_, _, false) => "-".into(),
            (None, _, true) => "unknown".into(),
            (Some(c), 0, true) => c.to_string(),
            (Some(c), _, true) => format!("{c}+?"),
        }
    }
}

/// A row of `list` with the session file it was read from (when it could be), for views that
/// show more of each session than `list` does (a dashboard: branch, agent pid, last turn).
#[derive(Debug, Clone)]
pub struct SessionView {
    /// The row `list` prints.
    pub entry: ListEntry,
    /// The session file, if it could be read.
    pub file: Option<SessionFile>,
}

impl Orchestrator {
    /// `list`: base, PM agent, then every issue, reading each session file.
    pub fn list(&self) -> Result<Vec<ListEntry>, OrchestratorError> {
        Ok(self.list_sessions()?.into_iter().map(|v| v.entry).collect())
    }

    /// [`Orchestrator::list`] with each row's session file: one read of each.
    pub fn list_sessions(&self) -> Result<Vec<SessionView>, OrchestratorError> {
        let index = self.index_or_err()?;
        let mut out = Vec::with_capacity(index.issues.len() + 2);
        let state_of = |path: &Path| match storage::read_json::<SessionFile>(path) {
            Ok(Some(f)) => (Some(f), None),
            Ok(None) => (None, Some("session file missing".to_string())),
            Err(e) => (None, Some(e.to_string())),
        };
        for (label, kind, id, path) in [
            ("(base)", SessionKind::Base, &index.base, self.state.base_session_path()),
            ("(pm-agent)", SessionKind::PmAgent, &index.pm_agent, self.state.pm_session_path()),
        ] {
            if let Some(id) = id {
                let (file, problem) = state_of(&path);
                let (cost_usd, tokens, unknown_cost_turns) = usage_of(file.as_ref());
                let entry = ListEntry {
                    issue_ref: label.into(),
                    kind,
                    session_id: id.to_string(),
                    agent: file.as_ref().map(|f| f.agent().to_string()),
                    worktree: None,
                    state: file.as_ref().map(|f| f.state.clone()),
                    problem,
                    cost_usd,
                    tokens,
                    unknown_cost_turns,
                };
                out.push(SessionView { entry, file });
            }
        }
        for (issue, name) in &index.issues {
            let (file, problem) = match IssueRef::parse(issue) {
                Ok(r) => match self.checked_session_path(&r, name) {
                    Ok(path) => {
                        let (file, problem) = state_of(&path);
                        // A turn whose kugetsu was killed outright says `running` forever:
                        // show (and record) what it is, as every reader of the session does.
                        if file.as_ref().is_some_and(|f| f.state == SessionState::Running)
                            && self.settle_abandoned_run(&r).unwrap_or(false)
                        {
                            state_of(&path)
                        } else {
                            (file, problem)
                        }
                    }
                    Err(e) => (None, Some(e.to_string())),
                },
                Err(e) => (None, Some(e.to_string())),
            };
            let (cost_usd, tokens, unknown_cost_turns) = usage_of(file.as_ref());
            let entry = ListEntry {
                issue_ref: issue.clone(),
                kind: file.as_ref().map_or(SessionKind::Forked, |f| f.kind.clone()),
                session_id: file
                    .as_ref()
                    .map(|f| f.agent_session_id.to_string())
                    .unwrap_or_default(),
                agent: file.as_ref().map(|f| f.agent().to_string()),
                worktree: file.as_ref().and_then(|f| f.worktree_path.clone()),
                state: file.as_ref().map(|f| f.state.clone()),
                problem,
                cost_usd,
                tokens,
                unknown_cost_turns,
            };
            out.push(SessionView { entry, file });
        }
        Ok(out)
    }
}
