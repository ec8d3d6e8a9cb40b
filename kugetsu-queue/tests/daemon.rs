//! The daemon as a real process (the helper with a fake dispatcher whose agents are processes):
//! limits, wake-up, retries, crashes, signals, stale pid files, corrupt items.
#![cfg(feature = "test-helper")]
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::{Env, lines, read_num, spawn_daemon, wait_exit, wait_until};
use kugetsu_core::queue::{NewTask, QueueItem, QueueStatus, TaskQueue};
use kugetsu_queue::FileQueue;
use kugetsu_queue::daemon::{self, StopOutcome};
use rustix::process::Signal;

const LONG: Duration = Duration::from_secs(60);

fn enqueue(env: &Env, msg: &str, issue: Option<&str>) -> QueueItem {
    FileQueue::new(&env.state)
        .enqueue(NewTask {
            message: msg.into(),
            issue_ref: issue.map(str::to_string),
            options: Default::default(),
        })
        .unwrap()
}

fn items(env: &Env) -> Vec<QueueItem> {
    FileQueue::new(&env.state).list().unwrap().items
}

fn all_final(env: &Env, n: usize) -> bool {
    let items = items(env);
    items.len() == n && items.iter().all(|i| i.status.is_final())
}

fn running(env: &Env) -> bool {
    daemon::status(&env.state).unwrap().pid.is_some()
}

fn stop(env: &Env, child: &mut std::process::Child) {
    let outcome = daemon::stop(&env.state, Duration::from_secs(10)).unwrap();
    assert_eq!(outcome, StopOutcome::Stopped { pid: child.id() });
    assert!(wait_exit(child, LONG).success());
    assert!(!daemon::status(&env.state).unwrap().running);
}

#[test]
fn drains_the_queue_within_the_limit_and_reports_every_transition() {
    let env = common::env();
    for i in 0..6 {
        enqueue(&env, "sleep:150", Some(&format!("o/r#{i}")));
    }
    enqueue(&env, "sleep:100", None);
    enqueue(&env, "sleep:100", None);
    let mut d = spawn_daemon(&env, 2, 60_000);
    assert!(wait_until(LONG, || all_final(&env, 8)), "{:#?}", items(&env));
    assert!(items(&env).iter().all(|i| i.status == QueueStatus::Completed && i.claim.is_none()));
    let dev_max = read_num(&env.record.join("dev.max"));
    // At most the limit, and the limit used: six items do not run one at a time.
    assert_eq!(dev_max, 2, "dev agents at once");
    assert_eq!(read_num(&env.record.join("pm.max")), 1, "one PM item at a time");
    let st = daemon::status(&env.state).unwrap();
    assert_eq!(st.pid, Some(d.id()));
    assert!(st.since.is_some());
    // Stopping waits for the workers, so every event has been delivered after it.
    stop(&env, &mut d);
    let events = lines(&env.record.join("events.log"));
    for item in items(&env) {
        for kind in ["task_dequeued", "task_started", "task_completed"] {
            let n = events.iter().filter(|e| e.starts_with(&format!("{kind} {}", item.id))).count();
            assert_eq!(n, 1, "{kind} for {}: {events:#?}", item.id);
        }
    }
    assert!(!env.state.daemon_pid_path().exists(), "pid file removed on a clean exit");
    let log = daemon::tail_log(&env.state, 1000).unwrap();
    assert!(log.iter().any(|l| l.contains("daemon started")), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("daemon stopped")), "{log:#?}");
}

#[test]
fn an_enqueue_wakes_the_daemon_long_before_its_poll() {
    let env = common::env();
    // Polls once an hour: only the enqueue's wake-up can get the item running in time.
    let mut d = spawn_daemon(&env, 1, 3_600_000);
    assert!(wait_until(LONG, || running(&env)));
    std::thread::sleep(Duration::from_millis(200)); // past its first (empty) round
    enqueue(&env, "sleep:10", Some("o/r#1"));
    assert!(wait_until(Duration::from_secs(30), || all_final(&env, 1)), "{:#?}", items(&env));
    stop(&env, &mut d);
}

