//! `export_session` and `import_session`: a session whole, to another host's serve; and a fork
//! made the same way on this host's serve when that is cheaper
//! ([`OpencodeV2Driver::fork_by_import`]).
//!
//! `GET /api/experimental/session/ID/export` gives `{info, messages}`, and
//! `POST /api/experimental/session/import {info, messages, location}` makes it a session of
//! `location` with its history and permission rules (through the running serve: 0.2 s, against
//! 1.5 s for the `session import` command). 2.1.2 answers 409 for an id it has already (the
//! command prints `Session already exists` and exits 0, importing nothing) and fails on a message
//! id it has already, so every import gets fresh `ses_`/`msg_` ids: importing one export twice
//! makes two sessions, as two forks of one base are two.

use std::collections::{BTreeMap, BTreeSet};

use kugetsu_core::agent::{AgentEnv, AgentError, ForkRequest, SessionId};
use serde_json::{Value, json};

use super::OpencodeV2Driver;
use super::http::{Client, escape};
use super::sessions::{Stored, ensure_rules, http_error, session_path};
use crate::driver::turn::sensitive_values;
use crate::fork::{IdGen, is_object_id, other_agents};

fn protocol(command: &str, detail: String) -> AgentError {
    AgentError::Protocol { command: command.into(), detail }
}

impl OpencodeV2Driver {
    /// The session's export, its secrets masked: the session for another host.
    pub(super) fn export_whole(
        &self,
        id: &SessionId,
        env: &AgentEnv,
    ) -> Result<String, AgentError> {
        let path = format!("/api/experimental/session/{}/export", escape(id.as_str()));
        let doc = self.client()?.get(&path).map_err(|e| http_error(e, Some(id)))?;
        if !doc.get("info").is_some_and(Value::is_object) || !doc["messages"].is_array() {
            return Err(protocol("export", format!("not a session export: {doc}")));
        }
        let text = doc.to_string();
        let secrets = sensitive_values(self.options(), env);
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        Ok(kugetsu_core::secrets::redact(&text, &secrets))
    }

    /// Makes an export of [`OpencodeV2Driver::export_whole`] (from any host) a new session of
    /// `req.dir` titled `req.title`, with fresh ids and the deny rules.
    pub(super) fn import_whole(
        &self,
        export: &str,
        req: &ForkRequest,
    ) -> Result<SessionId, AgentError> {
        let doc: Value = serde_json::from_str(export)
            .map_err(|e| protocol("import", format!("the export is not JSON: {e}")))?;
        import(&self.client()?, doc, req, Import::Moved)
    }

    /// A fork of `req.base` made by importing the base's export into `req.dir` (fresh ids,
    /// `req.title`, the deny rules, nothing used yet, made now) rather than by `POST …/fork` and
    /// a move: on a serve that has just started, the fork and the move each load a directory's
    /// project first (the base's, then the worktree's), where an export and an import load
    /// none. Measured on a fresh 2.1.2 serve with the mock model, fork, move and the first
    /// turn took 0.92 s; export, import and the first turn 0.73 s. On a serve that has run a
    /// while both take the same (0.31 s), and a move done while the turn's client starts costs
    /// the turn nothing: see [`OpencodeV2Driver::fork`]. Secrets are not masked: the fork stays
    /// on this host, as the base's history is.
    pub(super) fn fork_by_import(
        &self,
        client: &Client,
        req: &ForkRequest,
    ) -> Result<SessionId, AgentError> {
        let path = format!("/api/experimental/session/{}/export", escape(req.base.as_str()));
        let doc = client.get(&path).map_err(|e| http_error(e, Some(&req.base)))?;
        import(client, doc, req, Import::Forked)
    }
}

/// What an import makes of an export.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Import {
    /// The same session, carried from another host: its usage and times are its own.
    Moved,
    /// A new session of this host that starts where the exported one is, as `POST …/fork`
    /// makes it: nothing used yet, made now.
    Forked,
}

