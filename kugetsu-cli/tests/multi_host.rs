//! Several hosts on one shared queue, through the `kugetsu` binary and the bundled fake agent,
//! on a real PostgreSQL server the test starts: three state directories stand in for three
//! hosts, each with its own daemon (`MAX_CONCURRENT_AGENTS=2`, `KUGETSU_GLOBAL_MAX_AGENTS=4`).
//! 60 items of new and existing issues are enqueued from one host. The limits are read from
//! the agents' own traces (`FAKE_OPENCODE_TRACE`: start and end of every turn), never from
//! kugetsu's bookkeeping; an issue's session stays on the host that started it.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

#[path = "../../kugetsu-queue/tests/common/pg.rs"]
mod pg;
mod support;

use std::path::Path;

use support::{Env, json, read, wait_for};

/// Stops the daemons when the test ends, passed or not.
struct Daemons<'a>(&'a [Env]);

impl Drop for Daemons<'_> {
    fn drop(&mut self) {
        for env in self.0 {
            let _ = env.run(&["queue-daemon", "stop"]);
        }
    }
}

/// The most turns running at one instant in the traces: +1 at each start, -1 at each end.
fn max_overlap(traces: &[&Path]) -> usize {
    let mut events: Vec<(u128, i32)> = Vec::new();
    for t in traces {
        for line in read(t).lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let at: u128 = f[2].parse().unwrap();
            events.push((at, if f[0] == "start" { 1 } else { -1 }));
        }
    }
    // At the same nanosecond an end is counted before a start.
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

fn host(url: &str, n: usize) -> Env {
    let (env, _repo) = Env::with_fake_agent();
    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // Turns that take a while, so that they overlap; traced from now on (not init's turns).
    std::fs::write(
        env.tmp.path().join("script.json"),
        r#"{"default": {"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "wrote WORK.md", "delay_ms": 400}}"#,
    )
    .unwrap();
    let trace = env.tmp.path().join("trace.log");
    assert_eq!(env.run(&["env", "set", "FAKE_OPENCODE_TRACE", trace.to_str().unwrap()]).code, 0);
    let config = read(&env.path("config"));
    std::fs::write(
        env.path("config"),
        format!(
            "{config}MAX_CONCURRENT_AGENTS=2\nKUGETSU_GLOBAL_MAX_AGENTS=4\n\
             QUEUE_DAEMON_INTERVAL_MINUTES=60\nKUGETSU_QUEUE_URL='{url}'\n"
        ),
    )
    .unwrap();
    let out = env.run(&["queue-daemon", "start"]);
    assert_eq!(out.code, 0, "host {n}: {}{}", out.stdout, out.stderr);
    env
}

