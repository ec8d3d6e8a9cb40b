//! `db`: the few SQL statements the kugetsu driver issues, parsed and run against the store.

use super::*;

/// Reads a single-quoted SQL string literal at the start of `s`; returns it and the rest.
pub(super) fn sql_string(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start().strip_prefix('\'')?;
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if s[i + 1..].starts_with('\'') {
                out.push('\'');
                chars.next();
            } else {
                return Some((out, &s[i + 1..]));
            }
        } else {
            out.push(c);
        }
    }
    None
}

pub(super) const DB_COLUMNS: &[&str] =
    &["id", "directory", "permission", "title", "project_id", "parent_id"];

pub(super) fn column(s: &Session, col: &str) -> Value {
    match col {
        "id" => json!(s.id),
        "directory" => json!(s.directory),
        "permission" => s.permission.as_ref().map(|p| json!(p.to_string())).unwrap_or(Value::Null),
        "title" => json!(s.title),
        "project_id" => json!(s.project_id),
        _ => s.parent_id.as_ref().map(|p| json!(p)).unwrap_or(Value::Null),
    }
}

/// `opencode db`: only the statements the kugetsu driver issues (see CONFORMANCE.md):
/// `SELECT <columns> FROM session WHERE id = '<id>'` and
/// `UPDATE session SET <column> = '<text>' WHERE id = '<id>'`.
pub(super) fn cmd_db(p: &Parsed) -> Result<u8, Stop> {
    let Some(sql) = p.positionals.first() else {
        return Err(Fail("fake-opencode has no interactive sqlite shell".into()).into());
    };
    if sql == "path" {
        println!("{}", path_str(&store_path()?));
        return Ok(0);
    }
    let unsupported = || {
        Stop::Fail(Fail(format!(
            "Unexpected error\n\nfake-opencode does not support this SQL: {sql}"
        )))
    };
    let words: Vec<&str> = sql.split_whitespace().collect();
    let rows: Vec<Value> = if words.first().is_some_and(|w| w.eq_ignore_ascii_case("select")) {
        let upper = sql.to_ascii_uppercase();
        let from = upper.find(" FROM SESSION WHERE ID = ").ok_or_else(unsupported)?;
        let cols: Vec<String> = sql[6..from].split(',').map(|c| c.trim().to_owned()).collect();
        if cols.iter().any(|c| !DB_COLUMNS.contains(&c.as_str())) {
            return Err(unsupported());
        }
        let (id, rest) =
            sql_string(&sql[from + " FROM SESSION WHERE ID = ".len()..]).ok_or_else(unsupported)?;
        if !rest.trim().trim_end_matches(';').is_empty() {
            return Err(unsupported());
        }
        with_store(|store| {
            Ok(store
                .sessions
                .iter()
                .filter(|s| s.id == id)
                .map(|s| {
                    let mut row = serde_json::Map::new();
                    for c in &cols {
                        row.insert(c.clone(), column(s, c));
                    }
                    Value::Object(row)
                })
                .collect())
        })?
    } else if words.len() > 3
        && words[0].eq_ignore_ascii_case("update")
        && words[1] == "session"
        && words[2].eq_ignore_ascii_case("set")
    {
        let after_set =
            sql.splitn(4, char::is_whitespace).nth(3).ok_or_else(unsupported)?.trim_start();
        let (col, rest) = after_set.split_once('=').ok_or_else(unsupported)?;
        let col = col.trim();
        if !["directory", "permission", "title"].contains(&col) {
            return Err(unsupported());
        }
        let (value, rest) = sql_string(rest).ok_or_else(unsupported)?;
        let rest = rest.trim_start();
        let upper = rest.to_ascii_uppercase();
        let rest = if upper.starts_with("WHERE ID = ") {
            &rest["WHERE ID = ".len()..]
        } else {
            return Err(unsupported());
        };
        let (id, tail) = sql_string(rest).ok_or_else(unsupported)?;
        if !tail.trim().trim_end_matches(';').is_empty() {
            return Err(unsupported());
        }
        let col = col.to_owned();
        with_store(|store| {
            if let Some(s) = store.sessions.iter_mut().find(|s| s.id == id) {
                match col.as_str() {
                    "directory" => s.directory = value.clone(),
                    "title" => s.title = value.clone(),
                    _ => {
                        let v: Value = serde_json::from_str(&value)
                            .or_else(|e| fail(format!("permission is not JSON: {e}")))?;
                        s.permission = Some(v);
                    }
                }
            }
            Ok(())
        })?;
        Vec::new()
    } else {
        return Err(unsupported());
    };
    if p.value("format") == Some("json") {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
    } else {
        for r in rows {
            if let Value::Object(o) = r {
                let cells: Vec<String> = o
                    .values()
                    .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                    .collect();
                println!("{}", cells.join("\t"));
            }
        }
    }
    Ok(0)
}
