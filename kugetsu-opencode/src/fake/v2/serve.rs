//! `serve` in 2.x: the `/api` routes a driver uses, behind HTTP Basic auth (user `opencode`),
//! answers wrapped in `{"data": ...}` (except `/api/info` and `/api/location`), errors shaped as
//! the real ones.
//! SIGTERM ends it at once (the default action: nothing is registered for it).

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};

use base64::Engine;

use super::*;
use crate::fake::serve::read_request;

/// What every connection's handler needs.
pub(super) struct Server {
    pub(super) url: String,
    pub(super) auth: String,
    pub(super) version: String,
}

pub(super) fn cmd_serve(p: &Parsed) -> Result<u8, Stop> {
    let port: u16 = match p.value("port") {
        Some(v) => v.parse().or_else(|_| fail(format!("invalid port {v}")))?,
        None => 0,
    };
    let host = p.value("hostname").unwrap_or("127.0.0.1").to_owned();
    let listener = TcpListener::bind((host.as_str(), port))
        .or_else(|e| fail(format!("cannot listen on {host}:{port}: {e}")))?;
    let given = env("OPENCODE_SERVER_PASSWORD").or_else(|| env("OPENCODE_PASSWORD"));
    let password = given.clone().unwrap_or_else(random_password);
    let server = server(&listener, &password)?;
    if p.has("service") {
        // Its own session, as the real service's.
        let _ = rustix::process::setsid();
        service::register(&server.url, &password, &server.version)?;
    }
    println!("server listening on {}", server.url);
    if given.is_none() {
        println!("server password {password}");
    }
    let _ = std::io::stdout().flush();
    accept(&listener, &server);
    Ok(0)
}

/// The server of `listener`, with `password`.
pub(super) fn server(listener: &TcpListener, password: &str) -> Res<Arc<Server>> {
    let url = format!("http://{}", listener.local_addr().or_else(|e| fail(e.to_string()))?);
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("opencode:{password}"))
    );
    Ok(Arc::new(Server { url, auth, version: super::version().unwrap_or_default() }))
}

/// Answers every connection, each on its own thread (a turn streams for as long as it runs).
pub(super) fn accept(listener: &TcpListener, server: &Arc<Server>) {
    for stream in listener.incoming().flatten() {
        let server = Arc::clone(server);
        std::thread::spawn(move || handle(stream, &server));
    }
}

/// Not secret-grade randomness, but never the same twice: a fake's password.
pub(super) fn random_password() -> String {
    let mut tmp = Store { counter: u64::from(std::process::id()), ..Store::default() };
    new_id(&mut tmp, "pw").trim_start_matches("pw_").to_owned()
}

