//! A mock OpenAI-compatible model on 127.0.0.1 for running the real opencode in tests:
//! `POST /v1/chat/completions` answered with server-sent `data:` chunks ending `data: [DONE]`.
//!
//! What it answers depends on the last message:
//! - a tool result: a text answer `done`;
//! - a user message containing `WRITEFILE:<name>`: a `write` tool call creating `<name>`
//!   (a relative path, so it lands in the session's directory) with `written by the mock`;
//! - containing `APIERROR`: HTTP 400 with an OpenAI-style error body (`mock bad request`);
//! - containing `READETC`: a `read` of `/etc/hostname` (outside the project: a permission ask);
//! - containing `READENV`: a `read` of `.env` (opencode 2 asks before reading it);
//! - containing `HANG`: no answer at all, the connection is held open;
//! - containing `RATELIMIT`: HTTP 429 with `Retry-After: 30` and OpenAI's rate-limit body;
//! - containing `QUOTA`: HTTP 429 with OpenAI's `insufficient_quota` body (no `Retry-After`);
//! - containing `BASHSLEEP:<secs>`: a `bash` tool call running `sleep <secs>` (opencode starts
//!   it detached, in its own session);
//! - with lines containing `BASH:<command>` (the rest of the line): one `bash` tool call per
//!   such line, in order, each after the previous one's result, then a text answer `done`;
//! - anything else: a text answer `hello`.
//!
//! The tool calls use opencode 2's names (`shell`, `write` with `path`) when the request offers
//! a tool only opencode 2 has (`shell`, or `subagent` when a rule denies the shell).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

/// A running mock; its thread lives as long as the test process.
pub struct MockModel {
    /// `http://127.0.0.1:PORT/v1`
    pub base_url: String,
    /// Bodies of the requests received, in order.
    pub requests: Arc<Mutex<Vec<Value>>>,
}

