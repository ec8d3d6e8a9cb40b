//! The driver against `fake-opencode`, which follows the real CLI's contract
//! (see CONFORMANCE.md): sessions, forks into a worktree, outcomes, limits, prompt and env
//! hygiene.

use crate::support;
use crate::support_fake::{FAKE, Fake};

use std::time::Duration;

use kugetsu_core::agent::{
    AgentDriver, AgentError, AgentEvent, ForkRequest, RunOutcome, SessionId,
};
use kugetsu_opencode::{OpencodeDriver, OpencodeOptions};
use serde_json::{Value, json};
use support::Sink;
use support::{agent_env, assert_group_gone, limits, read};

#[test]
fn create_headless_session() {
    let f = Fake::new();
    let d = f.driver();
    let mut sink = Sink::default();
    let report = d
        .create_session(&f.sb.create_req("base", "kugetsu base", "you are the base"), &mut sink)
        .expect("create");
    assert_eq!(report.outcome, RunOutcome::Completed);
    assert_eq!(report.exit_code, Some(0));
    assert!(report.session.as_str().starts_with("ses_"));
    assert!(sink.pid.is_some());
    assert!(sink.events.contains(&AgentEvent::Text { text: "hello".into() }));
    assert!(d.session_exists(&report.session).expect("exists"));
    let list = d.list_sessions(&f.sb.path("base")).expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, report.session);
    assert_eq!(list[0].title, "kugetsu base");
    assert_eq!(list[0].directory, f.sb.path("base"));
    let rec = &f.run_records()[0];
    assert_eq!(rec["message"], "you are the base");
    let argv: Vec<&str> =
        rec["argv"].as_array().expect("argv").iter().filter_map(Value::as_str).collect();
    assert_eq!(
        argv,
        ["run", "--format", "json", "--print-logs", "--log-level", "ERROR", "--title=kugetsu base"]
    );
    assert_eq!(rec["cwd"], f.sb.path("base").to_string_lossy().as_ref());
    // A new headless session has the deny rules already.
    assert!(!d.fix_permissions(&report.session).expect("fix"));
}

#[test]
fn fork_really_runs_in_the_worktree() {
    let f = Fake::new();
    let d = f.driver();
    let base = f.create_base(&d);
    let fork = d
        .fork_session(&ForkRequest {
            base: base.clone(),
            dir: f.sb.path("tree"),
            title: "issue 14".into(),
            env: agent_env(&[]),
        })
        .expect("fork");
    assert_ne!(fork, base);
    assert_eq!(fork.as_str().len(), 30);
    let doc = f.export(&fork);
    assert_eq!(doc["info"]["directory"], f.sb.path("tree").to_string_lossy().as_ref());
    assert_eq!(doc["info"]["title"], "issue 14");
    assert_eq!(
        doc["messages"].as_array().map(Vec::len),
        f.export(&base)["messages"].as_array().map(Vec::len)
    );
    assert_eq!(doc["messages"][0]["parts"][0]["text"], "prime", "history kept");
    assert!(!d.fix_permissions(&fork).expect("fix"), "rules kept through the fork");

    f.script(json!([{"mode": "tool", "path": "out.txt", "content": "from the fork\n"}]));
    let mut sink = Sink::default();
    let report = d.run(&f.sb.run_req(&fork, "tree", "write it"), &mut sink).expect("run");
    assert_eq!(report.outcome, RunOutcome::Completed);
    assert_eq!(read(&f.sb.path("tree").join("out.txt")), "from the fork\n");
    assert!(!f.sb.path("base").join("out.txt").exists());
    assert!(
        sink.events
            .iter()
            .any(|e| matches!(e, AgentEvent::ToolUse { tool, .. } if tool == "write"))
    );

    // The base is untouched and still runs in its own directory.
    let report =
        d.run(&f.sb.run_req(&base, "base", "again"), &mut Sink::default()).expect("run base");
    assert_eq!(report.outcome, RunOutcome::Completed);
    // A session run away from its directory hangs opencode silently. Runs do not look first
    // (kugetsu runs a fork only where it imported it); the idle limit stops such a run, and one
    // look at the session then says why it printed nothing.
    let mut req = f.sb.run_req(&fork, "base", "wrong dir");
    req.limits = limits(60, 2);
    let err = d.run(&req, &mut Sink::default()).expect_err("trap");
    assert!(
        matches!(err, AgentError::CommandFailed { ref message, .. } if message.contains("would hang") && message.contains("lives in")),
        "{err}"
    );
}

