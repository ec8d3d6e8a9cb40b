//! Forking by export and import: turns `opencode export BASE` output into a document that
//! `opencode import` accepts as a brand-new session.
//!
//! opencode's own `run --fork` keeps the parent's directory (a run in another directory then
//! hangs silently) and drops the permission rules. An exported session re-imported from the
//! target directory lands in that directory with its whole history and its rules, and costs no
//! model turn. Every `ses_`/`msg_`/`prt_` id is replaced, consistently everywhere it appears,
//! by a fresh id of opencode's shape that keeps the original's relative order (opencode orders
//! messages and parts by id).

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// The rules every headless session needs: a `question` or plan-mode ask can never be
/// answered without a user, and would hang the run.
pub const REQUIRED_DENY: &[&str] = &["question", "plan_enter", "plan_exit"];

/// Why an export could not be turned into a fork.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForkDocError {
    /// The export is not a JSON object with an `info.id`.
    #[error("the export is not a session document: {0}")]
    NotASession(String),
}

/// Why `doc` is another agent's export, when it names its agent (`agent`: the export
/// documents of other drivers do; opencode's `{info, messages}` never has one).
pub fn other_agents(doc: &Value) -> Option<String> {
    let agent = doc.get("agent")?;
    Some(format!("the export is of agent {agent}, not of opencode"))
}

