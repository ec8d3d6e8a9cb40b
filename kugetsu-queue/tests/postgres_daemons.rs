//! Three daemons with separate state directories, standing in for three hosts, draining one
//! queue on a real PostgreSQL server: every item runs exactly once, no instant over the
//! per-host limit (2) or the global one (4), items of an issue stay on its host; then one
//! daemon is SIGKILLed and the server restarted mid-run, and nothing is lost or run twice.
//! Concurrency is measured by the fake agents themselves (flock-guarded counters they raise
//! and lower around their run), never from the daemons' bookkeeping.
#![cfg(all(feature = "postgres", feature = "test-helper"))]
#![allow(clippy::unwrap_used)]

use crate::{common, pg};

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use common::{Proc, lines, read_num, wait_until};
use kugetsu_core::queue::{NewTask, QueueStatus};
use kugetsu_queue::postgres::{self, PgOptions};

/// Longer than the server restart below: a restart must not cost a live daemon its leases.
const LEASE_MS: u64 = 5000;

fn options(url: &str, host: &str) -> PgOptions {
    PgOptions {
        url: url.to_string(),
        host: host.to_string(),
        lease_ttl: Duration::from_millis(LEASE_MS),
        host_lost: Duration::from_secs(300),
        global_limit: std::sync::Arc::new(|| Some(4)),
    }
}

fn spawn(state: &Path, record: &Path, url: &str, host: &str) -> Proc {
    Proc(
        common::helper(&[
            "pg-daemon",
            state.to_str().unwrap(),
            "2",
            record.to_str().unwrap(),
            "60000",
            url,
            host,
            "4",
            &LEASE_MS.to_string(),
        ])
        .spawn()
        .unwrap(),
    )
}

fn started(state: &Path) -> bool {
    std::fs::read_to_string(state.join("queue/daemon.log"))
        .is_ok_and(|l| l.contains("daemon started"))
}

#[test]
fn three_hosts_drain_one_queue_within_both_limits_through_kills_and_restarts() {
    let Some(pg) = pg::Pg::start() else { return };
    let url = pg.database();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    std::fs::create_dir(&record).unwrap();
    let hosts = ["h0", "h1", "h2"];
    let states: Vec<_> = hosts.iter().map(|h| dir.path().join(h)).collect();
    let mut daemons: Vec<Proc> =
        hosts.iter().zip(&states).map(|(h, s)| spawn(s, &record, &url, h)).collect();
    assert!(wait_until(Duration::from_secs(60), || states.iter().all(|s| started(s))));

    // 60 items: 20 issues, three items each (the later ones are for an issue that already
    // has a host), enqueued from a fourth process that runs no daemon.
    let q = postgres::backend(options(&url, "enqueuer")).unwrap().queue;
    let task = |i: usize, ms: u64| NewTask {
        message: format!("sleep:{ms}"),
        issue_ref: Some(format!("o/r#{i}")),
        options: Default::default(),
    };
    for round in 0..3 {
        for i in 0..20 {
            q.enqueue(task(i, 150 + 10 * round as u64)).unwrap();
        }
    }
    let completed = |n: usize| q.stats().is_ok_and(|s| s.completed == n);
    assert!(wait_until(Duration::from_secs(180), || completed(60)), "{:?}", q.stats());

    let check = |expected_runs: usize| {
        assert!(read_num(&record.join("dev.max")) <= 4, "over the global limit");
        for h in hosts {
            assert!(read_num(&record.join(format!("host-{h}.max"))) <= 2, "{h} over its limit");
        }
        let runs = lines(&record.join("runs.log"));
        let ids: HashSet<&str> = runs.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(runs.len(), expected_runs, "each item ran to the end exactly once");
        assert_eq!(ids.len(), expected_runs);
        let mut host_of: HashMap<&str, &str> = HashMap::new();
        for l in &runs {
            let f: Vec<&str> = l.split(' ').collect();
            let h = *host_of.entry(f[2]).or_insert(f[1]);
            assert_eq!(h, f[1], "{} ran on {} and {h}", f[2], f[1]);
        }
        for entry in std::fs::read_dir(&record).unwrap().flatten() {
            let name = entry.file_name().into_string().unwrap();
            if name.starts_with("item-") && name.ends_with(".max") {
                assert_eq!(read_num(&entry.path()), 1, "{name}: an item ran twice at once");
            }
        }
    };
    check(60);
    assert_eq!(read_num(&record.join("dev.max")), 4, "the global limit was reached, not just kept");

    // Faults: 24 longer items of new issues; SIGKILL one daemon while its agents run, stop
    // and restart PostgreSQL, then release the dead host (its issues move elsewhere).
    for i in 100..124 {
        q.enqueue(task(i, 700)).unwrap();
    }
    assert!(wait_until(Duration::from_secs(60), || read_num(&record.join("host-h0.count")) >= 1));
    common::kill(&daemons[0], rustix::process::Signal::KILL);
    let _ = daemons[0].wait();
    pg.stop();
    std::thread::sleep(Duration::from_millis(1500));
    pg.restart();
    let admin = kugetsu_queue::postgres::PgQueue::connect(&options(&url, "admin")).unwrap();
    let (_issues, _requeued) = admin.release_host("h0").unwrap();
    assert!(
        wait_until(Duration::from_secs(240), || completed(84)),
        "{:?}",
        q.list().map(|l| l
            .items
            .into_iter()
            .filter(|i| i.status != QueueStatus::Completed)
            .map(|i| (i.id, i.status, i.last_error))
            .collect::<Vec<_>>())
    );
    check(84);
    for d in daemons.iter_mut().skip(1) {
        common::kill(d, rustix::process::Signal::TERM);
        common::wait_exit(d, Duration::from_secs(20));
    }
}

