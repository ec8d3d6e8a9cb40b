//! A stand-in for the Anthropic Messages API on 127.0.0.1, enough for the real Claude Code:
//! `POST /v1/messages?beta=true`, answered as server-sent events (`message_start` with usage,
//! content blocks with their deltas, `message_delta`, `message_stop`), or as one JSON message
//! when the request says `"stream": false` (Claude Code's fallback after a stalled stream).
//!
//! What it answers depends on the last `role: "user"` message (Claude Code may put
//! `role: "system"` environment updates after it):
//! - holding a `tool_result`: a text answer `done`;
//! - containing `BASH:<command>`: a `Bash` call running the rest of that line;
//! - containing `WRITEFILE:<name>`: a `Bash` call `printf 'written by the mock\n' > <name>`
//!   (relative: it lands in the session's directory);
//! - `WRITEETC`: a `Write` of `/etc/kugetsu-mock` (outside the directory: refused);
//! - `ECHOENV:<name>`: a `Bash` call `printenv <name>` (what a tool may print of its environment);
//! - `PIDSLEEP:<file>`: a `Bash` call that writes its shell's pid to `<file>` and sleeps;
//! - `RATELIMIT`: HTTP 429 `rate_limit_error` with `retry-after: 1`;
//! - `QUOTA`: HTTP 400 `invalid_request_error` with the Anthropic API's words for a used-up
//!   credit balance;
//! - `OVERLOADED`: HTTP 529 `overloaded_error`;
//! - `STALL`: a 200 with `message_start`, then silence (the connection held open);
//! - anything else: a text answer `hello`.
//!
//! With [`MockApi::stall_all`] set, every request to the Messages API gets no answer at all.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

/// What the Anthropic API says to an account whose credit balance is used up.
pub const CREDIT: &str = "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.";

/// A running stand-in; its thread lives as long as the test process.
pub struct MockApi {
    /// `http://127.0.0.1:PORT` (`ANTHROPIC_BASE_URL`).
    pub base_url: String,
    /// Every request: (request line, `x-api-key` present, body).
    pub requests: Arc<Mutex<Vec<(String, bool, Value)>>>,
    /// Holds every Messages API request unanswered, whatever it asks, while set.
    #[allow(dead_code)] // Not every test binary that includes the stand-in sets it.
    pub stall_all: Arc<AtomicBool>,
}

impl MockApi {
    /// Whether a request so far holds `text` in its body (a priming prompt's words tell whose
    /// turn it is).
    #[allow(dead_code)] // Not every test binary that includes the stand-in asks.
    pub fn asked(&self, text: &str) -> bool {
        let requests = self.requests.lock().expect("requests");
        requests.iter().any(|(_, _, body)| body.to_string().contains(text))
    }

    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the mock API");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let stall_all = Arc::new(AtomicBool::new(false));
        let stall = stall_all.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, stall) = (seen.clone(), stall.clone());
                thread::spawn(move || {
                    let _ = serve(stream, &seen, &stall);
                });
            }
        });
        MockApi { base_url: format!("http://127.0.0.1:{port}"), requests, stall_all }
    }
}

fn serve(
    stream: TcpStream,
    seen: &Mutex<Vec<(String, bool, Value)>>,
    stall: &AtomicBool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let (mut length, mut key) = (0usize, false);
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
                key |= name.eq_ignore_ascii_case("x-api-key");
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        seen.lock().map(|mut v| v.push((request_line.trim().to_owned(), key, body.clone()))).ok();
        if !request_line.starts_with("POST /v1/messages") {
            out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")?;
            continue;
        }
        if stall.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_secs(3600));
            return Ok(());
        }
        answer(&mut out, &body)?;
        // One request per connection keeps the stand-in simple.
        return Ok(());
    }
}

