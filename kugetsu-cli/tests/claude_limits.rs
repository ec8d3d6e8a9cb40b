//! `KUGETSU_AGENT=claude` through the binary with the bundled fake Claude Code acting out what
//! the real one does: a 429 (a `system/api_retry` line per attempt) pauses the `anthropic`
//! provider for the reset its retry line tells, the queue holds the next item without counting
//! it and runs it once the pause is over; a daily budget spent by a Claude Code turn holds the
//! next item; and a turn is given what is left of its budgets as Claude Code's spending cap,
//! which stops it at the request that reaches it.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::support::{Env, json, read, sample_repo, wait_for};

/// An initialized scratch home whose agent is the bundled fake Claude Code (this `kugetsu`
/// binary linked as `claude`), scripted by `script.json`; its priming turns cost nothing.
fn ready_claude() -> Env {
    let env = Env::new();
    let bin = env.tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let claude = bin.join("claude");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kugetsu"), &claude).unwrap();
    sample_repo(&env, &claude);
    env.configure(&format!("KUGETSU_AGENT=claude\nKUGETSU_AGENT_BIN={}", claude.display()));
    script(&env, "", r#"{"mode": "ok", "cost": 0, "text": "primed"}"#);
    let script = env.tmp.path().join("script.json");
    let out = env.run(&["env", "set", "FAKE_CLAUDE_SCRIPT", script.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    env
}

/// The fake's next turns are `turns`, then `default`.
fn script(env: &Env, turns: &str, default: &str) {
    std::fs::write(
        env.tmp.path().join("script.json"),
        format!(r#"{{"turns": [{turns}], "default": {default}}}"#),
    )
    .unwrap();
}

/// Each later turn writes `WORK.md` in the worktree and costs `cost`.
fn working(cost: f64) -> String {
    format!(
        r#"{{"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "wrote WORK.md", "cost": {cost}}}"#
    )
}

fn told(env: &Env, kind: &str) -> usize {
    let list = json(&env.run(&["--json", "notify", "list", "--all"]).stdout);
    list["notifications"].as_array().unwrap().iter().filter(|n| n["type"] == kind).count()
}

#[test]
fn a_claude_429_pauses_anthropic_holds_the_queue_uncounted_and_resumes() {
    let env = ready_claude();
    // Claude Code would wait 15 s (the `retry-after`) before its next attempt, ten times:
    // the pause lasts that long.
    let refused = r#"{"mode": "api_error", "status": 429, "message": "slow down", "retries": 10, "delay_ms": 15000}"#;
    script(&env, refused, &working(0.01));
    let out = env.run(&["start", "#1", "do the work"]);
    assert_eq!(out.code, 4, "rate limited, not failed: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("rate limited by anthropic until"), "{}", out.stdout);
    let status = env.run(&["status"]).stdout;
    assert!(
        status.contains("paused until ") && status.contains("(anthropic: rate limit)"),
        "{status}"
    );

    let out = env.run(&["start", "#2", "more work", "--no-wait"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("queued as"), "{}", out.stdout);
    assert_eq!(env.run(&["queue-daemon", "start"]).code, 0);
    wait_for("the daemon to hold dispatch", || {
        env.run(&["queue-daemon", "logs"]).stdout.contains("dispatch held: paused until")
    });
    let item = env.queue_item("#2");
    assert_eq!((item["status"].as_str(), item["attempts"].as_u64()), (Some("pending"), Some(0)));
    wait_for("the held item to complete", || env.queue_item("#2")["status"] == "completed");
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
    let item = env.queue_item("#2");
    assert_eq!(item["attempts"], 1, "{item}");
    assert!(!env.run(&["status"]).stdout.contains("paused"));
    assert_eq!((told(&env, "paused"), told(&env, "resumed")), (1, 1));
}

#[test]
fn a_claude_429_in_the_queue_is_requeued_without_counting_the_attempt() {
    let env = ready_claude();
    let refused = r#"{"mode": "api_error", "status": 429, "message": "slow down", "retries": 10, "delay_ms": 1000}"#;
    script(&env, refused, &working(0.01));
    assert_eq!(env.run(&["queue-daemon", "start"]).code, 0);
    let out = env.run(&["queue", "enqueue", "#1", "do the work"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    wait_for("the item to complete after the pause", || {
        env.queue_item("#1")["status"] == "completed"
    });
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
    let item = env.queue_item("#1");
    assert_eq!(item["attempts"], 1, "the refused attempt is not counted: {item}");
    let log = env.run(&["queue-daemon", "logs"]).stdout;
    assert!(
        log.contains(
            "requeued, not counted: start local.test/demo/app#1: rate limited by anthropic"
        ),
        "{log}"
    );
    assert_eq!(told(&env, "task_error"), 0);
}

#[test]
fn a_daily_budget_spent_by_a_claude_turn_holds_the_next_item() {
    let env = ready_claude();
    script(&env, "", &working(0.04));
    let out = env.run(&["start", "#1", "first"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("cost $0.04"), "{}", out.stdout);
    env.configure("KUGETSU_DAILY_BUDGET_USD=0.04");
    assert_eq!(env.run(&["queue", "enqueue", "#2", "later"]).code, 0);
    assert_eq!(env.run(&["queue-daemon", "start"]).code, 0);
    wait_for("the item held", || env.queue_item("#2")["held"].is_string());
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
    let item = env.queue_item("#2");
    assert_eq!((item["status"].as_str(), item["attempts"].as_u64()), (Some("pending"), Some(0)));
    let text = env.run(&["queue", "list"]).stdout;
    assert!(text.contains("(held: daily budget $0.04 spent ($0.04))"), "{text}");
    let status = env.run(&["status"]).stdout;
    assert!(status.contains("spent today (UTC): $0.04 of a daily budget of $0.04"), "{status}");
}

/// A Claude Code turn is given what is left of its budgets as its spending cap: the turn whose
/// first request reaches the issue's budget stops there, before its tool runs, and ends
/// `over_budget` (exit 5) with what it spent; the next turn of the issue is refused.
#[test]
fn a_claude_turn_stops_at_the_request_that_reaches_the_issue_budget() {
    let env = ready_claude();
    script(&env, "", &working(0.04));
    env.configure("KUGETSU_ISSUE_BUDGET_USD=0.05");
    let out = env.run(&["start", "#1", "first"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // $0.01 left: the next turn's first request ($0.02 of its $0.04) reaches it.
    script(
        &env,
        "",
        r#"{"mode": "tool", "path": "SECOND.md", "content": "x", "text": "wrote", "cost": 0.04}"#,
    );
    let out = env.run(&["continue", "#1", "again"]);
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("issue budget $0.05 spent ($0.06)"), "{said}");
    assert!(!env.path("worktrees/local.test-demo-app-1/SECOND.md").exists(), "its tool ran");
    let file = env.path("sessions/local.test-demo-app-1.json");
    let session: serde_json::Value = serde_json::from_str(&read(&file)).unwrap();
    assert_eq!(session["last_run"]["outcome"], "over_budget", "{session}");
    assert_eq!(session["usage"]["cost_usd"], 0.06, "{session}");
    let logs: String = std::fs::read_dir(env.path("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-local.test-demo-app-1.log"))
        .map(|p| read(&p))
        .collect();
    assert!(logs.contains("--max-budget-usd 0.01 "), "{logs}");
    let out = env.run(&["continue", "#1", "once more"]);
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
}