/// A daemon paused (SIGSTOP) past its lease: another daemon gives its items back to the queue;
/// resumed, the paused daemon learns it lost them and records nothing over the queue's state
/// (its agents' outcomes are dropped); the items then run again, never twice at once, and
/// every one completes.
#[test]
fn a_daemon_paused_past_its_lease_records_no_stale_outcome() {
    let Some(pg) = pg::Pg::start() else { return };
    let url = pg.database();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    std::fs::create_dir(&record).unwrap();
    let lease = 1500;
    let spawn_short = |state: &Path, host: &str| {
        Proc(
            common::helper(&[
                "pg-daemon",
                state.to_str().unwrap(),
                "2",
                record.to_str().unwrap(),
                "60000",
                &url,
                host,
                "4",
                &lease.to_string(),
            ])
            .spawn()
            .unwrap(),
        )
    };
    let states = [dir.path().join("h0"), dir.path().join("h1")];
    let paused = spawn_short(&states[0], "h0");
    assert!(wait_until(Duration::from_secs(60), || started(&states[0])));
    let q = postgres::backend(options(&url, "enqueuer")).unwrap().queue;
    for i in 0..2 {
        q.enqueue(NewTask {
            message: "sleep:3000".into(),
            issue_ref: Some(format!("o/r#{i}")),
            options: Default::default(),
        })
        .unwrap();
    }
    assert!(wait_until(Duration::from_secs(60), || {
        read_num(&record.join("host-h0.count")) == 2
    }));
    common::kill(&paused, rustix::process::Signal::STOP);
    // Another daemon sees the leases expire and hands the items back to the queue (they stay
    // for h0: their issues live there).
    let mut other = spawn_short(&states[1], "h1");
    assert!(
        wait_until(Duration::from_secs(90), || {
            q.list().is_ok_and(|l| l.items.iter().all(|i| i.status == QueueStatus::Pending))
        }),
        "the expired leases were not handed back: {:?}\nh1's log:\n{}",
        q.list(),
        std::fs::read_to_string(states[1].join("queue/daemon.log")).unwrap_or_default()
    );
    // Its agents, which a pause of the daemon alone does not stop, finish meanwhile.
    assert!(wait_until(Duration::from_secs(60), || lines(&record.join("runs.log")).len() == 2));
    common::kill(&paused, rustix::process::Signal::CONT);
    assert!(
        wait_until(Duration::from_secs(120), || q.stats().is_ok_and(|s| s.completed == 2)),
        "{:?}",
        q.list()
    );
    let log = std::fs::read_to_string(states[0].join("queue/daemon.log")).unwrap();
    assert!(
        log.contains("not recorded") || log.contains("lease lost"),
        "the paused daemon noticed it lost its items: {log}"
    );
    for item in q.list().unwrap().items {
        assert_eq!(
            item.attempts, 2,
            "{}: run again after the stale run, not recorded from it",
            item.id
        );
    }
    for i in q.list().unwrap().items {
        assert_eq!(read_num(&record.join(format!("item-{}.max", i.id))), 1, "ran twice at once");
    }
    drop(paused);
    common::kill(&other, rustix::process::Signal::TERM);
    common::wait_exit(&mut other, Duration::from_secs(20));
}