fn answer(out: &mut TcpStream, body: &Value) -> std::io::Result<()> {
    let messages = body["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    let user = messages.iter().rev().find(|m| m["role"] == "user").cloned().unwrap_or(Value::Null);
    let blocks: Vec<Value> = match &user["content"] {
        Value::Array(b) => b.clone(),
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        _ => Vec::new(),
    };
    // A new prompt may follow the last turn's tool result in one message: only a result at
    // the end is one to answer.
    let tool_result = blocks.last().is_some_and(|b| b["type"] == "tool_result");
    // The prompt is the message's last text: a turn that got no answer (an API error) leaves its
    // prompt in the history, merged into the same message as the next one.
    let text = blocks
        .iter()
        .filter_map(|b| b["text"].as_str())
        .rfind(|t| !t.starts_with("<system-reminder>"))
        .unwrap_or_default()
        .to_owned();
    let arg = |key: &str| {
        text.split(key).nth(1).and_then(|r| r.split_whitespace().next()).map(str::to_owned)
    };
    if !tool_result && text.contains("RATELIMIT") {
        return error(out, 429, "Too Many Requests", "rate_limit_error", "mock rate limit");
    }
    if !tool_result && text.contains("QUOTA") {
        return error(out, 400, "Bad Request", "invalid_request_error", CREDIT);
    }
    if !tool_result && text.contains("OVERLOADED") {
        return error(out, 529, "Overloaded", "overloaded_error", "mock overloaded");
    }
    // Claude Code merges assistant messages of one id and drops a tool call whose id the
    // history already has: fresh ids for every answer.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("toolu_mock_{n}");
    let bash = text.lines().find_map(|l| Some(l.split_once("BASH:")?.1.trim().to_owned()));
    let content: Vec<Value> = if tool_result {
        vec![json!({"type": "text", "text": "done"})]
    } else if let Some(command) = bash.filter(|c| !c.is_empty()) {
        vec![json!({"type": "tool_use", "id": id, "name": "Bash",
            "input": {"command": command, "description": "Run it"}})]
    } else if let Some(name) = arg("WRITEFILE:") {
        let command = format!("printf 'written by the mock\\n' > {name}");
        vec![json!({"type": "tool_use", "id": id, "name": "Bash",
            "input": {"command": command, "description": "Write the file"}})]
    } else if text.contains("WRITEETC") {
        vec![json!({"type": "tool_use", "id": id, "name": "Write",
            "input": {"file_path": "/etc/kugetsu-mock", "content": "x\n"}})]
    } else if let Some(name) = arg("ECHOENV:") {
        vec![json!({"type": "tool_use", "id": id, "name": "Bash",
            "input": {"command": format!("printenv {name}"), "description": "Show it"}})]
    } else if let Some(file) = arg("PIDSLEEP:") {
        let command = format!("echo $$ > {file}; while :; do read -t 1 x < /dev/zero; done");
        vec![json!({"type": "tool_use", "id": id, "name": "Bash",
            "input": {"command": command, "description": "Wait", "timeout": 600000}})]
    } else {
        vec![json!({"type": "text", "text": "hello"})]
    };
    let stop =
        if content.iter().any(|c| c["type"] == "tool_use") { "tool_use" } else { "end_turn" };
    let usage = json!({"input_tokens": 40, "cache_creation_input_tokens": 2000,
        "cache_read_input_tokens": 10000, "output_tokens": 12});
    let model = body["model"].as_str().unwrap_or("claude-opus-5-5");
    let message = json!({"id": format!("msg_mock_{n}"), "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop, "stop_sequence": null, "usage": usage});
    if body["stream"] == false {
        let text = message.to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nrequest-id: req_mock\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            text.len()
        );
        out.write_all(head.as_bytes())?;
        out.write_all(text.as_bytes())?;
        return out.flush();
    }
    out.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nrequest-id: req_mock\r\nconnection: close\r\n\r\n")?;
    let mut event = |name: &str, data: Value| -> std::io::Result<()> {
        out.write_all(format!("event: {name}\ndata: {data}\n\n").as_bytes())?;
        out.flush()
    };
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    event("message_start", json!({"type": "message_start", "message": start}))?;
    if !tool_result && text.contains("STALL") {
        thread::sleep(Duration::from_secs(3600));
        return Ok(());
    }
    for (i, block) in content.iter().enumerate() {
        let (empty, delta) = if block["type"] == "text" {
            (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": block["text"]}),
            )
        } else {
            let mut empty = block.clone();
            empty["input"] = json!({});
            (empty, json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}))
        };
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": i, "content_block": empty}),
        )?;
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": i, "delta": delta}),
        )?;
        event("content_block_stop", json!({"type": "content_block_stop", "index": i}))?;
    }
    event(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 12}}),
    )?;
    event("message_stop", json!({"type": "message_stop"}))
}

fn error(
    out: &mut TcpStream,
    status: u16,
    reason: &str,
    kind: &str,
    message: &str,
) -> std::io::Result<()> {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}}).to_string();
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nretry-after: 1\r\nrequest-id: req_mock\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(body.as_bytes())?;
    out.flush()
}
