//! `run`: the session it drives, the directory trap, and the scripted turn played as the real
//! `--format json` events.

use super::*;

pub(super) struct Out {
    pub(super) json: bool,
    pub(super) session: String,
    pub(super) message_id: String,
}

impl Out {
    pub(super) fn event(&self, kind: &str, extra: Value) {
        if !self.json {
            return;
        }
        let mut line = json!({"type": kind, "timestamp": now_ms(), "sessionID": self.session});
        if let (Value::Object(l), Value::Object(e)) = (&mut line, extra) {
            l.extend(e);
        }
        println!("{line}");
        let _ = std::io::stdout().flush();
    }
    pub(super) fn part(&self, id: &str, part: Value) -> Value {
        let mut p = json!({"id": id, "messageID": self.message_id, "sessionID": self.session});
        if let (Value::Object(l), Value::Object(e)) = (&mut p, part) {
            l.extend(e);
        }
        json!({ "part": p })
    }
    pub(super) fn text(&self, id: &str, text: &str) {
        if self.json {
            self.event("text", self.part(id, json!({"type": "text", "text": text})));
        } else {
            println!("{text}");
        }
    }
}

pub(super) fn cmd_run(p: &Parsed) -> Result<u8, Stop> {
    let stdin = if std::io::stdin().is_terminal() {
        String::new()
    } else {
        let mut buf = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    };
    // The real CLI's quirk: arguments with a space get literal quotes.
    let mut message = p
        .positionals
        .iter()
        .map(|a| if a.contains(' ') { format!("\"{a}\"") } else { a.clone() })
        .collect::<Vec<_>>()
        .join(" ");
    if !stdin.is_empty() {
        message = if message.is_empty() { stdin.clone() } else { format!("{message}\n{stdin}") };
    }
    let argv: Vec<String> = ARGV.get().cloned().unwrap_or_default();
    record(&argv, Some(&stdin), Some(&message));
    if message.is_empty() && !p.has("command") {
        return Err(Fail("You must provide a message or a command".into()).into());
    }
    if p.has("fork") && !(p.has("continue") || p.has("session")) {
        return Err(Fail("--fork requires --continue or --session".into()).into());
    }
    let dir = match p.value("dir") {
        Some(d) => {
            let path = PathBuf::from(d);
            match path.canonicalize() {
                Ok(c) if c.is_dir() => c,
                _ => return Err(Fail(format!("Failed to change directory to {d}")).into()),
            }
        }
        None => cwd()?,
    };
    let json_format = match p.value("format") {
        None | Some("default") => false,
        Some("json") => true,
        Some(_) => return Err(Stop::Usage(Usage(HELP_RUN))),
    };
    let auto = p.has("auto") || p.has("yolo") || p.has("dangerously-skip-permissions");

    // Resolve or create the session, consume the turn, and record the user message.
    let (session, turn, message_id) = with_store(|store| {
        let mut session = if let Some(id) = p.value("session") {
            match store.sessions.iter().find(|s| s.id == id) {
                Some(s) => s.clone(),
                None => return fail("Session not found"),
            }
        } else if p.has("continue") {
            let project = project_of(&dir);
            let roots = project_roots(store, &project);
            match roots.first() {
                Some(s) => (*s).clone(),
                None => return fail("Session not found"),
            }
        } else {
            let title = p
                .value("title")
                .map(str::to_owned)
                .unwrap_or_else(|| message.chars().take(50).collect());
            let id = new_id(store, "ses");
            let s = Session {
                id,
                slug: "fake-session".into(),
                project_id: project_of(&dir),
                parent_id: None,
                directory: path_str(&dir),
                title,
                permission: Some(deny_rules()),
                created: now_ms(),
                updated: now_ms(),
                messages: Vec::new(),
                v2: None,
            };
            store.sessions.push(s.clone());
            s
        };
        if p.has("fork") {
            let base_title = session.title.clone();
            let n = store
                .sessions
                .iter()
                .filter(|s| s.title.starts_with(&format!("{base_title} (fork #")))
                .count()
                + 1;
            let id = new_id(store, "ses");
            let mut messages = Vec::new();
            for m in &session.messages {
                let mut m = m.clone();
                let mid = new_id(store, "msg");
                m["info"]["id"] = json!(mid);
                m["info"]["sessionID"] = json!(id);
                if let Some(parts) = m["parts"].as_array_mut() {
                    for part in parts {
                        part["id"] = json!(new_id(store, "prt"));
                        part["messageID"] = json!(mid);
                        part["sessionID"] = json!(id);
                    }
                }
                messages.push(m);
            }
            // Like upstream: the fork keeps the parent's directory and loses its rules.
            session = Session {
                id,
                title: format!("{base_title} (fork #{n})"),
                parent_id: None,
                permission: None,
                created: now_ms(),
                updated: now_ms(),
                messages,
                ..session
            };
            store.sessions.push(session.clone());
        }
        let turn = if Path::new(&session.directory) == dir { Some(next_turn()?) } else { None };
        let mid = new_id(store, "msg");
        let pid = new_id(store, "prt");
        if let Some(s) = store.sessions.iter_mut().find(|s| s.id == session.id) {
            s.messages.push(json!({
                "info": {"id": mid, "sessionID": s.id, "role": "user"},
                "parts": [{"id": pid, "messageID": mid, "sessionID": s.id, "type": "text", "text": message}]
            }));
            s.updated = now_ms();
        }
        Ok((session, turn, new_id(store, "msg")))
    })?;
    let Some(turn) = turn else {
        // The directory trap: the session runs elsewhere, nothing is printed, nothing ends.
        sleep_forever();
    };
    // A tool that started a background server and returned: it outlives the turn.
    let leave = turn.get("leave_running").and_then(Value::as_u64).unwrap_or(0);
    spawn_helpers(leave, false, true, &session.directory);
    trace("start", &session.id);
    if let Some(ms) = turn.get("delay_ms").and_then(Value::as_u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let out =
        Out { json: json_format, session: session.id.clone(), message_id: message_id.clone() };
    let code = play(&turn, &out, &session, auto);
    trace("end", &session.id);
    let code = code?;
    // Keep the assistant's side of the history so export/fork carry it.
    with_store(|store| {
        let prt = new_id(store, "prt");
        if let Some(s) = store.sessions.iter_mut().find(|s| s.id == session.id) {
            s.messages.push(json!({
                "info": {"id": message_id, "sessionID": s.id, "role": "assistant"},
                "parts": [{"id": prt, "messageID": message_id, "sessionID": s.id, "type": "text",
                           "text": turn.get("text").and_then(Value::as_str).unwrap_or("hello")}]
            }));
        }
        Ok(())
    })?;
    Ok(code)
}

/// With `FAKE_OPENCODE_TRACE=<file>`, appends `<start|end> <session> <unix nanoseconds>` around
/// each turn, so tests can measure how many turns ran at once across processes.
pub(super) fn trace(what: &str, session: &str) {
    trace_at(env("FAKE_OPENCODE_TRACE"), what, session);
}

/// [`trace`] to the file `path` (the 2.x serve traces to its client's file).
pub(super) fn trace_at(path: Option<String>, what: &str, session: &str) {
    let Some(path) = path else { return };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        // One write per line: appends of a few bytes from many processes do not interleave.
        let _ = f.write_all(format!("{what} {session} {nanos}\n").as_bytes());
    }
}

