//! `serve`: the part of `opencode serve` kugetsu uses, the sync-event import on
//! `POST /sync/replay`, behind the same basic auth, on loopback.
//!
//! Like the real 1.18.33 it prints `opencode server listening on http://HOST:PORT` on stdout
//! (after a warning when `OPENCODE_SERVER_PASSWORD` is not set), answers 401 to a request
//! without the password (user `OPENCODE_SERVER_USERNAME`, default `opencode`) when one is set,
//! ignores SIGTERM and exits on SIGINT. A replay stores the session with the body's
//! `info.directory` as its directory, its messages and parts, and its permission rules; the
//! same body twice is the same session; events whose `seq` does not start at 0 get a 500.
//!
//! Where it differs: `--port 0` always takes a port the kernel picks (the real one tries 4096
//! first); only `/sync/replay` and `/global/health` exist; it reads one request per
//! connection. `FAKE_OPENCODE_SERVE=hang` makes every replay hang without an answer,
//! `FAKE_OPENCODE_SERVE=error` answers it with a 500, and `FAKE_OPENCODE_SERVE=silent` never
//! prints the URL (a serve stuck starting), for the driver's fallback and stop tests.

use std::net::{TcpListener, TcpStream};

use base64::Engine;

use super::*;

pub(super) fn cmd_serve(p: &Parsed) -> Result<u8, Stop> {
    let port: u16 = match p.value("port") {
        Some(v) => v.parse().or_else(|_| fail(format!("invalid port {v}")))?,
        None => 4096,
    };
    let host = p.value("hostname").unwrap_or("127.0.0.1").to_owned();
    let listener = TcpListener::bind((host.as_str(), port))
        .or_else(|e| fail(format!("cannot listen on {host}:{port}: {e}")))?;
    let addr = listener.local_addr().or_else(|e| fail(e.to_string()))?;
    ignore_term();
    if env("FAKE_OPENCODE_SERVE").as_deref() == Some("silent") {
        sleep_forever();
    }
    let auth = env("OPENCODE_SERVER_PASSWORD").map(|pw| {
        let user = env("OPENCODE_SERVER_USERNAME").unwrap_or_else(|| "opencode".into());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    });
    if auth.is_none() {
        println!("Warning: OPENCODE_SERVER_PASSWORD is not set; server is unsecured.");
    }
    println!("opencode server listening on http://{addr}");
    let _ = std::io::stdout().flush();
    let auth = Arc::new(auth);
    for stream in listener.incoming().flatten() {
        let auth = Arc::clone(&auth);
        std::thread::spawn(move || handle(stream, &auth));
    }
    Ok(0)
}

fn handle(mut stream: TcpStream, auth: &Option<String>) {
    let Some((method, path, headers, body)) = read_request(&mut stream) else { return };
    let header = |name: &str| {
        headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    };
    let (status, answer) = if auth.as_deref().is_some_and(|a| header("authorization") != Some(a)) {
        (401, String::new())
    } else {
        match (method.as_str(), path.split('?').next().unwrap_or("")) {
            ("GET", "/global/health") => {
                (200, json!({"healthy": true, "version": VERSION}).to_string())
            }
            ("POST", "/sync/replay") => replay(&body),
            _ => (404, json!({"message": "not found"}).to_string()),
        }
    };
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{answer}",
        answer.len()
    );
}

pub(super) type Request = (String, String, Vec<(String, String)>, Vec<u8>);

pub(super) fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = req.parse(&buf) {
            let method = req.method?.to_owned();
            let path = req.path?.to_owned();
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let mut body = buf[head..].to_vec();
            while body.len() < len {
                let n = stream.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            return Some((method, path, headers, body));
        }
    }
}

fn server_error(message: &str) -> (u16, String) {
    (
        500,
        json!({"name": "UnknownError", "data": {"message": message, "ref": "err_fake"}})
            .to_string(),
    )
}

/// `POST /sync/replay`: `{directory, events: [{id, aggregateID, seq, type, data}]}`.
fn replay(body: &[u8]) -> (u16, String) {
    match env("FAKE_OPENCODE_SERVE").as_deref() {
        Some("hang") => sleep_forever(),
        Some("error") => {
            return server_error("Unexpected server error. Check server logs for details.");
        }
        _ => {}
    }
    let Ok(doc) = serde_json::from_slice::<Value>(body) else {
        return (400, json!({"message": "invalid JSON"}).to_string());
    };
    let events = doc["events"].as_array().cloned().unwrap_or_default();
    if events.iter().enumerate().any(|(i, e)| e["seq"].as_u64() != Some(i as u64)) {
        return server_error("Unexpected server error. Check server logs for details.");
    }
    let mut info = Value::Null;
    let mut messages: Vec<Value> = Vec::new();
    for e in &events {
        let data = &e["data"];
        match e["type"].as_str() {
            Some("session.created.1") => info = data["info"].clone(),
            Some("message.updated.1") => {
                messages.push(json!({"info": data["info"], "parts": []}));
            }
            Some("message.part.updated.1") => {
                let part = data["part"].clone();
                let owner =
                    messages.iter_mut().rev().find(|m| m["info"]["id"] == part["messageID"]);
                match owner.and_then(|m| m["parts"].as_array_mut()) {
                    Some(parts) => parts.push(part),
                    None => return server_error("a part of no message"),
                }
            }
            _ => return server_error("unknown event type"),
        }
    }
    let Some(dir) = info["directory"].as_str().map(PathBuf::from) else {
        return server_error("no session.created.1 with a directory");
    };
    match add_session(&info, messages, &dir) {
        Ok(id) => (200, json!({"sessionID": id}).to_string()),
        Err(Fail(message)) => server_error(&message),
    }
}