#[test]
fn fork_of_unknown_base_is_session_not_found() {
    let f = Fake::new();
    let base = SessionId::new("ses_df5eb4af9ffemK92KrwWdJZMY3").expect("id");
    let err = f
        .driver()
        .fork_session(&ForkRequest {
            base,
            dir: f.sb.path("tree"),
            title: "t".into(),
            env: agent_env(&[]),
        })
        .expect_err("no base");
    assert!(matches!(err, AgentError::SessionNotFound { .. }), "{err}");
}

#[test]
fn run_outcomes_are_classified() {
    let f = Fake::new();
    let d = f.driver();
    let s = f.create_base(&d);
    f.script(json!([
        {"mode": "error", "name": "APIError", "message": "mock bad request"},
        {"mode": "permission", "permission": "external_directory (/etc/*)"},
        {"mode": "exit", "code": 3, "stderr": "\u{1b}[91m\u{1b}[1mError: \u{1b}[0mdisk on fire"},
        {"mode": "exit", "code": 0},
    ]));
    let run =
        |prompt: &str| d.run(&f.sb.run_req(&s, "base", prompt), &mut Sink::default()).expect("run");
    let r = run("1");
    assert_eq!(r.outcome, RunOutcome::Failed { message: "APIError: mock bad request".into() });
    assert_eq!(r.exit_code, Some(1));
    let r = run("2");
    assert_eq!(r.outcome, RunOutcome::Blocked { permission: "external_directory (/etc/*)".into() });
    assert_eq!(r.exit_code, Some(0), "blocked even though opencode exited 0");
    let r = run("3");
    assert_eq!(r.outcome, RunOutcome::Failed { message: "disk on fire".into() });
    assert_eq!(r.exit_code, Some(3));
    let r = run("4");
    assert!(
        matches!(r.outcome, RunOutcome::Failed { ref message } if message.contains("without printing")),
        "{:?}",
        r.outcome
    );
    let log = read(&f.sb.log());
    assert!(log.contains("auto-rejecting"), "stderr is logged");
    assert!(log.contains("\"type\":\"error\""), "stdout is logged");
    assert!(log.contains("disk on fire"));
}

#[test]
fn unknown_session_is_reported() {
    let f = Fake::new();
    let d = f.driver();
    let id = SessionId::new("ses_df5eb4af9ffemK92KrwWdJZMY3").expect("id");
    assert!(!d.session_exists(&id).expect("exists"));
    assert!(matches!(
        d.run(&f.sb.run_req(&id, "base", "x"), &mut Sink::default()),
        Err(AgentError::SessionNotFound { .. })
    ));
    assert!(matches!(d.delete_session(&id), Err(AgentError::SessionNotFound { .. })));
    assert!(matches!(d.fix_permissions(&id), Err(AgentError::SessionNotFound { .. })));
}

#[test]
fn delete_session() {
    let f = Fake::new();
    let d = f.driver();
    let s = f.create_base(&d);
    d.delete_session(&s).expect("delete");
    assert!(!d.session_exists(&s).expect("exists"));
    assert!(matches!(d.delete_session(&s), Err(AgentError::SessionNotFound { .. })));
    assert!(d.list_sessions(&f.sb.path("base")).expect("list").is_empty());
}

#[test]
fn wall_clock_timeout_kills_the_group() {
    let f = Fake::new();
    let d = f.driver();
    let s = f.create_base(&d);
    f.script(json!([{"mode": "slow", "interval_ms": 100}]));
    let mut req = f.sb.run_req(&s, "base", "go");
    req.limits = limits(2, 60);
    let mut sink = Sink::default();
    let r = d.run(&req, &mut sink).expect("run");
    assert!(matches!(r.outcome, RunOutcome::TimedOut { .. }), "{:?}", r.outcome);
    assert_eq!(r.exit_code, None);
    assert!(sink.events.len() > 3, "it was printing all along");
    assert_group_gone(sink.pid.expect("pid"));
}