pub(super) static PART_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A part id for output lines, without touching the store (runs print while it is unlocked).
pub(super) fn fresh_part_id() -> String {
    let n = PART_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = Store { counter: (u64::from(std::process::id()) << 12) + n, ..Store::default() };
    new_id(&mut tmp, "prt")
}

/// A `step_finish` of one model call (10 tokens in, 2 out) that cost `cost` dollars, as the real
/// one prices it from its model's `cost` in the config (0 for a model without one).
pub(super) fn step_finish_costing(out: &Out, reason: &str, cost: f64) {
    out.event(
        "step_finish",
        out.part(
            &fresh_part_id(),
            json!({"type": "step-finish", "reason": reason,
                   "tokens": {"total": 12, "input": 10, "output": 2, "reasoning": 0, "cache": {"write": 0, "read": 0}},
                   "cost": if cost == 0.0 { json!(0) } else { json!(cost) }}),
        ),
    );
}

pub(super) fn step_start(out: &Out) {
    out.event("step_start", out.part(&fresh_part_id(), json!({"type": "step-start"})));
}

pub(super) fn tool(out: &Out, name: &str, input: Value, status: &str, output_or_error: &str) {
    tool_titled(out, name, name, input, status, output_or_error);
}

pub(super) fn tool_titled(
    out: &Out,
    name: &str,
    title: &str,
    input: Value,
    status: &str,
    output_or_error: &str,
) {
    let mut state = json!({"status": status, "input": input, "title": title, "time": {"start": now_ms(), "end": now_ms()}});
    state[if status == "error" { "error" } else { "output" }] = json!(output_or_error);
    out.event(
        "tool_use",
        out.part(
            &fresh_part_id(),
            json!({"type": "tool", "tool": name, "callID": "call_1", "state": state}),
        ),
    );
}

