//! `kugetsu dashboard` end to end, against the bundled fake agent: the token, every read
//! (the same JSON as the matching command), the event streams, every action, the log names a
//! URL may hold, and a secret from the env files that must appear nowhere.

#![allow(clippy::unwrap_used)]

use crate::{dashboard_support, support};

use std::process::Stdio;

use dashboard_support::Dashboard;
use serde_json::{Value, json};
use support::{Env, json, ready, wait_exit, wait_for};

const SESSION_FILE: &str = "sessions/local.test-demo-app-1.json";

fn session(env: &Env) -> Value {
    json(&std::fs::read_to_string(env.path(SESSION_FILE)).unwrap())
}

/// The next agent turn hangs until stopped; later ones write WORK.md.
fn next_turn_hangs(env: &Env) {
    std::fs::write(
        env.tmp.path().join("script.json"),
        r#"{"turns": [{"mode": "hang", "after_output": true}],
            "default": {"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "wrote WORK.md"}}"#,
    )
    .unwrap();
}

#[test]
fn every_request_needs_the_token_and_a_change_needs_the_header() {
    let env = Env::new();
    let d = Dashboard::start(&env);
    let token_file = env.path("dashboard.token");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the token is private");
    assert_eq!(support::read(&token_file).trim(), d.token);
    let url = |p: &str| format!("{}{p}", d.base);
    for path in [
        "/fragment",
        "/api/sessions",
        "/api/queue",
        "/api/notifications",
        "/api/status",
        "/api/events",
        "/api/logs",
        "/nothing/here",
    ] {
        let r = d.http.get(url(path)).send().unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} without a token");
        assert_eq!(r.text().unwrap(), "", "{path}: a 401 says nothing else");
        let r = d.http.get(url(path)).bearer_auth("0".repeat(64)).send().unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} with a wrong token");
        let r = d.http.get(url(&format!("{path}?token=nope"))).send().unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} with a wrong token in the URL");
    }
    let delegate = json!({"message": "do it"});
    for (how, req) in [
        ("nothing", d.http.post(url("/api/delegate"))),
        (
            "a cookie alone",
            d.http
                .post(url("/api/delegate"))
                .header("cookie", format!("kugetsu_token={}", d.token)),
        ),
        ("the URL", d.http.post(url(&format!("/api/delegate?token={}", d.token)))),
    ] {
        let r = req
            .header("content-type", "application/json")
            .body(delegate.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "a POST with {how}");
    }
    assert!(
        !env.path("queue/items").exists()
            || std::fs::read_dir(env.path("queue/items")).unwrap().next().is_none(),
        "nothing was queued"
    );
    // The printed URL lets the page in, and leaves no cookie: browsers send a cookie of
    // 127.0.0.1 to every port of it, such as an agent's dev server.
    let r = d.http.get(&d.url).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("set-cookie").is_none(), "no cookie");
    // A reload (no token: the tab keeps it) gets the page without the state, and its assets.
    for path in ["/", "/assets/app.js", "/assets/app.css"] {
        let r = d.http.get(url(path)).send().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(r.headers().get("set-cookie").is_none(), "no cookie");
    }
    let shell = d.http.get(url("/")).send().unwrap().text().unwrap();
    assert!(shell.contains("loading") && !shell.contains("<table"), "{shell}");
    // A GET never changes anything, even with the token.
    let r = d.http.get(url("/api/delegate")).bearer_auth(&d.token).send().unwrap();
    assert_eq!(r.status().as_u16(), 405);
    // A huge body is refused before it is read whole.
    let big = json!({"message": "x".repeat(1 << 20)});
    assert_eq!(d.post("/api/delegate", &big).0, 413);
}

/// DNS rebinding: a page of `evil.example`, whose name now resolves to 127.0.0.1, is
/// same-origin with whatever listens there; the dashboard answers only to its own names. And a
/// change from a page of another origin (another local server) is refused even with the token.
#[test]
fn only_its_own_host_names_reach_it_and_changes_come_from_its_own_origin() {
    let env = ready();
    assert_eq!(env.run(&["start", "#1", "first"]).code, 0);
    let d = Dashboard::start(&env);
    let port = d.base.rsplit(':').next().unwrap().to_owned();
    let get = |host: &str, path: &str| {
        let r = d
            .http
            .get(format!("{}{path}", d.base))
            .header("host", host)
            .bearer_auth(&d.token)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    for host in [format!("evil.example:{port}"), format!("127.0.0.1.nip.io:{port}")] {
        for path in ["/", "/api/sessions", "/assets/app.js"] {
            let (code, body) = get(&host, path);
            assert_eq!((code, body.as_str()), (403, ""), "{host}{path}");
        }
    }
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), "localhost:8000".into()]
    {
        assert_eq!(get(&host, "/api/sessions").0, 200, "{host}");
    }

    let post = |origin: Option<&str>| {
        let mut r = d
            .http
            .post(format!("{}/api/delegate", d.base))
            .bearer_auth(&d.token)
            .header("content-type", "application/json")
            .body(json!({"message": "plan the release"}).to_string());
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send().unwrap().status().as_u16()
    };
    for origin in ["http://127.0.0.1:5173", "http://localhost:5173", "null"] {
        assert_eq!(post(Some(origin)), 403, "{origin}");
    }
    assert!(
        !env.path("queue/items").exists()
            || std::fs::read_dir(env.path("queue/items")).unwrap().next().is_none(),
        "nothing was queued"
    );
    assert_eq!(post(Some(&d.base)), 200, "the page's own origin");
    assert_eq!(post(None), 200, "no browser");
}

