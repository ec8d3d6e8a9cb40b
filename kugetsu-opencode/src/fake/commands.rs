//! The other subcommands kugetsu runs: the TUI stand-in, `session list|delete`, `export`,
//! `import`.

use super::*;

pub(super) fn cmd_tui(p: &Parsed) -> Result<u8, Stop> {
    let dir = match p.positionals.first() {
        Some(d) => PathBuf::from(d)
            .canonicalize()
            .or_else(|e| fail(format!("Failed to change directory to {d}: {e}")))?,
        None => cwd()?,
    };
    let prompt = p.value("prompt").unwrap_or_default().to_owned();
    with_store(|store| {
        let id = new_id(store, "ses");
        let mid = new_id(store, "msg");
        let pid = new_id(store, "prt");
        store.sessions.push(Session {
            id: id.clone(),
            slug: "fake-tui".into(),
            project_id: project_of(&dir),
            parent_id: None,
            directory: path_str(&dir),
            title: "New session".into(),
            // TUI sessions get no deny rules (only `run` adds them).
            permission: None,
            created: now_ms(),
            updated: now_ms(),
            messages: vec![json!({
                "info": {"id": mid, "sessionID": id, "role": "user"},
                "parts": [{"id": pid, "messageID": mid, "sessionID": id, "type": "text", "text": prompt}]
            })],
            v2: None,
        });
        Ok(())
    })?;
    Ok(0)
}

pub(super) fn cmd_session_list(p: &Parsed) -> Result<u8, Stop> {
    let project = project_of(&cwd()?);
    let max = p.value("max-count").and_then(|n| n.parse::<usize>().ok()).unwrap_or(usize::MAX);
    let rows: Vec<Value> = with_store(|store| {
        let roots = project_roots(store, &project);
        Ok(roots
            .into_iter()
            .take(max)
            .map(|s| {
                json!({"id": s.id, "title": s.title, "updated": s.updated, "created": s.created,
                       "projectId": s.project_id, "directory": s.directory})
            })
            .collect())
    })?;
    if rows.is_empty() {
        return Ok(0);
    }
    if p.value("format") == Some("json") {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
    } else {
        for r in rows {
            println!(
                "{}  {}",
                r["id"].as_str().unwrap_or_default(),
                r["title"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(0)
}

pub(super) fn cmd_session_delete(id: Option<&String>) -> Result<u8, Stop> {
    let Some(id) = id else { return Err(Stop::Usage(Usage(HELP_MAIN))) };
    with_store(|store| {
        let before = store.sessions.len();
        store.sessions.retain(|s| &s.id != id);
        if store.sessions.len() == before {
            return fail(format!("Session not found: {id}"));
        }
        Ok(())
    })?;
    eprintln!("Session {id} deleted");
    Ok(0)
}

pub(super) fn export_doc(s: &Session) -> Value {
    let mut info = json!({
        "id": s.id, "slug": s.slug, "projectID": s.project_id, "directory": s.directory,
        "title": s.title, "version": VERSION, "time": {"created": s.created, "updated": s.updated}
    });
    if let Some(parent) = &s.parent_id {
        info["parentID"] = json!(parent);
    }
    if let Some(perm) = &s.permission {
        info["permission"] = perm.clone();
    }
    json!({"info": info, "messages": s.messages})
}

pub(super) fn cmd_export(p: &Parsed) -> Result<u8, Stop> {
    let Some(id) = p.positionals.first() else {
        return Err(Fail("fake-opencode needs a session id for export".into()).into());
    };
    eprintln!("Exporting session: {id}");
    let doc = with_store(|store| match store.sessions.iter().find(|s| &s.id == id) {
        Some(s) => Ok(export_doc(s)),
        None => fail(format!("Session not found: {id}")),
    })?;
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    Ok(0)
}

pub(super) fn cmd_import(p: &Parsed) -> Result<u8, Stop> {
    let Some(file) = p.positionals.first() else { return Err(Stop::Usage(Usage(HELP_MAIN))) };
    let text = fs::read_to_string(file).or_else(|e| fail(format!("cannot read {file}: {e}")))?;
    let doc: Value =
        serde_json::from_str(&text).or_else(|e| fail(format!("invalid session file: {e}")))?;
    let id = add_session(
        &doc["info"],
        doc["messages"].as_array().cloned().unwrap_or_default(),
        &cwd()?,
    )?;
    println!("Imported session: {id}");
    Ok(0)
}

/// Stores a session given as `info` and `messages` (an import's document, or a replay's
/// events) with `dir` as its directory, as `import` and the serve's `/sync/replay` do.
pub(super) fn add_session(info: &Value, messages: Vec<Value>, dir: &Path) -> Res<String> {
    let Some(id) = info["id"].as_str().filter(|i| i.starts_with("ses_")) else {
        return fail("invalid session file: no info.id");
    };
    // A conformance check on the importer's side: every message and part must belong to the
    // imported session (a rewrite that missed an id would attach history to another session).
    for m in &messages {
        let ok = m["info"]["sessionID"] == id
            && m["parts"].as_array().is_some_and(|ps| {
                ps.iter().all(|p| p["sessionID"] == id && p["messageID"] == m["info"]["id"])
            });
        if !ok {
            return fail(format!("invalid session file: a message does not belong to {id}"));
        }
    }
    with_store(|store| {
        // Ids are global: an import must not hijack another session's messages.
        let taken: Vec<&str> = store
            .sessions
            .iter()
            .filter(|s| s.id != id)
            .flat_map(|s| s.messages.iter().filter_map(|m| m["info"]["id"].as_str()))
            .collect();
        if messages.iter().any(|m| m["info"]["id"].as_str().is_some_and(|mid| taken.contains(&mid)))
        {
            return fail("UNIQUE constraint failed: message.id");
        }
        store.sessions.retain(|s| s.id != id);
        store.sessions.push(Session {
            id: id.to_owned(),
            slug: info["slug"].as_str().unwrap_or("imported").to_owned(),
            project_id: project_of(dir),
            parent_id: info["parentID"].as_str().map(str::to_owned),
            directory: path_str(dir),
            title: info["title"].as_str().unwrap_or("imported").to_owned(),
            permission: info.get("permission").filter(|v| !v.is_null()).cloned(),
            created: now_ms(),
            updated: now_ms(),
            messages: messages.clone(),
            v2: None,
        });
        Ok(())
    })?;
    Ok(id.to_owned())
}
