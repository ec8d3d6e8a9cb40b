//! Cost and budgets through the binary with the fake agent: a foreground turn stopped at its
//! issue budget (exit 5, `over_budget`, the agent's group killed), the next turn refused before
//! any agent starts, and queued items held by a spent daily budget, with why they wait; and
//! what `list`, `status`, `notify list` and the run log say of it.

#![allow(clippy::unwrap_used)]

use crate::support::{Env, json, read, ready, wait_for};
use crate::webhook_receiver::Receiver;

/// An initialized scratch home like [`ready`], with the fake agent speaking opencode 2.
fn ready_v2() -> Env {
    let (env, _repo) = Env::with_fake_agent();
    let trace = env.tmp.path().join("trace.log");
    for (key, value) in
        [("FAKE_OPENCODE_VERSION", "2.1.2"), ("FAKE_OPENCODE_TRACE", trace.to_str().unwrap())]
    {
        assert_eq!(env.run(&["env", "set", key, value]).code, 0);
    }
    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    env
}

/// The fake agent's turns: `turns` first, then the default (a `write`, then an answer).
fn script(env: &Env, turns: &str) {
    std::fs::write(
        env.tmp.path().join("script.json"),
        format!(
            r#"{{"turns": [{turns}], "default": {{"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "wrote WORK.md"}}}}"#
        ),
    )
    .unwrap();
}

fn runs(env: &Env) -> usize {
    read(&env.tmp.path().join("trace.log")).lines().filter(|l| l.starts_with("start ")).count()
}

/// A long turn of model calls costing $0.02 each, which ends with `all spent` if let run.
const SPENDER: &str = r#"{"mode": "spend", "cost": 0.02, "steps": 1000, "text": "all spent"}"#;

#[test]
fn a_turn_reaching_its_issue_budget_is_stopped_and_the_next_is_refused() {
    stopped_at_the_issue_budget(&ready());
}

#[test]
fn an_opencode2_turn_reaching_its_issue_budget_is_stopped_and_the_next_is_refused() {
    let env = ready_v2();
    stopped_at_the_issue_budget(&env);
    let session = json(&read(&env.path("sessions/local.test-demo-app-1.json")));
    assert_eq!(session["agent_major"], 2, "the 2.x dialect ran it: {session}");
}

fn stopped_at_the_issue_budget(env: &Env) {
    env.configure("KUGETSU_ISSUE_BUDGET_USD=0.05");
    script(env, SPENDER);
    let out = env.run(&["start", "#1", "spend away"]);
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("local.test/demo/app#1: over budget: issue budget $0.05 spent ($0.06)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("usage    cost $0.06, tokens input 30, output 6,"),
        "{}",
        out.stdout
    );
    let session: serde_json::Value = json(&read(&env.path("sessions/local.test-demo-app-1.json")));
    assert_eq!(session["last_run"]["outcome"], "over_budget", "{session}");
    assert_eq!(session["last_run"]["budget"], "issue");
    assert_eq!(session["usage"]["turns"], 1, "{session}");
    let list = json(&env.run(&["--json", "list"]).stdout);
    let row = list.as_array().unwrap().iter().find(|r| r["issue_ref"] == "local.test/demo/app#1");
    let row = row.unwrap();
    let cost = row["cost_usd"].as_f64().unwrap();
    assert!(cost > 0.059 && cost < 0.5, "{row}");
    let input = row["tokens"]["input"].as_u64().unwrap();
    assert!(input >= 30 && input % 10 == 0, "ten tokens a step: {row}");
    let text = env.run(&["list"]).stdout;
    assert!(text.contains("COST") && text.contains(&format!("${cost:.2}")), "{text}");
    // The turn was stopped at the step that reached the budget: it never answered.
    let log_path = std::fs::read_dir(env.path("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("local.test-demo-app-1.log"));
    let log = read(&log_path.unwrap());
    assert!(!log.contains("all spent"), "{log}");
    assert!(
        log.contains(" turn over budget: issue budget $0.05 spent ($0.06); cost $0.06"),
        "{log}"
    );
    let notes = env.run(&["notify", "list"]).stdout;
    assert!(notes.contains("over_budget") && notes.contains("issue budget $0.05"), "{notes}");
    let status = env.run(&["status"]).stdout;
    assert!(
        status.starts_with(&format!("ok\nspent today (UTC): ${cost:.2} in 1 turn\n")),
        "{status}"
    );

    // The issue's budget is spent: `continue` says so in one line, and starts no agent.
    let before = runs(env);
    let out = env.run(&["continue", "#1", "more"]);
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stderr.lines().next(),
        Some(
            format!(
                "Error: local.test/demo/app#1: issue budget $0.05 spent (${cost:.2}); no turn \
                 started (raise KUGETSU_ISSUE_BUDGET_USD to go on)"
            )
            .as_str()
        ),
        "{}",
        out.stderr
    );
    assert_eq!(runs(env), before, "no agent started");
    // Raised, it goes on.
    env.configure("KUGETSU_ISSUE_BUDGET_USD=5");
    let out = env.run(&["continue", "#1", "more"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

#[test]
fn queued_items_wait_while_the_daily_budget_is_spent() {
    let mut env = ready();
    let rx = Receiver::start(&[]);
    env.set("KUGETSU_NOTIFY_URL", &rx.url("/hook"));
    script(&env, r#"{"mode": "ok", "cost": 0.04, "text": "done"}"#);
    let out = env.run(&["start", "#1", "first"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    env.configure("KUGETSU_DAILY_BUDGET_USD=0.04");
    let out = env.run(&["start", "#5", "refused"]);
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("daily budget $0.04 spent ($0.04)"), "{}", out.stderr);
    assert!(out.stderr.contains("00:00 UTC"), "{}", out.stderr);
    for issue in ["#2", "#3"] {
        assert_eq!(env.run(&["queue", "enqueue", issue, "later"]).code, 0);
    }
    let before = runs(&env);
    assert_eq!(env.run(&["queue-daemon", "start"]).code, 0);
    let items = || json(&env.run(&["--json", "queue", "list"]).stdout)["items"].clone();
    wait_for("both items held", || {
        items()
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["held"].is_string() && i["status"] == "pending")
    });
    // Posted as `over_budget`; no turn ran, so its cost is null.
    let posted =
        || rx.requests().into_iter().map(|r| r.json()).find(|b| b["event"] == "over_budget");
    wait_for("the over_budget post", || posted().is_some());
    let body = posted().unwrap();
    assert!(body["text"].as_str().unwrap().contains("held: daily budget $0.04 spent"), "{body}");
    assert_eq!(body["cost_usd"], serde_json::Value::Null);
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
    for item in items().as_array().unwrap() {
        assert_eq!(item["attempts"], 0, "a held item is not an attempt: {item}");
    }
    let text = env.run(&["queue", "list"]).stdout;
    assert_eq!(text.matches("(held: daily budget $0.04 spent ($0.04))").count(), 2, "{text}");
    assert_eq!(runs(&env), before, "no agent started");
    let notes = env.run(&["--json", "notify", "list"]).stdout;
    let over = json(&notes)["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] == "over_budget")
        .count();
    assert_eq!(over, 1, "one notification for the spent budget: {notes}");
    let status = env.run(&["status"]).stdout;
    assert!(
        status.contains("spent today (UTC): $0.04 of a daily budget of $0.04 in 1 turn"),
        "{status}"
    );
}