/// An answer: status, body (JSON unless empty) and extra headers.
pub(super) struct Reply(pub(super) u16, pub(super) String, pub(super) &'static str);

fn data(v: Value) -> Reply {
    Reply(200, json!({ "data": v }).to_string(), "")
}

fn session_not_found(id: &str) -> Reply {
    let body = json!({"_tag": "SessionNotFoundError", "sessionID": id,
                      "message": format!("Session not found: {id}")});
    Reply(404, body.to_string(), "")
}

fn handle(mut stream: TcpStream, server: &Server) {
    let Some((method, target, headers, body)) = read_request(&mut stream) else { return };
    let header = |name: &str| {
        headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let reply = if !path.starts_with("/api/") && !path.starts_with("/fake/") {
        // Everything else is the web UI, open to all; its POSTs are not allowed.
        match method.as_str() {
            "GET" => Reply(200, "<!doctype html><title>OpenCode</title>".into(), "html"),
            _ => Reply(405, String::new(), ""),
        }
    } else if header("authorization") != Some(server.auth.as_str()) {
        let body = json!({"_tag": "UnauthorizedError", "message": "Authentication required"});
        Reply(401, body.to_string(), "www-authenticate: Basic realm=\"Secure Area\"\r\n")
    } else if method == "POST" && path == "/fake/run" {
        // The turn streams its events on this connection; see `turn`.
        return turn::serve_run(stream, &body);
    } else {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        route(server, &method, path, query, &body)
            .unwrap_or_else(|Fail(m)| Reply(500, json!({"message": m}).to_string(), ""))
    };
    let Reply(status, body, extra) = reply;
    let (kind, extra) = match extra {
        "html" => ("text/html", ""),
        e => ("application/json", e),
    };
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {kind}\r\n{extra}content-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
}

fn route(server: &Server, method: &str, path: &str, query: &str, body: &Value) -> Res<Reply> {
    let parts: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
    Ok(match (method, parts.as_slice()) {
        ("GET", ["info"]) => Reply(
            200,
            json!({"version": server.version, "pid": std::process::id(), "urls": [server.url],
                   "paths": {"tmp": path_str(&std::env::temp_dir().join("opencode"))},
                   "capabilities": {"persistentPty": true}})
            .to_string(),
            "",
        ),
        ("GET", ["session"]) => {
            let dir = query_value(query, "directory");
            let rows = with_store(|store| Ok(session::list(store, dir.as_deref())))?;
            let cursor = |c: &str| rows.first().map(|s| format!("{c}:{}", s["id"]));
            Reply(
                200,
                json!({"data": rows, "cursor": {"previous": cursor("previous"), "next": cursor("next")}})
                    .to_string(),
                "",
            )
        }
        ("POST", ["session"]) => {
            let dir = match body["location"]["directory"].as_str() {
                Some(d) => PathBuf::from(d),
                None => cwd()?,
            };
            let perms = body.get("permissions").filter(|p| p.is_array()).cloned();
            let s = with_store(|store| {
                Ok(session::create(store, body["id"].as_str(), body["title"].as_str(), &dir, perms))
            })?;
            data(session::to_json(&s))
        }
        // Loads a directory's project (what a fork's first turn in it would otherwise do).
        ("GET", ["location"]) => {
            let dir = match query_value(query, "location[directory]") {
                Some(d) => PathBuf::from(d),
                None => cwd()?,
            };
            let d = path_str(&dir);
            if dir.is_dir() {
                let project = store::project_of(&dir);
                // Not wrapped in `data`, as `/api/info`.
                let body = json!({"directory": d,
                                  "project": {"id": project, "directory": d, "canonical": d}});
                Reply(200, body.to_string(), "")
            } else {
                Reply(
                    404,
                    json!({"_tag": "LocationNotFoundError", "location": {"directory": d},
                           "message": format!("Location not found: {d}")})
                    .to_string(),
                    "",
                )
            }
        }
        ("GET", ["session", "active"]) => {
            let running: serde_json::Map<String, Value> =
                turn::active().into_iter().map(|id| (id, json!({"type": "running"}))).collect();
            data(Value::Object(running))
        }
        // `FAKE_OPENCODE_FAIL=serve-import`: the serve's import fails as on a server error.
        ("POST", ["experimental", "session", "import"])
            if std::env::var("FAKE_OPENCODE_FAIL")
                .is_ok_and(|f| f.split(',').any(|c| c == "serve-import")) =>
        {
            Reply(
                500,
                json!({"_tag": "UnknownError", "message": "Internal Server Error"}).to_string(),
                "",
            )
        }
        ("POST", ["experimental", "session", "import"]) => {
            match with_store(|store| Ok(session::import(store, body)))? {
                Ok(s) => data(session::to_json(&s)),
                Err(session::ImportError::Exists(id)) => Reply(
                    409,
                    json!({"_tag": "ConflictError",
                           "message": format!("Session already exists: {id}"), "resource": id})
                    .to_string(),
                    "",
                ),
                Err(session::ImportError::Invalid(message)) => Reply(
                    400,
                    json!({"_tag": "InvalidRequestError", "message": message}).to_string(),
                    "",
                ),
                // The real one's unique constraint on message ids, seen only in its log.
                Err(session::ImportError::Duplicate) => Reply(
                    500,
                    json!({"_tag": "UnknownError", "message": "Internal Server Error"}).to_string(),
                    "",
                ),
            }
        }
        ("GET", ["experimental", "session", id, "export"]) => {
            match with_store(|store| Ok(session::find(store, id).ok().cloned()))? {
                Some(s) => data(session::export(&s)),
                None => session_not_found(id),
            }
        }
        ("POST", ["experimental", "session", id, "wait"]) => {
            let found = with_store(|store| Ok(session::find(store, id).is_ok()))?;
            if found { prompt::wait(id) } else { session_not_found(id) }
        }
        (_, ["session", id, rest @ ..]) => {
            let id = (*id).to_owned();
            let found = with_store(|store| Ok(session::find(store, &id).ok().cloned()))?;
            let Some(s) = found else { return Ok(session_not_found(&id)) };
            session_route(method, &s, rest, body)?
        }
        _ => Reply(404, String::new(), ""),
    })
}

fn session_route(method: &str, s: &Session, rest: &[&str], body: &Value) -> Res<Reply> {
    let id = s.id.as_str();
    Ok(match (method, rest) {
        ("GET", []) => data(session::to_json(s)),
        ("PATCH", []) => {
            with_store(|store| {
                let s = session::find(store, id)?;
                if let Some(t) = body["title"].as_str() {
                    s.title = t.to_owned();
                    session::v2(s).titled = true;
                }
                if let Some(p) = body.get("permissions").filter(|p| p.is_array()) {
                    session::v2(s).permissions = Some(p.clone());
                }
                s.updated = now_ms();
                Ok(())
            })?;
            Reply(204, String::new(), "")
        }
        ("DELETE", []) => {
            with_store(|store| session::delete(store, id))?;
            Reply(204, String::new(), "")
        }
        ("POST", ["fork"]) => match with_store(|store| Ok(session::fork(store, id)))? {
            Ok(f) => data(session::to_json(&f)),
            Err(session::ForkError::NotFound) => session_not_found(id),
            Err(session::ForkError::Empty) => Reply(
                400,
                json!({"_tag": "InvalidRequestError",
                       "message": format!("Cannot fork empty session: {id}"),
                       "kind": "empty_session"})
                .to_string(),
                "",
            ),
        },
        ("POST", ["move"]) => {
            let Some(dir) = body["directory"].as_str() else {
                return Ok(Reply(400, json!({"message": "directory"}).to_string(), ""));
            };
            with_store(|store| session::relocate(store, id, Path::new(dir)))?;
            Reply(204, String::new(), "")
        }
        ("POST", ["prompt"]) => prompt::prompt(s, body)?,
        ("GET", ["permission"]) => prompt::list(id),
        ("POST", ["permission", per, "reply"]) => prompt::reply(id, per, body),
        ("PUT", ["environment"]) => {
            let vars: BTreeMap<String, String> =
                serde_json::from_value(body["variables"].clone()).unwrap_or_default();
            turn::set_environment(id, vars);
            Reply(204, String::new(), "")
        }
        ("POST", ["interrupt"]) => {
            Reply(200, json!({"interrupted": turn::interrupt(id)}).to_string(), "")
        }
        ("GET", ["message"]) => {
            let mut messages = session::migrated(s).messages;
            messages.reverse();
            Reply(
                200,
                json!({"data": messages, "cursor": {"previous": null, "next": null}}).to_string(),
                "",
            )
        }
        _ => Reply(404, String::new(), ""),
    })
}

/// A query parameter, percent-decoded.
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
