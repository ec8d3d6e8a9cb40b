//! The checks of the opencode 2 contract (see `v2_contract.rs`), each run on both subjects.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{PASSWORD, Subject, Turn, events, http, read_line, spawn_serve, text};

const REJECTED: &str = "This non-interactive run cannot ask the user for permission, so the \
                        request was rejected. Continue without this action.";

/// `--version` and `-v` print `opencode v2.1.2` on stdout.
pub fn version_line(s: &Subject) {
    for flag in ["--version", "-v"] {
        let out = s.command("base", &[flag]).output().expect("version");
        assert!(out.status.success(), "{flag}");
        assert_eq!(text(&out.stdout).trim(), "opencode v2.1.2", "{flag}");
    }
}

/// `serve` prints its URL (and a random password when none is given), guards `/api` with
/// Basic auth for user `opencode`, serves `/api/info` unwrapped, and ends at once on SIGTERM.
pub fn serve_startup_and_auth(s: &Subject) {
    assert!(s.url.starts_with("http://127.0.0.1:"), "{}", s.url);
    let info = s.api("GET", "/api/info", None);
    assert_eq!(info.status, 200, "{}", info.body);
    let info = info.json();
    assert_eq!(info["version"], "2.1.2");
    assert!(info.get("data").is_none() && info["urls"][0] == s.url.as_str(), "{info}");
    assert!(info["pid"].is_u64(), "{info}");
    let unauth = json!({"_tag": "UnauthorizedError", "message": "Authentication required"});
    let wrong_user = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("admin:{PASSWORD}")
        )
    );
    for auth in [None, Some(wrong_user.as_str()), Some("Bearer contract-pw")] {
        let r = http(&s.url, "GET", "/api/info", auth, None);
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(r.json(), unauth, "{auth:?}");
        assert!(r.headers.contains("www-authenticate: basic realm=\"secure area\""), "{auth:?}");
    }
    // The web UI is open: what is not under /api answers without auth.
    assert_eq!(http(&s.url, "GET", "/global/health", None, None).status, 200);

    let (mut serve, first) = spawn_serve(&s.bin, &s.env, &s.sb.path("base"), None);
    assert!(first.starts_with("server listening on http://127.0.0.1:"), "{first:?}");
    let second = read_line(&mut serve.0);
    let pw = second.strip_prefix("server password ").expect("a password line");
    assert!(pw.len() >= 8, "{second:?}");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(serve.0.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM");
    assert!(ended_within(&mut serve.0, Duration::from_secs(10)), "SIGTERM ends the serve");
}

fn ended_within(child: &mut std::process::Child, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if child.try_wait().expect("try_wait").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

fn not_found(id: &str) -> Value {
    json!({"_tag": "SessionNotFoundError", "sessionID": id,
           "message": format!("Session not found: {id}")})
}

/// Create, get, list, patch, delete, and the errors of unknown and empty sessions.
pub fn session_routes(s: &Subject) {
    let rules = json!([{"action": "question", "resource": "*", "effect": "deny"}]);
    let created = s.create("base", "base", rules.clone());
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("ses_") && id.len() == 30, "{id}");
    assert_eq!(created["title"], "base");
    assert_eq!(created["location"]["directory"], s.sb.path("base").to_str().expect("utf-8"));
    assert_eq!(created["permissions"], rules);
    assert!(created.get("outcome").is_none(), "no outcome before a turn: {created}");
    assert_eq!(created["tokens"]["input"], 0);
    assert_eq!(created["cost"], 0);
    assert!(created["time"]["created"].is_u64() && created["projectID"].is_string());
    assert_eq!(s.get(&id), created);

    let listed =
        s.api("GET", &format!("/api/session?directory={}", s.sb.path("base").display()), None);
    let listed = listed.json();
    assert!(listed["data"].as_array().expect("data").iter().any(|x| x["id"] == id.as_str()));
    assert!(listed["cursor"]["next"].is_string(), "{listed}");
    let empty =
        s.api("GET", &format!("/api/session?directory={}", s.sb.path("tree").display()), None);
    assert_eq!(empty.json(), json!({"data": [], "cursor": {"previous": null, "next": null}}));

    let fork = s.api("POST", &format!("/api/session/{id}/fork"), Some(json!({})));
    assert_eq!(fork.status, 400);
    assert_eq!(
        fork.json(),
        json!({"_tag": "InvalidRequestError", "message": format!("Cannot fork empty session: {id}"),
               "kind": "empty_session"})
    );
    let patch = s.api("PATCH", &format!("/api/session/{id}"), Some(json!({"title": "renamed"})));
    assert_eq!(patch.status, 204);
    assert_eq!(s.get(&id)["title"], "renamed");
    let rules = json!([{"action": "shell", "resource": "*", "effect": "deny"}]);
    let patch = s.api("PATCH", &format!("/api/session/{id}"), Some(json!({"permissions": rules})));
    assert_eq!((patch.status, patch.body.as_str()), (204, ""));
    assert_eq!(s.get(&id)["permissions"], rules, "replaced, not merged");
    assert_eq!(s.active(), json!({}));

    let unknown = "ses_db05ffffeffeKugetsuTest0001";
    for (method, path) in [
        ("GET", format!("/api/session/{unknown}")),
        ("DELETE", format!("/api/session/{unknown}")),
        ("POST", format!("/api/session/{unknown}/fork")),
        ("POST", format!("/api/session/{unknown}/interrupt")),
    ] {
        let r = s.api(method, &path, Some(json!({})));
        assert_eq!((r.status, r.json()), (404, not_found(unknown)), "{method} {path}");
    }
    let r = s.api("POST", &format!("/api/session/{unknown}/move"), Some(json!({"directory": "/"})));
    assert_eq!((r.status, r.json()), (404, not_found(unknown)));

    assert_eq!(s.api("DELETE", &format!("/api/session/{id}"), None).status, 204);
    let gone = s.api("GET", &format!("/api/session/{id}"), None);
    assert_eq!((gone.status, gone.json()), (404, not_found(&id)));
}