#[test]
fn silent_hang_is_killed_with_children_that_ignore_sigterm() {
    let f = Fake::new();
    let d = f.driver();
    let s = f.create_base(&d);
    f.script(json!([{"mode": "hang", "children": 2, "ignore_term": true, "after_output": true}]));
    let mut req = f.sb.run_req(&s, "base", "go");
    req.limits = limits(120, 1);
    let mut sink = Sink::default();
    let r = d.run(&req, &mut sink).expect("run");
    assert!(matches!(r.outcome, RunOutcome::Hung { silent_secs: 1, .. }), "{:?}", r.outcome);
    assert_group_gone(sink.pid.expect("pid"));
}

/// opencode prints a tool call only when it ends: a build that works silently for longer than
/// the idle limit is not a hang, whether one process does the work or many short-lived ones
/// that are gone before they are ever seen (their time shows in the parent that reaped them).
#[test]
fn a_silent_busy_tool_outlives_the_idle_limit() {
    let f = Fake::new();
    let d = f.driver();
    let s = f.create_base(&d);
    f.script(json!([
        {"mode": "bash", "command": "cargo build", "work": "busy", "ms": 5000},
        {"mode": "bash", "command": "make -j1", "work": "busy", "ms": 5000, "pieces": 25},
    ]));
    for command in ["cargo build", "make -j1"] {
        let mut req = f.sb.run_req(&s, "base", "build it");
        req.limits = limits(60, 2);
        let started = std::time::Instant::now();
        let mut sink = Sink::default();
        let r = d.run(&req, &mut sink).expect("run");
        assert_eq!(r.outcome, RunOutcome::Completed, "{command}: {}", read(&f.sb.log()));
        assert!(started.elapsed() >= Duration::from_secs(5), "{command}: the work ran");
        assert!(
            sink.events.iter().any(|e| matches!(e,
                AgentEvent::ToolUse { tool, title: Some(t), .. } if tool == "bash" && t == command)),
            "{:?}",
            sink.events
        );
    }
}

/// A tool that sleeps (no output, no CPU, no I/O) is stuck: killed as hung after the idle
/// limit, and the verdict (session outcome, run log, description) says what was seen and which
/// tool call finished last.
#[test]
fn a_sleeping_tool_is_hung_and_the_verdict_names_the_last_finished_tool() {
    let f = Fake::new();
    let d = f.driver();
    let s = f.create_base(&d);
    f.script(json!([
        {"mode": "bash", "first": "cargo build", "command": "sleep 600", "work": "sleep", "detached": true},
    ]));
    let mut req = f.sb.run_req(&s, "base", "build and wait");
    req.limits = limits(60, 2);
    let started = std::time::Instant::now();
    let mut sink = Sink::default();
    let r = d.run(&req, &mut sink).expect("run");
    let RunOutcome::Hung { silent_secs, processes_idle, ref last_tool } = r.outcome else {
        panic!("expected hung, got {:?}", r.outcome)
    };
    assert!(processes_idle);
    assert_eq!(last_tool.as_deref(), Some("bash `cargo build`"));
    assert!((2..10).contains(&silent_secs), "{silent_secs}");
    assert!(started.elapsed() < Duration::from_secs(30), "killed at the idle limit");
    let said = r.outcome.describe();
    assert_eq!(
        said,
        format!(
            "hung: no output and no CPU or I/O in the agent's processes for {silent_secs}s; \
             last finished tool: bash `cargo build`"
        )
    );
    assert!(read(&f.sb.log()).contains(&said), "the log's footer says it too");
    assert_group_gone(sink.pid.expect("pid"));
    assert_helpers_gone(&f.sb.path("base").to_string_lossy());
}

/// A CPU-busy command that escaped opencode's process group (its own session, as the bash tool
/// starts commands) still counts as the run's activity, so the run is not hung; the wall-clock
/// limit stops it all the same, and the escaped command dies with the rest.
#[test]
fn a_busy_escaped_child_is_activity_and_dies_at_the_wall_clock() {
    let f = Fake::new();
    let d = f.driver();
    let s = f.create_base(&d);
    let tag = f.sb.path("base").to_string_lossy().into_owned();
    f.script(json!([{"mode": "bash", "command": "make", "work": "busy", "detached": true}]));
    let mut req = f.sb.run_req(&s, "base", "go");
    req.limits = limits(6, 2);
    let started = std::time::Instant::now();
    let mut sink = Sink::default();
    let r = d.run(&req, &mut sink).expect("run");
    assert!(matches!(r.outcome, RunOutcome::TimedOut { after_secs: 6 }), "{:?}", r.outcome);
    assert!(started.elapsed() >= Duration::from_secs(6));
    assert_group_gone(sink.pid.expect("pid"));
    assert_helpers_gone(&tag);
}