/// Whether `s` looks like an opencode id with one of the prefixes that name session objects.
pub fn is_object_id(s: &str) -> bool {
    let Some((prefix, rest)) = s.split_once('_') else { return false };
    matches!(prefix, "ses" | "msg" | "prt")
        && (12..=64).contains(&rest.len())
        && rest.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Makes fresh ids of opencode's shape: prefix, 12 hex digits of (milliseconds * 4096 +
/// counter) truncated to 48 bits (bitwise inverted for sessions, so newer sort first), then 14
/// random base62 characters.
pub struct IdGen {
    base: u64,
    counter: u64,
    random: RandomState,
}

impl IdGen {
    /// A generator for the current time.
    pub fn new() -> Self {
        let ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        IdGen { base: ms.wrapping_mul(0x1000), counter: 0, random: RandomState::new() }
    }

    /// The next id with `prefix`; ascending unless `descending`.
    pub fn next(&mut self, prefix: &str, descending: bool) -> String {
        self.counter += 1;
        let mut v = self.base.wrapping_add(self.counter);
        if descending {
            v = !v;
        }
        let mut id = format!("{prefix}_{:012x}", v & 0xffff_ffff_ffff);
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut h = self.random.build_hasher();
        h.write_u64(self.counter);
        let mut bits = h.finish();
        let mut h2 = self.random.build_hasher();
        h2.write_u64(!self.counter);
        let mut bits2 = h2.finish();
        for i in 0..14 {
            let src = if i < 7 { &mut bits } else { &mut bits2 };
            id.push(ALPHABET[(*src % 62) as usize] as char);
            *src /= 62;
        }
        id
    }
}

impl Default for IdGen {
    fn default() -> Self {
        Self::new()
    }
}

/// Rewrites an exported session (`{info, messages}`) into a new session: fresh ids everywhere,
/// `directory` and `title` set, no parent and no share, the required deny rules present.
/// Returns the new session id.
pub fn rewrite_export(
    doc: &mut Value,
    directory: &str,
    title: &str,
    ids: &mut IdGen,
) -> Result<String, ForkDocError> {
    let old_id = doc
        .get("info")
        .and_then(|i| i.get("id"))
        .and_then(Value::as_str)
        // Only an id the rewrite replaces: any other would be kept, and the fork imported
        // under the base's own id.
        .filter(|id| id.starts_with("ses_") && is_object_id(id))
        .ok_or_else(|| ForkDocError::NotASession("no session id in info.id".into()))?
        .to_owned();
    if !doc.get("messages").is_some_and(Value::is_array) {
        return Err(ForkDocError::NotASession("no messages list".into()));
    }
    let mut found = BTreeSet::new();
    collect_ids(doc, &mut found);
    // BTreeSet iterates in string order, which is opencode's id order: fresh ids are handed
    // out in that order so the history keeps its sequence.
    let mut map = BTreeMap::new();
    for old in &found {
        let prefix = &old[..3];
        map.insert(old.clone(), ids.next(prefix, prefix == "ses"));
    }
    replace_ids(doc, &map);
    let new_id = map.get(&old_id).cloned().unwrap_or(old_id);
    if let Some(info) = doc.get_mut("info").and_then(Value::as_object_mut) {
        info.insert("directory".into(), Value::String(directory.to_owned()));
        info.insert("title".into(), Value::String(title.to_owned()));
        info.remove("parentID");
        info.remove("share");
        let perm = info.entry("permission").or_insert(Value::Null);
        ensure_rules(perm);
    }
    Ok(new_id)
}

/// The body of `POST /sync/replay` that makes the rewritten export `doc` (see
/// [`rewrite_export`]) a session of `directory` in a running `opencode serve`: the sync events
/// opencode itself logs for a session, `session.created.1` with the session's info, then per
/// message a `message.updated.1` followed by one `message.part.updated.1` per part, numbered
/// from 0 (a sequence that starts elsewhere is refused). Checked against opencode 1.18.33: the
/// session is stored with `info.directory` as its directory, its whole history and its
/// `permission` rules, like an `import` run from that directory.
pub fn replay_body(doc: &Value, directory: &str, ids: &mut IdGen) -> Result<Value, ForkDocError> {
    let mut info = doc.get("info").cloned().unwrap_or(Value::Null);
    let session = info
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| id.starts_with("ses_"))
        .ok_or_else(|| ForkDocError::NotASession("no session id in info.id".into()))?
        .to_owned();
    let messages = doc
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ForkDocError::NotASession("no messages list".into()))?;
    let now =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    if let Some(obj) = info.as_object_mut() {
        obj.insert("directory".into(), Value::String(directory.to_owned()));
        // The base's path inside its own project means nothing in the worktree's.
        obj.insert("path".into(), Value::String(String::new()));
        obj.insert("time".into(), json!({"created": now, "updated": now}));
    }
    let mut events = vec![("session.created.1", json!({"sessionID": session, "info": info}))];
    for m in messages {
        events.push(("message.updated.1", json!({"sessionID": session, "info": m["info"]})));
        for part in m.get("parts").and_then(Value::as_array).into_iter().flatten() {
            events.push((
                "message.part.updated.1",
                json!({"sessionID": session, "part": part, "time": now}),
            ));
        }
    }
    let events: Vec<Value> = events
        .into_iter()
        .enumerate()
        .map(|(seq, (kind, data))| {
            json!({"id": ids.next("evt", false), "aggregateID": session, "seq": seq,
                   "type": kind, "data": data})
        })
        .collect();
    Ok(json!({"directory": directory, "events": events}))
}

fn collect_ids(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) if is_object_id(s) => {
            out.insert(s.clone());
        }
        Value::Array(a) => a.iter().for_each(|x| collect_ids(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                if is_object_id(k) {
                    out.insert(k.clone());
                }
                collect_ids(x, out);
            }
        }
        _ => {}
    }
}

fn replace_ids(v: &mut Value, map: &BTreeMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(n) = map.get(s.as_str()) {
                *s = n.clone();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| replace_ids(x, map)),
        Value::Object(o) => {
            let old = std::mem::take(o);
            let mut new = Map::with_capacity(old.len());
            for (k, mut x) in old {
                replace_ids(&mut x, map);
                new.insert(map.get(&k).cloned().unwrap_or(k), x);
            }
            *o = new;
        }
        _ => {}
    }
}

/// Whether the rules (opencode's `permission` list, last match wins) deny `name` for every
/// pattern: an exact `deny *` rule for it that no later rule for it overrides.
fn denies(rules: &[Value], name: &str) -> bool {
    let last =
        rules.iter().rev().find(|r| r.get("permission").and_then(Value::as_str) == Some(name));
    last.is_some_and(|r| {
        r.get("action").and_then(Value::as_str) == Some("deny")
            && r.get("pattern").and_then(Value::as_str) == Some("*")
    })
}

