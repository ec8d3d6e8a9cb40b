//! A turn, run IN the serve as the real 2.x runs it: the serve resolves the session, plays the
//! scripted turn in the session's stored directory, streams
//! the `--format json` events to the client, and records the outcome, cost and tokens on the
//! session. The client going away (SIGTERM, SIGKILL) does not stop the turn; only
//! `POST /api/session/ID/interrupt` does.
//!
//! A session's tools see the serve's environment, or exactly the variables last given by
//! `PUT /api/session/ID/environment` (kept in memory only, as the real one keeps them); the
//! client's environment does not reach them (observed on 2.1.2 with `run --server`).
//!
//! The client's request (`POST /fake/run`, the fake's private route):
//! `{session?, continue, fork, title?, text, directory, auto, env: {NAME: VALUE}}`. The answer
//! is NDJSON: event lines as `run --format json` prints them, `{"fake": "stderr", "line"}` for
//! the client's stderr, `{"fake": "session", "id"}` once the session is known, and last
//! `{"fake": "exit", "code"}`.
//!
//! `FAKE_OPENCODE_TRACE` of the client traces the turn as in 1.x.
//!
//! Script modes of the 2.x dialect (`FAKE_OPENCODE_SCRIPT` of the client, else of the serve):
//! `ok` (`text`), `tool` (`path`, `content`: a `write` call), `shell` (`command`: run by `sh`
//! in the session's directory with the tools' environment), `error` (`message`: a provider
//! error, exit 1), `permission` (`tool`, `permission`: an ask, auto-rejected unless `--auto`;
//! a `deny` rule of the session for the tool removes it instead), `hang` (the provider never
//! answers: nothing is printed until the turn is interrupted), `spend` (`steps`, `interval_ms`:
//! that many model calls, each a `shell` step costing `cost`, then an answer), `limited`
//! (`provider`, `message`, `retry_ms`: a 429 retried with a `step_start` per attempt and the
//! retry on the session, or, when `message` speaks of a quota, a turn failed at once with
//! `provider.quota`). Every turn takes `delay_ms`, `cost` (for the turn; for `spend`, for each
//! step), and `step_finish` (print the final `step_finish`, which the real one usually leaves
//! out).

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::Mutex;

use super::*;

const REJECTED: &str = "This non-interactive run cannot ask the user for permission, so the \
                        request was rejected. Continue without this action.";

/// The sessions whose turn is running, with their interrupt flags.
static ACTIVE: Mutex<BTreeMap<String, Arc<AtomicBool>>> = Mutex::new(BTreeMap::new());

/// The variables given to each session by `PUT /api/session/ID/environment`.
static ENVIRONMENT: Mutex<BTreeMap<String, BTreeMap<String, String>>> = Mutex::new(BTreeMap::new());

pub(super) fn set_environment(id: &str, vars: BTreeMap<String, String>) {
    if let Ok(mut e) = ENVIRONMENT.lock() {
        e.insert(id.to_owned(), vars);
    }
}

/// The environment of `id`'s tools: its given variables, else the serve's own.
fn tool_environment(id: &str) -> BTreeMap<String, String> {
    let given = ENVIRONMENT.lock().ok().and_then(|e| e.get(id).cloned());
    given.unwrap_or_else(|| std::env::vars().collect())
}

pub(super) fn active() -> Vec<String> {
    ACTIVE.lock().map(|a| a.keys().cloned().collect()).unwrap_or_default()
}

/// Interrupts the running turn of `id`; whether there was one.
pub(super) fn interrupt(id: &str) -> bool {
    let flag = ACTIVE.lock().ok().and_then(|a| a.get(id).cloned());
    flag.map(|f| !f.swap(true, Ordering::SeqCst)).unwrap_or(false)
}

/// Marks `id` as running a turn (before the turn's thread starts, for `prompt`).
pub(super) fn mark_active(id: &str) {
    if let Ok(mut a) = ACTIVE.lock() {
        a.entry(id.to_owned()).or_insert_with(|| Arc::new(AtomicBool::new(false)));
    }
}

