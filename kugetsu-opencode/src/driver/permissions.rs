//! The deny rules that keep a headless session from hanging on a permission question, put
//! back where opencode left them out: forks made by opencode itself lose them (upstream
//! #30779), and sessions made in the TUI never had them. The rules themselves are
//! [`crate::fork::ensure_rules`]'s.

use kugetsu_core::agent::{AgentError, Repair, SessionId};
use serde_json::Value;

use super::OpencodeDriver;
use crate::fork::ensure_rules;

impl OpencodeDriver {
    /// Re-applies the permission rules that keep a headless session from hanging. Returns
    /// whether anything changed.
    pub fn fix_permissions(&self, id: &SessionId) -> Result<bool, AgentError> {
        let Some((_, perm)) = self.session_row(id)? else {
            return Err(AgentError::SessionNotFound { id: id.clone() });
        };
        self.apply_rules(id, perm.as_deref())
    }

    /// [`AgentDriver::repair_session`](kugetsu_core::agent::AgentDriver::repair_session): the
    /// rules, said as a repair when they were missing.
    pub(super) fn repair(&self, id: &SessionId) -> Result<Option<Repair>, AgentError> {
        Ok(self.fix_permissions(id)?.then(|| Repair {
            problem: "lacked the permission rules that keep headless runs from hanging".into(),
            done: "re-applied them".into(),
        }))
    }

    /// Writes the deny rules into session `id` whose stored `permission` is `perm`, unless they
    /// are all there already; returns whether it wrote.
    fn apply_rules(&self, id: &SessionId, perm: Option<&str>) -> Result<bool, AgentError> {
        let mut rules = match perm.map(serde_json::from_str::<Value>) {
            None => Value::Null,
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                return Err(AgentError::Protocol {
                    command: "db".into(),
                    detail: format!("permission of session {id} is not JSON: {e}"),
                });
            }
        };
        if !ensure_rules(&mut rules) {
            return Ok(false);
        }
        self.set_permission(id, &rules.to_string())?;
        Ok(true)
    }
}
