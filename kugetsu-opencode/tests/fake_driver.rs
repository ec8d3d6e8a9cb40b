//! The driver against `fake-opencode`, which follows the real CLI's contract
//! (see CONFORMANCE.md): sessions, forks into a worktree, outcomes, limits, prompt and env
//! hygiene.

use crate::support;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use kugetsu_core::agent::{
    AgentDriver, AgentError, AgentEvent, ForkRequest, RunOutcome, SessionId,
};
use kugetsu_opencode::{OpencodeDriver, OpencodeOptions};
use serde_json::{Value, json};
use support::Sink;
use support::{Sandbox, agent_env, assert_group_gone, limits, read};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-opencode");

struct Fake {
    sb: Sandbox,
    script: PathBuf,
    record: PathBuf,
}

impl Fake {
    fn new() -> Self {
        let sb = Sandbox::new();
        let script = sb.path("script.json");
        let record = sb.path("record.jsonl");
        std::fs::write(&script, "{}").expect("script");
        Fake { sb, script, record }
    }
    fn script(&self, turns: Value) {
        std::fs::write(&self.script, json!({ "turns": turns }).to_string()).expect("script");
    }
    fn base_env(&self) -> Vec<(OsString, OsString)> {
        let mut env = self.sb.base_env();
        env.push(("FAKE_OPENCODE_SCRIPT".into(), self.script.clone().into()));
        env.push(("FAKE_OPENCODE_RECORD".into(), self.record.clone().into()));
        env
    }
    fn options(&self) -> OpencodeOptions {
        self.options_for(FAKE)
    }
    /// The options of [`Fake::options`] for another program.
    fn options_for(&self, program: impl Into<std::path::PathBuf>) -> OpencodeOptions {
        OpencodeOptions::new(program)
            .base_env(self.base_env())
            .kill_grace(Duration::from_millis(300))
            .helper_timeout(Duration::from_secs(30))
    }
    fn driver(&self) -> OpencodeDriver {
        OpencodeDriver::new(self.options())
    }
    /// A driver that keeps the base's export in `cache/`, as kugetsu's does.
    fn caching_driver(&self) -> OpencodeDriver {
        OpencodeDriver::new(self.options().export_cache(self.sb.path("cache")))
    }
    /// The subcommands recorded from the `from`th record on (a `run` is recorded twice: as it
    /// starts, then with the message it read; counted once).
    fn commands(&self, from: usize) -> Vec<String> {
        self.records()[from..]
            .iter()
            .filter(|r| r["argv"][0] != "run" || r["message"].is_string())
            .map(|r| r["argv"][0].as_str().unwrap_or_default().to_string())
            .collect()
    }
    fn fork(&self, d: &OpencodeDriver, base: &SessionId, dir: &str) -> SessionId {
        std::fs::create_dir_all(self.sb.path(dir)).expect("mkdir");
        d.fork_session(&ForkRequest {
            base: base.clone(),
            dir: self.sb.path(dir),
            title: format!("issue in {dir}"),
            env: agent_env(&[]),
        })
        .expect("fork")
    }
    /// Invocations recorded by the fake.
    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record line"))
            .collect()
    }
    fn run_records(&self) -> Vec<Value> {
        self.records().into_iter().filter(|r| r["message"].is_string()).collect()
    }
    fn create_base(&self, d: &OpencodeDriver) -> SessionId {
        let report = d
            .create_session(&self.sb.create_req("base", "kugetsu base", "prime"), &mut Vec::new())
            .expect("create");
        assert_eq!(report.outcome, RunOutcome::Completed);
        report.session
    }
    /// The fake's own store, for checks the driver API does not expose.
    fn export(&self, id: &SessionId) -> Value {
        let out = std::process::Command::new(FAKE)
            .args(["export", id.as_str()])
            .env_clear()
            .envs(self.base_env())
            .output()
            .expect("export");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("export json")
    }
}

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
    assert_eq!(argv, ["run", "--format", "json", "--title=kugetsu base"]);
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