/// A turn no client follows (`prompt`): its asks wait for a reply over HTTP.
pub(super) fn run_detached(req: &Value) {
    let mut sink = Sink { http: true, ..Sink::default() };
    let _ = run(req, &mut sink);
}

/// Where the events go: the client's connection, until it is gone; and the tool calls, for the
/// session's history.
#[derive(Default)]
struct Sink {
    stream: Option<TcpStream>,
    session: String,
    message: String,
    /// Driven over HTTP (no `run` client): a permission ask waits for a reply.
    http: bool,
    /// The tool calls, as the assistant message's content holds them.
    tools: Vec<Value>,
    /// What the steps of a `spend` turn cost and how many there were, kept on the session
    /// however the turn ends (as the real one keeps what was used before an interrupt).
    spent: (f64, u64),
}

impl Sink {
    fn line(&mut self, v: &Value) {
        let ok = self.stream.as_mut().is_some_and(|s| writeln!(s, "{v}").is_ok());
        if !ok {
            self.stream = None;
        }
    }
    fn event(&mut self, kind: &str, payload: Value) {
        let mut line = json!({"type": kind, "timestamp": now_ms(), "sessionID": self.session});
        if let (Value::Object(l), Value::Object(p)) = (&mut line, payload) {
            l.extend(p);
        }
        self.line(&line);
    }
    fn part(&self, kind: &str, extra: Value) -> Value {
        let mut p = json!({"id": fresh_part_id(), "sessionID": self.session,
                           "messageID": self.message, "type": kind});
        if let (Value::Object(l), Value::Object(e)) = (&mut p, extra) {
            l.extend(e);
        }
        json!({ "part": p })
    }
    fn step_start(&mut self) {
        let p = self.part("step-start", json!({}));
        self.event("step_start", p);
    }
    fn step_finish(&mut self, reason: &str, cost: f64, input: u64, output: u64) {
        let p = self.part(
            "step-finish",
            json!({"reason": reason, "cost": cost, "tokens": {"input": input, "output": output,
                   "reasoning": 0, "cache": {"read": 0, "write": 0}}}),
        );
        self.event("step_finish", p);
    }
    fn text(&mut self, text: &str) {
        let p =
            self.part("text", json!({"text": text, "time": {"start": now_ms(), "end": now_ms()}}));
        self.event("text", p);
    }
    /// A tool call: its output, or its error as `(type, message)`.
    fn tool(&mut self, tool: &str, input: Value, result: Result<String, (&str, String)>) {
        let mut state = json!({"input": input, "title": tool, "metadata": {},
                               "time": {"start": now_ms(), "end": now_ms()}});
        let mut kept = json!({"input": input});
        match result {
            Ok(out) => {
                state["status"] = json!("completed");
                state["output"] = json!(out);
                kept["status"] = json!("completed");
                kept["content"] = json!([{"type": "text", "text": out}]);
            }
            Err((kind, message)) => {
                state["status"] = json!("error");
                state["error"] = json!(message);
                kept["status"] = json!("error");
                kept["error"] = json!({"type": kind, "message": message});
            }
        }
        self.tools.push(json!({"type": "tool", "id": "call_1", "name": tool, "state": kept}));
        let part = json!({"part": {"partID": fresh_part_id(), "sessionID": self.session,
                   "messageID": self.message, "type": "tool", "id": "call_1", "tool": tool,
                   "state": state}});
        self.event("tool_use", part);
    }
}

/// `POST /fake/run`: the turn, streamed on `stream`.
pub(super) fn serve_run(mut stream: TcpStream, body: &[u8]) {
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\nconnection: close\r\n\r\n"
    );
    let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut sink = Sink { stream: Some(stream), ..Sink::default() };
    let code = match run(&req, &mut sink) {
        Ok(code) => code,
        Err(Fail(message)) => {
            sink.event("error", json!({"error": {"type": "unknown", "message": message}}));
            1
        }
    };
    sink.line(&json!({"fake": "exit", "code": code}));
}