impl MockModel {
    /// Whether a request so far holds `text` (a priming prompt's words tell whose turn it is).
    #[allow(dead_code)] // Not every test binary that includes the mock asks.
    pub fn asked(&self, text: &str) -> bool {
        self.requests.lock().expect("requests").iter().any(|r| r.to_string().contains(text))
    }

    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mock model");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                thread::spawn(move || {
                    let _ = serve(stream, &seen);
                });
            }
        });
        MockModel { base_url: format!("http://127.0.0.1:{port}/v1"), requests }
    }

    /// The variables that run the real opencode isolated under `root` (its own XDG data, config,
    /// cache and state directories, made here) against this mock, with nothing fetched.
    pub fn isolated_env(&self, root: &std::path::Path) -> Vec<(String, String)> {
        let dir = |d: &str| {
            let path = root.join(d);
            std::fs::create_dir_all(&path).expect("opencode's directory");
            path.display().to_string()
        };
        [
            ("XDG_DATA_HOME", dir("data")),
            ("XDG_CONFIG_HOME", dir("config")),
            ("XDG_CACHE_HOME", dir("cache")),
            ("XDG_STATE_HOME", dir("xstate")),
            ("OPENCODE_DISABLE_AUTOUPDATE", "1".into()),
            ("OPENCODE_DISABLE_MODELS_FETCH", "1".into()),
            ("OPENCODE_DISABLE_SHARE", "1".into()),
            ("OPENCODE_CONFIG_CONTENT", self.opencode_config()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The `OPENCODE_CONFIG_CONTENT` that points opencode at this mock.
    pub fn opencode_config(&self) -> String {
        json!({
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": false,
            "share": "disabled",
            "model": "mock/mock-model",
            "small_model": "mock/mock-model",
            "provider": {"mock": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Mock",
                "options": {"baseURL": self.base_url, "apiKey": "sk-mock"},
                "models": {"mock-model": {"name": "Mock", "limit": {"context": 100000, "output": 4096},
                    // Dollars per million tokens: opencode prices each step from them.
                    "cost": {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75}}}
            }}
        })
        .to_string()
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Value>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut out = stream;
    if !request_line.starts_with("POST") || !request_line.contains("/chat/completions") {
        out.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")?;
        return Ok(());
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().map(|mut v| v.push(body.clone())).ok();
    let last = body["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or(Value::Null);
    let text = content_text(&last["content"]);
    if last["role"] == "user" && text.contains("HANG") {
        // Never answer: opencode waits silently, as it does on a stuck provider.
        thread::sleep(Duration::from_secs(3600));
        return Ok(());
    }
    if last["role"] == "user" && (text.contains("RATELIMIT") || text.contains("QUOTA")) {
        let (message, kind, retry) = if text.contains("QUOTA") {
            (
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "",
            )
        } else {
            ("Rate limit reached for requests", "rate_limit_exceeded", "retry-after: 30\r\n")
        };
        let body = json!({"error": {"message": message, "type": kind, "code": kind}}).to_string();
        let head = format!(
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n{retry}content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        out.write_all(head.as_bytes())?;
        out.write_all(body.as_bytes())?;
        return out.flush();
    }
    if last["role"] == "user" && text.contains("APIERROR") {
        let body = json!({"error": {"message": "mock bad request", "type": "invalid_request_error", "code": "bad"}})
            .to_string();
        let head = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        out.write_all(head.as_bytes())?;
        out.write_all(body.as_bytes())?;
        return out.flush();
    }
    out.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n",
    )?;
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": "mock-model",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let tool_call = |name: &str, args: Value| {
        chunk(
            json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                   "function": {"name": name, "arguments": args.to_string()}}]}),
            Value::Null,
        )
    };
    // `BASH:` lines of the last user message, and how many of them already ran.
    let messages = body["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    let user = messages.iter().rposition(|m| m["role"] == "user");
    let user_text = user.map(|i| content_text(&messages[i]["content"])).unwrap_or_default();
    let commands: Vec<&str> = user_text
        .lines()
        .filter_map(|l| Some(l.split_once("BASH:")?.1.trim()))
        .filter(|c| !c.is_empty())
        .collect();
    // opencode 2 renamed the tools (`shell` for `bash`, `write` takes `path`): answer in the
    // names the request offers.
    let v2 = body["tools"].as_array().is_some_and(|tools| {
        tools.iter().any(|t| matches!(t["function"]["name"].as_str(), Some("shell" | "subagent")))
    });
    let (shell, path_key) = if v2 { ("shell", "path") } else { ("bash", "filePath") };
    let bash_args = |command: &str| match v2 {
        true => json!({"command": command}),
        false => json!({"command": command, "description": "Run it"}),
    };
    let ran = user.map_or(0, |i| messages[i + 1..].iter().filter(|m| m["role"] == "tool").count());
    let mut chunks = Vec::new();
    if let Some(command) = commands.get(ran) {
        chunks.push(chunk(
            json!({"role": "assistant", "tool_calls": [{"index": 0, "id": format!("call_bash_{ran}"),
                   "type": "function", "function": {"name": shell,
                   "arguments": bash_args(command).to_string()}}]}),
            Value::Null,
        ));
        chunks.push(chunk(json!({}), json!("tool_calls")));
    } else if last["role"] == "user" && text.contains("WRITEFILE:") {
        let name = text
            .split("WRITEFILE:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("out.txt");
        chunks
            .push(tool_call("write", json!({path_key: name, "content": "written by the mock\n"})));
        chunks.push(chunk(json!({}), json!("tool_calls")));
    } else if last["role"] == "user" && text.contains("BASHSLEEP:") {
        let secs = text
            .split("BASHSLEEP:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("300");
        chunks.push(tool_call(
            shell,
            json!({"command": format!("sleep {secs}"), "description": "Wait"}),
        ));
        chunks.push(chunk(json!({}), json!("tool_calls")));
    } else if last["role"] == "user" && text.contains("READETC") {
        chunks.push(tool_call("read", json!({path_key: "/etc/hostname"})));
        chunks.push(chunk(json!({}), json!("tool_calls")));
    } else if last["role"] == "user" && text.contains("READENV") {
        chunks.push(tool_call("read", json!({path_key: ".env"})));
        chunks.push(chunk(json!({}), json!("tool_calls")));
    } else {
        let answer = if last["role"] == "tool" { "done" } else { "hello" };
        chunks.push(chunk(json!({"role": "assistant", "content": answer}), Value::Null));
        let mut end = chunk(json!({}), json!("stop"));
        end["usage"] = json!({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12});
        chunks.push(end);
    }
    for c in chunks {
        out.write_all(format!("data: {c}\n\n").as_bytes())?;
    }
    out.write_all(b"data: [DONE]\n\n")?;
    out.flush()
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}