/// A fork is trusted without a second look, and so is a run: with every `db` failing, a fork
/// and its runs still work, in the worktree and with the deny rules (the real binary's import
/// keeps both, which `tests/real_opencode.rs` checks).
#[test]
fn forks_and_runs_spend_no_db() {
    let f = Fake::new();
    let base = f.create_base(&f.driver());
    let mut env = f.base_env();
    env.push(("FAKE_OPENCODE_FAIL".into(), "db".into()));
    let d = OpencodeDriver::new(OpencodeOptions::new(FAKE).base_env(env));
    let fork = f.fork(&d, &base, "tree");
    f.script(json!([{"mode": "tool", "path": "out.txt", "content": "in the tree\n"}]));
    let report =
        d.run(&f.sb.run_req(&fork, "tree", "write it"), &mut Sink::default()).expect("run");
    assert_eq!(report.outcome, RunOutcome::Completed);
    assert_eq!(read(&f.sb.path("tree").join("out.txt")), "in the tree\n");
    assert!(!f.driver().fix_permissions(&fork).expect("fix"), "the fork has its deny rules");
}

#[test]
fn a_failed_import_leaves_no_fork() {
    let f = Fake::new();
    let base = f.create_base(&f.driver());
    let mut env = f.base_env();
    env.push(("FAKE_OPENCODE_FAIL".into(), "import".into()));
    let d = OpencodeDriver::new(OpencodeOptions::new(FAKE).base_env(env));
    let err = d
        .fork_session(&ForkRequest {
            base,
            dir: f.sb.path("tree"),
            title: "t".into(),
            env: agent_env(&[]),
        })
        .expect_err("import fails");
    assert!(
        matches!(err, AgentError::CommandFailed { ref command, ref message } if command == "import" && message.contains("injected")),
        "{err}"
    );
    let left = f.driver().list_sessions(&f.sb.path("tree")).expect("list");
    assert_eq!(left.len(), 1, "only the base is left: {left:?}");
    assert_eq!(left[0].title, "kugetsu base");
}

/// What `start` and `continue` cost in opencode processes: a fork is one `import` once the
/// base's export is kept (the first fork, or `prepare_fork`, exports it), and a run is the
/// `run` alone.
#[test]
fn a_fork_is_one_import_and_a_run_one_run() {
    let f = Fake::new();
    let d = f.caching_driver();
    let base = f.create_base(&d);
    let at = f.records().len();
    let first = f.fork(&d, &base, "tree");
    assert_eq!(f.commands(at), ["export", "import"], "the first fork exports the base");
    let at = f.records().len();
    let second = f.fork(&d, &base, "tree2");
    assert_eq!(f.commands(at), ["import"], "later forks use the kept export");
    let at = f.records().len();
    d.prepare_fork(&base, &agent_env(&[]), false).expect("prepare");
    assert_eq!(f.commands(at), Vec::<String>::new(), "kept already: nothing to do");
    for (fork, dir) in [(&first, "tree"), (&second, "tree2")] {
        let doc = f.export(fork);
        assert_eq!(doc["info"]["directory"], f.sb.path(dir).to_string_lossy().as_ref());
        assert_eq!(doc["messages"][0]["parts"][0]["text"], "prime", "history kept");
        assert!(!f.driver().fix_permissions(fork).expect("fix"), "rules kept");
        let at = f.records().len();
        let report = d.run(&f.sb.run_req(fork, dir, "go"), &mut Sink::default()).expect("run");
        assert_eq!(report.outcome, RunOutcome::Completed);
        assert_eq!(f.commands(at), ["run"], "a run is the run alone");
    }
    assert_ne!(first, second);
}

/// What the kept export cannot see: a base continued by hand inside opencode. Forks made after
/// that start from the kept transcript until `prepare_fork` with `refresh` (`init`, `doctor`)
/// exports it again; a kept export that no longer imports is replaced by a fresh one at once.
#[test]
fn the_kept_export_is_refreshed_on_request_and_when_it_fails() {
    let f = Fake::new();
    let d = f.caching_driver();
    let base = f.create_base(&d);
    f.fork(&d, &base, "tree");
    let turns = |id: &SessionId| f.export(id)["messages"].as_array().map(Vec::len);
    d.run(&f.sb.run_req(&base, "base", "by hand"), &mut Sink::default()).expect("base run");
    let stale = f.fork(&d, &base, "tree2");
    assert_eq!(turns(&stale), Some(2), "the kept transcript, without the base's new turn");
    let at = f.records().len();
    d.prepare_fork(&base, &agent_env(&[]), true).expect("refresh");
    assert_eq!(f.commands(at), ["export"]);
    let fresh = f.fork(&d, &base, "tree3");
    assert_eq!(turns(&fresh), turns(&base), "the base's whole history after a refresh");

    // A kept export damaged on disk (or from an opencode the key could not tell apart).
    let kept = f.sb.path("cache").join("opencode-base-export.json");
    let mut doc: Value = serde_json::from_str(&read(&kept)).expect("kept json");
    doc["export"]["messages"] = json!("not a list");
    std::fs::write(&kept, doc.to_string()).expect("damage");
    let at = f.records().len();
    let fork = f.fork(&d, &base, "tree4");
    assert_eq!(f.commands(at), ["export", "import"], "exported anew");
    assert_eq!(turns(&fork), turns(&base));
}

