//! The session store, read and written through `opencode db "<sql>" --format json`: what a
//! session's stored row says (its directory, its title, its permission rules), and the two
//! updates kugetsu makes there (a TUI session's title, the deny rules).
//!
//! Ids go into the SQL as they are: a [`SessionId`] holds only the characters opencode's ids
//! have, so it cannot break out of its quotes; other text has its quotes doubled.

use std::path::PathBuf;

use kugetsu_core::agent::{AgentError, AgentSessionInfo, SessionId};
use serde_json::Value;

use super::OpencodeDriver;
use super::helper::os;

/// One row of a query, as opencode prints it.
pub(super) type Row = serde_json::Map<String, Value>;

impl OpencodeDriver {
    /// `opencode db "<sql>" --format json`, rows as JSON objects.
    pub(super) fn db(&self, sql: &str) -> Result<Vec<Row>, AgentError> {
        let h = self.helper("db", &os(&["db", sql, "--format", "json"]), None, None)?;
        if !h.ok() {
            return Err(h.failed("db"));
        }
        let text = h.stdout.trim();
        if text.is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(text).map_err(|e| AgentError::Protocol {
            command: "db".into(),
            detail: format!("not a JSON list of rows: {e}"),
        })
    }

    /// The stored row of a session: (directory, permission JSON text), or None.
    pub(super) fn session_row(
        &self,
        id: &SessionId,
    ) -> Result<Option<(String, Option<String>)>, AgentError> {
        let rows =
            self.db(&format!("SELECT id, directory, permission FROM session WHERE id = '{id}'"))?;
        Ok(rows.into_iter().next().map(|row| {
            let dir = row.get("directory").and_then(Value::as_str).unwrap_or_default().to_owned();
            let perm = row.get("permission").and_then(Value::as_str).map(str::to_owned);
            (dir, perm)
        }))
    }

    /// [`AgentDriver::session_info`](kugetsu_core::agent::AgentDriver::session_info): the
    /// session's title and directory, from its row.
    pub(super) fn stored_info(
        &self,
        id: &SessionId,
    ) -> Result<Option<AgentSessionInfo>, AgentError> {
        let rows =
            self.db(&format!("SELECT id, title, directory FROM session WHERE id = '{id}'"))?;
        Ok(rows.into_iter().next().map(|row| {
            let text = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            AgentSessionInfo {
                id: id.clone(),
                title: text("title"),
                directory: PathBuf::from(text("directory")),
            }
        }))
    }

    /// Sets the title of session `id`.
    pub(super) fn set_title(&self, id: &SessionId, title: &str) -> Result<(), AgentError> {
        let title = title.replace('\'', "''");
        self.db(&format!("UPDATE session SET title = '{title}' WHERE id = '{id}'")).map(|_| ())
    }

    /// Sets the permission rules (JSON text) of session `id`.
    pub(super) fn set_permission(&self, id: &SessionId, rules: &str) -> Result<(), AgentError> {
        let text = rules.replace('\'', "''");
        self.db(&format!("UPDATE session SET permission = '{text}' WHERE id = '{id}'")).map(|_| ())
    }
}