/// Waits for `n` completed items; on a hang, shows the queue and the daemons' logs.
fn wait_completed(hosts: &[Env], n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    while completed(&hosts[0]) < n {
        if std::time::Instant::now() > deadline {
            let list = hosts[0].run(&["queue", "list"]);
            let logs: Vec<String> =
                hosts.iter().map(|h| h.run(&["queue-daemon", "logs", "40"]).stdout).collect();
            panic!(
                "{n} items did not complete:\n{}{}\n{}",
                list.stdout,
                list.stderr,
                logs.join("\n---\n")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn completed(env: &Env) -> u64 {
    let out = env.run(&["queue", "stats", "--json"]);
    if out.code != 0 {
        return 0;
    }
    json(&out.stdout)["completed"].as_u64().unwrap_or(0)
}

/// The issue sessions of a host (not its own base and PM sessions).
fn sessions(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.path("sessions"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("local.test"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn three_hosts_one_queue_limits_from_the_agents_traces_and_affinity() {
    let Some(pg) = pg::Pg::start() else { return };
    let url = pg.database();
    let hosts: Vec<Env> = (0..3).map(|n| host(&url, n)).collect();
    let _stop = Daemons(&hosts);
    for h in &hosts {
        wait_for("each daemon to start", || {
            h.run(&["queue-daemon", "logs"]).stdout.contains("daemon started")
        });
    }
    // Round 1: 20 new issues. Round 2: the same 20 again (sessions exist, on their host) and
    // 20 more new ones. Each round has one item per issue, so no item waits on its issue's lock.
    let enqueue = |range: std::ops::Range<usize>| {
        for i in range {
            let out = hosts[0].run(&["queue", "enqueue", &format!("#{i}"), "work on it"]);
            assert_eq!(out.code, 0, "{}", out.stderr);
        }
    };
    enqueue(1..21);
    wait_completed(&hosts, 20);
    let after_round_1: Vec<Vec<String>> = hosts.iter().map(sessions).collect();
    enqueue(1..41);
    wait_completed(&hosts, 60);

    let traces: Vec<_> = hosts.iter().map(|h| h.tmp.path().join("trace.log")).collect();
    let turns: usize = traces.iter().map(|t| read(t).matches("start ").count()).sum();
    assert_eq!(turns, 60, "every item ran exactly one turn");
    for (n, t) in traces.iter().enumerate() {
        let max = max_overlap(&[t.as_path()]);
        assert!(max <= 2, "host {n} ran {max} agents at once");
    }
    let all: Vec<&Path> = traces.iter().map(|t| t.as_path()).collect();
    let global = max_overlap(&all);
    assert!(global <= 4, "{global} agents at once across hosts");
    assert!(global >= 3, "the hosts shared the work ({global} at most at once)");
    // Affinity: a session is on exactly one host, and round 2 continued round 1's sessions
    // where they were instead of starting them again elsewhere.
    let now: Vec<Vec<String>> = hosts.iter().map(sessions).collect();
    for (n, before) in after_round_1.iter().enumerate() {
        for s in before {
            assert!(now[n].contains(s), "{s} left host {n}");
            for (m, other) in now.iter().enumerate() {
                assert!(m == n || !other.contains(s), "{s} is on hosts {n} and {m}");
            }
        }
    }
    let total: usize = now.iter().map(Vec::len).sum();
    assert_eq!(total, 40, "one session per issue, on one host");
    // `queue list` from any host shows the same queue.
    let list = json(&hosts[2].run(&["queue", "list", "--json"]).stdout);
    assert_eq!(list["items"].as_array().unwrap().len(), 60);
    // A `start` by hand: refused for an issue another host keeps; recorded for a new one.
    let keeper = (0..3).find(|n| now[*n].iter().any(|s| s.ends_with("-1.json"))).unwrap();
    let other = (keeper + 1) % 3;
    let out = hosts[other].run(&["start", "#1", "by hand"]);
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("lives on host"), "{}", out.stderr);
    let out = hosts[other].run(&["start", "#99", "by hand"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let report = json(&hosts[other].run(&["queue", "hosts", "--json"]).stdout);
    let mine = report.as_array().unwrap().iter().find(|h| h["this_host"] == true).unwrap();
    assert!(
        mine["issues"].as_array().unwrap().iter().any(|i| i == "local.test/demo/app#99"),
        "{mine}"
    );

    // `list` and `status` say which host they speak for.
    let list = hosts[other].run(&["list"]);
    assert!(list.stdout.contains("(sessions of host "), "{}", list.stdout);
    let status = json(&hosts[other].run(&["status", "--json"]).stdout);
    assert_eq!(status["host"], mine["host"]);

    // `queue hosts` says which host keeps which issue; a host gone for good is released.
    let report = json(&hosts[1].run(&["queue", "hosts", "--json"]).stdout);
    let report = report.as_array().unwrap();
    let issues: usize = report.iter().map(|h| h["issues"].as_array().unwrap().len()).sum();
    assert_eq!(issues, 41);
    assert_eq!(report.iter().filter(|h| h["this_host"] == true).count(), 1);
    let gone = report.iter().find(|h| !h["issues"].as_array().unwrap().is_empty()).unwrap();
    let gone = gone["host"].as_str().unwrap();
    let out = hosts[1].run(&["queue", "release-host", gone, "-y"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("unpushed work"), "{}", out.stderr);
    let report = json(&hosts[1].run(&["queue", "hosts", "--json"]).stdout);
    // (Its daemon still runs, and may hold a slot for an instant while it looks for work.)
    let kept = |h: &serde_json::Value| !h["issues"].as_array().unwrap().is_empty();
    assert!(report.as_array().unwrap().iter().all(|h| h["host"] != gone || !kept(h)), "{report}");
}

/// The shared queue's server unreachable: `queue enqueue` and `delegate` fail with an error
/// naming the server without its password, exit non-zero, and leave nothing behind (no item
/// in the file queue, no `task_queued` notification); commands that do not need the queue
/// still work. Needs no server: a closed loopback port stands in for a down one.
#[test]
fn an_unreachable_queue_server_fails_enqueue_cleanly() {
    let (mut env, _repo) = Env::with_fake_agent();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    env.set("KUGETSU_QUEUE_URL", &format!("postgres://kugetsu:hunter2secret@127.0.0.1:{port}/q"));
    for args in [&["queue", "enqueue", "#3", "do it"][..], &["delegate", "work on #3"]] {
        let out = env.run(args);
        assert_ne!(out.code, 0, "{args:?}: {}", out.stdout);
        assert!(
            out.stderr.contains(&format!("postgres://***@127.0.0.1:{port}/q")),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("Connection refused"), "{}", out.stderr);
        assert!(!out.stderr.contains("hunter2secret") && !out.stdout.contains("hunter2secret"));
    }
    let notes = env.run(&["notify", "list", "--json"]);
    assert!(!notes.stdout.contains("task_queued"), "{}", notes.stdout);
    assert!(std::fs::read_dir(env.path("queue/items")).map_or(true, |mut d| d.next().is_none()));
    let doctor = env.run(&["doctor"]);
    assert!(doctor.stdout.contains("postgres://***@127.0.0.1"), "{}", doctor.stdout);
    assert!(!doctor.stdout.contains("hunter2secret"), "{}", doctor.stdout);
    assert!(doctor.stdout.contains("check KUGETSU_QUEUE_URL"), "{}", doctor.stdout);
}
