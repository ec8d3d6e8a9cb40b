//! `export_session` and `import_session`: a session whole, to another host's Claude Code.
//!
//! The export is a JSON document of this driver's own ([`Export`]: tagged with [`AGENT`] and
//! [`VERSION`], so another agent's import refuses it and this one refuses theirs): the
//! transcript's entries, one JSON value each, and what the driver's record holds that the
//! next turn needs (the session's running cost). Claude Code stores its request bodies there,
//! so a short session is about 150 KB; nothing is dropped.
//!
//! An import does what `--resume ID --fork-session` does, without a process: a new session id,
//! the entries copied with their `sessionId` and `cwd` rewritten, stored in the project
//! directory of `req.dir`. A fork of 2.1.328 keeps the entries' uuids (its copy is in another
//! project directory); an import gives them fresh ones (every reference to one follows it), so
//! two imports of one export into one directory share none. Claude Code finds a session by its
//! id in any project directory, so the directory's name need not be the one it would compute
//! for a long path. Each import is a new session: importing one export twice makes two, as two
//! forks of one base are two.

use std::collections::HashMap;
use std::path::Path;

use kugetsu_core::agent::{AgentEnv, AgentError, ForkRequest, SessionId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ClaudeDriver;
use crate::args::is_uuid;
use crate::store::{self, Record};

/// The agent an export is of: another agent's import refuses it.
pub const AGENT: &str = "claude";

/// The export's format; an import refuses any other.
pub const VERSION: u32 = 1;

/// A session as [`ClaudeDriver::export_whole`] writes it.
#[derive(Debug, Serialize, Deserialize)]
struct Export {
    /// [`AGENT`].
    agent: String,
    /// [`VERSION`].
    version: u32,
    /// The session exported, for the reader: an import makes a new one.
    session: String,
    /// What the session had cost, as Claude Code totals it (it restores the total from the
    /// history, so the next turn's cost is the growth of this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    total_cost_usd: Option<f64>,
    /// The transcript's entries, in order.
    entries: Vec<Value>,
}

fn protocol(command: &str, detail: String) -> AgentError {
    AgentError::Protocol { command: command.into(), detail }
}

impl ClaudeDriver {
    /// Session `id`'s export, the sensitive values of `env` and of the driver's env masked.
    pub(super) fn export_whole(
        &self,
        id: &SessionId,
        env: &AgentEnv,
    ) -> Result<String, AgentError> {
        let config = self.config_dir()?;
        let record = self.records().get(id)?;
        // A fork not yet run has its base's history.
        let transcript = store::transcript(&config, id).or_else(|| {
            let base = record.as_ref()?.fork_of.as_ref()?;
            store::transcript(&config, base)
        });
        let path = transcript.ok_or_else(|| AgentError::SessionNotFound { id: id.clone() })?;
        let text = std::fs::read_to_string(&path).map_err(|source| AgentError::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
        // A line cut short (Claude Code killed mid-write) is skipped, as Claude Code skips it.
        let entries = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let doc = Export {
            agent: AGENT.into(),
            version: VERSION,
            session: id.to_string(),
            total_cost_usd: record.and_then(|r| r.total_cost_usd),
            entries,
        };
        let doc = serde_json::to_string(&doc)
            .map_err(|e| protocol("export", format!("cannot write the export: {e}")))?;
        let secrets = self.sensitive_values(env);
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        // One JSON line: masked on its decoded strings, whatever escapes they hold.
        Ok(kugetsu_core::secrets::redact_line(&doc, &secrets))
    }

    /// Makes `export` (from [`ClaudeDriver::export_whole`], on any host) a new session of
    /// `req.dir` titled `req.title`.
    pub(super) fn import_whole(
        &self,
        export: &str,
        req: &ForkRequest,
    ) -> Result<SessionId, AgentError> {
        let doc = parse(export)?;
        if !req.dir.is_dir() {
            return Err(AgentError::Io {
                action: "import a session into",
                path: req.dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        // Claude Code records the real directory (`getcwd`), as a fork made there would.
        let cwd = req.dir.canonicalize().unwrap_or_else(|_| req.dir.clone());
        let cwd_text = cwd
            .to_str()
            .ok_or_else(|| protocol("import", format!("{} is not UTF-8", cwd.display())))?;
        let config = self.config_dir()?;
        let id = self.new_id()?;
        if store::transcript(&config, &id).is_some() {
            return Err(protocol("import", format!("session {id} exists already")));
        }
        let mut new_uuid = || self.new_id().map(|u| u.to_string());
        let lines = rewrite(doc.entries, &doc.session, id.as_str(), cwd_text, &mut new_uuid)?;
        let project = config.join("projects").join(project_name(cwd_text));
        let path = project.join(format!("{id}.jsonl"));
        let io = |action: &'static str, path: &Path| {
            let path = path.to_owned();
            move |e: kugetsu_core::storage::StorageError| AgentError::Io {
                action,
                path,
                source: std::io::Error::other(e),
            }
        };
        kugetsu_core::storage::ensure_dir(&project).map_err(io("create", &project))?;
        kugetsu_core::storage::atomic_write(&path, lines.as_bytes()).map_err(io("write", &path))?;
        let record = Record {
            title: req.title.clone(),
            dir: req.dir.clone(),
            fork_of: None,
            total_cost_usd: doc.total_cost_usd,
        };
        if let Err(e) = self.records().put(&id, &record) {
            // No session without its record is left behind.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(id)
    }
}

/// The export in `text`, or why it is not one of this driver's.
fn parse(text: &str) -> Result<Export, AgentError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| protocol("import", format!("the export is not JSON: {e}")))?;
    match v.get("agent").and_then(Value::as_str) {
        Some(AGENT) => {}
        Some(other) => {
            return Err(protocol(
                "import",
                format!("the export is of agent `{other}`, not of Claude Code ({AGENT})"),
            ));
        }
        None => {
            return Err(protocol(
                "import",
                "the export is not a Claude Code session export (no `agent`: another agent's?)"
                    .into(),
            ));
        }
    }
    match v.get("version").and_then(Value::as_u64) {
        Some(n) if n == u64::from(VERSION) => {}
        n => {
            return Err(protocol(
                "import",
                format!(
                    "the export's version is {}, this kugetsu reads version {VERSION}",
                    n.map_or("missing".to_owned(), |n| n.to_string())
                ),
            ));
        }
    }
    serde_json::from_value(v)
        .map_err(|e| protocol("import", format!("not a Claude Code session export: {e}")))
}

/// The entries as the new session's transcript (JSONL): each entry's `uuid` replaced by a
/// fresh one wherever it appears (parents, summaries' leaves, snapshots' message ids), the
/// session ids they name (the export's, or its base's for a fork not yet run) by `new_id`, and
/// `cwd` set to `cwd`. Only UUIDs are replaced: no other word of the history is touched.
fn rewrite(
    mut entries: Vec<Value>,
    old_id: &str,
    new_id: &str,
    cwd: &str,
    new_uuid: &mut dyn FnMut() -> Result<String, AgentError>,
) -> Result<String, AgentError> {
    if entries.is_empty() {
        return Err(protocol("import", "the export holds no history".into()));
    }
    let mut map: HashMap<String, String> = HashMap::new();
    let sessions = entries.iter().filter_map(|e| e.get("sessionId")?.as_str());
    for old in std::iter::once(old_id).chain(sessions).filter(|id| is_uuid(id)) {
        map.insert(old.to_owned(), new_id.to_owned());
    }
    for entry in &entries {
        if let Some(uuid) = entry.get("uuid").and_then(Value::as_str)
            && is_uuid(uuid)
            && !map.contains_key(uuid)
        {
            map.insert(uuid.to_owned(), new_uuid()?);
        }
    }
    let mut out = String::new();
    for entry in &mut entries {
        replace(entry, &map);
        if let Some(obj) = entry.as_object_mut()
            && obj.contains_key("cwd")
        {
            obj.insert("cwd".into(), Value::from(cwd));
        }
        out.push_str(&entry.to_string());
        out.push('\n');
    }
    Ok(out)
}

/// Replaces every string of `v` that is a key of `map` (whole, never a part of one).
fn replace(v: &mut Value, map: &HashMap<String, String>) {
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

/// The project directory's name for `cwd`, as Claude Code makes it: every character but an
/// ASCII letter or digit becomes `-`. Claude Code cuts a long one and adds a hash of its own;
/// here it is cut and given its length, as the session is found by its id in any directory.
fn project_name(cwd: &str) -> String {
    let name: String =
        cwd.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    if name.len() <= 200 { name } else { format!("{}-{}", &name[..200], name.len()) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    const OLD: &str = "11111111-1111-4111-8111-111111111111";
    const NEW: &str = "22222222-2222-4222-8222-222222222222";
    const U1: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const U2: &str = "aaaaaaaa-0000-4000-8000-000000000002";

    fn entries() -> Vec<Value> {
        vec![
            json!({"type": "user", "uuid": U1, "parentUuid": null, "sessionId": OLD,
                   "cwd": "/old", "message": {"role": "user", "content": format!("hi {U1}")}}),
            json!({"type": "assistant", "uuid": U2, "parentUuid": U1, "sessionId": OLD,
                   "cwd": "/old", "message": {"role": "assistant", "content": "hello"}}),
            json!({"type": "summary", "leafUuid": U2, "summary": "a chat"}),
            // Not a UUID: left alone, and so is every string like it.
            json!({"type": "user", "uuid": "user", "sessionId": "", "cwd": "/old",
                   "message": {"role": "user", "content": ""}}),
        ]
    }

    #[test]
    fn uuids_session_and_cwd_are_rewritten_as_a_fork_does() {
        let mut n = 0;
        let mut fresh = || {
            n += 1;
            Ok(format!("fresh-{n}"))
        };
        let out = rewrite(entries(), OLD, NEW, "/new", &mut fresh).unwrap();
        let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            (&lines[0]["uuid"], &lines[1]["parentUuid"]),
            (&json!("fresh-1"), &json!("fresh-1"))
        );
        assert_eq!(lines[2]["leafUuid"], "fresh-2");
        assert!(lines[..2].iter().all(|l| l["sessionId"] == NEW && l["cwd"] == "/new"));
        assert_eq!((&lines[3]["uuid"], &lines[3]["sessionId"]), (&json!("user"), &json!("")));
        assert_eq!(
            (&lines[3]["message"]["role"], &lines[3]["message"]["content"]),
            (&json!("user"), &json!(""))
        );
        assert!(lines[2].get("cwd").is_none(), "an entry without a cwd gets none");
        // Only whole strings are ids: text that mentions one is the user's.
        assert_eq!(lines[0]["message"]["content"], format!("hi {U1}"));
        assert!(!out.contains(OLD));
    }

    #[test]
    fn another_agents_or_versions_export_is_refused() {
        let err = |text: &str| match parse(text) {
            Err(AgentError::Protocol { detail, .. }) => detail,
            other => panic!("{other:?}"),
        };
        assert!(err("not json").contains("not JSON"));
        let opencode = json!({"info": {"id": "ses_1"}, "messages": []}).to_string();
        assert!(err(&opencode).contains("not a Claude Code session export"));
        let other = json!({"agent": "opencode", "version": 1}).to_string();
        assert!(err(&other).contains("of agent `opencode`"));
        let newer = json!({"agent": AGENT, "version": 2, "session": OLD, "entries": []});
        assert!(err(&newer.to_string()).contains("version is 2"));
        let ok = json!({"agent": AGENT, "version": 1, "session": OLD, "entries": []});
        assert!(parse(&ok.to_string()).is_ok());
    }

    #[test]
    fn a_long_directory_gets_a_short_project_name() {
        assert_eq!(project_name("/a/my.repo_x y"), "-a-my-repo-x-y");
        assert!(project_name(&"/x".repeat(300)).len() < 210);
    }
}