#[test]
fn failures_retry_with_backoff_then_error_with_the_reason() {
    let env = common::env();
    let fail = enqueue(&env, "fail", Some("o/r#1"));
    let fatal = enqueue(&env, "fatal", Some("o/r#2"));
    let mut d = spawn_daemon(&env, 2, 60_000);
    assert!(wait_until(LONG, || all_final(&env, 2)), "{:#?}", items(&env));
    let q = FileQueue::new(&env.state);
    let fail = q.get(&fail.id).unwrap();
    assert_eq!(fail.status, QueueStatus::Error);
    assert_eq!(fail.attempts, 3);
    assert!(fail.last_error.as_deref().unwrap().contains("fake failure"), "{fail:?}");
    let fatal = q.get(&fatal.id).unwrap();
    assert_eq!((fatal.status, fatal.attempts), (QueueStatus::Error, 1));
    assert_eq!(fatal.last_error.as_deref(), Some("fake fatal failure"));
    let events = lines(&env.record.join("events.log"));
    let retries = events.iter().filter(|e| e.starts_with(&format!("task_queued {}", fail.id)));
    assert_eq!(retries.count(), 2, "{events:#?}");
    stop(&env, &mut d);
}

#[test]
fn a_daemon_killed_mid_dispatch_loses_nothing_after_restart() {
    let env = common::env();
    for i in 0..8 {
        enqueue(&env, "sleep:1500", Some(&format!("o/r#{i}")));
    }
    let mut d = spawn_daemon(&env, 2, 60_000);
    // Both slots busy and both agents recorded in their items' leases.
    assert!(wait_until(LONG, || {
        read_num(&env.record.join("dev.count")) == 2
            && items(&env)
                .iter()
                .filter(|i| i.claim.as_ref().is_some_and(|c| c.agent_pid.is_some()))
                .count()
                == 2
    }));
    common::kill(&d, Signal::KILL);
    wait_exit(&mut d, LONG);
    let stuck: Vec<_> =
        items(&env).into_iter().filter(|i| i.status == QueueStatus::Notified).collect();
    assert_eq!(stuck.len(), 2, "the dead daemon's claims are still there");

    let mut d2 = spawn_daemon(&env, 2, 60_000);
    assert!(wait_until(LONG, || all_final(&env, 8)), "{:#?}", items(&env));
    let items = items(&env);
    assert!(items.iter().all(|i| i.status == QueueStatus::Completed), "{items:#?}");
    let done = lines(&env.record.join("agents.done"));
    for item in &items {
        assert!(done.contains(&item.id), "{} never ran to the end", item.id);
    }
    let max = read_num(&env.record.join("dev.max"));
    // Two ran at once before the kill (waited for above); never more, orphans included.
    assert_eq!(max, 2, "orphans and new agents together stayed within the limit");
    // After stop every event has been delivered.
    stop(&env, &mut d2);
    // The two orphans were adopted (watched to their end), not started a second time.
    let events = lines(&env.record.join("events.log"));
    let adopted: Vec<_> = events.iter().filter(|e| e.contains("adopted agent pid")).collect();
    assert_eq!(adopted.len(), 4, "adopted + completed for both: {events:#?}");
    for s in &stuck {
        let runs = done.iter().filter(|d| *d == &s.id).count();
        assert_eq!(runs, 1, "{} ran {runs} times", s.id);
    }
}