pub(super) fn play(turn: &Value, out: &Out, session: &Session, auto: bool) -> Result<u8, Stop> {
    let s = |k: &str| turn.get(k).and_then(Value::as_str);
    let text = s("text").unwrap_or("hello");
    let cost = turn.get("cost").and_then(Value::as_f64).unwrap_or(0.0);
    let step_finish = |out: &Out, reason: &str| step_finish_costing(out, reason, cost);
    match s("mode").unwrap_or("ok") {
        "ok" => {
            step_start(out);
            out.text(&fresh_part_id(), text);
            step_finish(out, "stop");
            Ok(0)
        }
        "tool" => {
            let rel = s("path").unwrap_or("fake-output.txt");
            let content = s("content").unwrap_or("written by fake-opencode\n");
            let target = Path::new(&session.directory).join(rel);
            if let Some(parent) = target.parent() {
                let _ = fs::create_dir_all(parent);
            }
            step_start(out);
            let input = json!({"filePath": path_str(&target), "content": content});
            match fs::write(&target, content) {
                Ok(()) => tool(out, "write", input, "completed", "Wrote file successfully."),
                Err(e) => tool(out, "write", input, "error", &e.to_string()),
            }
            step_finish(out, "tool-calls");
            step_start(out);
            out.text(&fresh_part_id(), text);
            step_finish(out, "stop");
            Ok(0)
        }
        "error" => {
            step_start(out);
            let msg = s("message").unwrap_or("fake failure");
            out.event("error", json!({"error": {"name": s("name").unwrap_or("APIError"), "data": {"message": msg}}}));
            Err(Fail(msg.to_owned()).into())
        }
        "permission" => {
            let what = s("permission").unwrap_or("external_directory (/etc/*)");
            let tool_name = s("tool").unwrap_or("read");
            step_start(out);
            if auto {
                tool(out, tool_name, json!({}), "completed", "ok");
                step_finish(out, "tool-calls");
                step_start(out);
                out.text(&fresh_part_id(), text);
                step_finish(out, "stop");
            } else {
                eprintln!(
                    "\u{1b}[93m\u{1b}[1m! \u{1b}[0mpermission requested: {what}; auto-rejecting"
                );
                tool(out, tool_name, json!({}), "error", REJECTED);
                step_finish(out, "tool-calls");
            }
            Ok(0)
        }
        "question" => {
            let denied =
                session.permission.as_ref().and_then(Value::as_array).is_some_and(|rules| {
                    rules.iter().any(|r| r["permission"] == "question" && r["action"] == "deny")
                });
            step_start(out);
            if !denied {
                // Upstream #11899: the question waits for an answer nobody can give.
                sleep_forever();
            }
            tool(
                out,
                "question",
                json!({}),
                "error",
                "The user has specified a rule which prevents you from using this specific tool call.",
            );
            step_finish(out, "tool-calls");
            step_start(out);
            out.text(&fresh_part_id(), text);
            step_finish(out, "stop");
            Ok(0)
        }
        "hang" => {
            let ignore = turn.get("ignore_term").and_then(Value::as_bool).unwrap_or(false);
            let children = turn.get("children").and_then(Value::as_u64).unwrap_or(0);
            if turn.get("after_output").and_then(Value::as_bool).unwrap_or(false) {
                step_start(out);
            }
            let detached = turn.get("detached_children").and_then(Value::as_u64).unwrap_or(0);
            spawn_helpers(children, ignore, false, &session.directory);
            spawn_helpers(detached, ignore, true, &session.directory);
            if ignore {
                ignore_term();
            }
            sleep_forever();
        }
        "bash" => {
            let command = s("command").unwrap_or("sleep 600");
            let busy = match s("work").unwrap_or("sleep") {
                "busy" => true,
                "sleep" => false,
                other => return Err(Fail(format!("fake-opencode: unknown work {other:?}")).into()),
            };
            let ms = turn.get("ms").and_then(Value::as_u64);
            let pieces = turn.get("pieces").and_then(Value::as_u64).unwrap_or(1).max(1);
            let detached = turn.get("detached").and_then(Value::as_bool).unwrap_or(false);
            step_start(out);
            if let Some(first) = s("first") {
                let input = json!({"command": first, "description": "First"});
                tool_titled(out, "bash", first, input, "completed", "");
                step_finish(out, "tool-calls");
                step_start(out);
            }
            // Like the real tool: nothing is printed until the command has ended.
            for _ in 0..pieces {
                let work = Work { busy, ms: ms.map(|m| m / pieces), detach: detached };
                let Some(mut child) = spawn_helper(false, work, &session.directory) else {
                    return Err(Fail("fake-opencode: cannot start the bash helper".into()).into());
                };
                let _ = child.wait();
            }
            let input = json!({"command": command, "description": "Run"});
            tool_titled(out, "bash", command, input, "completed", "");
            step_finish(out, "tool-calls");
            step_start(out);
            out.text(&fresh_part_id(), text);
            step_finish(out, "stop");
            Ok(0)
        }
        "spend" => {
            // Model calls one after the other, each costing `cost`, until `steps` are done:
            // what a budget stops.
            let every = Duration::from_millis(
                turn.get("interval_ms").and_then(Value::as_u64).unwrap_or(20),
            );
            for _ in 0..turn.get("steps").and_then(Value::as_u64).unwrap_or(1000) {
                step_start(out);
                tool(out, "bash", json!({"command": "true"}), "completed", "");
                step_finish(out, "tool-calls");
                std::thread::sleep(every);
            }
            step_start(out);
            out.text(&fresh_part_id(), text);
            step_finish(out, "stop");
            Ok(0)
        }
        "slow" => {
            let every = Duration::from_millis(
                turn.get("interval_ms").and_then(Value::as_u64).unwrap_or(200),
            );
            step_start(out);
            loop {
                out.text(&fresh_part_id(), text);
                std::thread::sleep(every);
            }
        }
        "limited" => {
            // As 1.18.33 against a provider answering 429: nothing on stdout, a `stream error`
            // log line per attempt (only with `--print-logs`), retried forever.
            let message = s("message").unwrap_or("Rate limit reached for requests");
            let every = Duration::from_millis(
                turn.get("retry_ms").and_then(Value::as_u64).unwrap_or(30_000),
            );
            let logs = std::env::args().any(|a| a == "--print-logs");
            loop {
                if logs {
                    eprintln!(
                        "timestamp={} level=ERROR run=fake message=\"stream error\" providerID={} modelID=fake-model session.id={} small=false agent=build mode=primary error.error=\"AI_APICallError: {}\"",
                        now_ms(),
                        s("provider").unwrap_or("mock"),
                        session.id,
                        message.replace('"', "\\\"")
                    );
                }
                std::thread::sleep(every);
            }
        }
        "install" => {
            // Like opencode installing its plugin packages in-process in a fresh HOME while its
            // provider never answers: its own I/O, forever, and nothing printed.
            let path = Path::new(&session.directory).join(".fake-install");
            let chunk = vec![0u8; 256 * 1024];
            loop {
                let _ = fs::write(&path, &chunk);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        "exit" => {
            if let Some(e) = s("stderr") {
                eprintln!("{e}");
            }
            let code = turn.get("code").and_then(Value::as_u64).unwrap_or(1);
            Err(Stop::Code(u8::try_from(code).unwrap_or(1)))
        }
        other => Err(Fail(format!("fake-opencode: unknown script mode {other:?}")).into()),
    }
}
