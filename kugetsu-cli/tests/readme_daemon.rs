//! README promises about the queue and its daemon, tried through the `kugetsu` binary with the
//! bundled fake agent: `delegate` through the daemon to the PM agent (with its own env file),
//! `queue clear` with `QUEUE_CLEANUP_AGE_DAYS`, the `queue-daemon` commands and one daemon per
//! state directory, stopping it (its running tasks go back to `pending`; a hang-up does not
//! stop it, a second SIGTERM ends it at once), and its log rotating at 1 MiB.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::process::Stdio;

use serde_json::Value;
use support::{Env, alive, json, read, ready, signal, wait_exit, wait_for};

/// One `opencode run` the fake recorded.
struct Run {
    session: String,
    message: String,
    env_names: Vec<String>,
}

/// Every `opencode run` the fake recorded that carried a message.
fn runs(env: &Env) -> Vec<Run> {
    let text = read(&env.tmp.path().join("record.jsonl"));
    text.lines()
        .map(json)
        .filter(|r| r["argv"][0] == "run" && r["message"].is_string())
        .map(|r| {
            let strings = |v: &Value| -> Vec<String> {
                v.as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
            };
            let session = strings(&r["argv"])
                .iter()
                .find_map(|a| a.strip_prefix("--session=").map(str::to_string))
                .unwrap_or_default();
            Run {
                session,
                message: r["message"].as_str().unwrap().to_string(),
                env_names: strings(&r["env_names"]),
            }
        })
        .collect()
}

fn turns_started(env: &Env) -> usize {
    read(&env.tmp.path().join("trace.log")).matches("start ").count()
}

fn append_config(env: &Env, line: &str) {
    let config = read(&env.path("config"));
    std::fs::write(env.path("config"), format!("{config}{line}\n")).unwrap();
}

