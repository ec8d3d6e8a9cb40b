//! Several hosts on one shared queue, through the `kugetsu` binary and the bundled fake agent,
//! on a real PostgreSQL server the test starts: three state directories stand in for three
//! hosts, each with its own daemon (`MAX_CONCURRENT_AGENTS=2`, `KUGETSU_GLOBAL_MAX_AGENTS=4`).
//! 60 items of new and existing issues are enqueued from one host. The limits are read from
//! the agents' own traces (`FAKE_OPENCODE_TRACE`: start and end of every turn), never from
//! kugetsu's bookkeeping; an issue's session stays on the host that started it.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

use crate::{pg, support};

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

/// The turns of one host's trace as (session, start, end) in nanoseconds; a turn with no end
/// (its agent was killed with its daemon) ends at `killed_at`.
fn turns(trace: &Path, killed_at: Option<u128>) -> Vec<(String, u128, u128)> {
    let mut open: Vec<(String, u128)> = Vec::new();
    let mut out = Vec::new();
    for line in read(trace).lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let at: u128 = f[2].parse().unwrap();
        if f[0] == "start" {
            // The session's earlier turn never ended: its agent was killed (with its daemon),
            // and this is the turn run again.
            if let Some(i) = open.iter().position(|(s, _)| s == f[1]) {
                let (session, start) = open.remove(i);
                let end = killed_at.filter(|k| (start..=at).contains(k)).unwrap_or(at);
                out.push((session, start, end));
            }
            open.push((f[1].to_string(), at));
        } else if let Some(i) = open.iter().position(|(s, _)| s == f[1]) {
            let (session, start) = open.remove(i);
            out.push((session, start, at));
        }
    }
    for (session, start) in open {
        let end = killed_at
            .filter(|k| *k >= start)
            .unwrap_or_else(|| panic!("{}: turn of {session} never ended", trace.display()));
        out.push((session, start, end));
    }
    out
}

