//! Being told: notifications posted to `KUGETSU_NOTIFY_URL` by the queue daemon from the
//! outbox, against a local receiver (`webhook_receiver`): what is posted, a retry after a 500,
//! a receiver down until after a daemon restart, no secret in any request, `notify test`, and
//! the URL masked wherever it is shown.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::support::{Env, json, ready, wait_for};
use crate::webhook_receiver::{Receiver, closed_port};

const ENV_SECRET: &str = "ghp_plantedSECRET4242";
const HOOK_TOKEN: &str = "tokHOOKsecret5678";

/// The fake agent's next turn is `turn`; later ones write `WORK.md` and complete.
fn script(env: &Env, turn: &str) {
    std::fs::write(
        env.tmp.path().join("script.json"),
        format!(
            r#"{{"turns": [{turn}], "default": {{"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "wrote WORK.md"}}}}"#
        ),
    )
    .unwrap();
}

fn daemon(env: &Env, action: &str) {
    let out = env.run(&["queue-daemon", action]);
    assert_eq!(out.code, 0, "queue-daemon {action}: {}{}", out.stdout, out.stderr);
}

fn enqueue(env: &Env, issue: &str, message: &str) {
    let out = env.run(&["queue", "enqueue", issue, message]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

fn outbox(env: &Env) -> serde_json::Value {
    let out = env.run(&["--json", "notify", "outbox"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    json(&out.stdout)
}

#[test]
fn a_blocked_task_is_posted_and_no_secret_leaves_the_machine() {
    let mut env = ready();
    let rx = Receiver::start(&[]);
    let url = rx.url(&format!("/hooks/{HOOK_TOKEN}"));
    env.set("KUGETSU_NOTIFY_URL", &url);
    assert_eq!(env.run(&["env", "set", "GITHUB_TOKEN", ENV_SECRET]).code, 0);
    // The agent asks for a permission whose text holds both secrets (agents echo what they
    // read); the run ends blocked, the item fails, and its notification quotes that text.
    script(
        &env,
        &format!(
            r#"{{"mode": "permission", "permission": "external_directory ({ENV_SECRET} {url})", "cost": 0.125}}"#
        ),
    );
    daemon(&env, "start");
    enqueue(&env, "#1", "read the system config");
    wait_for("the blocked task's webhook", || !rx.requests().is_empty());
    daemon(&env, "stop");

    let requests = rx.requests();
    assert_eq!(requests.len(), 1, "queued, dequeued and started need nobody: {requests:?}");
    let req = &requests[0];
    assert_eq!(req.line, format!("POST /hooks/{HOOK_TOKEN} HTTP/1.1"));
    assert!(
        req.headers.iter().any(|h| h.eq_ignore_ascii_case("content-type: application/json")),
        "{:?}",
        req.headers
    );
    let body = req.json();
    assert_eq!(body["event"], "task_error");
    assert_eq!(body["outcome"], "blocked");
    assert_eq!(body["issue_ref"], "local.test/demo/app#1");
    // What the turn cost, as the agent reported it.
    assert_eq!(body["cost_usd"], 0.125);
    assert!(body["host"].as_str().is_some_and(|h| !h.is_empty()), "{body}");
    assert!(body["time"].as_str().is_some_and(|t| t.contains('T')), "{body}");
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("blocked local.test/demo/app#1") && !text.contains('\n'), "{text}");
    assert!(text.contains("external_directory"), "{text}");
    for r in &requests {
        assert!(!r.raw().contains(ENV_SECRET), "{}", r.raw());
        assert!(!r.body.contains(HOOK_TOKEN), "{}", r.body);
    }

    // Shown masked wherever it is shown.
    let shown = outbox(&env);
    assert_eq!(shown[0]["deliveries"][0]["state"], "delivered", "{shown}");
    let masked = format!("http://127.0.0.1:{}/***", rx.port);
    assert_eq!(shown[0]["deliveries"][0]["url"], masked.as_str());
    for args in
        [&["notify", "outbox"][..], &["doctor"], &["notify", "list"], &["queue-daemon", "logs"]]
    {
        let out = env.run(args);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(!all.contains(HOOK_TOKEN) && !all.contains(ENV_SECRET), "{args:?}: {all}");
        if args == ["doctor"] {
            assert!(all.contains(&masked), "{all}");
        }
    }
}

#[test]
fn a_receiver_that_fails_first_gets_the_notification_on_a_retry() {
    let mut env = ready();
    let rx = Receiver::start(&[500]);
    env.set("KUGETSU_NOTIFY_URL", &rx.url(&format!("/hooks/{HOOK_TOKEN}")));
    env.set("KUGETSU_NOTIFY_COMPLETED", "1");
    daemon(&env, "start");
    enqueue(&env, "#2", "add the changelog");
    wait_for("the retried webhook", || rx.requests().len() >= 2);
    daemon(&env, "stop");

    let requests = rx.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let (first, second) = (requests[0].json(), requests[1].json());
    assert_eq!(first, second, "the same notification, again");
    assert_eq!(
        (first["event"].as_str(), first["outcome"].as_str()),
        (Some("task_completed"), Some("completed"))
    );
    let shown = outbox(&env);
    let d = &shown[0]["deliveries"][0];
    assert_eq!(
        (d["state"].as_str(), d["attempts"].as_u64()),
        (Some("delivered"), Some(2)),
        "{shown}"
    );
    let log = env.run(&["queue-daemon", "logs"]).stdout;
    assert!(log.contains("cannot post notification") && log.contains("HTTP 500"), "{log}");
    assert!(!log.contains(HOOK_TOKEN), "{log}");
}

/// A daemon that posted a completed task to a receiver that is down, stopped: returns the
/// receiver's port.
fn leave_a_pending_delivery(env: &mut Env, issue: &str) -> u16 {
    let port = closed_port();
    env.set("KUGETSU_NOTIFY_URL", &format!("http://127.0.0.1:{port}/hooks/{HOOK_TOKEN}"));
    env.set("KUGETSU_NOTIFY_COMPLETED", "1");
    daemon(env, "start");
    enqueue(env, issue, "write the migration guide");
    wait_for("a failed delivery in the outbox", || {
        outbox(env)[0]["deliveries"][0]["attempts"].as_u64().is_some_and(|n| n >= 1)
    });
    daemon(env, "stop");
    let shown = outbox(env);
    let d = &shown[0]["deliveries"][0];
    assert_eq!(d["state"], "pending", "{shown}");
    assert!(d["last_error"].as_str().is_some_and(|e| !e.contains(HOOK_TOKEN)), "{shown}");
    assert!(d["next_try"].is_string(), "{shown}");
    port
}

#[test]
fn a_receiver_down_gets_the_notification_after_a_daemon_restart() {
    let mut env = ready();
    let port = leave_a_pending_delivery(&mut env, "#3");
    let rx = Receiver::start_on(port, &[]);
    daemon(&env, "start");
    wait_for("the notification after the restart", || !rx.requests().is_empty());
    daemon(&env, "stop");
    assert_eq!(rx.requests()[0].json()["outcome"], "completed");
    let d = &outbox(&env)[0]["deliveries"][0];
    assert_eq!(d["state"], "delivered");
    assert!(d["attempts"].as_u64().is_some_and(|n| n >= 2), "{d}");
}

#[test]
fn notify_flush_posts_what_the_outbox_holds() {
    let mut env = ready();
    let port = leave_a_pending_delivery(&mut env, "#4");
    let rx = Receiver::start_on(port, &[]);
    let out = env.run(&["notify", "flush"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "delivered 1, gave up 0, pending 0\n");
    assert_eq!(rx.requests().len(), 1);
    let out = env.run(&["notify", "outbox"]);
    assert!(out.stdout.contains("delivered after 2 attempt(s)"), "{}", out.stdout);
    assert!(!out.stdout.contains(HOOK_TOKEN), "{}", out.stdout);
    let out = env.run(&["notify", "flush"]);
    assert_eq!(out.stdout, "delivered 0, gave up 0, pending 0\n");
}

#[test]
fn notify_test_reports_each_receiver_and_fails_when_one_fails() {
    let mut env = Env::new();
    let out = env.run(&["notify", "test"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("KUGETSU_NOTIFY_URL is not set"), "{}", out.stderr);

    let (ok, bad, down) = (Receiver::start(&[]), Receiver::start(&[500]), closed_port());
    let urls = [
        ok.url(&format!("/hooks/{HOOK_TOKEN}")),
        bad.url("/hooks/tokBADsecret1"),
        format!("http://127.0.0.1:{down}/hooks/tokDOWNsecret2"),
    ];
    env.set("KUGETSU_NOTIFY_URL", &urls.join(", "));
    let out = env.run(&["notify", "test"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert_eq!(lines[0], format!("http://127.0.0.1:{}/***: ok (HTTP 200)", ok.port));
    assert_eq!(lines[1], format!("http://127.0.0.1:{}/***: failed: HTTP 500", bad.port));
    assert!(
        lines[2].starts_with(&format!("http://127.0.0.1:{down}/***: failed: ")),
        "{}",
        lines[2]
    );
    assert_eq!(out.stderr, "Error: 2 of 3 receivers did not take the test notification\n");
    let all = format!("{}{}", out.stdout, out.stderr);
    for secret in [HOOK_TOKEN, "tokBADsecret1", "tokDOWNsecret2"] {
        assert!(!all.contains(secret), "{all}");
    }
    let body = ok.requests()[0].json();
    assert_eq!(body["event"], "test");
    assert!(body["text"].as_str().unwrap().contains("test notification"), "{body}");

    let mut env = Env::new();
    env.set("KUGETSU_NOTIFY_URL", &urls[0]);
    let out = env.run(&["--json", "notify", "test"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let rows = json(&out.stdout);
    assert_eq!(rows[0]["ok"], true);
    assert_eq!(rows[0]["status"], 200);
    assert_eq!(ok.requests().len(), 2);
}