fn queue_items(env: &Env) -> Vec<Value> {
    let out = env.run(&["queue", "list", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    json(&out.stdout)["items"].as_array().cloned().unwrap_or_default()
}

/// `delegate` returns at once; the running daemon (woken by the enqueue, long before its poll)
/// hands the request to the PM agent's session, and the item completes. The PM agent's runs get
/// `env/pm-agent.env` on top of `default.env`; dev agents get only the default.
#[test]
fn delegate_reaches_the_pm_agent_through_the_daemon() {
    let env = ready();
    append_config(&env, "QUEUE_DAEMON_INTERVAL_MINUTES=60");
    for args in [&["env", "set", "PM_ONLY", "yes", "pm-agent"][..], &["env", "set", "FOR_ALL", "1"]]
    {
        assert_eq!(env.run(args).code, 0);
    }
    let list = json(&env.run(&["list", "--json"]).stdout);
    let pm = list.as_array().unwrap().iter().find(|r| r["type"] == "pm_agent").unwrap();
    let pm = pm["session_id"].as_str().unwrap().to_string();
    let out = env.run(&["queue-daemon", "start"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_for("the daemon to log its start", || {
        env.run(&["queue-daemon", "logs"]).stdout.contains("daemon started")
    });

    for (n, request) in ["triage the open bugs", "then plan the release"].iter().enumerate() {
        let out = env.run(&["delegate", request]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stdout.starts_with("queued q_"), "{}", out.stdout);
        assert!(!out.stderr.contains("not running"), "the daemon runs: {}", out.stderr);
        let mut items = Vec::new();
        wait_for("the PM agent's turn", || {
            items = queue_items(&env);
            items.len() == n + 1
                && items.iter().all(|i| i["status"] == "completed" || i["status"] == "error")
        });
        let log = env.run(&["queue-daemon", "logs"]).stdout;
        assert_eq!(items[n]["status"], "completed", "{items:?}\n{log}");
        assert!(items[n]["issue_ref"].is_null());
        let runs = runs(&env);
        let run = runs.iter().find(|r| r.message == *request);
        let run = run.unwrap_or_else(|| panic!("no run got {request:?}"));
        assert_eq!(run.session, pm, "the PM agent's session got it");
        for name in ["PM_ONLY", "FOR_ALL"] {
            assert!(run.env_names.iter().any(|e| e == name), "{name}: {:?}", run.env_names);
        }
    }
    let notes = env.run(&["notify", "list", "--all"]).stdout;
    assert!(notes.contains("task_completed"), "{notes}");

    // A dev agent's run gets the default env file only.
    let out = env.run(&["queue", "enqueue", "#1", "dev work"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_for("the dev item", || queue_items(&env).iter().all(|i| i["status"] == "completed"));
    let runs = runs(&env);
    let dev = runs.iter().find(|r| r.message == "dev work").unwrap();
    assert!(dev.env_names.iter().any(|e| e == "FOR_ALL"), "{:?}", dev.env_names);
    assert!(!dev.env_names.iter().any(|e| e == "PM_ONLY"), "{:?}", dev.env_names);
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
}

/// Rewrites a queue item as the daemon would leave it: `status`, last changed `days` ago.
fn age_item(env: &Env, id: &str, status: &str, days: i64) {
    use time::format_description::well_known::Rfc3339;
    let path = env.path(&format!("queue/items/{id}.json"));
    let mut item = json(&read(&path));
    let then = (time::OffsetDateTime::now_utc() - time::Duration::days(days)).format(&Rfc3339);
    item["status"] = status.into();
    item["created_at"] = then.as_ref().unwrap().as_str().into();
    item["updated_at"] = then.unwrap().into();
    // Written beside and renamed over, as kugetsu writes it.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&item).unwrap()).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// `queue clear` removes finished (completed, error) items older than
/// `QUEUE_CLEANUP_AGE_DAYS` (7 by default), never waiting ones.
#[test]
fn queue_clear_removes_old_finished_items() {
    let (mut env, _repo) = Env::with_fake_agent();
    let mut ids = Vec::new();
    for i in 0..5 {
        let out = env.run(&["queue", "enqueue", &format!("#{i}"), "work", "--json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        ids.push(json(&out.stdout)["id"].as_str().unwrap().to_string());
    }
    age_item(&env, &ids[0], "completed", 10);
    age_item(&env, &ids[1], "error", 8);
    age_item(&env, &ids[2], "completed", 3);
    age_item(&env, &ids[3], "pending", 30);
    // ids[4]: completed just now.
    age_item(&env, &ids[4], "completed", 0);

    let out = env.run(&["queue", "clear"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "removed 2 finished task(s) older than 7 day(s)\n");
    let left: Vec<_> =
        queue_items(&env).iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(left, ids[2..].to_vec());

    env.set("QUEUE_CLEANUP_AGE_DAYS", "2");
    let out = env.run(&["queue", "clear", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out.stdout)["removed"], 1);
    let left: Vec<_> =
        queue_items(&env).iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(left, ids[3..].to_vec(), "the pending item stays, however old");
    let stats = json(&env.run(&["queue", "stats", "--json"]).stdout);
    assert_eq!((stats["pending"].as_u64(), stats["completed"].as_u64()), (Some(1), Some(1)));
}

/// `queue retry <id>` puts an item that ended in `error` back in line as a fresh pending item
/// (attempts and error forgotten); an item in any other state, an unknown id and an id that
/// is no id are refused without a change.
#[test]
fn queue_retry_puts_a_failed_item_back_in_line() {
    let (env, _repo) = Env::with_fake_agent();
    let out = env.run(&["queue", "enqueue", "#1", "work", "--json"]);
    let id = json(&out.stdout)["id"].as_str().unwrap().to_string();
    let out = env.run(&["queue", "retry", &id]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("is pending, not error"), "{}", out.stderr);

    let path = env.path(&format!("queue/items/{id}.json"));
    let mut item = json(&read(&path));
    item["status"] = "error".into();
    item["attempts"] = 3.into();
    item["last_error"] = "the model is down".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&item).unwrap()).unwrap();
    let out = env.run(&["queue", "retry", &id]);
    assert_eq!((out.code, out.stdout.as_str()), (0, format!("{id} is pending again\n").as_str()));
    let item = json(&read(&path));
    assert_eq!(item["status"], "pending", "{item}");
    assert!(item["last_error"].is_null() && item["attempts"] == 0, "{item}");

    let out = env.run(&["queue", "retry", "q_nothing"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let out = env.run(&["queue", "retry", "../index"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("invalid queue item id"), "{}", out.stderr);
}

fn daemon_pid(env: &Env) -> u32 {
    let st = json(&env.run(&["queue-daemon", "status", "--json"]).stdout);
    u32::try_from(st["pid"].as_u64().unwrap_or_else(|| panic!("no daemon: {st}"))).unwrap()
}

/// `queue-daemon start|status|restart|logs|stop`, one daemon per state directory (a second is
/// refused with exit 4, also when its pid file is gone: it is a lock), and the poll interval it
/// reads from `QUEUE_DAEMON_INTERVAL_MINUTES`.
#[test]
fn the_queue_daemon_commands() {
    let env = ready();
    append_config(&env, "QUEUE_DAEMON_INTERVAL_MINUTES=2");
    assert_eq!(env.run(&["queue-daemon", "status"]).stdout, "not running\n");

    let out = env.run(&["queue-daemon", "start"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let pid = daemon_pid(&env);
    assert_eq!(out.stdout, format!("queue daemon started (pid {pid})\n"));
    assert!(alive(pid));
    let out = env.run(&["queue-daemon", "status"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with(&format!("running (pid {pid}, since ")), "{}", out.stdout);
    let st = json(&env.run(&["queue-daemon", "status", "--json"]).stdout);
    assert_eq!(st["running"], true);

    // A second daemon: refused, by `start` and by the daemon itself; and without the pid file
    // the lock still refuses it.
    let out = env.run(&["queue-daemon", "start"]);
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stderr, format!("Error: the queue daemon is already running (pid {pid})\n"));
    let pid_file = env.path("queue/daemon.pid");
    let aside = env.tmp.path().join("daemon.pid");
    std::fs::rename(&pid_file, &aside).unwrap();
    let out = env.run(&["queue-daemon", "start"]);
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("already running"), "{}", out.stderr);
    let second = env.command(&["queue-daemon", "run"]).stderr(Stdio::piped()).spawn().unwrap();
    let (code, stderr) = wait_exit(second);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("already running"), "{stderr}");
    std::fs::rename(&aside, &pid_file).unwrap();
    assert_eq!(daemon_pid(&env), pid, "the first daemon runs on");

    let out = env.run(&["queue-daemon", "restart"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let new = daemon_pid(&env);
    assert_ne!(new, pid);
    assert_eq!(
        out.stdout,
        format!("queue daemon stopped (pid {pid})\nqueue daemon started (pid {new})\n")
    );
    assert!(!alive(pid), "the old daemon is gone");

    // The new daemon says it started just after it can be found: wait for the line.
    let started = format!("daemon started: pid {new}");
    support::wait_for("the new daemon's start in its log", || {
        env.run(&["queue-daemon", "logs"]).stdout.contains(&started)
    });
    let out = env.run(&["queue-daemon", "logs"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for needle in [
        format!("daemon started: pid {pid}, limit 3, poll every 120s"),
        format!("daemon stopped (pid {pid})"),
        format!("daemon started: pid {new}, limit 3, poll every 120s"),
    ] {
        assert!(out.stdout.contains(&needle), "{needle:?} in:\n{}", out.stdout);
    }
    // `logs 1` is the newest line: the start, or a line its companions (the warm agent, the
    // webhook sender, the watcher) logged since.
    let out = env.run(&["queue-daemon", "logs", "1"]);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    let all = env.run(&["queue-daemon", "logs"]).stdout;
    let lines: Vec<&str> = all.lines().collect();
    let start_at = lines.iter().rposition(|l| l.contains(&started)).expect("the start line");
    assert!(
        lines[start_at..].contains(&out.stdout.trim_end()),
        "{:?} is not at or after the new daemon's start in:\n{all}",
        out.stdout
    );

    let out = env.run(&["queue-daemon", "stop"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, format!("queue daemon stopped (pid {new})\n"));
    assert!(!alive(new));
    assert_eq!(env.run(&["queue-daemon", "status"]).stdout, "not running\n");
}

/// `queue-daemon stop` (SIGTERM): the daemon stops its running agent and exits (not killed
/// after ignoring it), and the task goes back to `pending` with the attempt not counted; the
/// next daemon runs it to the end, continuing the session.
#[test]
fn stopping_the_daemon_requeues_its_running_task() {
    let env = ready();
    std::fs::write(
        env.tmp.path().join("script.json"),
        r#"{"turns": [{"mode": "hang", "after_output": true}],
            "default": {"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "ok"}}"#,
    )
    .unwrap();
    let out = env.run(&["queue", "enqueue", "#1", "long work"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let before = turns_started(&env);
    assert_eq!(env.run(&["queue-daemon", "start"]).code, 0);
    let pid = daemon_pid(&env);
    let mut agent = None;
    wait_for("the agent's turn", || {
        agent = queue_items(&env)[0]["claim"]["agent_pid"].as_u64();
        agent.is_some() && turns_started(&env) > before
    });
    let agent = u32::try_from(agent.unwrap()).unwrap();

    let began = std::time::Instant::now();
    let out = env.run(&["queue-daemon", "stop"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, format!("queue daemon stopped (pid {pid})\n"), "not killed");
    assert!(began.elapsed() < std::time::Duration::from_secs(8), "{:?}", began.elapsed());
    assert!(!alive(pid) && !alive(agent), "the daemon and its agent are gone");
    let item = &queue_items(&env)[0];
    assert_eq!(item["status"], "pending", "{item}");
    assert_eq!(item["attempts"], 0, "the attempt is not counted: {item}");
    assert!(item["claim"].is_null(), "{item}");

    assert_eq!(env.run(&["queue-daemon", "start"]).code, 0);
    wait_for("the requeued task", || queue_items(&env)[0]["status"] == "completed");
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
    let wt = env.path("worktrees/local.test-demo-app-1");
    assert_eq!(read(&wt.join("WORK.md")), "done\n");
    let long = runs(&env).into_iter().filter(|r| r.message == "long work").count();
    assert_eq!(long, 2, "run once, stopped, run again");
}

/// `queue-daemon run`, the daemon in the foreground as its systemd unit runs it: a hang-up (the
/// SSH session it was started from closing) does not stop it; SIGTERM does, and a second SIGTERM
/// while it is still stopping ends it at once with 130, leaving its item claimed for the next
/// daemon, which runs it again.
#[test]
fn the_foreground_daemon_outlives_a_hang_up_and_a_second_sigterm_ends_it_at_once() {
    let env = ready();
    // The first turn hangs and ignores SIGTERM: the graceful stop waits for it out its grace
    // period, and is still waiting when the second SIGTERM comes.
    std::fs::write(
        env.tmp.path().join("script.json"),
        r#"{"turns": [{"mode": "hang", "ignore_term": true, "after_output": true}],
            "default": {"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "ok"}}"#,
    )
    .unwrap();
    let daemon = env
        .command(&["queue-daemon", "run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the daemon to log its start", || {
        env.run(&["queue-daemon", "logs"]).stdout.contains("daemon started")
    });
    signal(daemon.id(), "HUP");
    let before = turns_started(&env);
    assert_eq!(env.run(&["queue", "enqueue", "#1", "long work"]).code, 0);
    let mut agent = None;
    wait_for("the daemon, hung up on, to run the task", || {
        agent = queue_items(&env)[0]["claim"]["agent_pid"].as_u64();
        agent.is_some() && turns_started(&env) > before
    });
    let agent = u32::try_from(agent.unwrap()).unwrap();

    signal(daemon.id(), "TERM");
    wait_for("the daemon to begin stopping", || {
        env.run(&["queue-daemon", "logs"]).stdout.contains("stop requested")
    });
    signal(daemon.id(), "TERM");
    let (code, stderr) = wait_exit(daemon);
    assert_eq!(code, Some(130), "ended at once by the second SIGTERM: {stderr}");
    assert_eq!(queue_items(&env)[0]["status"], "notified", "left claimed for the next daemon");
    // The agent that ignored SIGTERM was not waited for; the next daemon must not adopt it.
    signal(agent, "KILL");
    wait_for("the agent to be gone", || !alive(agent));

    assert_eq!(env.run(&["queue-daemon", "start"]).code, 0);
    wait_for("the recovered task", || queue_items(&env)[0]["status"] == "completed");
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
    assert_eq!(read(&env.path("worktrees/local.test-demo-app-1/WORK.md")), "done\n");
}

/// The daemon's log rotates at 1 MiB: the full log becomes `daemon.log.1` and a fresh one is
/// started; `queue-daemon logs` shows the newest lines.
#[test]
fn the_daemon_log_rotates_at_one_mib() {
    let env = ready();
    let log = env.path("queue/daemon.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let line = "2026-01-01T00:00:00Z an old line of a daemon that ran for weeks\n";
    let old = line.repeat((1024 * 1024 - 40) / line.len());
    std::fs::write(&log, &old).unwrap();

    assert_eq!(env.run(&["queue-daemon", "start"]).code, 0);
    let pid = daemon_pid(&env);
    wait_for("the daemon's first line", || read(&log).contains("daemon started"));
    assert_eq!(read(&env.path("queue/daemon.log.1")), old, "the full log, kept whole");
    let fresh = read(&log);
    assert!(!fresh.contains("an old line"), "{fresh}");
    assert!(fresh.len() < 4096, "a fresh log: {} bytes", fresh.len());
    let out = env.run(&["queue-daemon", "logs", "1"]);
    assert!(out.stdout.contains(&format!("daemon started: pid {pid}")), "{}", out.stdout);
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
}