/// Imports `doc` (an export) into `req.dir` as a new session with fresh ids, `req.title` and the
/// deny rules (they travel in the export, but one made by the TUI or an older kugetsu may lack
/// them, and a run without them can wait for a question forever).
fn import(
    client: &Client,
    mut doc: Value,
    req: &ForkRequest,
    what: Import,
) -> Result<SessionId, AgentError> {
    let command = if what == Import::Forked { "fork" } else { "import" };
    if let Some(detail) = other_agents(&doc) {
        return Err(protocol(command, detail));
    }
    let dir = req
        .dir
        .to_str()
        .ok_or_else(|| protocol(command, format!("{} is not UTF-8", req.dir.display())))?;
    let new_id = rewrite(&mut doc, &req.title)?;
    let info = doc["info"].as_object_mut().expect("rewrite checked an object");
    let mut permissions = info.get("permissions").cloned().unwrap_or(Value::Null);
    ensure_rules(&mut permissions);
    info.insert("permissions".into(), permissions);
    if what == Import::Forked {
        let now = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(0);
        info.insert("cost".into(), json!(0));
        info.insert(
            "tokens".into(),
            json!({"input": 0, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}}),
        );
        info.insert("time".into(), json!({"created": now, "updated": now}));
    }
    let body = json!({
        "info": doc["info"],
        "messages": doc["messages"],
        "location": {"directory": dir},
    });
    let made =
        client.post("/api/experimental/session/import", &body).map_err(|e| http_error(e, None))?;
    let made = Stored::parse_value(made)?;
    if made.id.as_str() != new_id {
        // No session kugetsu cannot name is left behind.
        let _ = client.delete(&session_path(&made.id));
        return Err(protocol(command, format!("the serve made {}, not {new_id}", made.id)));
    }
    Ok(made.id)
}

/// Gives `doc` (an export) fresh session and message ids, in the old ids' order (opencode
/// sorts by them), and `title`; drops what names sessions of the other host (the base of a
/// fork, a parent). Returns the new session id.
fn rewrite(doc: &mut Value, title: &str) -> Result<String, AgentError> {
    let old = doc
        .pointer("/info/id")
        .and_then(Value::as_str)
        .filter(|id| id.starts_with("ses_") && is_object_id(id))
        .map(str::to_owned)
        .ok_or_else(|| protocol("import", "the export names no session (info.id)".into()))?;
    if !doc["messages"].is_array() || !doc.pointer("/info/location").is_some_and(Value::is_object) {
        return Err(protocol(
            "import",
            "not an opencode 2 session export (info.location, messages)".into(),
        ));
    }
    let info = doc["info"].as_object_mut().expect("checked an object");
    info.remove("fork");
    info.remove("parentID");
    info.insert("title".into(), json!(title));
    let mut found = BTreeSet::new();
    collect(doc, &mut found);
    let mut ids = IdGen::new();
    let map: BTreeMap<String, String> = found
        .into_iter()
        .map(|id| {
            let prefix = &id[..3];
            // Sessions sort newest first, messages oldest first, as opencode makes them.
            let fresh = ids.next(prefix, prefix == "ses");
            (id, fresh)
        })
        .collect();
    replace(doc, &map);
    Ok(map[&old].clone())
}

fn collect(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) if (s.starts_with("ses_") || s.starts_with("msg_")) && is_object_id(s) => {
            out.insert(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
        Value::Object(o) => o.values().for_each(|i| collect(i, out)),
        _ => {}
    }
}

fn replace(v: &mut Value, map: &BTreeMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(new) = map.get(s.as_str()) {
                *s = new.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| replace(i, map)),
        Value::Object(o) => o.values_mut().for_each(|i| replace(i, map)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export() -> Value {
        json!({
            "info": {"id": "ses_daf577df7ffemleIT04EBpY18O", "title": "old",
                     "fork": {"sessionID": "ses_daf577df7fffmleIT04EBpY18O"},
                     "location": {"directory": "/elsewhere"}},
            "messages": [
                {"id": "msg_25088a2c3001AAAAAAAAAAAAAA", "type": "user", "text": "hi"},
                {"id": "msg_25088a2c3002AAAAAAAAAAAAAA", "type": "assistant",
                 "parent": "msg_25088a2c3001AAAAAAAAAAAAAA"},
            ],
        })
    }

    #[test]
    fn every_id_is_fresh_and_the_order_kept() {
        let mut doc = export();
        let id = rewrite(&mut doc, "new").expect("rewritten");
        assert_eq!(doc["info"]["id"], id.as_str());
        assert_ne!(id, "ses_daf577df7ffemleIT04EBpY18O");
        assert!(doc["info"].get("fork").is_none());
        assert_eq!(doc["info"]["title"], "new");
        let (a, b) = (&doc["messages"][0]["id"], &doc["messages"][1]["id"]);
        assert!(a.as_str() < b.as_str(), "{a} {b}");
        assert_eq!(doc["messages"][1]["parent"], *a);
        assert!(!doc.to_string().contains("AAAAAAAAAAAAAA"), "{doc}");
        let mut again = export();
        assert_ne!(rewrite(&mut again, "new").expect("rewritten"), id, "two imports, two ids");
    }

    #[test]
    fn a_1x_export_or_no_session_is_refused() {
        let mut v1 = json!({"info": {"id": "ses_daf577df7ffemleIT04EBpY18O"}, "messages": []});
        assert!(rewrite(&mut v1, "t").is_err());
        assert!(rewrite(&mut json!({"messages": []}), "t").is_err());
    }
}
