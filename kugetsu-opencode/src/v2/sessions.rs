//! Sessions over the serve's HTTP API: made (with the deny rules), forked into another
//! directory, read, listed, repaired and deleted.
//!
//! A fork is `POST /api/session/BASE/fork` then `POST /api/session/F/move {directory}` on the
//! running serve (the whole history and the permission rules are kept, and tools then run in
//! the new directory). `run -s BASE --fork` would leave the fork in the base's directory, and
//! an empty session cannot be forked (the base always has its priming turn). The move is the
//! slow part (0.1–0.4 s on 2.1.2, more than a whole turn): it is finished in the background
//! while the caller goes on, and whatever next uses the fork waits for it ([`settled`]); a
//! fork's first turn does so while its client starts. On a serve this driver has just started
//! (no daemon keeps one warm), the base's export is imported into the directory instead
//! ([`fork_by_import`]), and the directory is loaded on the serve in the background the same
//! way.
//!
//! [`settled`]: OpencodeV2Driver::settled
//! [`fork_by_import`]: OpencodeV2Driver::fork_by_import

use std::path::{Path, PathBuf};

use kugetsu_core::agent::{AgentError, AgentSessionInfo, ForkRequest, Repair, SessionId};
use serde_json::{Value, json};

use super::OpencodeV2Driver;
use super::http::{Client, HttpError, escape};

/// The tools a headless session must not use: a question would wait for an answer that never
/// comes on a turn driven over HTTP.
pub(crate) const REQUIRED_DENY: &[&str] = &["question"];

/// A session as the serve stores it.
pub(crate) struct Stored {
    pub id: SessionId,
    pub title: String,
    pub directory: PathBuf,
    pub permissions: Value,
    /// `succeeded`, `failed` or `interrupted`; `None` before the first turn ends.
    pub outcome: Option<String>,
    pub raw: Value,
}

impl Stored {
    pub(crate) fn parse_value(v: Value) -> Result<Stored, AgentError> {
        let id = v
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| SessionId::new(s).ok())
            .ok_or_else(|| protocol(format!("a session without a valid id: {v}")))?;
        let outcome = match v.get("outcome") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(o) => ["type", "status"]
                .iter()
                .find_map(|k| o.get(k).and_then(Value::as_str).map(str::to_owned)),
            None => None,
        };
        Ok(Stored {
            id,
            title: v.get("title").and_then(Value::as_str).unwrap_or_default().to_owned(),
            directory: v
                .pointer("/location/directory")
                .and_then(Value::as_str)
                .map(PathBuf::from)
                .unwrap_or_default(),
            permissions: v.get("permissions").cloned().unwrap_or(Value::Null),
            outcome,
            raw: v,
        })
    }

    pub(crate) fn info(&self) -> AgentSessionInfo {
        AgentSessionInfo {
            id: self.id.clone(),
            title: self.title.clone(),
            directory: self.directory.clone(),
        }
    }
}

fn protocol(detail: String) -> AgentError {
    AgentError::Protocol { command: "serve".into(), detail }
}

/// An HTTP failure as the driver's error (a 404 of a session is [`AgentError::SessionNotFound`]).
pub(crate) fn http_error(e: HttpError, id: Option<&SessionId>) -> AgentError {
    match id {
        Some(id) if e.is_not_found() => AgentError::SessionNotFound { id: id.clone() },
        _ => AgentError::CommandFailed { command: "serve".into(), message: e.to_string() },
    }
}

pub(crate) fn session_path(id: &SessionId) -> String {
    format!("/api/session/{}", escape(id.as_str()))
}

/// Adds the deny rules `permissions` lacks; returns whether it changed anything.
pub(crate) fn ensure_rules(permissions: &mut Value) -> bool {
    if !permissions.is_array() {
        *permissions = Value::Array(Vec::new());
    }
    let Value::Array(rules) = permissions else { return false };
    let mut changed = false;
    for name in REQUIRED_DENY {
        let denied = rules
            .iter()
            .any(|r| r["action"] == *name && r["resource"] == "*" && r["effect"] == "deny");
        if !denied {
            rules.push(json!({"action": name, "resource": "*", "effect": "deny"}));
            changed = true;
        }
    }
    changed
}

impl OpencodeV2Driver {
    pub(crate) fn client(&self) -> Result<Client, AgentError> {
        Ok(self.serve()?.client(self.options().helper_timeout))
    }

    /// A new empty session in `dir` with `title` and the deny rules.
    pub(crate) fn new_session(&self, dir: &Path, title: &str) -> Result<SessionId, AgentError> {
        let mut permissions = Value::Null;
        ensure_rules(&mut permissions);
        let body = json!({
            "title": title,
            "location": {"directory": dir.display().to_string()},
            "permissions": permissions,
        });
        let made = self.client()?.post("/api/session", &body).map_err(|e| http_error(e, None))?;
        Ok(Stored::parse_value(made)?.id)
    }

    /// The session as stored, `None` if the serve does not know it.
    pub(crate) fn stored(&self, id: &SessionId) -> Result<Option<Stored>, AgentError> {
        self.settled(id)?;
        match self.client()?.get(&session_path(id)) {
            Ok(v) => Stored::parse_value(v).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(http_error(e, Some(id))),
        }
    }

