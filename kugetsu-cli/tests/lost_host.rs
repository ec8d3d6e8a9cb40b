//! A lost host's work moves on by itself, through the binary and the bundled fake agent, on a
//! real PostgreSQL server the test starts: three hosts (state directories), one of which (A)
//! ran two turns of issue #1 and is running its third when its daemon is SIGKILLed and its
//! state directory deleted. With `KUGETSU_HOST_LOST_SECONDS` small, every item completes on
//! the two others, each exactly once, and the move is reported (notification, `queue hosts`).
//! Once with the fake's opencode 1.x dialect and once with its 2.x one.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

use crate::{pg, support};

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

/// The fake agent's dialect: its default (1.x), or the 2.x one of `FAKE_OPENCODE_VERSION`.
#[derive(Clone, Copy)]
enum Agent {
    V1,
    V2,
}

/// A host with its config and a traced fake agent whose turns take `delay_ms`, its issues'
/// repository at `remote` (one remote for every host, as in a team).
fn host(
    url: &str,
    delay_ms: u64,
    remote: Option<&std::path::Path>,
    agent: Agent,
) -> (Env, std::path::PathBuf) {
    let (env, repo) = Env::with_fake_agent();
    let repo = remote.map_or(repo, std::path::Path::to_path_buf);
    configure(&env, url, &repo, delay_ms, agent);
    (env, repo)
}

/// Points `env`'s state directory at the shared queue and at `remote`, and initializes it.
fn configure(env: &Env, url: &str, remote: &std::path::Path, delay_ms: u64, agent: Agent) {
    std::fs::write(
        env.path("repos.json"),
        format!("{{\"local.test/demo/app\": \"{}\"}}\n", remote.display()),
    )
    .unwrap();
    if let Agent::V2 = agent {
        assert_eq!(env.run(&["env", "set", "FAKE_OPENCODE_VERSION", "2.1.2"]).code, 0);
    }
    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    script(env, delay_ms);
    let trace = env.tmp.path().join("trace.log");
    assert_eq!(env.run(&["env", "set", "FAKE_OPENCODE_TRACE", trace.to_str().unwrap()]).code, 0);
    let config = read(&env.path("config"));
    std::fs::write(
        env.path("config"),
        format!(
            "{config}MAX_CONCURRENT_AGENTS=2\nQUEUE_DAEMON_INTERVAL_MINUTES=60\n\
             KUGETSU_QUEUE_LEASE_SECONDS=2\nKUGETSU_HOST_LOST_SECONDS=3\n\
             KUGETSU_QUEUE_URL='{url}'\n"
        ),
    )
    .unwrap();
}