#[test]
fn two_daemons_started_at_once_exactly_one_runs() {
    let env = common::env();
    let mut a = spawn_daemon(&env, 1, 60_000);
    let mut b = spawn_daemon(&env, 1, 60_000);
    let mut exited = None;
    assert!(wait_until(LONG, || {
        if let Some(s) = a.try_wait().unwrap() {
            exited = Some(('a', s));
        } else if let Some(s) = b.try_wait().unwrap() {
            exited = Some(('b', s));
        }
        exited.is_some()
    }));
    let (loser, status) = exited.unwrap();
    assert_eq!(status.code(), Some(3), "the loser reports 'already running'");
    let mut winner = if loser == 'a' { b } else { a };
    assert!(winner.try_wait().unwrap().is_none(), "the winner keeps running");
    assert!(wait_until(LONG, || running(&env)));
    assert_eq!(daemon::status(&env.state).unwrap().pid, Some(winner.id()));
    // A third one is refused too.
    let mut c = spawn_daemon(&env, 1, 60_000);
    assert_eq!(wait_exit(&mut c, LONG).code(), Some(3));
    stop(&env, &mut winner);
}

#[test]
fn a_stale_pid_file_naming_a_live_unrelated_process_never_blocks_or_gets_signalled() {
    let env = common::env();
    let mut bystander = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(env.state.daemon_pid_path(), format!("{}\n", bystander.id())).unwrap();
    let st = daemon::status(&env.state).unwrap();
    assert!(!st.running);
    assert_eq!(st.stale_pid_file, Some(bystander.id()));
    assert_eq!(daemon::stop(&env.state, Duration::from_secs(1)).unwrap(), StopOutcome::NotRunning);

    let mut d = spawn_daemon(&env, 1, 60_000);
    assert!(wait_until(LONG, || running(&env)));
    assert_eq!(daemon::status(&env.state).unwrap().pid, Some(d.id()));
    enqueue(&env, "sleep:10", Some("o/r#1"));
    assert!(wait_until(LONG, || all_final(&env, 1)));
    stop(&env, &mut d);
    assert!(bystander.try_wait().unwrap().is_none(), "the unrelated process was never signalled");
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

#[test]
fn a_corrupt_item_is_kept_aside_and_the_others_still_run() {
    let env = common::env();
    let a = enqueue(&env, "sleep:10", Some("o/r#1"));
    let bad = env.state.queue_items_dir().join("q_00000000000000000005.json");
    std::fs::write(&bad, b"\x00\x01 not json").unwrap();
    let b = enqueue(&env, "sleep:10", None);
    let mut d = spawn_daemon(&env, 1, 60_000);
    assert!(wait_until(LONG, || all_final(&env, 2)), "{:#?}", items(&env));
    let q = FileQueue::new(&env.state);
    assert_eq!(q.get(&a.id).unwrap().status, QueueStatus::Completed);
    assert_eq!(q.get(&b.id).unwrap().status, QueueStatus::Completed);
    assert!(!bad.exists());
    let problems = q.list().unwrap().problems;
    assert!(
        problems.iter().any(|p| p.contains("q_00000000000000000005.json.corrupt-")),
        "{problems:?}"
    );
    assert_eq!(q.stats().unwrap().corrupt, 1);
    let log = daemon::tail_log(&env.state, 1000).unwrap();
    assert!(
        log.iter()
            .any(|l| l.contains("unreadable queue item") && l.contains("q_00000000000000000005")),
        "{log:#?}"
    );
    stop(&env, &mut d);
}

#[test]
fn sigterm_kills_running_agents_requeues_their_items_and_exits_promptly() {
    let env = common::env();
    let a = enqueue(&env, "sleep:60000", Some("o/r#1"));
    let b = enqueue(&env, "sleep:60000", Some("o/r#2"));
    let mut d = spawn_daemon(&env, 2, 60_000);
    assert!(wait_until(LONG, || {
        items(&env)
            .iter()
            .filter(|i| i.claim.as_ref().is_some_and(|c| c.agent_pid.is_some()))
            .count()
            == 2
    }));
    common::kill(&d, Signal::TERM);
    // The 5 s promise is checked with a generous hang guard, not a timing assertion.
    assert!(wait_exit(&mut d, Duration::from_secs(30)).success());
    let q = FileQueue::new(&env.state);
    for id in [&a.id, &b.id] {
        let item = q.get(id).unwrap();
        assert_eq!(item.status, QueueStatus::Pending, "{item:?}");
        assert_eq!(item.attempts, 0, "the interrupted attempt is refunded");
        assert!(item.claim.is_none());
        assert!(item.last_error.as_deref().unwrap().contains("interrupted"), "{item:?}");
        let pid: u32 = lines(&env.record.join(format!("agent-{id}.pid")))[0].parse().unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || kugetsu_process::identity::process_token(pid)
                .is_none()),
            "agent {pid} still runs"
        );
    }
    assert!(!daemon::status(&env.state).unwrap().running);
}