fn run(req: &Value, sink: &mut Sink) -> Res<u8> {
    let text = req["text"].as_str().unwrap_or_default().to_owned();
    let caller_dir = PathBuf::from(req["directory"].as_str().unwrap_or("/"));
    let client_env: BTreeMap<String, String> =
        serde_json::from_value(req["env"].clone()).unwrap_or_default();
    let script =
        client_env.get("FAKE_OPENCODE_SCRIPT").cloned().or_else(|| env("FAKE_OPENCODE_SCRIPT"));
    let (session, turn, message) = with_store(|store| {
        let mut s = match (req["session"].as_str(), req["continue"].as_bool() == Some(true)) {
            (Some(id), _) => match session::find(store, id) {
                Ok(s) => s.clone(),
                // The real quirk: an unknown (well-formed) id makes a session with that id.
                Err(_) => session::create(store, Some(id), None, &caller_dir, None),
            },
            (None, true) => {
                let dir = path_str(&caller_dir);
                match session::list(store, Some(&dir)).first().and_then(|s| s["id"].as_str()) {
                    Some(id) => session::find(store, id)?.clone(),
                    None => session::create(store, None, None, &caller_dir, None),
                }
            }
            (None, false) => {
                let title: String = match req["title"].as_str() {
                    Some(t) => t.to_owned(),
                    None => text.chars().take(50).collect(),
                };
                session::create(store, None, Some(&title), &caller_dir, None)
            }
        };
        if req["fork"].as_bool() == Some(true) {
            // The real quirk: the fork stays in the base's directory.
            s = match session::fork(store, &s.id) {
                Ok(f) => f,
                Err(_) => return fail(format!("Cannot fork empty session: {}", s.id)),
            };
        }
        let turn = next_turn_at(script.clone())?;
        let mid = new_id(store, "msg");
        let s = session::find(store, &s.id)?;
        session::v2(s).messages.push(json!({"id": mid, "time": {"created": now_ms()},
                                            "text": text, "files": [], "type": "user"}));
        s.updated = now_ms();
        let s = s.clone();
        Ok((s, turn, new_id(store, "msg")))
    })?;
    sink.session = session.id.clone();
    // The client must know whom to interrupt on Ctrl-C, even before any event.
    sink.line(&json!({"fake": "session", "id": session.id}));
    sink.message = message.clone();
    let trace_to = client_env.get("FAKE_OPENCODE_TRACE").cloned();
    trace_at(trace_to.clone(), "start", &session.id);
    mark_active(&session.id);
    let flag = ACTIVE.lock().ok().and_then(|a| a.get(&session.id).cloned()).unwrap_or_default();
    let tool_env = tool_environment(&session.id);
    let played = play(&turn, &session, &tool_env, req["auto"].as_bool() == Some(true), &flag, sink);
    trace_at(trace_to, "end", &session.id);
    let (outcome, calls, code) = match played {
        _ if flag.load(Ordering::SeqCst) => {
            // A client still attached hears of it, and fails.
            let aborted = json!({"type": "aborted", "message": "Step interrupted"});
            sink.event("error", json!({ "error": aborted }));
            ("interrupted", 0, 1)
        }
        Played::Done(calls) => ("succeeded", calls, 0),
        Played::Failed => ("failed", 0, 1),
    };
    let cost = if turn["mode"] == "spend" { 0.0 } else { turn["cost"].as_f64().unwrap_or(0.0) };
    let (spent, spent_calls) = sink.spent;
    let (cost, calls) = (cost + spent, calls + spent_calls);
    let mut content = std::mem::take(&mut sink.tools);
    content.push(json!({"type": "text", "text": turn["text"].as_str().unwrap_or("hello")}));
    let stored = with_store(|store| {
        let idle = new_id(store, "msg");
        let s = session::find(store, &session.id)?;
        s.updated = now_ms();
        let v = session::v2(s);
        v.outcome = Some(outcome.to_owned());
        v.cost += cost;
        v.input += 10 * calls;
        v.output += 2 * calls;
        v.idle = Some(now_ms());
        if calls > 0 {
            v.messages.push(json!({"id": message, "time": {"created": now_ms()},
                                   "type": "assistant", "content": content,
                                   "finish": "stop", "cost": cost}));
        }
        v.messages.push(json!({"id": idle, "time": {"created": now_ms()}, "type": "idle",
                               "outcome": outcome}));
        Ok(())
    });
    // Idle only once the outcome is stored: a `wait` (or the active list) that saw the turn end
    // reads it, as from the real serve.
    if let Ok(mut a) = ACTIVE.lock() {
        a.remove(&session.id);
    }
    stored?;
    Ok(code)
}