/// Deleting the base (`destroy --base`) drops its kept export: its transcript is not kept on.
#[test]
fn deleting_the_base_drops_its_kept_export() {
    let f = Fake::new();
    let d = f.caching_driver();
    let base = f.create_base(&d);
    let other = f.create_base(&d);
    f.fork(&d, &base, "tree");
    let kept = f.sb.path("cache").join("opencode-base-export.json");
    assert!(kept.exists());
    d.delete_session(&other).expect("delete another session");
    assert!(kept.exists(), "another session's deletion keeps it");
    d.delete_session(&base).expect("delete the base");
    assert!(!kept.exists());
}

/// A transcript can show a secret (an agent that printed its token): such a base is never kept
/// on disk, only kugetsu's env files hold secrets. It is exported on every fork instead.
#[test]
fn a_base_that_shows_a_secret_is_not_kept() {
    let f = Fake::new();
    let d = f.caching_driver();
    f.script(json!([{"mode": "ok", "text": "my token is tok-5ec7e7-value"}]));
    let base = f.create_base(&d);
    let env = agent_env(&[("GITHUB_TOKEN", "tok-5ec7e7-value")]);
    let kept = f.sb.path("cache").join("opencode-base-export.json");
    for dir in ["tree", "tree2"] {
        std::fs::create_dir_all(f.sb.path(dir)).expect("mkdir");
        let at = f.records().len();
        d.fork_session(&ForkRequest {
            base: base.clone(),
            dir: f.sb.path(dir),
            title: "t".into(),
            env: env.clone(),
        })
        .expect("fork");
        assert_eq!(f.commands(at), ["export", "import"]);
        assert!(!kept.exists(), "nothing kept");
    }
    // Without that secret in its environment, the same base is kept as any other.
    f.fork(&d, &base, "tree3");
    assert!(kept.exists());
    let at = f.records().len();
    d.prepare_fork(&base, &env, false).expect("prepare");
    assert_eq!(f.commands(at), ["export"], "the kept export shows the secret: dropped, exported");
    assert!(!kept.exists());
}

/// The registration of the warm serve, as the driver keeps it in the cache directory.
fn registration(f: &Fake) -> Value {
    serde_json::from_str(&read(&f.sb.path("cache").join("opencode-serve.json"))).expect("json")
}