/// Makes `env`'s deleted state directory again, as a user who reinstalls kugetsu on the same
/// machine and path would: the same host name, no memory of its issues.
fn revive(env: &Env, url: &str, remote: &std::path::Path, agent: Agent) {
    std::fs::create_dir_all(&env.state).unwrap();
    std::fs::set_permissions(&env.state, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .unwrap();
    let bin = env.tmp.path().join("bin/opencode");
    std::fs::write(
        env.path("config"),
        format!(
            "KUGETSU_OPENCODE_BIN={}\nKUGETSU_DEFAULT_REPO=local.test/demo/app\n",
            bin.display()
        ),
    )
    .unwrap();
    // Quick turns again (its init's turns among them).
    script(env, 300);
    for (k, file) in [("OPENCODE_DB", "fake-db.json"), ("FAKE_OPENCODE_SCRIPT", "script.json")] {
        let path = env.tmp.path().join(file);
        assert_eq!(env.run(&["env", "set", k, path.to_str().unwrap()]).code, 0);
    }
    configure(env, url, remote, 300, agent);
}

/// Every turn writes `file` (uncommitted) in the issue's worktree.
fn script_writing(env: &Env, file: &str, delay_ms: u64) {
    std::fs::write(
        env.tmp.path().join("script.json"),
        format!(
            r#"{{"default": {{"mode": "tool", "path": "{file}", "content": "written by a turn\n", "text": "wrote {file}", "delay_ms": {delay_ms}}}}}"#
        ),
    )
    .unwrap();
}

fn script(env: &Env, delay_ms: u64) {
    script_writing(env, "WORK.md", delay_ms);
}

fn start_daemon(env: &Env) {
    let out = env.run(&["queue-daemon", "start"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    wait_for("the daemon to start", || {
        env.run(&["queue-daemon", "logs"]).stdout.contains("daemon started")
    });
}

fn enqueue(env: &Env, issue: &str, message: &str) {
    let out = env.run(&["queue", "enqueue", issue, message]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

fn stats(env: &Env) -> serde_json::Value {
    let out = env.run(&["queue", "stats", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    json(&out.stdout)
}

/// Waits for `n` completed items; on a hang, shows the queue and the daemons' logs.
fn wait_completed(hosts: &[&Env], n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while stats(hosts[0])["completed"].as_u64().unwrap_or(0) < n {
        if std::time::Instant::now() > deadline {
            let list = hosts[0].run(&["queue", "list"]);
            let logs: Vec<String> =
                hosts.iter().map(|h| h.run(&["queue-daemon", "logs", "60"]).stdout).collect();
            panic!("{n} items did not complete:\n{}\n{}", list.stdout, logs.join("\n---\n"));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn count(trace: &std::path::Path, what: &str) -> usize {
    std::fs::read_to_string(trace).unwrap_or_default().matches(what).count()
}

#[test]
fn a_lost_hosts_issues_complete_on_the_others_once_each() {
    lost_host(Agent::V1);
}

/// The same with opencode 2's dialect: its sessions move through its serve's export and import.
#[test]
fn a_lost_hosts_opencode_2_issue_moves_with_its_history() {
    lost_host(Agent::V2);
}

fn lost_host(agent: Agent) {
    let Some(pg) = pg::Pg::start() else { return };
    let url = pg.database();
    let (first, remote) = host(&url, 300, None, agent);
    let hosts = vec![
        first,
        host(&url, 300, Some(&remote), agent).0,
        host(&url, 300, Some(&remote), agent).0,
    ];
    let _stop = Daemons(&hosts);
    let (a, b, c) = (&hosts[0], &hosts[1], &hosts[2]);
    let traces: Vec<_> = hosts.iter().map(|h| h.tmp.path().join("trace.log")).collect();

    // Two turns of #1 on A alone, each writing A.md (left uncommitted).
    script_writing(a, "A.md", 300);
    start_daemon(a);
    enqueue(a, "#1", "first turn");
    wait_completed(&[a], 1);
    enqueue(a, "#1", "second turn");
    wait_completed(&[a], 2);
    assert_eq!(count(&traces[0], "end "), 2);

    // A's turns now outlast the test's patience; B and C join. New issues go anywhere; #1's
    // third turn waits for A, which starts it.
    script(a, 600_000);
    start_daemon(b);
    start_daemon(c);
    enqueue(a, "#1", "third turn");
    for i in 2..7 {
        enqueue(b, &format!("#{i}"), "work on it");
    }
    wait_for("A to run #1's third turn", || count(&traces[0], "start ") >= 3);

    // A dies with its state directory.
    let status = json(&a.run(&["queue-daemon", "status", "--json"]).stdout);
    let pid = status["pid"].as_u64().unwrap() as u32;
    support::signal(pid, "KILL");
    wait_for("A's daemon to be gone", || !support::alive(pid));
    std::fs::remove_dir_all(&a.state).unwrap();

    // Every item completes on B and C, each once: A finished only its first two turns, and
    // the others ran one turn per remaining item.
    wait_completed(&[b, c], 8);
    let s = stats(b);
    assert_eq!((s["completed"].as_u64(), s["error"].as_u64()), (Some(8), Some(0)), "{s}");
    assert_eq!(count(&traces[0], "end "), 2, "A finished nothing after it was killed");
    let elsewhere = count(&traces[1], "start ") + count(&traces[2], "start ");
    assert_eq!(elsewhere, 6, "B and C ran one turn per remaining item");

    // The move is told: a notification of the live host that made it, and `queue hosts`.
    let notes: String =
        [b, c].iter().map(|h| h.run(&["notify", "list", "--all", "--json"]).stdout).collect();
    assert!(notes.contains("is lost (silent for over 3s)"), "{notes}");
    // (Its lease expired first: recovery put the running turn back, saying it was cut short.)
    assert!(notes.contains("died while running it"), "{notes}");
    assert!(notes.contains("moves with its history"), "{notes}");
    let report = json(&b.run(&["queue", "hosts", "--json"]).stdout);
    let lost = report
        .as_array()
        .unwrap()
        .iter()
        .find(|h| !h["moved_away"].as_array().unwrap().is_empty())
        .unwrap_or_else(|| panic!("no move in {report}"));
    let moved = lost["moved_away"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["issue"] == "local.test/demo/app#1")
        .unwrap_or_else(|| panic!("#1 did not move: {report}"));
    let to = moved["to_host"].as_str().unwrap();
    assert!(
        [b, c].iter().any(|h| h.run(&["queue", "hosts", "--json"]).stdout.contains(to)),
        "{report}"
    );
    assert!(lost["issues"].as_array().unwrap().is_empty(), "{report}");
    assert!(moved["why"].as_str().unwrap().contains("moves with its history"), "{report}");

    // #1 carried on with its history on the host that took it: its session there holds the
    // two earlier turns (imported into that host's own session store), and its worktree has
    // the file A's turns left uncommitted.
    let took = [b, c]
        .into_iter()
        .find(|h| {
            let mine = json(&h.run(&["queue", "hosts", "--json"]).stdout);
            mine.as_array().unwrap().iter().any(|x| x["this_host"] == true && x["host"] == to)
        })
        .unwrap_or_else(|| panic!("no live host is {to}"));
    let store = read(&took.tmp.path().join("fake-db.json"));
    for earlier in ["first turn", "second turn", "third turn"] {
        assert!(store.contains(earlier), "{earlier} missing from the new host's session");
    }
    let session = std::fs::read_dir(took.path("sessions"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("-1.json"))
        .unwrap();
    let session = json(&read(&session.path()));
    let worktree = std::path::Path::new(session["worktree_path"].as_str().unwrap());
    assert_eq!(read(&worktree.join("A.md")), "written by a turn\n");
    assert_eq!(read(&worktree.join("WORK.md")), "written by a turn\n", "and its own turn ran");

    // A comes back (same machine and path, state made anew): it learns that #1 moved, and #1's
    // next turn runs where #1 went, not on A.
    revive(a, &url, &remote, agent);
    start_daemon(a);
    wait_for("A to learn that #1 moved", || {
        read(&a.path("queue/daemon.log"))
            .contains(&format!("local.test/demo/app#1 moved to {to} while this host was lost"))
    });
    let before = count(&traces[0], "start ");
    let took_trace = took.tmp.path().join("trace.log");
    let took_before = count(&took_trace, "start ");
    enqueue(a, "#1", "fourth turn");
    wait_completed(&[a, b, c], 9);
    assert_eq!(count(&traces[0], "start "), before, "A ran nothing of #1");
    assert_eq!(count(&took_trace, "start "), took_before + 1);
}
