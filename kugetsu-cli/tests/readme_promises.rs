//! README promises about running agents, tried where the user meets them: the `kugetsu` binary
//! started from a shell elsewhere, with the bundled fake agent. `--detach` (and with `--wait` or
//! `--no-wait`), waiting for a slot (`--wait SECS`, as long as it takes), `--no-wait` queueing,
//! a killed process freeing its slot, one run per issue, exit 5 for a run that did not complete,
//! messages and env values from stdin, and `logs [n]`.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use serde_json::Value;
use support::{Env, alive, json, read, ready, signal, wait_exit, wait_for};

/// Replaces the fake agent's script.
fn script(env: &Env, json: &str) {
    std::fs::write(env.tmp.path().join("script.json"), json).unwrap();
}

/// The next turn hangs (printing one event first); later ones write WORK.md and answer.
const NEXT_TURN_HANGS: &str = r#"{"turns": [{"mode": "hang", "after_output": true}],
    "default": {"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "wrote WORK.md"}}"#;

fn turns_started(env: &Env) -> usize {
    trace(env).lines().filter(|l| l.starts_with("start ")).count()
}

fn trace(env: &Env) -> String {
    std::fs::read_to_string(env.tmp.path().join("trace.log")).unwrap_or_default()
}

/// Every `opencode run` the fake recorded: (its `--session=` id, its message).
fn runs(env: &Env) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(env.tmp.path().join("record.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["argv"][0] == "run")
        .map(|r| {
            let session = r["argv"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|a| a.as_str()?.strip_prefix("--session=").map(str::to_string))
                .unwrap_or_default();
            (session, r["message"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

/// A `kugetsu` process a test started, killed (with its agent) if the test fails before it
/// ends.
struct Running(Option<Child>);

impl Running {
    fn spawn(env: &Env, args: &[&str]) -> Self {
        let child =
            env.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        Running(Some(child))
    }

    fn id(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    fn take(mut self) -> Child {
        self.0.take().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `kugetsu args...` whose agent hangs mid-turn (holding an agent slot); returns once the
/// turn has started.
fn hold_a_slot(env: &Env, args: &[&str]) -> Running {
    let before = turns_started(env);
    script(env, NEXT_TURN_HANGS);
    let holder = Running::spawn(env, args);
    wait_for("the slot holder's turn to start", || turns_started(env) > before);
    holder
}

/// Ctrl-C to a slot holder: it stops and frees its slot.
fn release(holder: Running) {
    signal(holder.id(), "INT");
    let (code, stderr) = wait_exit(holder.take());
    assert_eq!(code, Some(130), "{stderr}");
}

/// Whether process `pid` has `path` open (as a lock it holds).
fn has_open(pid: u32, path: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == path)))
        .unwrap_or(false)
}

fn session(env: &Env, issue: u32) -> Value {
    let path = env.path(&format!("sessions/local.test-demo-app-{issue}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default()).unwrap_or_default()
}

fn queue_items(env: &Env) -> Vec<Value> {
    let out = env.run(&["queue", "list", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    json(&out.stdout)["items"].as_array().cloned().unwrap_or_default()
}

/// What `--detach` printed: the background pid and its log file.
fn detached(out: &support::Output, verb: &str, issue: &str) -> (u32, PathBuf) {
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let mut lines = out.stdout.lines();
    let first = lines.next().unwrap_or_default();
    let prefix = format!("{verb} {issue} running in the background (pid ");
    let pid = first
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --detach output: {}", out.stdout))
        .parse()
        .unwrap();
    let log = lines.next().and_then(|l| l.strip_prefix("log: ")).map(PathBuf::from);
    let log = log.unwrap_or_else(|| panic!("no log line: {}", out.stdout));
    (pid, log)
}

/// The session id of `/proc/<pid>/stat` (field 6).
fn sid(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    rest.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// `start --detach` and `continue --detach` return at once, saying where the background run
/// logs; the run finishes on its own (`logs` and `list` follow it), in its own session so a
/// closed terminal does not reach it, and `kill <pid>` stops it as an interrupted turn.
#[test]
fn detach_runs_in_the_background_to_the_end() {
    let env = ready();
    let out = env.run(&["start", "#1", "in the background", "--detach"]);
    let (pid, log) = detached(&out, "start", "local.test/demo/app#1");
    assert!(log.starts_with(env.path("logs")), "{}", log.display());
    assert_eq!(out.stderr, "");
    wait_for("the background start to finish", || !alive(pid));
    let text = read(&log);
    assert!(text.contains("local.test/demo/app#1: completed"), "{text}");
    assert_eq!(session(&env, 1)["state"], "idle");
    let wt = env.path("worktrees/local.test-demo-app-1");
    assert_eq!(read(&wt.join("WORK.md")), "done\n", "the agent worked in the worktree");
    let logs = env.run(&["logs", "20"]);
    assert!(logs.stdout.contains(&log.display().to_string()), "`logs` shows it: {}", logs.stdout);
    assert!(logs.stdout.contains("local.test/demo/app#1: completed"), "{}", logs.stdout);
    let sessions = session(&env, 1)["opencode_session_id"].as_str().unwrap().to_string();
    assert!(runs(&env).contains(&(sessions.clone(), "in the background".into())));

    // A continue in the background that hangs: it is not in the terminal's session; `kill`
    // stops it and the turn is recorded as interrupted.
    let before = turns_started(&env);
    script(&env, NEXT_TURN_HANGS);
    let out = env.run(&["continue", "#1", "and again", "--detach"]);
    let (pid, log) = detached(&out, "continue", "local.test/demo/app#1");
    wait_for("the background turn to start", || turns_started(&env) > before);
    assert_eq!(sid(pid), pid, "the background run leads a session of its own");
    assert_ne!(sid(pid), sid(std::process::id()));
    assert_eq!(session(&env, 1)["state"], "running");
    signal(pid, "TERM");
    wait_for("the background continue to stop", || !alive(pid));
    assert_eq!(session(&env, 1)["state"], "interrupted", "{}", read(&log));
    assert!(runs(&env).contains(&(sessions, "and again".into())));
    let out = env.run(&["continue", "#1", "resume"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

/// With every slot busy, `--detach --no-wait` queues the message from the background run, and
/// `--detach --wait 1` gives up there after a second, as in the foreground.
#[test]
fn detach_keeps_no_wait_and_wait() {
    let mut env = ready();
    let out = env.run(&["start", "#2", "first"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    env.set("MAX_CONCURRENT_AGENTS", "1");
    let holder = hold_a_slot(&env, &["start", "#1", "hold the slot"]);

    let out = env.run(&["start", "#3", "queue me", "--detach", "--no-wait"]);
    let (pid, log) = detached(&out, "start", "local.test/demo/app#3");
    wait_for("the background start to end", || !alive(pid));
    let text = read(&log);
    assert!(text.contains("all 1 agent slots are busy; queued as q_"), "{text}");
    let items = queue_items(&env);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["issue_ref"], "local.test/demo/app#3");
    assert_eq!(items[0]["message"], "queue me");
    assert_eq!(items[0]["status"], "pending");

    let out = env.run(&["continue", "#2", "wait a second", "--detach", "--wait", "1"]);
    let (pid, log) = detached(&out, "continue", "local.test/demo/app#2");
    wait_for("the background continue to give up", || !alive(pid));
    let text = read(&log);
    assert!(text.contains("no agent slot became free within 1s (limit 1)"), "{text}");
    assert_eq!(queue_items(&env).len(), 1, "--wait does not queue");
    assert!(runs(&env).iter().all(|(_, m)| m != "wait a second" && m != "queue me"));
    release(holder);
}

/// All slots busy: `--wait SECS` waits that long, then exits 4 saying why; `--no-wait` queues the
/// message (exit 0, "queued as q_..."); without either, `start` waits as long as it takes and
/// runs once a slot is free.
#[test]
fn a_busy_limit_waits_gives_up_or_queues() {
    let mut env = ready();
    let out = env.run(&["start", "#2", "first"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    env.set("MAX_CONCURRENT_AGENTS", "1");
    let holder = hold_a_slot(&env, &["start", "#1", "hold the slot"]);

    for args in [&["start", "#3", "too late"][..], &["continue", "#2", "too late"]] {
        let began = std::time::Instant::now();
        let out = env.run(&[args, &["--wait", "1"]].concat());
        assert_eq!(out.code, 4, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(began.elapsed() >= std::time::Duration::from_secs(1), "it waited");
        assert!(
            out.stderr.contains("Error: no agent slot became free within 1s (limit 1)"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("Hint: all agent slots are busy"), "{}", out.stderr);
        assert_eq!(out.stdout, "");
    }
    assert!(!env.path("sessions/local.test-demo-app-3.json").exists(), "nothing half-made");

    let out = env.run(&["start", "#3", "for the daemon", "--no-wait"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let id = out
        .stdout
        .strip_prefix("all 1 agent slots are busy; queued as ")
        .and_then(|r| r.strip_suffix(" for the daemon\n"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(id.starts_with("q_"), "{id}");
    let out = env.run(&["continue", "#2", "also for the daemon", "--no-wait", "--json"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let queued = json(&out.stdout);
    assert_eq!(queued["issue_ref"], "local.test/demo/app#2");
    let items = queue_items(&env);
    let find = |id: &str| items.iter().find(|i| i["id"] == id).cloned().unwrap_or_default();
    assert_eq!(find(id)["message"], "for the daemon");
    assert_eq!(find(id)["issue_ref"], "local.test/demo/app#3");
    assert_eq!(find(queued["queued"].as_str().unwrap())["message"], "also for the daemon");
    let unrun = ["too late", "for the daemon", "also for the daemon"];
    assert!(runs(&env).iter().all(|(_, m)| !unrun.contains(&m.as_str())), "{:?}", runs(&env));

    // No flag: it waits (holding the issue, with no turn started) until the slot frees.
    let waiting = Running::spawn(&env, &["start", "#4", "patient"]);
    let issue_lock = env.path("locks/issue-local.test-demo-app-4.lock");
    wait_for("the start to wait for a slot", || has_open(waiting.id(), &issue_lock));
    let started = turns_started(&env);
    assert!(!env.path("sessions/local.test-demo-app-4.json").exists());
    release(holder);
    let out = waiting.take().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("local.test/demo/app#4: completed"), "{stdout}");
    assert_eq!(turns_started(&env), started + 1, "it ran after the slot was freed");
}

/// README: "a config change of the limit applies at once". A `start` already waiting for a slot
/// keeps the limit it read when it began, so raising the limit does not let it run.
#[test]
fn raising_the_limit_frees_a_waiting_start_at_once() {
    let env = ready();
    let config = read(&env.path("config"));
    std::fs::write(env.path("config"), format!("{config}MAX_CONCURRENT_AGENTS=1\n")).unwrap();
    let holder = hold_a_slot(&env, &["start", "#1", "hold the slot"]);
    let waiting = Running::spawn(&env, &["start", "#2", "patient"]);
    let issue_lock = env.path("locks/issue-local.test-demo-app-2.lock");
    wait_for("the start to wait for a slot", || has_open(waiting.id(), &issue_lock));
    std::fs::write(env.path("config"), format!("{config}MAX_CONCURRENT_AGENTS=2\n")).unwrap();
    let (code, stderr) = wait_exit(waiting.take());
    assert_eq!(code, Some(0), "{stderr}");
    release(holder);
}

/// `-` as the message reads it from stdin (continue, delegate, queue enqueue), byte-exact; an
/// empty one is refused. `env set KEY -` reads the value from stdin (one trailing newline
/// dropped), and the agent gets it.
#[test]
fn messages_and_env_values_from_stdin() {
    let env = ready();
    let run_with_stdin = |args: &[&str], input: &str| {
        let mut child = env
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };

    let (code, _, stderr) =
        run_with_stdin(&["env", "set", "SERVICE_API_KEY", "-"], "k-42-from-stdin\n");
    assert_eq!(code, Some(0), "{stderr}");
    let out = env.run(&["env", "get", "SERVICE_API_KEY", "--reveal"]);
    assert_eq!(out.stdout, "k-42-from-stdin\n");
    let out = env.run(&["env", "show"]);
    assert!(out.stdout.contains("SERVICE_API_KEY="), "{}", out.stdout);
    assert!(!out.stdout.contains("k-42-from-stdin"), "masked: {}", out.stdout);

    let out = env.run(&["start", "#1", "first"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let long = "a long brief\n\n  - with \"quotes\" and $HOME and `ticks`\n\ttabs\n";
    let (code, stdout, stderr) = run_with_stdin(&["continue", "#1", "-"], long);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(runs(&env).last().unwrap().1, long);
    let record = read(&env.tmp.path().join("record.jsonl"));
    let last_run = record.lines().rfind(|l| l.contains("\"run\"")).unwrap();
    assert!(last_run.contains("\"SERVICE_API_KEY\""), "the agent got the variable: {last_run}");

    let (code, stdout, stderr) = run_with_stdin(&["delegate", "-"], "for the PM\nline two\n");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("queued q_"), "{stdout}");
    let (code, _, stderr) = run_with_stdin(&["queue", "enqueue", "#2", "-"], "queued brief\n");
    assert_eq!(code, Some(0), "{stderr}");
    let items = queue_items(&env);
    let messages: Vec<_> = items.iter().map(|i| i["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["for the PM\nline two\n", "queued brief\n"]);

    let (code, _, stderr) = run_with_stdin(&["continue", "#1", "-"], " \n\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("the message is empty"), "{stderr}");
}

/// `logs [n]` prints the newest n logs (oldest of them first), each under a `==> path <==`
/// header, with what the run did; 10 by default.
#[test]
fn logs_shows_the_newest_n() {
    let env = ready();
    // init wrote two logs; make them an hour older so the order below is certain.
    let hour_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        hour_ago.year(),
        u8::from(hour_ago.month()),
        hour_ago.day(),
        hour_ago.hour(),
        hour_ago.minute(),
        hour_ago.second()
    );
    let mut init_logs = Vec::new();
    for e in std::fs::read_dir(env.path("logs")).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let (_, agent) = name.split_once('-').unwrap();
        let older = env.path("logs").join(format!("{stamp}-{agent}"));
        std::fs::rename(&path, &older).unwrap();
        init_logs.push(older);
    }
    assert_eq!(init_logs.len(), 2, "{init_logs:?}");
    let out = env.run(&["start", "#1", "log me"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run_log = out.stdout.lines().find_map(|l| l.strip_prefix("log      ")).unwrap().to_string();

    let headers = |out: &support::Output| -> Vec<String> {
        out.stdout.lines().filter(|l| l.starts_with("==> ")).map(str::to_string).collect()
    };
    let out = env.run(&["logs", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let one = headers(&out);
    assert_eq!(one.len(), 1, "{}", out.stdout);
    assert!(one[0].starts_with(&format!("==> {run_log} (")), "{one:?} vs {run_log}");
    assert!(out.stdout.contains("wrote WORK.md"), "what the agent said: {}", out.stdout);
    assert!(out.stdout.contains("completed"), "{}", out.stdout);

    let out = env.run(&["logs", "2"]);
    let two = headers(&out);
    assert_eq!(two.len(), 2, "{}", out.stdout);
    assert_eq!(two[1], one[0], "newest last");
    let out = env.run(&["logs"]);
    let all = headers(&out);
    assert_eq!(all.len(), 3, "{}", out.stdout);
    for log in &init_logs {
        assert!(all.iter().any(|h| h.contains(&log.display().to_string())), "{all:?}");
    }
    let out = env.run(&["logs", "--json", "5"]);
    assert_eq!(json(&out.stdout).as_array().unwrap().len(), 3, "{}", out.stdout);
}

/// Only one `start`/`continue`/`destroy` runs per issue at a time: while a turn runs, the others
/// get exit 4 and "already running"; afterwards they work.
#[test]
fn one_run_per_issue_at_a_time() {
    let env = ready();
    let holder = hold_a_slot(&env, &["start", "#1", "busy"]);
    for args in [
        &["continue", "#1", "me too"][..],
        &["start", "#1", "again"],
        &["destroy", "#1", "-y", "--force"],
        &["continue", "local.test/demo/app#1", "by its full ref"],
    ] {
        let out = env.run(args);
        assert_eq!(out.code, 4, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains("already running"), "{args:?}: {}", out.stderr);
    }
    assert!(env.path("worktrees/local.test-demo-app-1").is_dir(), "destroy did nothing");
    let out = env.run(&["start", "#2", "another issue runs meanwhile"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    release(holder);
    let out = env.run(&["continue", "#1", "now"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

/// Slots are kernel-released locks: a `start` killed outright (SIGKILL) frees its slot at once,
/// with the limit at 1 the next run gets it without waiting.
#[test]
fn a_killed_process_frees_its_slot() {
    let mut env = ready();
    env.set("MAX_CONCURRENT_AGENTS", "1");
    let holder = hold_a_slot(&env, &["start", "#1", "hold the slot"]);
    let out = env.run(&["start", "#2", "not yet", "--no-wait"]);
    assert!(out.stdout.contains("queued as q_"), "the slot is held: {}", out.stdout);
    signal(holder.id(), "KILL");
    let (code, _) = wait_exit(holder.take());
    assert_eq!(code, None, "killed");
    let out = env.run(&["start", "#3", "right away", "--no-wait"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("local.test/demo/app#3: completed"), "{}", out.stdout);
}

/// A run that ends without completing exits 5, whatever the reason (the agent failed, a
/// permission was rejected), and `list` shows why.
#[test]
fn exit_5_when_the_agent_does_not_complete() {
    let env = ready();
    script(
        &env,
        r#"{"turns": [{"mode": "error", "name": "APIError", "message": "the model is down"},
                      {"mode": "permission", "permission": "external_directory", "tool": "read"}],
            "default": {"mode": "ok", "text": "fine"}}"#,
    );
    let out = env.run(&["start", "#1", "fails"]);
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("local.test/demo/app#1: failed"), "{}", out.stdout);
    assert_eq!(session(&env, 1)["state"], "failed");
    let out = env.run(&["continue", "#1", "blocked"]);
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("local.test/demo/app#1: blocked"), "{}", out.stdout);
    assert_eq!(session(&env, 1)["state"], "blocked");
    assert!(env.run(&["list"]).stdout.contains("blocked"));
    let out = env.run(&["continue", "#1", "fine now"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}