/// A turn through `run --server`: events of the 2.x shapes, the outcome read from the session;
/// a fork keeps history and permissions in the base's directory, and after a move its next
/// turn runs (and writes) in the new directory.
pub fn turn_fork_move(s: &Subject) {
    let rules = json!([{"action": "question", "resource": "*", "effect": "deny"}]);
    let base = s.create("base", "base", rules.clone())["id"].as_str().expect("id").to_owned();
    let out = s.run("elsewhere", &base, Turn::Plain, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let evs = events(&out);
    assert!(evs.iter().any(|e| e["type"] == "text"), "{evs:?}");
    for e in &evs {
        assert_eq!(e["sessionID"], base.as_str(), "{e}");
        assert!(e["timestamp"].is_u64(), "{e}");
        let kind = e["type"].as_str().expect("type");
        assert!(["step_start", "text", "tool_use", "step_finish"].contains(&kind), "{e}");
        if kind == "step_finish" {
            assert!(e["part"]["tokens"].get("total").is_none(), "no tokens.total: {e}");
        }
    }
    let after = s.get(&base);
    assert_eq!(after["outcome"], "succeeded", "{after}");
    assert!(after["tokens"]["input"].as_u64().expect("input") > 0, "{after}");

    let fork = s.api("POST", &format!("/api/session/{base}/fork"), Some(json!({})));
    assert_eq!(fork.status, 200, "{}", fork.body);
    let fork = fork.json()["data"].clone();
    let f = fork["id"].as_str().expect("id").to_owned();
    assert_eq!(fork["title"], "base (fork #1)");
    assert_eq!(fork["permissions"], rules);
    assert_eq!(fork["fork"]["sessionID"], base.as_str());
    assert_eq!(fork["location"]["directory"], s.sb.path("base").to_str().expect("utf-8"));
    assert!(fork.get("parentID").is_none(), "a top-level session: {fork}");
    let history = s.api("GET", &format!("/api/session/{f}/message"), None).json();
    let prompt = s.prompt(Turn::Plain);
    assert!(
        history["data"].as_array().expect("messages").iter().any(|m| m["type"] == "user"
            && m["text"].as_str().is_some_and(|t| t.contains(&prompt))),
        "the fork holds the base's history: {history}"
    );

    let tree = s.sb.path("tree");
    let moved = s.api("POST", &format!("/api/session/{f}/move"), Some(json!({"directory": tree})));
    assert_eq!((moved.status, moved.body.as_str()), (204, ""));
    assert_eq!(s.get(&f)["location"]["directory"], tree.to_str().expect("utf-8"));
    let out = s.run("elsewhere", &f, Turn::Write("moved.txt"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(tree.join("moved.txt").exists(), "written in the moved-to directory");
    assert!(!s.sb.path("base").join("moved.txt").exists());
    assert!(!s.sb.path("elsewhere").join("moved.txt").exists());
    let tool = events(&out).into_iter().find(|e| e["type"] == "tool_use").expect("a tool_use");
    assert_eq!(tool["part"]["tool"], "write", "{tool}");
    assert_eq!(tool["part"]["state"]["status"], "completed", "{tool}");
    assert!(tool["part"]["partID"].is_string() && tool["part"]["id"].is_string(), "{tool}");
    assert_eq!(s.get(&f)["outcome"], "succeeded");
}

/// A session's tool sees the serve's environment, not the client's, until
/// `PUT /api/session/ID/environment` gives it exactly its variables (nothing else).
pub fn tool_environment(s: &Subject) {
    let id = s.create("env", "base", json!([]))["id"].as_str().expect("id").to_owned();
    let var = "KUGETSU_CONTRACT_VALUE";
    let tool_output = |out: &std::process::Output| {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let tool = events(out).into_iter().find(|e| e["type"] == "tool_use").expect("a tool_use");
        assert_eq!(tool["part"]["tool"], "shell", "{tool}");
        tool["part"]["state"]["output"].as_str().expect("output").trim().to_owned()
    };
    let serve_state = s.sb.path("state");
    let out =
        s.run("elsewhere", &id, Turn::Echo(var), &[(var, "client"), ("XDG_STATE_HOME", "/c")]);
    assert_eq!(tool_output(&out), format!("{var}= XDG_STATE_HOME={}", serve_state.display()));

    let vars = json!({"variables": {var: "given"}});
    let put = s.api("PUT", &format!("/api/session/{id}/environment"), Some(vars.clone()));
    assert_eq!((put.status, put.body.as_str()), (204, ""));
    let out = s.run("elsewhere", &id, Turn::Echo(var), &[(var, "client")]);
    assert_eq!(tool_output(&out), format!("{var}=given XDG_STATE_HOME="));
    let unknown = "ses_db05ffffeffeKugetsuTest0003";
    let r = s.api("PUT", &format!("/api/session/{unknown}/environment"), Some(vars));
    assert_eq!((r.status, r.json()), (404, not_found(unknown)));
}

/// SIGTERM of the client exits 130 and leaves the turn running in the serve until
/// `POST /interrupt`, which records the session as interrupted.
pub fn sigterm_leaves_the_turn_until_interrupt(s: &Subject) {
    let id = s.create("stall", "base", json!([]))["id"].as_str().expect("id").to_owned();
    let prompt = s.prompt(Turn::Stall);
    let client = s.spawn_run("elsewhere", &id, &prompt, &[]);
    s.wait_for("the turn is active", |s| s.active().get(&id).is_some());
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(client.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM");
    let out = client.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130));
    assert!(out.stdout.is_empty(), "a stalled provider prints nothing: {}", text(&out.stdout));
    assert_eq!(s.active()[&id], json!({"type": "running"}), "still running in the serve");
    let r = s.api("POST", &format!("/api/session/{id}/interrupt"), Some(json!({})));
    assert_eq!((r.status, r.json()), (200, json!({"interrupted": true})));
    s.wait_for("the turn is over", |s| s.active().get(&id).is_none());
    s.wait_for("the outcome is recorded", |s| s.get(&id)["outcome"] == "interrupted");
    let again = s.api("POST", &format!("/api/session/{id}/interrupt"), Some(json!({})));
    assert_eq!(again.json(), json!({"interrupted": false}));

    // SIGINT: exit 130 too. The real one usually interrupts the turn in the serve, not always
    // (see `v2_contract.rs`); on both, `/interrupt` ends it at the latest.
    let prompt = s.prompt(Turn::Stall);
    let client = s.spawn_run("elsewhere", &id, &prompt, &[]);
    s.wait_for("the turn is active", |s| s.active().get(&id).is_some());
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(client.id() as i32).expect("pid"),
        rustix::process::Signal::INT,
    )
    .expect("SIGINT");
    assert_eq!(client.wait_with_output().expect("wait").status.code(), Some(130));
    let r = s.api("POST", &format!("/api/session/{id}/interrupt"), Some(json!({})));
    assert!(r.json()["interrupted"].is_boolean(), "{}", r.body);
    s.wait_for("the turn is over", |s| s.active().get(&id).is_none());
    s.wait_for("the outcome is recorded", |s| s.get(&id)["outcome"] == "interrupted");
}

/// `/interrupt` of a turn whose client is still attached: the client prints an `aborted`
/// error and exits 1 (the real one, interrupted right as the turn starts, may instead end
/// silently with 0: see `v2_contract.rs`).
pub fn interrupt_ends_an_attached_client(s: &Subject) {
    let id = s.create("stall", "base", json!([]))["id"].as_str().expect("id").to_owned();
    let prompt = s.prompt(Turn::Stall);
    let client = s.spawn_run("elsewhere", &id, &prompt, &[]);
    s.wait_for("the turn is active", |s| s.active().get(&id).is_some());
    let r = s.api("POST", &format!("/api/session/{id}/interrupt"), Some(json!({})));
    assert_eq!(r.json(), json!({"interrupted": true}));
    let out = client.wait_with_output().expect("wait");
    let said = format!("stdout {} stderr {}", text(&out.stdout), text(&out.stderr));
    let evs = events(&out);
    match out.status.code() {
        Some(1) => {
            let last = evs.last().expect("an error line");
            assert_eq!(last["type"], "error", "{said}");
            assert_eq!(last["sessionID"], id.as_str());
            assert_eq!(last["error"], json!({"type": "aborted", "message": "Step interrupted"}));
        }
        Some(0) if !s.fake => assert!(evs.iter().all(|e| e["type"] != "text"), "{said}"),
        other => panic!("exit {other:?}: {said}"),
    }
    s.wait_for("the outcome is recorded", |s| s.get(&id)["outcome"] == "interrupted");
}

/// An `ask` in `run` is auto-rejected: stderr says so, the tool ends in error, exit 0; a `deny`
/// rule removes the tool instead.
pub fn permission_ask_is_rejected(s: &Subject) {
    let ask = json!([{"action": "shell", "resource": "*", "effect": "ask"}]);
    let id = s.create("ask", "base", ask)["id"].as_str().expect("id").to_owned();
    let out = s.run("elsewhere", &id, Turn::Ask, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("permission requested: shell (echo ran); auto-rejecting"),
        "{}",
        text(&out.stderr)
    );
    let tool = events(&out).into_iter().find(|e| e["type"] == "tool_use").expect("a tool_use");
    assert_eq!(tool["part"]["state"]["status"], "error", "{tool}");
    assert_eq!(tool["part"]["state"]["error"], REJECTED, "{tool}");
    assert_eq!(s.get(&id)["outcome"], "succeeded");

    // A `deny` removes the tool: no ask, and the call names no such tool.
    let deny = json!([{"action": "shell", "resource": "*", "effect": "deny"}]);
    let id = s.create("deny", "base", deny)["id"].as_str().expect("id").to_owned();
    let out = s.run("elsewhere", &id, Turn::Ask, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("permission requested"), "{}", text(&out.stderr));
    let tool = events(&out).into_iter().find(|e| e["type"] == "tool_use").expect("a tool_use");
    assert_eq!(tool["part"]["state"]["status"], "error", "{tool}");
    let no_tool = "No tool named \"shell\" is currently available. Please use a tool from the \
                   available tool list.";
    assert_eq!(tool["part"]["state"]["error"], no_tool, "{tool}");
}

/// A turn driven over HTTP: `prompt` answers at once, `wait` once idle; an ask waits for its
/// reply (`permission`, `permission/PER/reply`), which the tool call then shows.
pub fn http_turn_and_permission_reply(s: &Subject) {
    let ask = json!([{"action": "shell", "resource": "*", "effect": "ask"}]);
    let id = s.create("http", "base", ask)["id"].as_str().expect("id").to_owned();
    let prompt = s.prompt(Turn::Plain);
    let r = s.api("POST", &format!("/api/session/{id}/prompt"), Some(json!({"text": prompt})));
    assert_eq!(r.status, 200, "{}", r.body);
    let data = r.json()["data"].clone();
    assert!(data["id"].as_str().is_some_and(|m| m.starts_with("msg_")), "{data}");
    assert_eq!(data["sessionID"], id.as_str());
    assert_eq!(data["type"], "user");
    assert_eq!(data["payload"], json!({"text": prompt}));
    assert_eq!(data["delivery"], "steer");
    let wait = format!("/api/experimental/session/{id}/wait");
    let w = s.api("POST", &wait, Some(json!({})));
    assert_eq!((w.status, w.body.as_str()), (204, ""));
    assert_eq!(s.get(&id)["outcome"], "succeeded");

    let tool_states = |s: &Subject| -> Vec<Value> {
        let messages = s.api("GET", &format!("/api/session/{id}/message"), None).json();
        let all = messages["data"].as_array().cloned().unwrap_or_default();
        all.iter()
            .filter(|m| m["type"] == "assistant")
            .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
            .filter(|c| c["type"] == "tool")
            .map(|c| c["state"].clone())
            .collect()
    };
    for (decision, expect) in [
        (
            "reject",
            json!({"status": "error", "input": {"command": "echo ran"},
                          "error": {"type": "permission.rejected", "message": "no"}}),
        ),
        (
            "once",
            json!({"status": "completed", "input": {"command": "echo ran"},
                        "content": [{"type": "text", "text": "ran\n"}]}),
        ),
    ] {
        let prompt = s.prompt(Turn::Ask);
        let r = s.api("POST", &format!("/api/session/{id}/prompt"), Some(json!({"text": prompt})));
        assert_eq!(r.status, 200, "{}", r.body);
        let list = format!("/api/session/{id}/permission");
        s.wait_for("the ask", |s| s.api("GET", &list, None).json()["data"][0].is_object());
        let asked = s.api("GET", &list, None).json()["data"][0].clone();
        let per = asked["id"].as_str().expect("id").to_owned();
        assert!(per.starts_with("per_"), "{asked}");
        assert_eq!(asked["sessionID"], id.as_str());
        assert_eq!(asked["action"], "shell");
        assert_eq!(asked["resources"], json!(["echo ran"]));
        assert_eq!(asked["save"], json!(["echo *"]));
        assert_eq!(s.active()[&id], json!({"type": "running"}), "the turn waits");
        let body = json!({"decision": decision, "message": "no"});
        let body = if decision == "reject" { body } else { json!({"decision": decision}) };
        let r = s.api("POST", &format!("{list}/{per}/reply"), Some(body));
        assert_eq!((r.status, r.body.as_str()), (204, ""));
        assert_eq!(s.api("POST", &wait, Some(json!({}))).status, 204);
        assert_eq!(s.api("GET", &list, None).json(), json!({"data": []}));
        let states = tool_states(s);
        assert!(
            states.iter().any(|st| st.get("status") == expect.get("status")
                && st["input"] == expect["input"]
                && st.get("error") == expect.get("error")
                && st.get("content") == expect.get("content")),
            "{decision}: {states:?}"
        );
    }
    let per = "per_nonexistent";
    let r = s.api(
        "POST",
        &format!("/api/session/{id}/permission/{per}/reply"),
        Some(json!({"decision": "once"})),
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        json!({"_tag": "PermissionNotFoundError", "requestID": per,
               "message": format!("Permission request not found: {per}")})
    );
    let unknown = "ses_db05ffffeffeKugetsuTest0004";
    for path in [
        format!("/api/experimental/session/{unknown}/wait"),
        format!("/api/session/{unknown}/prompt"),
    ] {
        let r = s.api("POST", &path, Some(json!({"text": "hi"})));
        assert_eq!((r.status, r.json()), (404, not_found(unknown)), "{path}");
    }
}

/// A provider error: one `error` line of the 2.x shape, exit 1, the session `failed`.
pub fn provider_error(s: &Subject) {
    let id = s.create("fail", "base", json!([]))["id"].as_str().expect("id").to_owned();
    let out = s.run("elsewhere", &id, Turn::Fail, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let error = events(&out).into_iter().find(|e| e["type"] == "error").expect("an error line");
    assert_eq!(error["sessionID"], id.as_str(), "{error}");
    assert_eq!(error["error"]["type"], "provider.invalid-request", "{error}");
    assert_eq!(error["error"]["message"], "mock bad request", "{error}");
    assert_eq!(error["error"]["status"], 400, "{error}");
    s.wait_for("the outcome is recorded", |s| s.get(&id)["outcome"] == "failed");
}

/// `run -s BASE --fork` makes the fork (its id on every event) but leaves it, and its turn,
/// in the base's directory, whatever directory it is run from.
pub fn run_fork_stays_in_the_base_directory(s: &Subject) {
    let base = s.create("base", "base", json!([]))["id"].as_str().expect("id").to_owned();
    assert_eq!(s.run("base", &base, Turn::Plain, &[]).status.code(), Some(0));
    let prompt = s.prompt(Turn::Write("forked.txt"));
    let out = s
        .spawn_client("tree", &["-s", &base, "--fork"], &prompt, &[])
        .wait_with_output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let evs = events(&out);
    let fork = evs[0]["sessionID"].as_str().expect("id").to_owned();
    assert_ne!(fork, base);
    assert!(evs.iter().all(|e| e["sessionID"] == fork.as_str()), "{evs:?}");
    let f = s.get(&fork);
    assert_eq!(f["title"], "base (fork #1)");
    assert_eq!(f["location"]["directory"], s.sb.path("base").to_str().expect("utf-8"));
    assert!(s.sb.path("base").join("forked.txt").exists(), "the turn ran in the base's directory");
    assert!(!s.sb.path("tree").join("forked.txt").exists());
}

/// What `run --server` refuses, and the id it does not refuse: an unknown well-formed `-s`
/// makes a session with that id in the caller's directory.
pub fn client_refusals(s: &Subject) {
    let out = s
        .command("elsewhere", &["run", "--server", &s.url, "--format", "json", "hi"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let want = format!("Error: Server at {} requires a password; set OPENCODE_PASSWORD", s.url);
    assert!(text(&out.stderr).contains(&want), "{}", text(&out.stderr));

    for (args, message) in [
        (
            &["-s", "notases", "hi"][..],
            "Expected a string starting with \"ses\"\n  at [\"sessionID\"]",
        ),
        (&["--fork", "hi"][..], "--fork requires --continue or --session"),
        (&["-s", "ses_db05ffffeffeKugetsuTest0009"][..], "You must provide a message"),
    ] {
        let mut c = s.command("elsewhere", &["run", "--server", &s.url, "--format", "json"]);
        let out = c.args(args).env("OPENCODE_PASSWORD", PASSWORD).output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let line: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
        assert_eq!(line["type"], "error", "{args:?}");
        assert_eq!(line["sessionID"], "", "{args:?}");
        assert_eq!(line["error"], json!({"type": "unknown", "message": message}), "{args:?}");
    }

    let id = "ses_db05ffffeffeKugetsuTest0002";
    let out = s.run("elsewhere", id, Turn::Plain, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let made = s.get(id);
    assert_eq!(made["location"]["directory"], s.sb.path("elsewhere").to_str().expect("utf-8"));
}

/// A session `run` makes lives in the caller's `PWD` when it is set, else in its cwd.
pub fn new_session_directory_is_pwd(s: &Subject) {
    for (id, pwd, expect) in [
        ("ses_db05ffffeffeKugetsuTest0005", Some("tree"), "tree"),
        ("ses_db05ffffeffeKugetsuTest0006", None, "elsewhere"),
    ] {
        let prompt = s.prompt(Turn::Plain);
        let mut c =
            s.command("elsewhere", &["run", "--server", &s.url, "-s", id, "--format", "json"]);
        match pwd {
            Some(dir) => c.env("PWD", s.sb.path(dir)),
            None => c.env_remove("PWD"),
        };
        let mut child =
            c.env("OPENCODE_PASSWORD", PASSWORD).stdin(Stdio::piped()).spawn().expect("run");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), prompt.as_bytes())
            .expect("prompt");
        let out = child.wait_with_output().expect("run");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let dir = s.get(id)["location"]["directory"].clone();
        assert_eq!(dir, s.sb.path(expect).to_str().expect("utf-8"), "PWD {pwd:?}");
    }
}

/// `run --standalone` runs the turn with a private server on the same data, and starts no
/// background service.
pub fn standalone_run_starts_no_service(s: &Subject) {
    let prompt = s.prompt(Turn::Write("alone.txt"));
    let mut child = s
        .command("tree", &["run", "--standalone", "--format", "json", "--title", "alone"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), prompt.as_bytes())
        .expect("prompt");
    let out = child.wait_with_output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(s.sb.path("tree").join("alone.txt").exists());
    let id = events(&out)[0]["sessionID"].as_str().expect("id").to_owned();
    let made = s.get(&id);
    assert_eq!(made["title"], "alone");
    assert_eq!(made["location"]["directory"], s.sb.path("tree").to_str().expect("utf-8"));
    assert_eq!(made["outcome"], "succeeded");
    assert!(!s.sb.path("state").join("opencode/service.json").exists(), "no service");
}

/// `db`, the top-level `export`/`import`, and `run --dir` are gone in 2.x.
pub fn gone_commands(s: &Subject) {
    for (args, reason) in [
        (&["db", "SELECT 1"][..], "Unexpected positional argument: \"SELECT 1\""),
        (&["export", "ses_x"][..], "Unexpected positional argument: \"ses_x\""),
        (&["import", "file.json"][..], "Unexpected positional argument: \"file.json\""),
        (&["run", "--dir", "/tmp", "hi"][..], "Unrecognized flag: --dir in command opencode run"),
    ] {
        let out = s.command("elsewhere", args).stdin(Stdio::null()).output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(text(&out.stdout).contains("USAGE"), "{args:?}: the help on stdout");
        assert!(
            text(&out.stderr).contains(&format!("ERROR\n  {reason}")),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// A data directory a 1.x opencode made: a 2.x serve started on it afterwards shows the 1.x
/// session, in its directory, with its history but without its permission rules, and
/// continues it.
pub fn v1_sessions_continue_under_2x(s: &Subject) {
    let Some(v1) = s.v1() else { return };
    let data = s.sb.path("data-v1");
    std::fs::create_dir_all(&data).expect("data dir");
    let out = std::process::Command::new(&v1)
        .args(["run", "--format", "json", "--title", "old", "from 1.x"])
        .current_dir(s.sb.path("base"))
        .env_clear()
        .envs(s.env.iter().map(|(k, v)| (k, v)))
        .env_remove("FAKE_OPENCODE_VERSION")
        .env("XDG_DATA_HOME", &data)
        .env("PWD", s.sb.path("base"))
        .stdin(Stdio::null())
        .output()
        .expect("1.x run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first: Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().expect("line"))
            .expect("json");
    let id = first["sessionID"].as_str().expect("id").to_owned();

    let mut env = s.env.clone();
    env.push(("XDG_DATA_HOME".into(), data.clone().into()));
    let (serve, line) = spawn_serve(&s.bin, &env, &s.sb.path("base"), Some(PASSWORD));
    let url = line.strip_prefix("server listening on ").expect("url").to_owned();
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("opencode:{PASSWORD}")
        )
    );
    let api =
        |method: &str, path: &str, body: Option<Value>| http(&url, method, path, Some(&auth), body);
    let got = api("GET", &format!("/api/session/{id}"), None);
    assert_eq!(got.status, 200, "{}", got.body);
    let session = got.json()["data"].clone();
    assert_eq!(session["title"], "old", "{session}");
    assert_eq!(session["location"]["directory"], s.sb.path("base").to_str().expect("utf-8"));
    // The 1.x rules (deny `question`, `plan_enter`, `plan_exit`) are not migrated.
    assert!(session.get("permissions").is_none(), "{session}");
    assert!(session.get("outcome").is_none(), "{session}");
    let history = api("GET", &format!("/api/session/{id}/message"), None).json();
    let messages = history["data"].as_array().cloned().unwrap_or_default();
    assert!(
        messages
            .iter()
            .any(|m| m["type"] == "user"
                && m["text"].as_str().is_some_and(|t| t.contains("from 1.x"))),
        "{history}"
    );
    assert!(messages.iter().any(|m| m["type"] == "assistant"), "{history}");
    let fork = api("POST", &format!("/api/session/{id}/fork"), Some(json!({})));
    assert_eq!(fork.status, 200, "a 1.x history is not empty: {}", fork.body);
    let prompt = s.prompt(Turn::Plain);
    let mut client = std::process::Command::new(&s.bin)
        .args(["run", "--server", &url, "-s", &id, "--format", "json"])
        .current_dir(s.sb.path("elsewhere"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PWD", s.sb.path("elsewhere"))
        .env("OPENCODE_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    std::io::Write::write_all(&mut client.stdin.take().expect("stdin"), prompt.as_bytes())
        .expect("prompt");
    let out = client.wait_with_output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let after = api("GET", &format!("/api/session/{id}"), None).json();
    assert_eq!(after["data"]["outcome"], "succeeded", "{after}");
    drop(serve);
}

/// A session exported from one data directory and imported into another (a second serve, as on
/// another host) keeps its history and permission rules, lands in the requested directory and
/// continues there. An id the target has already is refused (409), as is a message id it has
/// already (a server error), and an export without `info.location` (what 1.x exports).
pub fn export_import_on_another_data_dir(s: &Subject) {
    let (base, rules) = base_after_a_turn(s, "moving");
    let first_prompt = s.prompt(Turn::Plain);
    let exported = s.api("GET", &format!("/api/experimental/session/{base}/export"), None);
    assert_eq!(exported.status, 200, "{}", exported.body);
    let doc = exported.json()["data"].clone();
    assert_eq!(doc["info"]["id"], base.as_str(), "{doc}");
    assert_eq!(doc["info"]["permissions"], rules, "{doc}");
    let has_prompt = |messages: &Value| {
        messages.as_array().expect("messages").iter().any(|m| {
            m["type"] == "user" && m["text"].as_str().is_some_and(|t| t.contains(&first_prompt))
        })
    };
    assert!(has_prompt(&doc["messages"]), "{doc}");
    let missing = "ses_0000000000000000000000000a";
    let none = s.api("GET", &format!("/api/experimental/session/{missing}/export"), None);
    assert_eq!((none.status, none.json()), (404, not_found(missing)));

    let mut env = s.env.clone();
    env.push(("XDG_DATA_HOME".into(), s.sb.path("data-b").into()));
    std::fs::create_dir_all(s.sb.path("data-b")).expect("data dir");
    let (serve, line) = spawn_serve(&s.bin, &env, &s.sb.path("base"), Some(PASSWORD));
    let url = line.strip_prefix("server listening on ").expect("url").to_owned();
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("opencode:{PASSWORD}")
        )
    );
    let api =
        |method: &str, path: &str, body: Option<Value>| http(&url, method, path, Some(&auth), body);
    let tree = s.sb.path("tree");
    let body = json!({"info": doc["info"], "messages": doc["messages"],
                      "location": {"directory": tree}});
    let made = api("POST", "/api/experimental/session/import", Some(body.clone()));
    assert_eq!(made.status, 200, "{}", made.body);
    let made = made.json()["data"].clone();
    assert_eq!(made["id"], base.as_str(), "{made}");
    assert_eq!(made["title"], "moving", "{made}");
    assert_eq!(made["permissions"], rules, "{made}");
    assert_eq!(made["location"]["directory"], tree.to_str().expect("utf-8"), "{made}");
    let history = api("GET", &format!("/api/session/{base}/message"), None).json();
    assert!(has_prompt(&history["data"]), "{history}");

    let again = api("POST", "/api/experimental/session/import", Some(body.clone()));
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.json()["message"], format!("Session already exists: {base}"));
    let mut same_messages = body.clone();
    same_messages["info"]["id"] = json!("ses_0000000000001111111111111a");
    let clash = api("POST", "/api/experimental/session/import", Some(same_messages));
    assert_eq!(clash.status, 500, "{}", clash.body);
    let mut v1 = body.clone();
    v1["info"]["id"] = json!("ses_0000000000002222222222222a");
    v1["info"].as_object_mut().expect("info").remove("location");
    let refused = api("POST", "/api/experimental/session/import", Some(v1));
    assert_eq!(refused.status, 400, "{}", refused.body);

    let prompt = s.prompt(Turn::Write("imported.txt"));
    let mut client = std::process::Command::new(&s.bin)
        .args(["run", "--server", &url, "-s", &base, "--format", "json"])
        .current_dir(s.sb.path("elsewhere"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PWD", s.sb.path("elsewhere"))
        .env("OPENCODE_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    std::io::Write::write_all(&mut client.stdin.take().expect("stdin"), prompt.as_bytes())
        .expect("prompt");
    let out = client.wait_with_output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(tree.join("imported.txt").exists(), "the turn ran in the import's directory");
    let after = api("GET", &format!("/api/session/{base}"), None).json();
    assert_eq!(after["data"]["outcome"], "succeeded", "{after}");
    let history = api("GET", &format!("/api/session/{base}/message"), None).json();
    assert!(has_prompt(&history["data"]), "the old turn is still there: {history}");
    drop(serve);
}

/// The base's export imported on its own serve with fresh ids into another directory is a
/// fork made without the serve loading the base's directory (what the driver does on a serve
/// it has just started): the title, rules and zero usage given, the base's history, tools run
/// in the new directory, the base untouched. `GET /api/location` loads a directory; a missing
/// one is 404.
pub fn import_is_a_fork_on_the_same_serve(s: &Subject) {
    let (base, rules) = base_after_a_turn(s, "base");
    let first_prompt = s.prompt(Turn::Plain);
    let messages = |id: &str| {
        let listed = s.api("GET", &format!("/api/session/{id}/message"), None).json();
        listed["data"].as_array().expect("messages").clone()
    };
    let base_messages = messages(&base);
    let doc = s.api("GET", &format!("/api/experimental/session/{base}/export"), None).json();
    // Fresh ids: the same time part (so the same order), another random part.
    let mut text_doc = doc["data"].to_string();
    let mut n = 0;
    for prefix in ["ses_", "msg_"] {
        let mut at = 0;
        while let Some(i) = text_doc[at..].find(prefix).map(|i| at + i) {
            let id = &text_doc[i..(i + 30).min(text_doc.len())];
            if id.len() == 30 && id[4..].bytes().all(|b| b.is_ascii_alphanumeric()) {
                n += 1;
                let fresh = format!("{}Fresh{n:09}", &id[..16]);
                text_doc = text_doc.replace(&id.to_owned(), &fresh);
            }
            at = i + 4;
        }
    }
    let mut doc: Value = serde_json::from_str(&text_doc).expect("json");
    let id = doc["info"]["id"].as_str().expect("id").to_owned();
    assert_ne!(id, base);
    let info = doc["info"].as_object_mut().expect("info");
    info.remove("fork");
    info.insert("title".into(), json!("issue"));
    info.insert("cost".into(), json!(0));
    info.insert(
        "tokens".into(),
        json!({"input": 0, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}}),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    info.insert("time".into(), json!({"created": now, "updated": now}));
    let tree = s.sb.path("tree");
    let body = json!({"info": doc["info"], "messages": doc["messages"],
                      "location": {"directory": tree}});
    let made = s.api("POST", "/api/experimental/session/import", Some(body));
    assert_eq!(made.status, 200, "{}", made.body);
    let made = made.json()["data"].clone();
    assert_eq!(made["id"], id.as_str(), "{made}");
    assert_eq!(made["title"], "issue", "{made}");
    assert_eq!(made["permissions"], rules, "{made}");
    assert_eq!(made["location"]["directory"], tree.to_str().expect("utf-8"), "{made}");
    assert_eq!(made["tokens"]["input"], 0, "{made}");
    assert_eq!(made["time"]["created"], now, "{made}");
    assert_eq!(messages(&id).len(), base_messages.len(), "the base's history");
    assert!(
        messages(&id).iter().any(|m| m["type"] == "user"
            && m["text"].as_str().is_some_and(|t| t.contains(&first_prompt))),
        "the import holds the base's prompt"
    );

    let location = |dir: &Path| {
        let q = dir.to_str().expect("utf-8").replace('/', "%2F");
        s.api("GET", &format!("/api/location?location%5Bdirectory%5D={q}"), None)
    };
    let loaded = location(&tree);
    assert_eq!(loaded.status, 200, "{}", loaded.body);
    assert_eq!(loaded.json()["directory"], tree.to_str().expect("utf-8"), "{}", loaded.body);
    let missing = location(&s.sb.path("no-such-dir"));
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(missing.json()["_tag"], "LocationNotFoundError", "{}", missing.body);

    let out = s.run("elsewhere", &id, Turn::Write("imported.txt"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(tree.join("imported.txt").exists(), "written in the import's directory");
    assert!(!s.sb.path("base").join("imported.txt").exists());
    assert_eq!(s.get(&id)["outcome"], "succeeded");
    assert_eq!(messages(&base).len(), base_messages.len(), "the base is untouched");
}

/// A session titled `title` in `base` with the deny rules and one plain turn run from
/// elsewhere: its id and rules.
fn base_after_a_turn(s: &Subject, title: &str) -> (String, Value) {
    let rules = json!([{"action": "question", "resource": "*", "effect": "deny"}]);
    let base = s.create(title, "base", rules.clone())["id"].as_str().expect("id").to_owned();
    let out = s.run("elsewhere", &base, Turn::Plain, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    (base, rules)
}