enum Played {
    /// Ended; how many model calls it made (for the tokens).
    Done(u64),
    Failed,
}

/// Sleeps `ms`, or less if the turn is interrupted.
fn pause(ms: u64, flag: &AtomicBool) {
    let until = std::time::Instant::now() + Duration::from_millis(ms);
    while std::time::Instant::now() < until && !flag.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn play(
    turn: &Value,
    session: &Session,
    tool_env: &BTreeMap<String, String>,
    auto: bool,
    flag: &AtomicBool,
    sink: &mut Sink,
) -> Played {
    let s = |k: &str| turn.get(k).and_then(Value::as_str);
    let text = s("text").unwrap_or("hello");
    let cost = turn["cost"].as_f64().unwrap_or(0.0);
    let last_finish = turn["step_finish"].as_bool() == Some(true);
    pause(turn["delay_ms"].as_u64().unwrap_or(0), flag);
    let dir = Path::new(&session.directory);
    let answer = |sink: &mut Sink, calls: u64| {
        sink.step_start();
        sink.text(text);
        if last_finish {
            sink.step_finish("stop", cost, 10, 2);
        }
        Played::Done(calls)
    };
    let tool_step =
        |sink: &mut Sink, tool: &str, input: Value, result: Result<String, (&str, String)>| {
            sink.step_start();
            sink.tool(tool, input, result);
            sink.step_finish("tool-calls", 0.0, 0, 0);
        };
    match s("mode").unwrap_or("ok") {
        "ok" => answer(sink, 1),
        "tool" => {
            let rel = s("path").unwrap_or("fake-output.txt");
            let content = s("content").unwrap_or("written by fake-opencode\n");
            let target = dir.join(rel);
            if let Some(parent) = target.parent() {
                let _ = fs::create_dir_all(parent);
            }
            let result = fs::write(&target, content)
                .map(|()| format!("Created file successfully: {rel}"))
                .map_err(|e| ("unknown", e.to_string()));
            tool_step(sink, "write", json!({"path": rel, "content": content}), result);
            answer(sink, 2)
        }
        "shell" => {
            let command = s("command").unwrap_or("true");
            let out = std::process::Command::new("/bin/sh")
                .args(["-c", command])
                .current_dir(dir)
                .env_clear()
                .envs(tool_env)
                .env("PWD", dir)
                .stdin(std::process::Stdio::null())
                .output();
            let result = match out {
                Ok(o) => Ok(format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )),
                Err(e) => Err(("unknown", e.to_string())),
            };
            tool_step(sink, "shell", json!({"command": command}), result);
            answer(sink, 2)
        }
        "error" => {
            let message = s("message").unwrap_or("mock bad request");
            sink.event(
                "error",
                json!({"error": {"type": "provider.invalid-request", "message": message,
                                 "status": 400}}),
            );
            Played::Failed
        }
        "permission" => {
            let tool = s("tool").unwrap_or("shell");
            let what = s("permission").unwrap_or("shell (echo ran)");
            let input = json!({"command": "echo ran"});
            let denied =
                session.v2.as_ref().and_then(|v| v.permissions.as_ref()).is_some_and(|p| {
                    p.as_array()
                        .into_iter()
                        .flatten()
                        .any(|r| r["action"] == tool && r["effect"] == "deny")
                });
            let result = if denied {
                Err((
                    "unknown",
                    format!(
                        "No tool named \"{tool}\" is currently available. Please use a tool from the \
                     available tool list."
                    ),
                ))
            } else if auto {
                Ok("ran\n".to_owned())
            } else if sink.http {
                // Over HTTP the turn waits for the reply (or an interrupt).
                let message = sink.message.clone();
                match prompt::ask(&session.id, &message, tool, "echo ran", flag) {
                    None => return Played::Failed,
                    Some((decision, _)) if decision != "reject" => Ok("ran\n".to_owned()),
                    Some((_, why)) => Err((
                        "permission.rejected",
                        why.unwrap_or_else(|| "The user rejected permission.".into()),
                    )),
                }
            } else {
                sink.line(&json!({"fake": "stderr", "line": format!(
                    "\u{1b}[93m\u{1b}[1m! \u{1b}[0mpermission requested: {what}; auto-rejecting"
                )}));
                Err(("permission.rejected", REJECTED.to_owned()))
            };
            tool_step(sink, tool, input, result);
            answer(sink, 2)
        }
        "spend" => {
            // Model calls one after the other, each costing `cost`: what a budget stops.
            let every = turn["interval_ms"].as_u64().unwrap_or(20);
            for _ in 0..turn["steps"].as_u64().unwrap_or(1000) {
                if flag.load(Ordering::SeqCst) {
                    return Played::Failed;
                }
                sink.step_start();
                sink.tool("shell", json!({"command": "true"}), Ok(String::new()));
                sink.step_finish("tool-calls", cost, 10, 2);
                sink.spent = (sink.spent.0 + cost, sink.spent.1 + 1);
                pause(every, flag);
            }
            answer(sink, 1)
        }
        "limited" => {
            // As 2.1.2 against a provider that refuses: a 429 is retried, a `step_start` per
            // attempt, the retry shown on the turn's assistant message; a used-up quota fails
            // the turn at once (`provider.quota`).
            let message = s("message").unwrap_or("Rate limit reached for requests");
            let quota = message.to_ascii_lowercase().contains("quota");
            let kind = if quota { "provider.quota" } else { "provider.rate-limit" };
            let every = turn["retry_ms"].as_u64().unwrap_or(30_000);
            let error = json!({"type": kind, "message": message, "status": 429});
            let provider = s("provider").unwrap_or("mock");
            let shown = |extra: Value| {
                with_store(|store| {
                    let id = new_id(store, "msg");
                    let v = session::v2(session::find(store, &session.id)?);
                    let mut m = json!({"id": id, "time": {"created": now_ms()}, "type": "assistant",
                                       "model": {"id": "fake-model", "providerID": provider},
                                       "content": []});
                    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
                        m.extend(extra.clone());
                    }
                    v.messages.push(m);
                    Ok(())
                })
            };
            if quota {
                let _ = shown(json!({"finish": "error", "error": error}));
                sink.event("error", json!({ "error": error }));
                return Played::Failed;
            }
            let retry = json!({"retry": {"attempt": 1, "at": now_ms() + every, "error": error}});
            let _ = shown(retry);
            while !flag.load(Ordering::SeqCst) {
                sink.step_start();
                pause(every, flag);
            }
            Played::Failed
        }
        "hang" => {
            // The provider never answers: nothing is printed, nothing ends but an interrupt.
            while !flag.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            Played::Failed
        }
        other => {
            sink.event(
                "error",
                json!({"error": {"type": "unknown",
                                 "message": format!("fake-opencode: unknown script mode {other:?}")}}),
            );
            Played::Failed
        }
    }
}
