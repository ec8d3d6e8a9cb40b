//! A night compressed, through the binary with the fake agent: twenty queued items, the
//! provider refusing for a while and then answering again, a daily budget that runs out about
//! halfway. What a person finds in the morning: `status` says what was spent against the budget
//! and that no provider is paused, `queue list` says why each remaining item waits, no refused
//! or held item counted an attempt, the dashboard shows the same, and the webhook receiver got
//! one `paused` per refusal, as many `resumed`, and the spent budget.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::dashboard_support::Dashboard;
use crate::support::{Env, json, ready, wait_for};
use crate::webhook_receiver::Receiver;

const ITEMS: u64 = 20;

/// Each turn writes `WORK.md` in two model calls of $0.025 each: $0.05 a turn.
const TURN: &str = r#"{"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "wrote WORK.md", "cost": 0.025}"#;

/// The provider refuses a turn for a rate limit that resets in a second.
const REFUSED: &str = r#"{"mode": "limited", "provider": "mock", "message": "Rate limit reached for requests. Please try again in 1s.", "retry_ms": 100}"#;

fn items(env: &Env) -> Vec<serde_json::Value> {
    let out = env.run(&["--json", "queue", "list"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    json(&out.stdout)["items"].as_array().cloned().unwrap_or_default()
}

fn with_status<'a>(items: &'a [serde_json::Value], status: &str) -> Vec<&'a serde_json::Value> {
    items.iter().filter(|i| i["status"] == status).collect()
}

#[test]
fn twenty_items_a_rate_limit_and_a_daily_budget_spent_halfway() {
    let mut env = ready();
    let rx = Receiver::start(&[]);
    env.set("KUGETSU_NOTIFY_URL", &rx.url("/hook"));
    // Two turns run at once; the daily budget covers about ten $0.05 turns.
    let mut config = std::fs::read_to_string(env.path("config")).unwrap();
    config.push_str("MAX_CONCURRENT_AGENTS=2\nKUGETSU_DAILY_BUDGET_USD=0.52\n");
    std::fs::write(env.path("config"), config).unwrap();
    // The third and fourth turns meet a provider refusing them; every other turn works.
    std::fs::write(
        env.tmp.path().join("script.json"),
        format!(r#"{{"turns": [{TURN}, {TURN}, {REFUSED}, {REFUSED}], "default": {TURN}}}"#),
    )
    .unwrap();
    for n in 1..=ITEMS {
        let out = env.run(&["queue", "enqueue", &format!("#{n}"), "fix it"]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    }
    assert_eq!(env.run(&["queue-daemon", "start"]).code, 0);

    // The night goes by: every item either ran or waits for the budget.
    wait_for("every item to complete, fail or be held", || {
        let all = items(&env);
        all.len() as u64 == ITEMS
            && all.iter().all(|i| {
                i["status"] == "completed"
                    || i["status"] == "error"
                    || (i["status"] == "pending" && i["held"].is_string())
            })
    });
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);

    let all = items(&env);
    let completed = with_status(&all, "completed");
    let held: Vec<_> = all.iter().filter(|i| i["held"].is_string()).collect();
    // About half ran before the budget was spent (two at a time may each take the last step).
    assert!((9..=11).contains(&completed.len()), "completed: {}; {all:#?}", completed.len());
    assert!(held.len() >= 7, "held: {}; {all:#?}", held.len());
    assert_eq!(completed.len() + held.len() + with_status(&all, "error").len(), all.len());
    for item in &held {
        assert_eq!(item["attempts"], 0, "a held item is not an attempt: {item}");
        let why = item["held"].as_str().unwrap();
        assert!(why.starts_with("held: daily budget $0.52 spent"), "{item}");
    }
    for item in &completed {
        // A refused turn went back to the queue without counting.
        assert_eq!(item["attempts"], 1, "{item}");
    }
    // The error items, if any, are turns stopped at the budget, not the refusals.
    for item in with_status(&all, "error") {
        let why = item["last_error"].as_str().unwrap_or_default();
        assert!(why.contains("over budget"), "{item}");
    }

    // `status`: the word first, then what was spent against the budget; no pause left.
    let status = env.run(&["status"]).stdout;
    let spent: f64 = status
        .strip_prefix("ok\nspent today (UTC): $")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{status}"));
    // Two turns at once may each take a step past the budget before they are stopped.
    assert!((0.50..=0.65).contains(&spent), "{status}");
    // The refused turns ran nothing: they are not turns of unknown cost.
    assert!(!status.contains("unknown"), "{status}");
    assert!(status.contains(" of a daily budget of $0.52 in "), "{status}");
    assert!(!status.contains("paused"), "the rate limit has passed: {status}");
    // `queue list`: each waiting item says why.
    let text = env.run(&["queue", "list"]).stdout;
    assert_eq!(text.matches("(held: daily budget $0.52 spent").count(), held.len(), "{text}");

    {
        let d = Dashboard::start(&env);
        let (code, page) = d.get("/fragment");
        assert_eq!(code, 200, "{page}");
        assert!(page.contains("held: daily budget $0.52 spent"), "{page}");
        assert!(page.contains(&format!(r#"<b id="spent-today">${spent:.2}"#)), "{page}");
        assert!(!page.contains("dispatch paused until"), "{page}");
    }

    // The receiver was told of each refusal's pause and its end, and of the spent budget.
    let deadline = std::time::Instant::now() + crate::support::HANG;
    let events = || -> Vec<String> {
        rx.requests().iter().filter_map(|r| r.json()["event"].as_str().map(str::to_owned)).collect()
    };
    let count = |all: &[String], kind: &str| all.iter().filter(|k| *k == kind).count();
    loop {
        let seen = events();
        let (paused, resumed) = (count(&seen, "paused"), count(&seen, "resumed"));
        if (1..=2).contains(&paused) && resumed == paused && count(&seen, "over_budget") >= 1 {
            break;
        }
        if std::time::Instant::now() > deadline {
            // The daemon's sender stopped with it: what is left is in the outbox.
            let out = env.run(&["notify", "flush"]);
            assert!(
                std::time::Instant::now() < deadline + std::time::Duration::from_secs(5),
                "posted: {seen:?}; flush: {}{}",
                out.stdout,
                out.stderr
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // One notification for the spent budget, whatever the items it held and the amounts
    // spent past it; the turns it stopped are told one by one.
    let bodies: Vec<serde_json::Value> = rx.requests().iter().map(|r| r.json()).collect();
    let held_told = bodies
        .iter()
        .filter(|b| b["event"] == "over_budget")
        .filter(|b| b["text"].as_str().is_some_and(|t| t.contains("held: daily budget")))
        .count();
    assert_eq!(held_told, 1, "{bodies:#?}");
    for body in rx.requests().iter().map(|r| r.json()) {
        assert!(body["text"].is_string(), "{body}");
    }
}
