//! The 2.x session as the serve shows it (`{"data": {...}}` of `GET /api/session/ID`), and the
//! store operations behind the session routes: create, list, fork, move, delete, export,
//! import.

use super::*;

/// What a 2.x session keeps beyond the 1.x store's fields.
#[derive(Serialize, Deserialize, Clone, Default)]
pub(in crate::fake) struct V2Session {
    /// `[{action, resource, effect}]`, as given at creation or by `PATCH`.
    #[serde(default)]
    pub(super) permissions: Option<Value>,
    /// `succeeded|failed|interrupted` after the first turn; absent before.
    #[serde(default)]
    pub(super) outcome: Option<String>,
    #[serde(default)]
    pub(super) cost: f64,
    #[serde(default)]
    pub(super) input: u64,
    #[serde(default)]
    pub(super) output: u64,
    /// `{sessionID, boundary}` of a fork.
    #[serde(default)]
    pub(super) fork: Option<Value>,
    #[serde(default)]
    pub(super) idle: Option<u64>,
    /// Whether the session was given a title (an untitled one shows no `title` key).
    #[serde(default)]
    pub(super) titled: bool,
    /// The messages as `GET /api/session/ID/message` shows them, oldest first.
    #[serde(default)]
    pub(super) messages: Vec<Value>,
}

/// The 2.x fields of `s`; a session made by the 1.x dialect gets them now (see [`migrated`]).
pub(super) fn v2(s: &mut Session) -> &mut V2Session {
    let migrated = if s.v2.is_none() { Some(migrated(s)) } else { None };
    s.v2.get_or_insert_with(|| migrated.unwrap_or_default())
}

/// The 2.x view of a session, migrating a 1.x one as 2.x migrates the 1.x tables on its first
/// start: its history (text parts; the fake drops tool parts) and its tokens, but not its
/// permission rules (2.1.2 leaves them behind).
pub(super) fn migrated(s: &Session) -> V2Session {
    if let Some(v) = &s.v2 {
        return v.clone();
    }
    let messages: Vec<Value> = s
        .messages
        .iter()
        .map(|m| {
            let text: Vec<&str> = m["parts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["type"] == "text")
                .filter_map(|p| p["text"].as_str())
                .collect();
            let id = m["info"]["id"].clone();
            if m["info"]["role"] == "user" {
                json!({"id": id, "time": {"created": s.created}, "type": "user",
                       "text": text.join("\n")})
            } else {
                json!({"id": id, "time": {"created": s.created}, "type": "assistant",
                       "content": [{"type": "text", "text": text.join("\n")}]})
            }
        })
        .collect();
    // The fake's 1.x turns count as one model call each (its `step_finish` says 10 and 2).
    let calls = messages.iter().filter(|m| m["type"] == "assistant").count() as u64;
    V2Session {
        titled: true,
        input: 10 * calls,
        output: 2 * calls,
        messages,
        ..V2Session::default()
    }
}

pub(super) fn to_json(s: &Session) -> Value {
    let v = migrated(s);
    let mut out = json!({
        "id": s.id,
        "projectID": s.project_id,
        // A whole cost prints as an integer, as the real one's `0`.
        "cost": if v.cost.fract() == 0.0 { json!(v.cost as i64) } else { json!(v.cost) },
        "tokens": {"input": v.input, "output": v.output, "reasoning": 0,
                   "cache": {"read": 0, "write": 0}},
        "time": {"created": s.created, "updated": s.updated},
        "location": {"directory": s.directory},
    });
    if let Some(fork) = v.fork {
        out["fork"] = fork;
    }
    if let Some(outcome) = v.outcome {
        out["outcome"] = json!(outcome);
    }
    if let Some(idle) = v.idle {
        out["time"]["idle"] = json!(idle);
    }
    if v.titled || s.v2.is_none() {
        out["title"] = json!(s.title);
    }
    if let Some(p) = v.permissions {
        out["permissions"] = p;
    }
    out
}

/// A new session (with `id` when the caller names one) in `dir`.
pub(super) fn create(
    store: &mut Store,
    id: Option<&str>,
    title: Option<&str>,
    dir: &Path,
    permissions: Option<Value>,
) -> Session {
    let id = id.map(str::to_owned).unwrap_or_else(|| new_id(store, "ses"));
    let s = Session {
        id,
        slug: "fake-session".into(),
        project_id: project_of(dir),
        parent_id: None,
        directory: path_str(dir),
        title: title.unwrap_or_default().to_owned(),
        permission: None,
        created: now_ms(),
        updated: now_ms(),
        messages: Vec::new(),
        v2: Some(V2Session { permissions, titled: title.is_some(), ..V2Session::default() }),
    };
    store.sessions.push(s.clone());
    s
}

/// The sessions of `directory` (all without one), newest first, as JSON.
pub(super) fn list(store: &Store, directory: Option<&str>) -> Vec<Value> {
    let mut rows: Vec<&Session> =
        store.sessions.iter().filter(|s| directory.is_none_or(|d| s.directory == d)).collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    rows.into_iter().map(to_json).collect()
}

pub(super) fn not_found(id: &str) -> Fail {
    Fail(format!("Session not found: {id}"))
}

pub(super) fn find<'a>(store: &'a mut Store, id: &str) -> Res<&'a mut Session> {
    store.sessions.iter_mut().find(|s| s.id == id).ok_or_else(|| not_found(id))
}

