//! A provider refusing for a limit, through the binary with the fake agent acting out what
//! opencode 1.18.33 does (nothing on stdout, a `stream error` log line per attempt): the turn
//! ends `rate_limited` and pauses its provider; `status`, `queue list` and the dashboard say
//! until when; the queue neither runs nor counts items meanwhile; `paused` and `resumed` are
//! told once each (and posted); a rate limit resumes by itself, a quota by `queue resume`.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::dashboard_support::Dashboard;
use crate::support::{Env, json, ready, wait_for};
use crate::webhook_receiver::Receiver;

/// The fake agent's next turns are `turns`; later ones write `WORK.md` and complete.
fn script(env: &Env, turns: &str) {
    std::fs::write(
        env.tmp.path().join("script.json"),
        format!(
            r#"{{"turns": [{turns}], "default": {{"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "wrote WORK.md"}}}}"#
        ),
    )
    .unwrap();
}

fn limited(message: &str) -> String {
    format!(r#"{{"mode": "limited", "provider": "mock", "message": "{message}", "retry_ms": 100}}"#)
}

fn kinds(env: &Env) -> Vec<String> {
    let out = env.run(&["--json", "notify", "list", "--all"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list = json(&out.stdout);
    list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap().to_owned())
        .collect()
}

fn count(list: &[String], kind: &str) -> usize {
    list.iter().filter(|k| *k == kind).count()
}

#[test]
fn a_used_up_quota_pauses_until_a_person_resumes() {
    let mut env = ready();
    let rx = Receiver::start(&[]);
    env.set("KUGETSU_NOTIFY_URL", &rx.url("/hook"));
    script(
        &env,
        &limited("You exceeded your current quota, please check your plan and billing details."),
    );
    let out = env.run(&["start", "#1", "do the work"]);
    assert_eq!(out.code, 4, "not failed, not done: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("quota used up by mock"), "{}", out.stdout);
    let said = "paused until `kugetsu queue resume` (mock: quota)";
    let status = env.run(&["status"]).stdout;
    assert!(status.starts_with("ok\n") && status.ends_with(&format!("\n{said}\n")), "{status}");
    assert_eq!(json(&env.run(&["--json", "status"]).stdout)["paused"][0], said);
    let list = json(&env.run(&["--json", "list"]).stdout);
    let row = list.as_array().unwrap().iter().find(|r| r["issue_ref"] == "local.test/demo/app#1");
    assert_eq!(row.unwrap()["state"], "paused");

    // Another turn waits as for a slot: as long as `--wait` says, or queued with --no-wait.
    let out = env.run(&["start", "#2", "more work", "--wait", "0"]);
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains(said), "{}", out.stderr);
    let out = env.run(&["start", "#2", "more work", "--no-wait"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("queued as"), "{}", out.stdout);
    assert!(env.run(&["queue", "list"]).stdout.contains(&format!("dispatch {said}")));

    // The daemon holds the item: not run, not counted.
    assert_eq!(env.run(&["queue-daemon", "start"]).code, 0);
    wait_for("the daemon to hold dispatch", || {
        env.run(&["queue-daemon", "logs"]).stdout.contains("dispatch held: paused until")
    });
    let item = env.queue_item("#2");
    assert_eq!((item["status"].as_str(), item["attempts"].as_u64()), (Some("pending"), Some(0)));
    {
        let d = Dashboard::start(&env);
        let (code, page) = d.get("/fragment");
        assert_eq!(code, 200, "{page}");
        assert!(page.contains("dispatch paused until"), "{page}");
        let (_, status) = d.get("/api/status");
        assert_eq!(json(&status)["paused"][0], said);
    }

    // A person resumes it; the item runs and completes.
    let out = env.run(&["queue", "resume"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "resumed mock\n"), "{}", out.stderr);
    wait_for("the held item to complete", || env.queue_item("#2")["status"] == "completed");
    // Posted by the daemon's sender while it runs.
    let events = || -> Vec<String> {
        rx.requests().iter().filter_map(|r| r.json()["event"].as_str().map(str::to_owned)).collect()
    };
    let deadline = std::time::Instant::now() + crate::support::HANG;
    while count(&events(), "paused") != 1 || count(&events(), "resumed") != 1 {
        let outbox = env.run(&["--json", "notify", "outbox"]).stdout;
        assert!(std::time::Instant::now() < deadline, "posted: {:?}; outbox: {outbox}", events());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
    let status = env.run(&["status"]).stdout;
    assert!(status.starts_with("ok\n") && !status.contains("paused"), "{status}");
    let told = kinds(&env);
    assert_eq!((count(&told, "paused"), count(&told, "resumed")), (1, 1), "{told:?}");
}

#[test]
fn a_rate_limit_in_the_queue_is_not_counted_and_resumes_by_itself() {
    let env = ready();
    // The provider says when: in a second. The first turn is refused, the next one runs.
    script(&env, &limited("Rate limit reached for requests. Please try again in 1s."));
    assert_eq!(env.run(&["queue-daemon", "start"]).code, 0);
    let out = env.run(&["queue", "enqueue", "#1", "do the work"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    wait_for("the item to complete after the pause", || {
        env.queue_item("#1")["status"] == "completed"
    });
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
    let item = env.queue_item("#1");
    assert_eq!(item["attempts"], 1, "the refused attempt is not counted: {item}");
    let told = kinds(&env);
    assert_eq!((count(&told, "paused"), count(&told, "resumed")), (1, 1), "{told:?}");
    assert_eq!(count(&told, "task_error"), 0, "{told:?}");
    let log = env.run(&["queue-daemon", "logs"]).stdout;
    assert!(
        log.contains("requeued, not counted: start local.test/demo/app#1: rate limited by mock"),
        "{log}"
    );
}