#[test]
fn spawn_detached_starts_a_daemon_that_status_and_stop_can_find() {
    let env = common::env();
    let args: Vec<std::ffi::OsString> = vec![
        "daemon".into(),
        env.state.root().into(),
        "1".into(),
        env.record.clone().into(),
        "60000".into(),
    ];
    let pid = daemon::spawn_detached(
        std::path::Path::new(env!("CARGO_BIN_EXE_queue-test-helper")),
        &args,
        &std::env::vars().collect(),
        &env.state,
    )
    .unwrap();
    assert!(wait_until(LONG, || running(&env)));
    assert_eq!(daemon::status(&env.state).unwrap().pid, Some(pid));
    // Its own process group: a Ctrl-C in the terminal that started it does not reach it.
    let p = rustix::process::Pid::from_raw(pid as i32).unwrap();
    assert_eq!(rustix::process::getpgid(Some(p)).unwrap(), p);
    assert_eq!(
        daemon::stop(&env.state, Duration::from_secs(10)).unwrap(),
        StopOutcome::Stopped { pid }
    );
    assert!(!daemon::status(&env.state).unwrap().running);
}

/// Items that would spend from a spent budget wait: pending, no attempt counted, why shown,
/// one notification for the budget however many items it holds; released once the budget
/// allows (here, the limit raised), they run.
#[test]
fn items_held_for_a_spent_budget_wait_without_an_attempt_and_run_once_it_is_raised() {
    let env = common::env();
    std::fs::create_dir_all(&env.record).unwrap();
    std::fs::write(env.record.join("budget-spent"), "").unwrap();
    let a = enqueue(&env, "spend", Some("o/r#1"));
    let b = enqueue(&env, "spend", Some("o/r#2"));
    let mut d = spawn_daemon(&env, 2, 60_000);
    // (An item being looked at again is claimed for that moment: the others are as they rest.)
    let resting = |env: &Env| -> Vec<QueueItem> {
        items(env).into_iter().filter(|i| i.status != QueueStatus::Notified).collect()
    };
    let held = |env: &Env| items(env).iter().all(|i| i.held.is_some());
    assert!(wait_until(LONG, || held(&env)), "{:#?}", items(&env));
    for item in resting(&env) {
        assert_eq!((item.status, item.attempts), (QueueStatus::Pending, 0), "{item:?}");
        assert_eq!(item.held.as_deref(), Some("held: daily budget $5.00 spent ($5.02)"));
    }
    // Looked at again and again while held, and still no attempt is counted.
    let events = || lines(&env.record.join("events.log"));
    let dequeued = || events().iter().filter(|e| e.starts_with("task_dequeued")).count();
    assert!(wait_until(LONG, || dequeued() > 4));
    assert!(resting(&env).iter().all(|i| i.attempts == 0), "{:#?}", items(&env));
    let told = events().iter().filter(|e| e.starts_with("over_budget")).count();
    assert_eq!(told, 1, "one notification for the spent budget: {:#?}", events());

    std::fs::remove_file(env.record.join("budget-spent")).unwrap();
    assert!(wait_until(LONG, || all_final(&env, 2)), "{:#?}", items(&env));
    let q = FileQueue::new(&env.state);
    for id in [&a.id, &b.id] {
        let item = q.get(id).unwrap();
        assert_eq!((item.status, item.attempts, item.held), (QueueStatus::Completed, 1, None));
    }
    stop(&env, &mut d);
}
