//! `list_sessions` and `delete_session`: `opencode session list --format json` run in the
//! directory whose sessions are wanted, and `opencode session delete`.

use std::path::{Path, PathBuf};

use kugetsu_core::agent::{AgentError, AgentSessionInfo, SessionId};
use serde::Deserialize;

use super::OpencodeDriver;
use super::helper::os;
use crate::export_cache;

/// One entry of `session list --format json`.
#[derive(Deserialize)]
struct ListedSession {
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    directory: PathBuf,
}

impl OpencodeDriver {
    /// The sessions of the project `dir` is in.
    pub(super) fn sessions_in(&self, dir: &Path) -> Result<Vec<AgentSessionInfo>, AgentError> {
        let args = os(&["session", "list", "--format", "json"]);
        let h = self.helper("session list", &args, Some(dir), None)?;
        if !h.ok() {
            return Err(h.failed("session list"));
        }
        parse_session_list(&h.stdout)
    }

    /// Deletes session `id`, and forgets a kept export of it.
    pub(super) fn delete(&self, id: &SessionId) -> Result<(), AgentError> {
        let h =
            self.helper("session delete", &os(&["session", "delete", id.as_str()]), None, None)?;
        if h.ok() {
            if let Some(dir) = &self.opts.export_cache {
                export_cache::forget_if_of(dir, id);
            }
            Ok(())
        } else if h.not_found() {
            Err(AgentError::SessionNotFound { id: id.clone() })
        } else {
            Err(h.failed("session delete"))
        }
    }
}

/// Parses `session list --format json` (nothing at all when there are no sessions).
fn parse_session_list(stdout: &str) -> Result<Vec<AgentSessionInfo>, AgentError> {
    let text = stdout.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let listed: Vec<ListedSession> =
        serde_json::from_str(text).map_err(|e| AgentError::Protocol {
            command: "session list".into(),
            detail: format!("not a JSON session list: {e}"),
        })?;
    listed
        .into_iter()
        .map(|s| {
            let id = SessionId::new(s.id).map_err(|e| AgentError::Protocol {
                command: "session list".into(),
                detail: e.to_string(),
            })?;
            Ok(AgentSessionInfo { id, title: s.title, directory: s.directory })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_list_parsing() {
        assert_eq!(parse_session_list("").map(|v| v.len()).ok(), Some(0));
        let out = r#"[
  {"id": "ses_df5eb4af9ffemK92KrwWdJZMY3", "title": "base", "updated": 1, "created": 1, "projectId": "global", "directory": "/p"}
]"#;
        let list = parse_session_list(out).expect("parses");
        assert_eq!(list[0].id.as_str(), "ses_df5eb4af9ffemK92KrwWdJZMY3");
        assert_eq!(list[0].directory, PathBuf::from("/p"));
        assert!(parse_session_list("garbage").is_err());
        assert!(parse_session_list(r#"[{"id": "ses_x'; --"}]"#).is_err());
    }
}