/// One daemon per host on the shared queue, even from another state directory (the same
/// machine name and path on two machines would otherwise mix their issues' sessions).
#[test]
fn a_second_daemon_as_the_same_host_is_refused() {
    let Some(pg) = pg::Pg::start() else { return };
    let url = pg.database();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    std::fs::create_dir(&record).unwrap();
    let first_state = dir.path().join("a");
    let mut first = spawn(&first_state, &record, &url, "same");
    assert!(wait_until(Duration::from_secs(60), || started(&first_state)));
    let mut second = spawn(&dir.path().join("b"), &record, &url, "same");
    let status = common::wait_exit(&mut second, Duration::from_secs(60));
    assert_eq!(status.code(), Some(3));
    assert!(lines(&record.join("daemon.refused")).iter().any(|l| l == "host same taken"));
    // Once the first is gone (killed outright), its seat is free again.
    common::kill(&first, rustix::process::Signal::KILL);
    let _ = first.wait();
    let third_state = dir.path().join("c");
    let mut third = spawn(&third_state, &record, &url, "same");
    assert!(wait_until(Duration::from_secs(60), || started(&third_state)));
    common::kill(&third, rustix::process::Signal::TERM);
    common::wait_exit(&mut third, Duration::from_secs(20));
}

/// An enqueue through another host's backend wakes an idle daemon at once (LISTEN/NOTIFY):
/// this daemon polls once an hour and renews leases only every 10 minutes, so only the
/// notification can get the item running within the wait.
#[test]
fn an_enqueue_on_another_host_wakes_an_idle_daemon() {
    let Some(pg) = pg::Pg::start() else { return };
    let url = pg.database();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    std::fs::create_dir(&record).unwrap();
    let state = dir.path().join("b");
    let mut daemon = Proc(
        common::helper(&[
            "pg-daemon",
            state.to_str().unwrap(),
            "2",
            record.to_str().unwrap(),
            "3600000",
            &url,
            "b",
            "4",
            "1800000",
        ])
        .spawn()
        .unwrap(),
    );
    assert!(wait_until(Duration::from_secs(60), || started(&state)));
    // Its LISTEN connection is up (the LISTEN itself follows at once), and it is past its
    // first, empty round.
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    assert!(wait_until(Duration::from_secs(60), || {
        client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&postgres::LISTENER_NAME],
            )
            .is_ok_and(|r| r.get::<_, i64>(0) == 1)
    }));
    std::thread::sleep(Duration::from_millis(300));
    let q = postgres::backend(options(&url, "a")).unwrap().queue;
    q.enqueue(NewTask {
        message: "sleep:10".into(),
        issue_ref: Some("o/r#1".into()),
        options: Default::default(),
    })
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || q.stats().is_ok_and(|s| s.completed == 1)),
        "{:?}",
        q.list()
    );
    common::kill(&daemon, rustix::process::Signal::TERM);
    common::wait_exit(&mut daemon, Duration::from_secs(20));
}