pub(super) fn delete(store: &mut Store, id: &str) -> Res<()> {
    let before = store.sessions.len();
    store.sessions.retain(|s| s.id != id);
    if store.sessions.len() == before {
        return Err(not_found(id));
    }
    Ok(())
}

/// Why a fork was refused.
pub(super) enum ForkError {
    NotFound,
    Empty,
}

/// A fork of `base`: a top-level session in the base's directory, titled `<title> (fork #N)`,
/// with its whole history and its permissions.
pub(super) fn fork(store: &mut Store, base: &str) -> Result<Session, ForkError> {
    let Some(mut b) = store.sessions.iter_mut().find(|s| s.id == base).map(|s| s.clone()) else {
        return Err(ForkError::NotFound);
    };
    let history = v2(&mut b).clone();
    let Some(last) = history.messages.last().and_then(|m| m["id"].as_str()) else {
        return Err(ForkError::Empty);
    };
    let n = store
        .sessions
        .iter()
        .filter(|s| s.title.starts_with(&format!("{} (fork #", b.title)))
        .count()
        + 1;
    let id = new_id(store, "ses");
    let mut messages = Vec::new();
    for m in &history.messages {
        let mut m = m.clone();
        m["id"] = json!(new_id(store, "msg"));
        messages.push(m);
    }
    let fork = Session {
        id,
        title: format!("{} (fork #{n})", b.title),
        created: now_ms(),
        updated: now_ms(),
        v2: Some(V2Session {
            permissions: history.permissions.clone(),
            fork: Some(json!({"sessionID": base,
                              "boundary": {"type": "through", "messageID": last}})),
            titled: true,
            messages,
            ..V2Session::default()
        }),
        ..b
    };
    store.sessions.push(fork.clone());
    Ok(fork)
}

/// Moves `id` to `dir` (its project follows); the next turn runs there.
pub(super) fn relocate(store: &mut Store, id: &str, dir: &Path) -> Res<()> {
    let s = find(store, id)?;
    s.directory = path_str(dir);
    s.project_id = project_of(dir);
    s.updated = now_ms();
    let mid = new_id(store, "msg");
    let s = find(store, id)?;
    v2(s).messages.push(json!({"id": mid, "time": {"created": now_ms()},
                               "type": "location-switched", "directory": path_str(dir)}));
    Ok(())
}

/// `{info, messages}` of `GET /api/experimental/session/ID/export`, messages oldest first.
pub(super) fn export(s: &Session) -> Value {
    json!({"info": to_json(s), "messages": migrated(s).messages})
}

/// Why an import was refused.
pub(super) enum ImportError {
    /// 409: a session with this id exists.
    Exists(String),
    /// 400: not a 2.x transcript (a 1.x export lacks `info.location`).
    Invalid(String),
    /// 500: a message id exists.
    Duplicate,
}

/// `POST /api/experimental/session/import {info, messages, location?}`: the session as
/// exported (id, title, permissions, outcome, usage, history) in `location` (else the one of
/// `info`), ids kept.
pub(super) fn import(store: &mut Store, body: &Value) -> Result<Session, ImportError> {
    let info = &body["info"];
    let invalid = |what: &str| ImportError::Invalid(format!("Missing key at {what}"));
    let id = info["id"].as_str().ok_or_else(|| invalid("[\"info\"][\"id\"]"))?;
    let Some(from) = info["location"]["directory"].as_str() else {
        return Err(invalid("[\"info\"][\"location\"]"));
    };
    let Some(messages) = body["messages"].as_array() else {
        return Err(invalid("[\"messages\"]"));
    };
    if store.sessions.iter().any(|s| s.id == id) {
        return Err(ImportError::Exists(id.to_owned()));
    }
    let taken: std::collections::BTreeSet<String> = store
        .sessions
        .iter()
        .flat_map(|s| migrated(s).messages)
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    if messages.iter().any(|m| m["id"].as_str().is_some_and(|mid| taken.contains(mid))) {
        return Err(ImportError::Duplicate);
    }
    let dir = PathBuf::from(body["location"]["directory"].as_str().unwrap_or(from));
    let title = info["title"].as_str();
    let perms = info.get("permissions").filter(|p| p.is_array()).cloned();
    let mut s = create(store, Some(id), title, &dir, perms);
    store.sessions.retain(|other| other.id != id);
    let v = v2(&mut s);
    v.messages = messages.clone();
    v.outcome = info["outcome"].as_str().map(str::to_owned);
    v.cost = info["cost"].as_f64().unwrap_or(0.0);
    v.input = info["tokens"]["input"].as_u64().unwrap_or(0);
    v.output = info["tokens"]["output"].as_u64().unwrap_or(0);
    if let Some(created) = info["time"]["created"].as_u64() {
        s.created = created;
    }
    store.sessions.push(s.clone());
    Ok(s)
}