#[test]
fn reads_are_the_commands_json_and_the_page_shows_the_state() {
    let env = ready();
    // Each of the turn's two model calls costs $0.125.
    std::fs::write(
        env.tmp.path().join("script.json"),
        r#"{"default": {"mode": "tool", "path": "WORK.md", "cost": 0.125, "text": "wrote WORK.md"}}"#,
    )
    .unwrap();
    assert_eq!(env.run(&["start", "#1", "first"]).code, 0);
    assert_eq!(env.run(&["delegate", "plan the release"]).code, 0);
    let d = Dashboard::start(&env);
    for (path, args) in [
        ("/api/sessions", vec!["--json", "list"]),
        ("/api/queue", vec!["--json", "queue", "list"]),
        ("/api/notifications", vec!["--json", "notify", "list"]),
        ("/api/status", vec!["--json", "status"]),
    ] {
        let (code, body) = d.get(path);
        assert_eq!(code, 200, "{path}: {body}");
        let cli = env.run(&args);
        assert_eq!(json(&body), json(&cli.stdout), "{path} is `kugetsu {}`", args.join(" "));
    }
    let (code, page) = d.get("/");
    assert_eq!(code, 200);
    for shown in [
        "local.test/demo/app#1",
        "fix/issue-1",
        "idle",
        "PM agent",
        "plan the release",
        "/assets/app.js",
        r#"<td class="cost">$0.25</td>"#,
        r#"<td class="cost" id="cost-total">$0.25</td>"#,
        r#"spent today (UTC) <b id="spent-today">$0.25</b>"#,
    ] {
        assert!(page.contains(shown), "the page shows {shown}");
    }
    assert_eq!(d.get("/assets/app.js").0, 200);
    assert_eq!(d.get("/assets/app.css").0, 200);
    let (_, logs) = d.get("/api/logs");
    let names: Vec<String> = json(&logs)
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_owned())
        .collect();
    let (_, of_issue) = d.get("/api/issue-log?ref=%231");
    let name = json(&of_issue)["log"].as_str().unwrap().to_owned();
    assert!(names.contains(&name), "{name} in {names:?}");
    let (code, text) = d.get(&format!("/api/logs/{name}"));
    assert_eq!(code, 200);
    assert!(text.contains("wrote WORK.md"), "{text}");
    let mut ev = d.stream(&format!("/api/logs/{name}/events"));
    ev.until("line", |l| l.contains("tool write"));
}

#[test]
fn log_names_and_refs_in_urls_cannot_step_outside() {
    let env = ready();
    let d = Dashboard::start(&env);
    for bad in [
        "..%2Fconfig",
        "..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "%2E%2E%2Fconfig",
        "...",
        ".hidden",
        "a%00b",
    ] {
        let (code, body) = d.get(&format!("/api/logs/{bad}"));
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(!body.contains("root:"), "{body}");
        let (code, _) = d.get(&format!("/api/logs/{bad}/events"));
        assert_eq!(code, 400, "{bad} streamed");
    }
    assert_eq!(d.get("/api/logs/20260101T000000Z-nothing.log").0, 404);
    for bad in ["..%2F..%2Fetc", "github.com%2F..%2F..%231", "%23..%2F1"] {
        let (code, body) = d.get(&format!("/api/issue-log?ref={bad}"));
        assert_eq!(code, 400, "{bad}: {body}");
    }
    let (code, body) = d.post("/api/stop", &json!({"issue_ref": "github.com/../..#1"}));
    assert_eq!(code, 400, "{body}");
    let (code, body) = d.post("/api/queue/retry", &json!({"id": "../../index"}));
    assert_eq!(code, 400, "{body}");
}