/// A stop request (what Ctrl-C, SIGTERM or a hang-up to kugetsu become) ends a busy run at
/// once: the whole group and the tool processes that left it are killed, and the run is
/// `interrupted` by the signal that asked, long before any limit.
#[test]
fn a_stop_request_kills_the_run_and_everything_it_started() {
    let f = Fake::new();
    let stop = kugetsu_core::interrupt::Interrupt::new();
    let d = OpencodeDriver::new(f.driver().options().clone().interrupt(stop.clone()));
    let s = f.create_base(&d);
    let tag = f.sb.path("base").to_string_lossy().into_owned();
    f.script(json!([{"mode": "hang", "children": 1, "detached_children": 1, "ignore_term": true, "after_output": true}]));
    let mut req = f.sb.run_req(&s, "base", "go");
    req.limits = limits(600, 600);
    let trigger = {
        let stop = stop.clone();
        let tag = tag.clone();
        std::thread::spawn(move || {
            // Mid-turn: once the tool's processes are up.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while live_helpers(&tag).len() < 2 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.trigger(kugetsu_core::interrupt::signals::SIGTERM);
        })
    };
    let started = std::time::Instant::now();
    let mut sink = Sink::default();
    let r = d.run(&req, &mut sink).expect("run");
    trigger.join().expect("trigger");
    assert_eq!(r.outcome, RunOutcome::Interrupted { signal: "SIGTERM".into() });
    assert!(started.elapsed() < Duration::from_secs(60), "ended by the request, not a limit");
    assert_group_gone(sink.pid.expect("pid"));
    assert_helpers_gone(&tag);
    // Once asked to stop, the driver starts nothing more.
    assert!(matches!(d.session_exists(&s), Err(AgentError::Interrupted { .. })));
}

/// Live processes whose command line holds `tag` (the fake's helpers carry the session dir).
fn live_helpers(tag: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if !zombie
            && String::from_utf8_lossy(&cmdline).contains("__sleep")
            && String::from_utf8_lossy(&cmdline).contains(tag)
        {
            out.push(pid);
        }
    }
    out
}