/// Makes `permission` (a rules list, or null when a fork dropped it) contain the required
/// deny rules, appending only the missing ones. Returns whether it changed.
pub fn ensure_rules(permission: &mut Value) -> bool {
    if !permission.is_array() {
        *permission = Value::Array(Vec::new());
    }
    let Value::Array(rules) = permission else { return false };
    let mut changed = false;
    for name in REQUIRED_DENY {
        if !denies(rules, name) {
            rules.push(json!({"permission": name, "pattern": "*", "action": "deny"}));
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export() -> Value {
        json!({
            "info": {"id": "ses_df5eb4af9ffemK92KrwWdJZMY3", "slug": "quiet-pixel", "projectID": "global",
                     "directory": "/base", "title": "base", "parentID": "ses_df5eb4af9fffaaaaaaaaaaaaaa",
                     "permission": [{"permission": "bash", "pattern": "*", "action": "allow"}]},
            "messages": [
                {"info": {"id": "msg_20a14b5910013TIhsJVxRato17", "sessionID": "ses_df5eb4af9ffemK92KrwWdJZMY3", "role": "user"},
                 "parts": [{"id": "prt_20a14b59f001fzRSsH051iDlHR", "messageID": "msg_20a14b5910013TIhsJVxRato17",
                            "sessionID": "ses_df5eb4af9ffemK92KrwWdJZMY3", "type": "text", "text": "say hi"}]},
                {"info": {"id": "msg_20a14bc4a001jtKFq7UWY3J2Wk", "parentID": "msg_20a14b5910013TIhsJVxRato17",
                          "sessionID": "ses_df5eb4af9ffemK92KrwWdJZMY3", "role": "assistant"},
                 "parts": [{"id": "prt_20a14c1b2001X0gmBcHyzSGzeH", "messageID": "msg_20a14bc4a001jtKFq7UWY3J2Wk",
                            "sessionID": "ses_df5eb4af9ffemK92KrwWdJZMY3", "type": "step-start"},
                           {"id": "prt_20a14c1b8001S6zZpRI1DdPpBN", "messageID": "msg_20a14bc4a001jtKFq7UWY3J2Wk",
                            "sessionID": "ses_df5eb4af9ffemK92KrwWdJZMY3", "type": "text", "text": "hello"}]}
            ]
        })
    }

    #[test]
    fn ids_have_opencode_shape_and_order() {
        let mut g = IdGen::new();
        let a = g.next("msg", false);
        let b = g.next("msg", false);
        let s1 = g.next("ses", true);
        let s2 = g.next("ses", true);
        for id in [&a, &b, &s1, &s2] {
            assert_eq!(id.len(), 30, "{id}");
            assert!(is_object_id(id), "{id}");
            assert!(id[4..16].bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
        }
        assert!(a < b, "ascending ids keep creation order");
        assert!(s2 < s1, "newer session ids sort first");
    }

    #[test]
    fn rewrite_replaces_every_id_consistently() {
        let mut doc = export();
        let before = doc.to_string();
        let new =
            rewrite_export(&mut doc, "/srv/worktrees/issue-14", "fork title", &mut IdGen::new())
                .expect("rewrite");
        let after = doc.to_string();
        for old in [
            "ses_df5eb4af9ffemK92KrwWdJZMY3",
            "msg_20a14b5910013TIhsJVxRato17",
            "prt_20a14c1b8001S6zZpRI1DdPpBN",
        ] {
            assert!(before.contains(old));
            assert!(!after.contains(old), "{old} left behind");
        }
        assert!(new.starts_with("ses_") && new.len() == 30);
        let info = &doc["info"];
        assert_eq!(info["id"], new.as_str());
        assert_eq!(info["directory"], "/srv/worktrees/issue-14");
        assert_eq!(info["title"], "fork title");
        assert!(info.get("parentID").is_none());
        let m = &doc["messages"];
        assert_eq!(m[0]["parts"][0]["sessionID"], new.as_str());
        assert_eq!(m[1]["info"]["parentID"], m[0]["info"]["id"]);
        assert_eq!(m[1]["parts"][1]["messageID"], m[1]["info"]["id"]);
        let (m0, m1) =
            (m[0]["info"]["id"].as_str().unwrap_or(""), m[1]["info"]["id"].as_str().unwrap_or(""));
        assert!(m0 < m1, "message order kept");
        assert!(
            m[1]["parts"][0]["id"].as_str() < m[1]["parts"][1]["id"].as_str(),
            "part order kept"
        );
        assert_eq!(m[1]["parts"][1]["text"], "hello");
        let rules = info["permission"].as_array().expect("rules");
        assert_eq!(rules.len(), 4, "existing rule kept, three deny rules added");
    }

    #[test]
    fn replay_bodies_carry_the_whole_rewritten_session_in_order() {
        let mut doc = export();
        let mut g = IdGen::new();
        let new = rewrite_export(&mut doc, "/wt", "t", &mut g).expect("rewrite");
        let body = replay_body(&doc, "/wt", &mut g).expect("body");
        assert_eq!(body["directory"], "/wt");
        let events = body["events"].as_array().expect("events");
        let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "session.created.1",
                "message.updated.1",
                "message.part.updated.1",
                "message.updated.1",
                "message.part.updated.1",
                "message.part.updated.1"
            ]
        );
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["seq"], i, "numbered from 0");
            assert_eq!(e["aggregateID"], new.as_str());
            assert_eq!(e["data"]["sessionID"], new.as_str());
            assert!(e["id"].as_str().is_some_and(|id| id.starts_with("evt_")));
        }
        let info = &events[0]["data"]["info"];
        assert_eq!(info["directory"], "/wt");
        assert_eq!(info["permission"], doc["info"]["permission"], "rules kept");
        assert_eq!(events[5]["data"]["part"]["text"], "hello");
        assert!(replay_body(&json!({"info": {}}), "/wt", &mut g).is_err());
    }

    #[test]
    fn two_forks_of_one_base_get_distinct_ids() {
        let (mut a, mut b) = (export(), export());
        let mut g = IdGen::new();
        let ia = rewrite_export(&mut a, "/a", "a", &mut g).expect("a");
        let ib = rewrite_export(&mut b, "/b", "b", &mut g).expect("b");
        assert_ne!(ia, ib);
        assert_ne!(a["messages"][0]["info"]["id"], b["messages"][0]["info"]["id"]);
    }

    #[test]
    fn not_a_session_is_an_error() {
        for bad in [
            json!([]),
            json!({"info": {}}),
            json!({"info": {"id": "ses_df5eb4af9ffemK92KrwWdJZMY3"}}),
            // Not an id the rewrite would replace: the fork would keep the base's id.
            json!({"info": {"id": "ses_df5prt_f9ffemK92KrwWdJZMY3"}, "messages": []}),
            json!({"info": {"id": "ses_x"}, "messages": []}),
        ] {
            let mut d = bad;
            assert!(rewrite_export(&mut d, "/x", "t", &mut IdGen::new()).is_err());
        }
    }

    #[test]
    fn rules_are_added_once_and_overrides_respected() {
        let mut p = Value::Null;
        assert!(ensure_rules(&mut p));
        assert_eq!(p.as_array().map(Vec::len), Some(3));
        assert!(!ensure_rules(&mut p), "idempotent");
        let mut p = json!([
            {"permission": "question", "pattern": "*", "action": "deny"},
            {"permission": "question", "pattern": "*", "action": "allow"},
            {"permission": "plan_enter", "pattern": "*", "action": "deny"},
            {"permission": "plan_exit", "pattern": "*", "action": "deny"}
        ]);
        assert!(ensure_rules(&mut p), "a later allow overrides the deny");
        assert_eq!(p.as_array().map(Vec::len), Some(5));
        assert!(!ensure_rules(&mut p));
    }
}
