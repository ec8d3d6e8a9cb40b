//! End to end through the real binary: real worktrees (gix) of a real local repository, the
//! real opencode driver, and the bundled fake agent standing in for opencode.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Env, alive, git, signal, wait_for};

/// A scratch home with a sample repository and the fake agent.
fn setup() -> (Env, PathBuf) {
    Env::with_fake_agent()
}

#[test]
fn init_start_continue_list_destroy() {
    let (env, _repo) = setup();
    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(env.run(&["status"]).stdout, "ok\n");

    let out = env.run(&["start", "#1", "do the work"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("local.test/demo/app#1: completed"), "{}", out.stdout);
    let wt = env.path("worktrees/local.test-demo-app-1");
    assert_eq!(
        std::fs::read_to_string(wt.join("WORK.md")).unwrap(),
        "done\n",
        "the agent ran inside the worktree"
    );
    assert_eq!(git(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(), "fix/issue-1");

    let out = env.run(&["list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out.stdout).expect("list --json is JSON");
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2]["issue_ref"], "local.test/demo/app#1");
    assert_eq!(rows[2]["state"], "idle");

    let out = env.run(&["continue", "local.test/demo/app#1", "more"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    let out = env.run(&["destroy", "local.test/demo/app#1", "-y"]);
    assert_eq!(out.code, 1, "unsaved work refuses: {}", out.stderr);
    assert!(out.stderr.contains("WORK.md"), "{}", out.stderr);
    assert!(wt.join("WORK.md").exists());
    let out = env.run(&["destroy", "local.test/demo/app#1", "-y", "--force"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!wt.exists());
    assert_eq!(env.run(&["list", "--json"]).stdout.matches("issue_ref").count(), 2);
}

/// `start` on an issue that already has a worktree recreates it clean, but refuses while that
/// would lose uncommitted files or commits no remote branch has, listing them; `--force` is the
/// only way past.
#[test]
fn restart_lists_unsaved_work_and_keeps_it_unless_forced() {
    let (env, _repo) = setup();
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    let out = env.run(&["start", "#1", "do the work"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let wt = env.path("worktrees/local.test-demo-app-1");
    git(&wt, &["add", "WORK.md"]);
    git(&wt, &["commit", "-q", "-m", "local work"]);
    let commit = git(&wt, &["rev-parse", "HEAD"]).trim().to_string();
    std::fs::write(wt.join("notes.txt"), "not yet committed\n").unwrap();

    let out = env.run(&["start", "#1", "again"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("changed: notes.txt"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("unpushed: {} local work", &commit[..8])),
        "the commit is listed: {}",
        out.stderr
    );
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(wt.join("notes.txt")).unwrap(), "not yet committed\n");
    assert_eq!(git(&wt, &["rev-parse", "HEAD"]).trim(), commit, "the commit is kept");

    let out = env.run(&["start", "#1", "again", "--force"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(!wt.join("notes.txt").exists());
    assert_ne!(git(&wt, &["rev-parse", "HEAD"]).trim(), commit, "recreated from the base");
    assert_eq!(git(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(), "fix/issue-1");
}

/// Ctrl-C while `start` checks out a large worktree: exit 130, and neither a worktree, its
/// registration nor the new branch is left; the next `start` works.
#[test]
fn ctrl_c_during_checkout_leaves_nothing_half_made() {
    let (env, repo) = setup();
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    assert_eq!(env.run(&["start", "#1", "clone the mirror"]).code, 0);
    // Enough files that the checkout takes a while even on a fast disk.
    for d in 0..50 {
        let dir = repo.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f:03}.txt")), format!("{d} {f}\n").repeat(40))
                .unwrap();
        }
    }
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "many files"]);

    let wt = env.path("worktrees/local.test-demo-app-2");
    let mut child = env
        .command(&["start", "#2", "go"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let checking_out = || std::fs::read_dir(wt.join("d000")).is_ok_and(|mut d| d.next().is_some());
    while !checking_out() {
        assert!(child.try_wait().unwrap().is_none(), "start ended before its checkout was seen");
        assert!(std::time::Instant::now() < deadline, "the checkout never started");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");

    assert!(!wt.exists(), "no half-made worktree at {}", wt.display());
    let mirrors: Vec<_> =
        std::fs::read_dir(env.path("mirrors")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(mirrors.len(), 1, "{mirrors:?}");
    let branches = git(&mirrors[0], &["branch", "--list", "fix/issue-2"]);
    assert_eq!(branches.trim(), "", "no branch left behind");
    let worktrees = git(&mirrors[0], &["worktree", "list", "--porcelain"]);
    assert!(!worktrees.contains("issue-2"), "{worktrees}");
    assert_eq!(git(&mirrors[0], &["fsck", "--no-progress"]).trim(), "");
    let list = env.run(&["list", "--json"]).stdout;
    assert!(!list.contains("app#2"), "no session for the interrupted start: {list}");

    let out = env.run(&["start", "#2", "go"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(wt.join("d049/f099.txt").is_file());
}

#[test]
fn messages_reach_the_agent_byte_exact() {
    let (env, _repo) = setup();
    let record = env.tmp.path().join("record.jsonl");
    assert_eq!(env.run(&["env", "set", "FAKE_OPENCODE_RECORD", record.to_str().unwrap()]).code, 0);
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    let hostile = "$(touch /tmp/kugetsu-pwned) `id` --help\nsecond line \"quoted\" 'single'";
    let out = env.run(&["start", "#2", hostile]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines = std::fs::read_to_string(&record).unwrap();
    let runs: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("message").is_some())
        .collect();
    assert!(runs.iter().any(|r| r["message"] == hostile), "{lines}");
    assert!(!Path::new("/tmp/kugetsu-pwned").exists());
}

#[test]
fn racing_starts_of_one_issue_make_one_session() {
    let (env, _repo) = setup();
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    let script = env.tmp.path().join("script.json");
    std::fs::write(&script, r#"{"default": {"mode": "ok", "text": "hi", "delay_ms": 800}}"#)
        .unwrap();
    let children: Vec<_> = (0..32)
        .map(|_| {
            env.command(&["start", "#3", "go"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let ok = outs.iter().filter(|o| o.status.code() == Some(0)).count();
    let busy: Vec<_> = outs.iter().filter(|o| o.status.code() == Some(4)).collect();
    assert_eq!(ok + busy.len(), 32, "every start either ran or was told it is running");
    assert!(ok >= 1);
    for b in &busy {
        assert!(String::from_utf8_lossy(&b.stderr).contains("already running"));
    }
    let index = std::fs::read_to_string(env.path("index.json")).unwrap();
    assert_eq!(index.matches("local.test/demo/app#3").count(), 1, "{index}");
}

/// The highest number of turns that overlapped in time, from the fake agent's trace.
fn max_overlap(trace: &str) -> usize {
    let mut points: Vec<(u128, i32)> = trace
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let kind = parts.next()?;
            let _session = parts.next()?;
            let t: u128 = parts.next()?.parse().ok()?;
            Some((t, if kind == "start" { 1 } else { -1 }))
        })
        .collect();
    // Ends sort before starts at the same instant: a slot freed and retaken is not an overlap.
    points.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in points {
        now += d;
        max = max.max(now);
    }
    usize::try_from(max).unwrap_or(0)
}

#[test]
fn racing_starts_never_exceed_the_limit_and_none_is_lost() {
    // 64 racing `start` processes, twice over.
    let (mut env, _repo) = setup();
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    let config = std::fs::read_to_string(env.path("config")).unwrap();
    std::fs::write(env.path("config"), format!("{config}MAX_CONCURRENT_AGENTS=3\n")).unwrap();
    let script = env.tmp.path().join("script.json");
    std::fs::write(&script, r#"{"default": {"mode": "ok", "text": "hi", "delay_ms": 150}}"#)
        .unwrap();
    let n = 64;
    let mut queued_so_far = 0;
    for rep in 0..2 {
        let trace = env.tmp.path().join(format!("trace-{rep}.txt"));
        env.set("FAKE_OPENCODE_TRACE", trace.to_str().unwrap());
        let children: Vec<_> = (0..n)
            .map(|i| {
                let issue = format!("#{}", 1000 * (rep + 1) + i);
                // A third ask to be queued rather than wait when every slot is busy.
                let mut args = vec!["start", issue.as_str(), "go"];
                if i % 3 == 0 {
                    args.push("--no-wait");
                }
                env.command(&args)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        let mut ran = 0;
        let mut queued = 0;
        for o in &outs {
            let stdout = String::from_utf8_lossy(&o.stdout);
            assert_eq!(o.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
            if stdout.contains("queued as") {
                queued += 1;
            } else {
                assert!(stdout.contains(": completed"), "{stdout}");
                ran += 1;
            }
        }
        assert_eq!(ran + queued, n, "every start ran or was queued (repetition {rep})");
        queued_so_far += queued;
        let items = std::fs::read_dir(env.path("queue/items")).unwrap().count();
        assert_eq!(items, queued_so_far, "every queued start is in the queue");
        let trace = std::fs::read_to_string(&trace).unwrap();
        assert_eq!(
            trace.lines().filter(|l| l.starts_with("start")).count(),
            ran,
            "one turn per run"
        );
        let max = max_overlap(&trace);
        assert!(
            max <= 3,
            "{max} agents ran at once with MAX_CONCURRENT_AGENTS=3 (repetition {rep})"
        );
        assert!(max >= 2, "the limit was exercised ({max})");
    }
}

fn queue_items(env: &Env) -> Vec<serde_json::Value> {
    let out = env.run(&["queue", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("queue list --json");
    v["items"].as_array().cloned().unwrap_or_default()
}

/// The item of `issue` in `queue list --json`.
fn queue_item(env: &Env, issue: &str) -> serde_json::Value {
    queue_items(env).into_iter().find(|i| i["issue_ref"] == issue).unwrap_or_default()
}

fn session_state(env: &Env, issue: u32) -> String {
    let path = env.path(&format!("sessions/local.test-demo-app-{issue}.json"));
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    file["state"].as_str().unwrap().to_string()
}

/// README: the next daemon after one killed with SIGKILL puts the tasks of the dead one back to
/// `pending`, or adopts those whose agent still runs; when such an agent exits nobody has read
/// how its turn ended, so the task ends in `error` saying so and the issue's session is
/// `failed`, ready for `kugetsu continue`.
#[test]
fn a_daemon_killed_with_sigkill_loses_no_item() {
    let (mut env, _repo) = setup();
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    let trace = env.tmp.path().join("trace.log");
    env.set("FAKE_OPENCODE_TRACE", trace.to_str().unwrap());
    // The two queued turns hang until killed; any later turn writes WORK.md and answers.
    std::fs::write(
        env.tmp.path().join("script.json"),
        r#"{"turns": [{"mode": "hang", "after_output": true}, {"mode": "hang", "after_output": true}],
            "default": {"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "ok"}}"#,
    )
    .unwrap();
    let (adopted, requeued) = ("local.test/demo/app#200", "local.test/demo/app#201");
    for issue in [adopted, requeued] {
        let out = env.run(&["queue", "enqueue", issue, "work"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let out = env.run(&["queue-daemon", "start", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let daemon =
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["pid"].as_u64().unwrap();
    let daemon = u32::try_from(daemon).unwrap();
    // Both agents run, and their items' leases name them.
    let agent_of = |issue: &str| {
        let pid = queue_item(&env, issue)["claim"]["agent_pid"].as_u64();
        pid.map(|p| u32::try_from(p).unwrap())
    };
    wait_for("both agents to run", || {
        let turns = std::fs::read_to_string(&trace).unwrap_or_default();
        turns.matches("start ").count() == 2
            && agent_of(adopted).is_some()
            && agent_of(requeued).is_some()
    });
    let (agent, gone) = (agent_of(adopted).unwrap(), agent_of(requeued).unwrap());

    signal(daemon, "KILL");
    wait_for("the daemon to die", || !alive(daemon));
    // The kernel frees the daemon's lock once no process holds it: a child the daemon had
    // just forked (its warm serve, say) holds a copy until it runs exec, which on a loaded
    // machine can come a moment after the daemon died.
    let deadline = std::time::Instant::now() + support::HANG;
    while !env.run(&["queue-daemon", "status"]).stdout.starts_with("not running\n") {
        if std::time::Instant::now() > deadline {
            // Who still holds the state directory's files open, for the report.
            let holders = std::process::Command::new("sh")
                .args(["-c", "for p in /proc/[0-9]*; do ls -l $p/fd 2>/dev/null | grep -q \"$0\" && echo \"$p $(tr '\\0' ' ' < $p/cmdline)\"; done"])
                .arg(env.path("queue").display().to_string())
                .output()
                .unwrap();
            panic!(
                "the daemon's lock is still held:\n{}",
                String::from_utf8_lossy(&holders.stdout)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(alive(agent) && alive(gone), "a daemon's agents outlive it");
    // One agent ends while no daemon watches it.
    signal(gone, "KILL");
    wait_for("that agent to die", || !alive(gone));
    for issue in [adopted, requeued] {
        assert_eq!(queue_item(&env, issue)["status"], "notified", "still claimed by the dead");
    }

    let out = env.run(&["queue-daemon", "start"]);
    assert_eq!(out.code, 0, "a restart is not blocked by the dead daemon's files: {}", out.stderr);
    // The item whose agent is gone goes back to pending and runs again; the live agent is
    // adopted, not started a second time.
    wait_for("the requeued item to complete", || {
        queue_item(&env, requeued)["status"] == "completed"
    });
    wait_for("the live agent to be adopted", || !queue_item(&env, adopted)["adopted_by"].is_null());
    assert_eq!(queue_item(&env, adopted)["status"], "notified");
    assert!(alive(agent), "the adopted agent runs on");
    assert_eq!(session_state(&env, 201), "idle");
    assert!(env.path("worktrees/local.test-demo-app-201/WORK.md").is_file());
    let turns = std::fs::read_to_string(&trace).unwrap();
    assert_eq!(turns.matches("start ").count(), 3, "only the requeued item ran again: {turns}");

    // The adopted agent exits: its outcome was never read.
    signal(agent, "KILL");
    wait_for("the adopted item to end", || queue_item(&env, adopted)["status"] != "notified");
    let item = queue_item(&env, adopted);
    assert_eq!(item["status"], "error", "{item}");
    let why = item["last_error"].as_str().unwrap();
    assert!(why.contains(&format!("adopted agent pid {agent} exited unobserved")), "{why}");
    assert!(why.contains(&format!("`kugetsu continue {adopted}` resumes it")), "{why}");
    assert_eq!(session_state(&env, 200), "failed");
    assert_eq!(queue_items(&env).len(), 2, "no item lost");
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);

    let out = env.run(&["continue", adopted, "go on"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(session_state(&env, 200), "idle");
}

/// The demo ignores the user's settings: a custom opencode (here one that would fail), a zero
/// agent limit, a default repository and an opencode config in the shell change nothing.
#[test]
fn the_demo_runs() {
    let mut env = Env::new();
    let trap = env.tmp.path().join("not-the-fake.sh");
    let marker = env.tmp.path().join("the-users-opencode-ran");
    std::fs::write(&trap, format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display())).unwrap();
    std::fs::set_permissions(&trap, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for (k, v) in [
        ("KUGETSU_OPENCODE_BIN", trap.to_str().unwrap()),
        ("MAX_CONCURRENT_AGENTS", "0"),
        ("KUGETSU_DEFAULT_REPO", "github.com/someone/else"),
        ("KUGETSU_AGENT_TIMEOUT_MINUTES", "0"),
        ("OPENCODE_CONFIG_CONTENT", "{not json"),
    ] {
        env.set(k, v);
    }
    let out = env.run(&["demo"]);
    assert!(!marker.exists(), "the demo ran the user's opencode");
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for needle in [
        "[1] $ kugetsu init --headless",
        "queue daemon started",
        "GREETING.md",
        "destroyed local.test/demo/app#1",
        "demo finished",
    ] {
        assert!(out.stdout.contains(needle), "missing {needle:?} in:\n{}", out.stdout);
    }
}

#[test]
fn a_canary_token_leaks_nowhere() {
    let (env, _repo) = setup();
    let canary = "canary-tok-8f3a9d2e";
    assert_eq!(env.run(&["env", "set", "GITHUB_TOKEN", canary]).code, 0);
    // The agent prints the token back: it must still not reach a log, a file or any output.
    let script = env.tmp.path().join("script.json");
    std::fs::write(
        &script,
        format!(r#"{{"default": {{"mode": "tool", "path": "WORK.md", "content": "x\n", "text": "my token is {canary}"}}}}"#),
    )
    .unwrap();
    let mut outputs = Vec::new();
    for args in [
        &["--debug", "init", "--headless"][..],
        &["--debug", "start", "#4", "go"],
        &["--debug", "continue", "#4", "again"],
        &["list", "--json"],
        &["--debug", "logs", "50"],
        &["notify", "list", "--all"],
        &["queue", "list", "--json"],
        &["env", "show"],
        &["env", "list", "--json"],
        &["--debug", "doctor"],
        &["status", "--json"],
    ] {
        let out = env.run(args);
        outputs.push((args.join(" "), out.code, out.stdout + &out.stderr));
    }
    // A command that failed early would print nothing to leak: each must have done its work.
    for (cmd, code, text) in &outputs {
        assert_eq!(*code, 0, "`kugetsu {cmd}` failed:\n{text}");
    }
    for (cmd, _, text) in &outputs {
        assert!(!text.contains(canary), "`kugetsu {cmd}` printed the token:\n{text}");
    }
    // The agent did echo it: what reached the terminal and the log was masked.
    let (_, _, start) = &outputs[1];
    assert!(start.contains("agent: my token is ********"), "{start}");
    let (_, _, logs) = &outputs[4];
    assert!(logs.contains("my token is ********"), "{logs}");
    // Everything kugetsu writes is under its state directory; the env files are where the token
    // belongs. (What opencode stores in its own database is opencode's business.)
    for path in env.all_files() {
        if path.is_file() && path.starts_with(&env.state) && !path.starts_with(env.path("env")) {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(canary),
                "{} holds the token",
                path.display()
            );
        }
    }
}

/// The subcommands the fake agent recorded (`record.jsonl`), in order.
fn agent_commands(env: &Env) -> Vec<String> {
    support::read(&env.tmp.path().join("record.jsonl"))
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["argv"][0] != "run" || r["message"].is_string())
        .filter_map(|r| r["argv"][0].as_str().map(str::to_owned))
        .collect()
}

/// README (`KUGETSU_WARM_AGENT`): while the queue daemon runs it keeps one `opencode serve`,
/// and every `start`, foreground or queued, forks through it instead of spending an `import`
/// process; the serve ends with the daemon, and `start` imports again.
#[test]
fn a_running_daemon_keeps_a_serve_that_forks_every_start() {
    let env = support::ready();
    let registration = env.path("cache/opencode-serve.json");
    assert!(!registration.exists(), "no serve without a daemon");
    let out = env.run(&["queue-daemon", "start"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_for("the daemon's serve", || registration.is_file());
    let reg: serde_json::Value = serde_json::from_str(&support::read(&registration)).unwrap();
    let serve = u32::try_from(reg["pid"].as_u64().unwrap()).unwrap();
    assert!(alive(serve));

    let before = agent_commands(&env).len();
    let out = env.run(&["start", "local.test/demo/app#5", "work on it"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        agent_commands(&env)[before..],
        ["run"],
        "a foreground start forks through the serve"
    );
    assert!(env.path("worktrees/local.test-demo-app-5/WORK.md").is_file(), "ran in the worktree");

    let before = agent_commands(&env).len();
    assert_eq!(env.run(&["queue", "enqueue", "local.test/demo/app#6", "work"]).code, 0);
    wait_for("the queued start", || {
        queue_item(&env, "local.test/demo/app#6")["status"] == "completed"
    });
    assert_eq!(agent_commands(&env)[before..], ["run"], "so does the daemon's own");
    assert!(env.path("worktrees/local.test-demo-app-6/WORK.md").is_file());

    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
    wait_for("the serve to end with the daemon", || !alive(serve));
    assert!(!registration.exists(), "unregistered");
    let before = agent_commands(&env).len();
    let out = env.run(&["start", "local.test/demo/app#7", "work on it"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(agent_commands(&env)[before..], ["import", "run"], "no daemon: an import");
}

/// README (`KUGETSU_WARM_AGENT=off`): the daemon keeps nothing warm.
#[test]
fn warm_forks_can_be_turned_off() {
    let mut env = support::ready();
    env.set("KUGETSU_WARM_AGENT", "off");
    assert_eq!(env.run(&["queue-daemon", "start"]).code, 0);
    assert_eq!(env.run(&["queue", "enqueue", "local.test/demo/app#8", "work"]).code, 0);
    wait_for("the queued start", || {
        queue_item(&env, "local.test/demo/app#8")["status"] == "completed"
    });
    assert!(!env.path("cache/opencode-serve.json").exists());
    assert!(!agent_commands(&env).contains(&"serve".to_owned()));
    // Nor does a `start`, whatever the idle time says.
    env.set("KUGETSU_WARM_AGENT_IDLE_MINUTES", "5");
    assert_eq!(env.run(&["start", "local.test/demo/app#11", "go"]).code, 0);
    assert!(!agent_commands(&env).contains(&"serve".to_owned()));
    assert!(agent_commands(&env).contains(&"import".to_owned()));
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
}

/// README (`KUGETSU_WARM_AGENT_IDLE_MINUTES`): with no daemon, a `start` leaves a warm serve in
/// the background; the next `start` forks through it; unused for the idle time, it stops by
/// itself.
#[test]
fn a_start_leaves_a_warm_serve_that_stops_when_unused() {
    let mut env = support::ready();
    env.set("KUGETSU_WARM_AGENT_IDLE_MINUTES", "5");
    let registration = env.path("cache/opencode-serve.json");
    let before = agent_commands(&env).len();
    let out = env.run(&["start", "local.test/demo/app#9", "work on it"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(agent_commands(&env)[before..before + 2], ["import", "run"], "none warm yet");
    wait_for("the serve the start left", || registration.is_file());
    let reg: serde_json::Value = serde_json::from_str(&support::read(&registration)).unwrap();
    let serve = u32::try_from(reg["pid"].as_u64().unwrap()).unwrap();

    let before = agent_commands(&env).len();
    let out = env.run(&["start", "local.test/demo/app#10", "work on it"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(agent_commands(&env)[before..], ["run"], "the next start forks through it");
    assert!(env.path("worktrees/local.test-demo-app-10/WORK.md").is_file());
    assert!(alive(serve), "one serve, kept");

    // Unused for longer than the idle time (the last fork was made to look 6 minutes old).
    let six_minutes_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(360);
    std::fs::File::options()
        .write(true)
        .open(&registration)
        .unwrap()
        .set_modified(six_minutes_ago)
        .unwrap();
    wait_for("the unused serve to stop", || !alive(serve));
    wait_for("its registration to go", || !registration.exists());
}