#[test]
fn forks_go_through_a_warm_serve_while_it_runs() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fake::new();
    let d = f.caching_driver();
    let base = f.create_base(&d);
    d.prepare_fork(&base, &agent_env(&[]), false).expect("prepare");
    let warm = d.keep_warm(&agent_env(&[])).expect("keep warm").expect("a serve was started");
    let reg = registration(&f);
    let pid = reg["pid"].as_u64().expect("pid") as u32;
    assert!(reg["url"].as_str().is_some_and(|u| u.starts_with("http://127.0.0.1:")));
    assert_eq!(reg["password"].as_str().map(str::len), Some(48), "a password of its own");
    let mode = std::fs::metadata(f.sb.path("cache").join("opencode-serve.json"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the password is private");
    assert!(
        d.keep_warm(&agent_env(&[])).expect("again").is_none(),
        "one serve per state directory"
    );
    // Without the password the serve answers nothing.
    let url = reg["url"].as_str().expect("url").trim_start_matches("http://").to_owned();
    let mut conn = std::net::TcpStream::connect(&url).expect("connect");
    std::io::Write::write_all(
        &mut conn,
        b"POST /sync/replay HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}",
    )
    .expect("send");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut conn, &mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    let at = f.records().len();
    let fork = f.fork(&d, &base, "tree");
    assert_eq!(f.commands(at), Vec::<String>::new(), "no opencode process for the fork");
    let doc = f.export(&fork);
    assert_eq!(doc["info"]["directory"], f.sb.path("tree").to_string_lossy().as_ref());
    assert_eq!(doc["info"]["title"], "issue in tree");
    assert_eq!(doc["messages"][0]["parts"][0]["text"], "prime", "history kept");
    assert!(!f.driver().fix_permissions(&fork).expect("fix"), "rules kept");
    f.script(json!([{"mode": "tool", "path": "out.txt", "content": "via the serve\n"}]));
    let report = d.run(&f.sb.run_req(&fork, "tree", "go"), &mut Sink::default()).expect("run");
    assert_eq!(report.outcome, RunOutcome::Completed);
    assert_eq!(read(&f.sb.path("tree").join("out.txt")), "via the serve\n");

    // Another opencode program than the serve's (here a link to it, named differently): the
    // fork does not trust the serve and imports.
    let link = f.sb.path("other-opencode");
    std::os::unix::fs::symlink(FAKE, &link).expect("link");
    let other = OpencodeDriver::new(f.options_for(link).export_cache(f.sb.path("cache")));
    let at = f.records().len();
    f.fork(&other, &base, "tree3");
    assert_eq!(f.commands(at), ["export", "import"], "another program: an import");

    drop(warm);
    assert_group_gone(pid);
    assert!(!f.sb.path("cache").join("opencode-serve.json").exists(), "unregistered");
    let at = f.records().len();
    f.fork(&d, &base, "tree2");
    // (The other program's fork kept its own export, so this one exports again.)
    assert_eq!(f.commands(at), ["export", "import"], "no serve: an import");
}

#[test]
fn forks_import_when_the_serve_is_dead_hangs_refuses_or_fails() {
    for breakage in ["dead", "hang", "error", "password"] {
        let f = Fake::new();
        let mut env = f.base_env();
        if matches!(breakage, "hang" | "error") {
            env.push(("FAKE_OPENCODE_SERVE".into(), breakage.into()));
        }
        let d = OpencodeDriver::new(
            f.options()
                .base_env(env)
                .export_cache(f.sb.path("cache"))
                .replay_timeout(Duration::from_millis(500)),
        );
        let base = f.create_base(&d);
        d.prepare_fork(&base, &agent_env(&[]), false).expect("prepare");
        let warm = d.keep_warm(&agent_env(&[])).expect("keep warm").expect("started");
        let pid = registration(&f)["pid"].as_u64().expect("pid") as u32;
        match breakage {
            "dead" => {
                rustix::process::kill_process(
                    rustix::process::Pid::from_raw(pid as i32).expect("pid"),
                    rustix::process::Signal::KILL,
                )
                .expect("kill");
                // A zombie until the handle reaps it: gone for the liveness check either way.
                while kugetsu_process::procfs::is_running(pid) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            "password" => {
                let mut reg = registration(&f);
                reg["password"] = json!("not-the-password");
                std::fs::write(f.sb.path("cache").join("opencode-serve.json"), reg.to_string())
                    .expect("write");
            }
            _ => {}
        }
        let at = f.records().len();
        let fork = f.fork(&d, &base, "tree");
        assert_eq!(f.commands(at), ["import"], "{breakage}: the fork imports instead");
        let doc = f.export(&fork);
        assert_eq!(doc["info"]["directory"], f.sb.path("tree").to_string_lossy().as_ref());
        drop(warm);
        assert_group_gone(pid);
    }
}

/// Processes whose environment names this sandbox (the fake serve's command line does not).
fn live_in_sandbox(f: &Fake) -> Vec<u32> {
    let needle = f.sb.path("").to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            String::from_utf8_lossy(&env).contains(&needle) && !state.contains(") Z ")
        })
        .collect()
}

/// A serve stuck starting (it never prints its URL) does not hold up whoever stops keeping it
/// warm: the stop request ends the start and the serve with it.
#[test]
fn a_serve_stuck_starting_is_stopped_on_request() {
    let f = Fake::new();
    let mut env = f.base_env();
    env.push(("FAKE_OPENCODE_SERVE".into(), "silent".into()));
    let stop = kugetsu_core::interrupt::Interrupt::new();
    // A start that only its limit ended would outlast the bounded wait below by far.
    let d = OpencodeDriver::new(
        f.options()
            .base_env(env)
            .export_cache(f.sb.path("cache"))
            .interrupt(stop.clone())
            .helper_timeout(Duration::from_secs(3600)),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(d.keep_warm(&agent_env(&[])).map(|g| g.is_some()));
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while live_in_sandbox(&f).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the serve never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.trigger(0);
    let result = rx.recv_timeout(Duration::from_secs(60)).expect("the start ended on request");
    assert!(matches!(result, Err(AgentError::Interrupted { .. })), "{result:?}");
    assert!(live_in_sandbox(&f).is_empty(), "the serve is gone");
    assert!(!f.sb.path("cache").join("opencode-serve.json").exists());
}
