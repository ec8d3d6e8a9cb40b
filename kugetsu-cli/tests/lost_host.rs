//! A lost host's work moves on by itself, through the binary and the bundled fake agent, on a
//! real PostgreSQL server the test starts: three hosts (state directories), one of which (A)
//! ran two turns of issue #1 and is running its third when its daemon is SIGKILLed and its
//! state directory deleted. With `KUGETSU_HOST_LOST_SECONDS` small, every item completes on
//! the two others, each exactly once, and the move is reported (notification, `queue hosts`).
//! Once with the fake's opencode 1.x dialect and once with its 2.x one; and, on two hosts, with
//! the fake Claude Code.
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

/// A host whose agent is the bundled fake Claude Code (this `kugetsu` linked as `claude`),
/// scripted by `script.json` (each turn writes `file`), its issues' repository at `remote`.
fn claude_host(
    url: &str,
    remote: Option<&std::path::Path>,
    file: &str,
) -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let bin = env.tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let claude = bin.join("claude");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kugetsu"), &claude).unwrap();
    let repo = support::sample_repo(&env, &claude);
    let repo = remote.map_or(repo, std::path::Path::to_path_buf);
    std::fs::write(
        env.path("repos.json"),
        format!("{{\"local.test/demo/app\": \"{}\"}}\n", repo.display()),
    )
    .unwrap();
    // The priming turns of `init` write nothing.
    claude_script(&env, r#"{"mode": "ok", "text": "primed"}"#);
    for (k, v) in [("FAKE_CLAUDE_SCRIPT", "script.json"), ("FAKE_CLAUDE_RECORD", "record.jsonl")] {
        let path = env.tmp.path().join(v);
        assert_eq!(env.run(&["env", "set", k, path.to_str().unwrap()]).code, 0);
    }
    let config = read(&env.path("config"));
    std::fs::write(
        env.path("config"),
        format!(
            "{config}KUGETSU_AGENT=claude\nKUGETSU_AGENT_BIN={}\nMAX_CONCURRENT_AGENTS=2\n\
             QUEUE_DAEMON_INTERVAL_MINUTES=60\nKUGETSU_QUEUE_LEASE_SECONDS=2\n\
             KUGETSU_HOST_LOST_SECONDS=3\nKUGETSU_QUEUE_URL='{url}'\n",
            claude.display()
        ),
    )
    .unwrap();
    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    claude_script(&env, &claude_writing(file));
    (env, repo)
}

/// The fake Claude Code's turns from now on.
fn claude_script(env: &Env, turn: &str) {
    std::fs::write(env.tmp.path().join("script.json"), format!(r#"{{"default": {turn}}}"#))
        .unwrap();
}

/// A turn writing `file` (uncommitted) in the issue's worktree.
fn claude_writing(file: &str) -> String {
    format!(
        r#"{{"mode": "tool", "path": "{file}", "content": "written by a turn\n", "text": "wrote {file}"}}"#
    )
}

/// The fake Claude Code's invocations on `env` whose prompt has `text`.
fn claude_runs(env: &Env, text: &str) -> Vec<serde_json::Value> {
    read(&env.tmp.path().join("record.jsonl"))
        .lines()
        .map(json)
        .filter(|r| r["stdin"].as_str().is_some_and(|s| s.contains(text)))
        .collect()
}

/// With Claude Code: the lost host's issue moves to the other with its session (its Claude Code
/// transcript, imported into the other host's `HOME`) and its uncommitted work, and its next
/// turn resumes that session there.
#[test]
fn a_lost_hosts_claude_issue_moves_with_its_history() {
    let Some(pg) = pg::Pg::start() else { return };
    let url = pg.database();
    let (a, remote) = claude_host(&url, None, "A.md");
    let (b, _) = claude_host(&url, Some(&remote), "WORK.md");
    let hosts = [a, b];
    let _stop = Daemons(&hosts);
    let (a, b) = (&hosts[0], &hosts[1]);

    start_daemon(a);
    enqueue(a, "#1", "first turn");
    wait_completed(&[a], 1);
    enqueue(a, "#1", "second turn");
    wait_completed(&[a], 2);

    // A's next turn never ends (the API overloaded, retried for ever); B joins.
    claude_script(
        a,
        r#"{"mode": "api_error", "status": 529, "message": "busy", "retries": 1000000, "delay_ms": 1000}"#,
    );
    start_daemon(b);
    enqueue(a, "#1", "third turn");
    wait_for("A to run #1's third turn", || !claude_runs(a, "third turn").is_empty());
    let status = json(&a.run(&["queue-daemon", "status", "--json"]).stdout);
    let pid = status["pid"].as_u64().unwrap() as u32;
    support::signal(pid, "KILL");
    wait_for("A's daemon to be gone", || !support::alive(pid));
    std::fs::remove_dir_all(&a.state).unwrap();

    wait_completed(&[b], 3);
    let s = stats(b);
    assert_eq!((s["completed"].as_u64(), s["error"].as_u64()), (Some(3), Some(0)), "{s}");

    // B resumed a session of its own Claude Code store holding the two earlier turns.
    let runs = claude_runs(b, "third turn");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let argv: Vec<String> = serde_json::from_value(runs[0]["argv"].clone()).unwrap();
    let resumed = argv.iter().position(|a| a == "--resume").map(|i| argv[i + 1].clone());
    let resumed = resumed.unwrap_or_else(|| panic!("not a resume: {argv:?}"));
    let projects = b.home.join(".claude/projects");
    let transcript = std::fs::read_dir(&projects)
        .unwrap()
        .flatten()
        .map(|p| p.path().join(format!("{resumed}.jsonl")))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{resumed} is not in B's Claude Code store"));
    let text = read(&transcript);
    for turn in ["first turn", "second turn", "third turn"] {
        assert!(text.contains(turn), "{turn} missing from the moved session:\n{text}");
    }
    let worktree = std::path::PathBuf::from(runs[0]["cwd"].as_str().unwrap());
    assert_eq!(read(&worktree.join("A.md")), "written by a turn\n", "A's work came along");
    assert_eq!(read(&worktree.join("WORK.md")), "written by a turn\n", "and B's turn ran there");
}