#[test]
fn a_secret_from_the_env_files_appears_nowhere() {
    let env = ready();
    let secret = "ghp_dashboardSecret42";
    assert_eq!(env.run(&["env", "set", "GITHUB_TOKEN", secret]).code, 0);
    // The agent says it, a request holds it, a failure names it.
    std::fs::write(
        env.tmp.path().join("script.json"),
        format!(r#"{{"default": {{"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "token is {secret}"}}}}"#),
    )
    .unwrap();
    assert_eq!(env.run(&["start", "#1", &format!("use {secret}")]).code, 0);
    assert_eq!(env.run(&["queue", "enqueue", "#1", &format!("push with {secret}")]).code, 0);
    let d = Dashboard::start(&env);
    let (_, delegated) =
        d.post("/api/delegate", &json!({"message": format!("\"quoted\" {secret}")}));
    let mut seen = String::new();
    for path in [
        "/",
        "/fragment",
        "/api/sessions",
        "/api/queue",
        "/api/notifications",
        "/api/status",
        "/api/logs",
    ] {
        let (code, body) = d.get(path);
        assert_eq!(code, 200, "{path}");
        seen.push_str(&body);
    }
    let (_, of_issue) = d.get("/api/issue-log?ref=%231");
    let name = json(&of_issue)["log"].as_str().unwrap().to_owned();
    seen.push_str(&d.get(&format!("/api/logs/{name}")).1);
    let mut ev = d.stream(&format!("/api/logs/{name}/events"));
    seen.push_str(&ev.until("line", |l| l.contains("token is")));
    seen.push_str(&delegated);
    assert!(!seen.contains(secret), "the secret leaked");
    assert!(!seen.contains("dashboardSecret"), "part of the secret leaked");
    assert!(d.get("/api/queue").1.contains("push with ********"), "masked as everywhere");
}

#[test]
fn the_event_stream_reports_a_turn_beginning_and_ending() {
    let env = ready();
    let d = Dashboard::start(&env);
    let mut events = d.stream("/api/events");
    assert_eq!(events.next().0, "hello");
    next_turn_hangs(&env);
    let child = env
        .command(&["start", "#1", "go"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Each change is an event; the page reads the new state after it.
    let mut saw = |state: &str| loop {
        events.until("change", |_| true);
        let (_, body) = d.get("/api/sessions");
        if body.contains(&format!("\"state\": \"{state}\"")) {
            break;
        }
    };
    saw("running");
    let (code, body) = d.post("/api/stop", &json!({"issue_ref": "#1"}));
    assert_eq!(code, 200, "{body}");
    saw("interrupted");
    let (code, _) = wait_exit(child);
    assert_eq!(code, Some(130), "start ends as an interrupted run");
}

#[test]
fn stop_records_a_foreground_turn_as_interrupted() {
    let env = ready();
    let d = Dashboard::start(&env);
    let (code, body) = d.post("/api/stop", &json!({"issue_ref": "#1"}));
    assert_eq!(code, 404, "no such session: {body}");
    assert_eq!(env.run(&["start", "#1", "first"]).code, 0);
    let (code, body) = d.post("/api/stop", &json!({"issue_ref": "#1"}));
    assert_eq!(code, 409, "an idle issue has nothing to stop: {body}");
    next_turn_hangs(&env);
    let child = env
        .command(&["continue", "#1", "go"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the turn to run", || session(&env)["agent_pid"].is_u64());
    let agent = u32::try_from(session(&env)["agent_pid"].as_u64().unwrap()).unwrap();
    let (code, body) = d.post("/api/stop", &json!({"issue_ref": "#1"}));
    assert_eq!(code, 200, "{body}");
    let (exit, stderr) = wait_exit(child);
    assert_eq!(exit, Some(130), "{stderr}");
    wait_for("the agent to be gone", || !support::alive(agent));
    let s = session(&env);
    assert_eq!(s["state"], "interrupted", "{s}");
    assert_eq!(s["last_run"]["outcome"], "interrupted", "{s}");
    assert_eq!(s["last_run"]["signal"], "a stop request", "{s}");
    assert!(!env.path("stops/local.test-demo-app-1.stop").exists(), "the request is gone");
    // Nothing is left to stop a later turn.
    assert_eq!(env.run(&["continue", "#1", "again"]).code, 0);
    assert_eq!(session(&env)["state"], "idle");
}

#[test]
fn stop_reaches_a_turn_run_by_the_queue_daemon_and_leaves_the_others() {
    let env = ready();
    assert_eq!(env.run(&["start", "#1", "first"]).code, 0);
    let d = Dashboard::start(&env);
    next_turn_hangs(&env);
    let (code, body) = d.post("/api/enqueue", &json!({"issue_ref": "#1", "message": "go on"}));
    assert_eq!(code, 200, "{body}");
    let id = json(&body)["id"].as_str().unwrap().to_owned();
    assert_eq!(env.run(&["queue-daemon", "start"]).code, 0);
    wait_for("the daemon's turn to run", || session(&env)["agent_pid"].is_u64());
    let (code, body) = d.post("/api/stop", &json!({"issue_ref": "#1"}));
    assert_eq!(code, 200, "{body}");
    wait_for("the turn to be recorded", || session(&env)["state"] == "interrupted");
    let item = || {
        let (_, q) = d.get("/api/queue");
        json(&q)["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id.as_str())
            .unwrap()
            .clone()
    };
    wait_for("the item to end", || item()["status"] == "error");
    assert!(
        item()["last_error"].as_str().unwrap().contains("stopped by a stop request"),
        "{}",
        item()
    );
    assert_eq!(env.run(&["queue-daemon", "status"]).code, 0, "the daemon runs on");
    // Retry puts it back in line; the daemon runs it again (the script now completes).
    let (code, body) = d.post("/api/queue/retry", &json!({"id": id}));
    assert_eq!(code, 200, "{body}");
    wait_for("the retried item to complete", || item()["status"] == "completed");
    assert_eq!(session(&env)["state"], "idle");
    let (code, _) = d.post("/api/queue/retry", &json!({"id": id}));
    assert_eq!(code, 409, "only failed items are retried");
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
}

#[test]
fn actions_do_what_their_commands_do() {
    let env = ready();
    assert_eq!(env.run(&["start", "#1", "first"]).code, 0);
    let d = Dashboard::start(&env);
    let (code, body) = d.post("/api/delegate", &json!({"message": "triage the backlog"}));
    assert_eq!(code, 200, "{body}");
    let delegated = json(&body);
    assert_eq!(delegated["daemon_running"], false);
    let (code, body) = d.post("/api/enqueue", &json!({"issue_ref": "#2", "message": "fix it"}));
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["issue_ref"], "local.test/demo/app#2");
    let list = json(&env.run(&["--json", "queue", "list"]).stdout);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], delegated["queued"]);
    assert!(items.iter().all(|i| i["status"] == "pending"));
    for bad in [json!({"message": ""}), json!({"message": "-"}), json!({"nothing": 1})] {
        let (code, _) = d.post("/api/delegate", &bad);
        assert!(code == 400 || code == 422, "{bad}: {code}");
    }
    // Continue runs the issue's next turn in the background, as `continue --detach` does.
    let before = session(&env)["last_run"]["finished_at"].clone();
    let (code, body) = d.post("/api/continue", &json!({"issue_ref": "#1", "message": "more"}));
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["detached"], true);
    wait_for("the continued turn", || {
        let s = session(&env);
        s["state"] == "idle" && s["last_run"]["finished_at"] != before
    });
    let (code, _) = d.post("/api/continue", &json!({"issue_ref": "#9", "message": "more"}));
    assert_eq!(code, 404);
    // Clear removes finished items older than QUEUE_CLEANUP_AGE_DAYS, as `queue clear` does.
    let id = items[1]["id"].as_str().unwrap();
    let item_path = env.path(&format!("queue/items/{id}.json"));
    let mut item = json(&std::fs::read_to_string(&item_path).unwrap());
    item["status"] = "error".into();
    item["last_error"] = "boom".into();
    std::fs::write(&item_path, item.to_string()).unwrap();
    let (code, body) = d.post("/api/queue/clear", &json!({}));
    assert_eq!((code, json(&body)["removed"].clone()), (200, json!(0)), "too young to clear");
    std::fs::write(
        env.path("config"),
        format!("{}QUEUE_CLEANUP_AGE_DAYS=0\n", support::read(&env.path("config"))),
    )
    .unwrap();
    let (code, body) = d.post("/api/queue/clear", &json!({}));
    assert_eq!((code, json(&body)["removed"].clone()), (200, json!(1)), "{body}");
    let list = json(&d.get("/api/queue").1);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

/// A refused change gets its 401 or 403, never a reset connection, however much of its body
/// the client still has to write: the dashboard reads the body (up to the largest it accepts)
/// before refusing.
#[test]
fn a_refused_post_is_answered_not_reset() {
    let env = Env::new();
    let d = Dashboard::start(&env);
    let body = json!({"message": "x".repeat(200_000)}).to_string();
    for i in 0..40 {
        for (how, req, status) in [
            ("no token", d.http.post(format!("{}/api/delegate", d.base)), 401),
            (
                "another origin",
                d.http
                    .post(format!("{}/api/delegate", d.base))
                    .bearer_auth(&d.token)
                    .header("origin", "http://127.0.0.1:1"),
                403,
            ),
        ] {
            let sent = req.header("content-type", "application/json").body(body.clone()).send();
            let r = sent.unwrap_or_else(|e| panic!("{how}, try {i}: {e:?}"));
            assert_eq!(r.status().as_u16(), status, "{how}");
        }
    }
}