/// The most turns running at one instant: +1 at each start, -1 at each end (at the same
/// nanosecond an end is counted first).
fn max_overlap(turns: &[(String, u128, u128)]) -> usize {
    let mut events: Vec<(u128, i32)> = Vec::new();
    for (_, start, end) in turns {
        events.push((*start, 1));
        events.push((*end, -1));
    }
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

/// Checks both limits, and that no session ran two turns at once, over every trace.
fn check_limits(traces: &[std::path::PathBuf], killed: &[Option<u128>]) {
    let mut all = Vec::new();
    for (n, t) in traces.iter().enumerate() {
        let mine = turns(t, killed[n]);
        let max = max_overlap(&mine);
        assert!(max <= 2, "host {n} ran {max} agents at once");
        all.extend(mine);
    }
    let global = max_overlap(&all);
    assert!(global <= 4, "{global} agents at once across hosts");
    let mut sessions: Vec<&String> = all.iter().map(|(s, _, _)| s).collect();
    sessions.sort();
    sessions.dedup();
    for s in sessions {
        let of: Vec<_> = all.iter().filter(|t| &t.0 == s).cloned().collect();
        assert_eq!(max_overlap(&of), 1, "session {s} ran two turns at once");
    }
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
             QUEUE_DAEMON_INTERVAL_MINUTES=60\nKUGETSU_QUEUE_LEASE_SECONDS=5\n\
             KUGETSU_QUEUE_URL='{url}'\n"
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
    let started: usize = traces.iter().map(|t| read(t).matches("start ").count()).sum();
    assert_eq!(started, 60, "every item ran exactly one turn");
    check_limits(&traces, &[None, None, None]);
    let all: Vec<_> = traces.iter().flat_map(|t| turns(t, None)).collect();
    let global = max_overlap(&all);
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
    // Faults: 6 items of new issues with turns longer than a lease (6 s, leases 5 s); while
    // agents run, one host's daemon is SIGKILLed (its agents end with it) and the server
    // restarted; then that host's daemon is started again. Every item completes; the limits
    // held throughout and no session ran two turns at once (a killed turn counts as running
    // until the kill).
    for h in &hosts {
        std::fs::write(
            h.tmp.path().join("script.json"),
            r#"{"default": {"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "wrote WORK.md", "delay_ms": 6000}}"#,
        )
        .unwrap();
    }
    for i in 41..47 {
        let out = hosts[0].run(&["queue", "enqueue", &format!("#{i}"), "work on it"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let running = |t: &Path| {
        let text = read(t);
        text.matches("start ").count().saturating_sub(text.matches("end ").count())
    };
    wait_for("agents of round 3 to run", || traces.iter().map(|t| running(t)).sum::<usize>() >= 3);
    let victim = (0..3).max_by_key(|n| running(&traces[*n])).unwrap();
    let status = json(&hosts[victim].run(&["queue-daemon", "status", "--json"]).stdout);
    let pid = status["pid"].as_u64().unwrap() as u32;
    support::signal(pid, "KILL");
    let killed_at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    wait_for("the killed daemon to be gone", || !support::alive(pid));
    pg.stop();
    pg.restart();
    let out = hosts[victim].run(&["queue-daemon", "start"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    wait_completed(&hosts, 66);
    let mut killed = [None, None, None];
    killed[victim] = Some(killed_at);
    check_limits(&traces, &killed);
    let ended: usize = traces.iter().map(|t| read(t).matches("end ").count()).sum();
    assert!(ended >= 66, "{ended} turns ended for 66 items");

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

    // `doctor` names the schema and the hosts with live leases (this one runs a turn: #99's).
    let doctor = hosts[other].run(&["doctor"]);
    assert!(doctor.stdout.contains("(schema version 3), this host "), "{}", doctor.stdout);

    // `list` and `status` say which host they speak for.
    let list = hosts[other].run(&["list"]);
    assert!(list.stdout.contains("(sessions of host "), "{}", list.stdout);
    let status = json(&hosts[other].run(&["status", "--json"]).stdout);
    assert_eq!(status["host"], mine["host"]);

    // `queue hosts` says which host keeps which issue; a host gone for good is released.
    let report = json(&hosts[1].run(&["queue", "hosts", "--json"]).stdout);
    let report = report.as_array().unwrap();
    let issues: usize = report.iter().map(|h| h["issues"].as_array().unwrap().len()).sum();
    assert_eq!(issues, 47);
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

/// `queue migrate --to <url>` moves a file queue's pending items to the shared queue with
/// their ids, once: a second run moves nothing, and the file queue keeps them as `error`
/// saying where they went (the URL masked), so no file-queue daemon runs them too.
#[test]
fn queue_migrate_moves_pending_items_once() {
    let Some(pg) = pg::Pg::start() else { return };
    let url = pg.database();
    let (mut env, _repo) = Env::with_fake_agent();
    let ids: Vec<String> = (1..4)
        .map(|i| {
            let out = env.run(&["queue", "enqueue", &format!("#{i}"), "before the move", "--json"]);
            assert_eq!(out.code, 0, "{}", out.stderr);
            json(&out.stdout)["id"].as_str().unwrap().to_string()
        })
        .collect();
    let out = env.run(&["queue", "migrate", "--to", &url]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("moved 3 pending task(s) to postgres://***@"), "{}", out.stdout);
    assert!(!out.stdout.contains("s3cretpw"));
    let again = env.run(&["queue", "migrate", "--to", &url, "--json"]);
    assert_eq!(json(&again.stdout)["moved"].as_array().unwrap().len(), 0, "{}", again.stdout);
    let files = json(&env.run(&["queue", "list", "--json"]).stdout);
    for item in files["items"].as_array().unwrap() {
        assert_eq!(item["status"], "error");
        let why = item["last_error"].as_str().unwrap();
        assert!(why.contains("moved to the shared queue at postgres://***@"), "{why}");
    }
    env.set("KUGETSU_QUEUE_URL", &url);
    let shared = json(&env.run(&["queue", "list", "--json"]).stdout);
    let moved: Vec<&str> =
        shared["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(moved, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(shared["items"].as_array().unwrap().iter().all(|i| i["status"] == "pending"));
}