    pub(super) fn fork(&self, req: &ForkRequest) -> Result<SessionId, AgentError> {
        let client = self.client()?;
        if self.owns_serve() {
            match self.fork_by_import(&client, req) {
                Ok(id) => {
                    self.load_in_background(&id, &req.dir)?;
                    return Ok(id);
                }
                // Whatever the export lacks, the serve's own fork may still do.
                Err(e) => tracing::debug!(
                    base = %req.base, error = %e, "cannot fork by import; forking on the serve"
                ),
            }
        }
        let base = Some(&req.base);
        let forked = client
            .post(&format!("{}/fork", session_path(&req.base)), &json!({}))
            .map_err(|e| http_error(e, base))?;
        let fork = Stored::parse_value(forked)?;
        // The rules were copied from the base; a base made in the TUI may lack them.
        let mut permissions = fork.permissions;
        ensure_rules(&mut permissions);
        let (id, dir, title) = (fork.id.clone(), req.dir.display().to_string(), req.title.clone());
        let finish = std::thread::spawn(move || {
            let at = Some(&id);
            let done = client
                .post(&format!("{}/move", session_path(&id)), &json!({"directory": dir}))
                .and_then(|_| {
                    let patch = json!({"title": title, "permissions": permissions});
                    client.patch(&session_path(&id), &patch)
                })
                .map(drop)
                .map_err(|e| http_error(e, at));
            if done.is_err() {
                // No half-made fork is left behind.
                let _ = client.delete(&session_path(&id));
            }
            done
        });
        self.forks.lock().unwrap_or_else(|e| e.into_inner()).insert(fork.id.clone(), finish);
        Ok(fork.id)
    }

    /// Whether the serve in use is one this driver started for itself (no daemon keeps one).
    fn owns_serve(&self) -> bool {
        self.owned.lock().is_ok_and(|owned| owned.is_some())
    }

    /// Has the serve load `dir` (its project, config and instructions) for the fork `id` while
    /// the caller goes on, as the move does for a fork made on the serve. Only a head start:
    /// the first turn loads it anyway, so a failure here is the turn's to report.
    fn load_in_background(&self, id: &SessionId, dir: &Path) -> Result<(), AgentError> {
        let client = self.client()?;
        let path =
            format!("/api/location?location%5Bdirectory%5D={}", escape(&dir.display().to_string()));
        let load = std::thread::spawn(move || {
            if let Err(e) = client.get(&path) {
                tracing::debug!(error = %e, "the serve did not load the fork's directory ahead");
            }
            Ok(())
        });
        self.forks.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), load);
        Ok(())
    }

    /// Waits for what this driver still does in the background for the fork `id` it made (its
    /// move, title and rules, or the load of its directory) and says whether that failed (a
    /// fork that could not be moved is then deleted). Nothing to wait for with any other
    /// session, or once asked.
    pub(crate) fn settled(&self, id: &SessionId) -> Result<(), AgentError> {
        let finish = self.forks.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        match finish.map(std::thread::JoinHandle::join) {
            None => Ok(()),
            Some(Ok(done)) => done,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        }
    }

    /// [`Self::settled`] for every fork this driver made; their errors were the forks' to report.
    pub(crate) fn settle_all(&self) {
        let ids: Vec<SessionId> =
            self.forks.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        for id in ids {
            if let Err(e) = self.settled(&id) {
                tracing::warn!(session = %id, error = %e, "the fork could not be moved");
            }
        }
    }

    pub(super) fn delete(&self, id: &SessionId) -> Result<(), AgentError> {
        // A fork whose move failed is gone already: deleting it is done.
        if let Err(e) = self.settled(id) {
            tracing::debug!(session = %id, error = %e, "deleting a fork that was not made");
        }
        self.client()?.delete(&session_path(id)).map_err(|e| http_error(e, Some(id)))?;
        Ok(())
    }

    pub(super) fn sessions_in(&self, dir: &Path) -> Result<Vec<AgentSessionInfo>, AgentError> {
        self.settle_all();
        let path = format!("/api/session?directory={}", escape(&dir.display().to_string()));
        let listed = self.client()?.get(&path).map_err(|e| http_error(e, None))?;
        let Value::Array(items) = listed else {
            return Err(protocol(format!("GET /api/session gave no list: {listed}")));
        };
        items.into_iter().map(|v| Stored::parse_value(v).map(|s| s.info())).collect()
    }

    pub(super) fn repair(&self, id: &SessionId) -> Result<Option<Repair>, AgentError> {
        let Some(mut stored) = self.stored(id)? else {
            return Err(AgentError::SessionNotFound { id: id.clone() });
        };
        if !ensure_rules(&mut stored.permissions) {
            return Ok(None);
        }
        let patch = json!({"permissions": stored.permissions});
        self.client()?.patch(&session_path(id), &patch).map_err(|e| http_error(e, Some(id)))?;
        Ok(Some(Repair {
            problem: "lacked the permission rules that keep headless runs from hanging".into(),
            done: "re-applied them".into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_added_once() {
        let mut p = json!([{"action": "shell", "resource": "*", "effect": "allow"}]);
        assert!(ensure_rules(&mut p));
        assert!(!ensure_rules(&mut p));
        assert_eq!(p[1], json!({"action": "question", "resource": "*", "effect": "deny"}));
        let mut none = Value::Null;
        assert!(ensure_rules(&mut none));
    }
}