fn assert_helpers_gone(tag: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !live_helpers(tag).is_empty() {
        assert!(std::time::Instant::now() < deadline, "left running: {:?}", live_helpers(tag));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn detached_tool_processes_are_killed_on_hang() {
    let f = Fake::new();
    let d = f.driver();
    let s = f.create_base(&d);
    f.script(json!([{"mode": "hang", "detached_children": 2, "children": 1, "ignore_term": true}]));
    let mut req = f.sb.run_req(&s, "base", "go");
    req.limits = limits(120, 2);
    let mut sink = Sink::default();
    let r = d.run(&req, &mut sink).expect("run");
    assert!(matches!(r.outcome, RunOutcome::Hung { .. }), "{:?}", r.outcome);
    assert_group_gone(sink.pid.expect("pid"));
    assert_helpers_gone(&f.sb.path("base").to_string_lossy());
}

#[test]
fn detached_tool_processes_are_killed_after_a_normal_end() {
    let f = Fake::new();
    let d = f.driver();
    let s = f.create_base(&d);
    // The turn lasts long enough for the tracker to see the background process.
    f.script(json!([{"mode": "ok", "leave_running": 1, "delay_ms": 1500}]));
    let r = d.run(&f.sb.run_req(&s, "base", "go"), &mut Sink::default()).expect("run");
    assert_eq!(r.outcome, RunOutcome::Completed);
    assert_helpers_gone(&f.sb.path("base").to_string_lossy());
}

#[test]
fn question_without_rules_hangs_until_permissions_are_fixed() {
    let f = Fake::new();
    let d = f.driver();
    let base = f.create_base(&d);
    // A fork made the upstream way (`run --fork`) loses the rules.
    let out = std::process::Command::new(FAKE)
        .args(["run", "--fork", "--format", "json", "-s", base.as_str(), "hi"])
        .current_dir(f.sb.path("base"))
        .env_clear()
        .envs(f.base_env())
        .env("PWD", f.sb.path("base"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("fork");
    let first: Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().expect("line"))
            .expect("json");
    let fork = SessionId::new(first["sessionID"].as_str().expect("id")).expect("id");
    assert!(f.export(&fork)["info"].get("permission").is_none());

    f.script(json!([{"mode": "question"}, {"mode": "question"}]));
    let mut req = f.sb.run_req(&fork, "base", "ask me");
    req.limits = limits(60, 1);
    assert!(matches!(
        d.run(&req, &mut Sink::default()).expect("run").outcome,
        RunOutcome::Hung { .. }
    ));
    assert!(d.fix_permissions(&fork).expect("fix"));
    assert!(!d.fix_permissions(&fork).expect("fix again"));
    assert_eq!(d.run(&req, &mut Sink::default()).expect("run").outcome, RunOutcome::Completed);
}

#[test]
fn prompts_reach_opencode_byte_exact() {
    let f = Fake::new();
    let d = f.driver();
    let s = f.create_base(&d);
    let big: String = "0123456789abcdef\n".repeat(64 * 1024);
    let prompts = [
        "$(touch pwned) `touch pwned2` ; rm -rf / #".to_owned(),
        "--help".to_owned(),
        "-s ses_other --dir /".to_owned(),
        "line one\nline two\n\n  indented\ttab \"quoted\" 'single'\n".to_owned(),
        "ünïcödé ✓ 漢字".to_owned(),
        big,
    ];
    for p in &prompts {
        let r = d.run(&f.sb.run_req(&s, "base", p), &mut Sink::default()).expect("run");
        assert_eq!(r.outcome, RunOutcome::Completed);
    }
    let recs = f.run_records();
    let got: Vec<&str> = recs.iter().skip(1).filter_map(|r| r["message"].as_str()).collect();
    assert_eq!(got.len(), prompts.len());
    for (g, p) in got.iter().zip(&prompts) {
        assert!(*g == p.as_str(), "prompt changed on the way (len {} vs {})", g.len(), p.len());
    }
    for r in &recs {
        let argv = r["argv"].to_string();
        assert!(
            !argv.contains("touch") && !argv.contains("--help") && !argv.contains("0123456789"),
            "{argv}"
        );
    }
    assert!(!f.sb.path("base").join("pwned").exists());
    assert!(!f.sb.path("base").join("pwned2").exists());
}

#[test]
fn env_values_never_reach_the_argv() {
    let f = Fake::new();
    let mut base = f.base_env();
    base.push(("GIT_DIR".into(), "/somewhere/else/.git".into()));
    let d = OpencodeDriver::new(OpencodeOptions::new(FAKE).base_env(base));
    let mut req = f.sb.create_req("base", "kugetsu base", "hi");
    req.env =
        agent_env(&[("GITHUB_TOKEN", "ghp_supersecretvalue"), ("MY_SETTING", "visible-value")]);
    let r = d.create_session(&req, &mut Sink::default()).expect("create");
    let fork = d
        .fork_session(&ForkRequest {
            base: r.session,
            dir: f.sb.path("tree"),
            title: "t".into(),
            env: req.env.clone(),
        })
        .expect("fork");
    let mut run = f.sb.run_req(&fork, "tree", "go");
    run.env = req.env.clone();
    d.run(&run, &mut Sink::default()).expect("run");
    let recs = f.records();
    assert!(recs.len() >= 4);
    let runs: Vec<&Value> = recs.iter().filter(|r| r["message"].is_string()).collect();
    for r in &recs {
        let argv = r["argv"].to_string();
        assert!(
            !argv.contains("ghp_supersecretvalue") && !argv.contains("visible-value"),
            "{argv}"
        );
        let names = r["env_names"].to_string();
        assert!(!names.contains("\"GIT_DIR\""), "GIT_* stripped: {names}");
    }
    for r in runs {
        assert!(r["env_names"].to_string().contains("\"GITHUB_TOKEN\""));
    }
    assert!(!read(&f.sb.log()).contains("ghp_supersecretvalue"));
}

/// A secret the agent can read but was not handed in its environment (the shared queue's
/// password, kept in a file for the PM agent) is masked like the environment's when the agent
/// prints it: in the run log and in the events.
#[test]
fn values_told_to_be_masked_are_masked_in_the_log_and_the_events() {
    let f = Fake::new();
    let d = OpencodeDriver::new(
        OpencodeOptions::new(FAKE).base_env(f.base_env()).also_mask(["pa/ss?w#rd@1".to_string()]),
    );
    let s = f.create_base(&d);
    f.script(json!([{"mode": "ok", "text": "the URL is postgres://k:pa/ss?w#rd@1@db/q"}]));
    let mut sink = Sink::default();
    d.run(&f.sb.run_req(&s, "base", "print it"), &mut sink).expect("run");
    let log = read(&f.sb.log());
    assert!(log.contains("the URL is"), "{log}");
    assert!(!log.contains("pa/ss?w#rd@1"), "{log}");
    let shown: Vec<String> =
        sink.events.iter().flat_map(|e| e.texts()).map(str::to_owned).collect();
    assert!(shown.iter().any(|t| t.contains("the URL is")), "{shown:?}");
    assert!(shown.iter().all(|t| !t.contains("pa/ss?w#rd@1")), "{shown:?}");
}

#[test]
fn log_is_appended_across_runs() {
    let f = Fake::new();
    let d = f.driver();
    let s = f.create_base(&d);
    let before = read(&f.sb.log());
    d.run(&f.sb.run_req(&s, "base", "again"), &mut Sink::default()).expect("run");
    let after = read(&f.sb.log());
    assert!(after.starts_with(&before));
    assert_eq!(after.matches("\"type\":\"step_start\"").count(), 2);
    assert_eq!(after.matches("=== ").count(), 4, "a header and a footer per run:\n{after}");
    assert!(after.contains("completed"));
}

#[test]
fn missing_program_is_a_spawn_error() {
    let f = Fake::new();
    let d = OpencodeDriver::new(
        OpencodeOptions::new(f.sb.path("no-such-opencode")).base_env(f.base_env()),
    );
    let err = d
        .create_session(&f.sb.create_req("base", "t", "p"), &mut Sink::default())
        .expect_err("spawn");
    assert!(matches!(err, AgentError::Spawn { .. }), "{err}");
}

#[test]
fn interactive_create_needs_a_terminal() {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        return; // Run by hand from a terminal: the TUI would really start.
    }
    let f = Fake::new();
    let mut req = f.sb.create_req("base", "kugetsu base", "prime");
    req.interactive = true;
    let err = f.driver().create_session(&req, &mut Sink::default()).expect_err("no tty");
    assert!(matches!(err, AgentError::NeedsTerminal), "{err}");
}

#[test]
fn missing_directory_is_named() {
    let f = Fake::new();
    let err = f
        .driver()
        .create_session(&f.sb.create_req("no-such-dir", "t", "p"), &mut Sink::default())
        .expect_err("no dir");
    assert!(
        matches!(err, AgentError::Io { ref path, .. } if path.ends_with("no-such-dir")),
        "{err}"
    );
}

/// What a turn cost, from each `step_finish`: every step's usage as an event while the turn
/// runs, their sum in the report.
#[test]
fn a_turns_cost_and_tokens_are_reported_step_by_step_and_summed() {
    let f = Fake::new();
    let d = f.driver();
    let base = f.create_base(&d);
    let fork = f.fork(&d, &base, "tree");
    f.script(json!([{"mode": "tool", "path": "out.txt", "cost": 0.125}]));
    let mut sink = Sink::default();
    let report = d.run(&f.sb.run_req(&fork, "tree", "write it"), &mut sink).expect("run");
    assert_eq!(report.outcome, RunOutcome::Completed);
    let steps: Vec<_> = sink
        .events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Usage { usage } => Some(*usage),
            _ => None,
        })
        .collect();
    assert_eq!(steps.len(), 2, "{:?}", sink.events);
    let usage = report.usage.expect("usage");
    assert_eq!(usage.cost_usd.map(|c| c.get()), Some(0.25));
    let tokens = usage.tokens.expect("tokens");
    assert_eq!((tokens.input, tokens.output), (20, 4));
}
