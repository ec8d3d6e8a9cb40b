//! The driver against the real Claude Code (2.1.328 from npm, installed into the target
//! directory; skipped without it unless `KUGETSU_REAL_CLAUDE=1`), talking to a stand-in of the
//! Messages API on loopback (`support/mock_api.rs`), in a scratch `HOME`.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

#[path = "support/mock_api.rs"]
mod mock_api;
#[path = "support/real.rs"]
mod real;

use std::path::PathBuf;
use std::time::Duration;

use kugetsu_claude::{ClaudeDriver, ClaudeOptions};
use kugetsu_core::agent::{
    AgentDriver, AgentEnv, AgentError, AgentEvent, CreateSessionRequest, ForkRequest, RunLimits,
    RunOutcome, RunReport, RunRequest, SessionId,
};
use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::pause::LimitKind;

/// A key-shaped value: it must never reach a log.
const KEY: &str = "sk-ant-api03-mockmockmockmockmock";

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    api: mock_api::MockApi,
    driver: ClaudeDriver,
    stop: Interrupt,
}

fn world() -> Option<World> {
    world_with(kugetsu_claude::MIN_IDLE)
}

/// A world whose runs are judged hung after no less than `min_idle`.
fn world_with(min_idle: Duration) -> Option<World> {
    let bin = real::claude()?;
    let tmp = tempfile::Builder::new().prefix("kugetsu-real-claude-").tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    for d in ["home", "base", "tree", "state"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let api = mock_api::MockApi::start();
    let stop = Interrupt::new();
    let env = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOME", root.join("home").display().to_string()),
        ("ANTHROPIC_BASE_URL", api.base_url.clone()),
        ("ANTHROPIC_API_KEY", KEY.into()),
    ];
    let options = ClaudeOptions::new(bin, root.join("state"))
        .base_env(env)
        .kill_grace(Duration::from_secs(3))
        .min_idle(min_idle)
        .interrupt(stop.clone());
    Some(World { _tmp: tmp, root, api, driver: ClaudeDriver::new(options), stop })
}

fn limits() -> RunLimits {
    RunLimits {
        timeout: Duration::from_secs(300),
        idle_timeout: Duration::from_secs(120),
        spend_cap: None,
    }
}

impl World {
    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir("run.log")).unwrap_or_default()
    }

    fn create(&self, prompt: &str) -> RunReport {
        let req = CreateSessionRequest {
            title: "kugetsu base".into(),
            prompt: prompt.into(),
            dir: self.dir("base"),
            env: AgentEnv::default(),
            interactive: false,
            limits: limits(),
            log_path: self.dir("run.log"),
        };
        let report = self.driver.create_session(&req, &mut Vec::new()).expect("create");
        assert_eq!(report.outcome, RunOutcome::Completed, "{}", self.log());
        report
    }

    fn run_with(
        &self,
        session: &SessionId,
        dir: &str,
        prompt: &str,
        env: &[(&str, &str)],
        limits: RunLimits,
        events: &mut Vec<AgentEvent>,
    ) -> Result<RunReport, AgentError> {
        let env = AgentEnv(env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let req = RunRequest {
            session: session.clone(),
            dir: self.dir(dir),
            prompt: prompt.into(),
            env,
            limits,
            log_path: self.dir("run.log"),
        };
        self.driver.run(&req, events)
    }

    fn run(&self, session: &SessionId, dir: &str, prompt: &str) -> RunReport {
        self.run_with(session, dir, prompt, &[], limits(), &mut Vec::new()).expect("run")
    }
}

#[test]
fn a_base_is_forked_into_a_worktree_where_its_turns_and_tools_run() {
    let Some(w) = world() else { return };
    let base = w.create("prime: WRITEFILE:primed.txt").session;
    assert!(w.dir("base/primed.txt").is_file(), "{}", w.log());
    assert!(w.driver.session_exists(&base).unwrap());

    let fork = w
        .driver
        .fork_session(&ForkRequest {
            base: base.clone(),
            dir: w.dir("tree"),
            title: "issue 3".into(),
            env: AgentEnv::default(),
        })
        .unwrap();
    let mut events = Vec::new();
    let report = w
        .run_with(&fork, "tree", "please WRITEFILE:hello.txt now", &[], limits(), &mut events)
        .unwrap();
    assert_eq!(report.outcome, RunOutcome::Completed, "{}", w.log());
    assert!(w.dir("tree/hello.txt").is_file(), "{}", w.log());
    assert!(!w.dir("base/hello.txt").exists());
    assert!(events.iter().any(|e| matches!(e, AgentEvent::ToolUse { tool, .. } if tool == "Bash")));
    // The fork carries the base's history: its first request holds the priming prompt.
    let requests = w.api.requests.lock().unwrap().clone();
    let last = &requests.last().unwrap().2;
    assert!(last["messages"].to_string().contains("WRITEFILE:primed.txt"), "{last}");
    assert!(requests.iter().all(|(line, key, _)| line.starts_with("POST /v1/messages") && *key));

    let report = w.run(&fork, "tree", "WRITEFILE:again.txt");
    assert_eq!(report.outcome, RunOutcome::Completed, "{}", w.log());
    assert!(w.dir("tree/again.txt").is_file(), "{}", w.log());
    let listed = w.driver.list_sessions(&w.dir("tree")).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((&listed[0].id, listed[0].title.as_str()), (&fork, "issue 3"));
    assert!(!w.log().contains(KEY), "the API key reached the log");

    w.driver.delete_session(&fork).unwrap();
    assert!(!w.driver.session_exists(&fork).unwrap());
    assert!(w.driver.session_exists(&base).unwrap());
    let unknown = SessionId::new("5b1f0e36-9a4c-4d2e-8f10-6c2b7e0d9a11").unwrap();
    assert!(matches!(w.driver.delete_session(&unknown), Err(AgentError::SessionNotFound { .. })));
}

/// In `-p` nothing waits for an answer: a write outside the directory is refused at once, the
/// run exits 0 with a `success` result, and the driver says `blocked`, with what was refused.
#[test]
fn a_refused_write_is_blocked_with_what_was_refused() {
    let Some(w) = world() else { return };
    let base = w.create("hello").session;
    let report = w.run(&base, "base", "WRITEETC");
    assert_eq!(
        report.outcome,
        RunOutcome::Blocked { permission: "Write `/etc/kugetsu-mock`".into() },
        "{}",
        w.log()
    );
    assert_eq!(report.exit_code, Some(0));
    assert!(!std::path::Path::new("/etc/kugetsu-mock").exists());
}

/// A 429 (with `retry-after: 1`) is the provider refusing: the driver cuts the run at Claude
/// Code's first retry line and ends it `rate_limited` until the reset that line tells. A
/// used-up credit balance is a quota refusal without a reset time. A 529 is retried by Claude
/// Code itself (capped here through the agent's environment, as a user's env file would), then
/// the run fails with the API's words and the retries counted.
#[test]
fn a_rate_limit_and_a_used_up_credit_pause_and_overload_fails_after_retries() {
    let Some(w) = world() else { return };
    let base = w.create("hello").session;
    let before = time::OffsetDateTime::now_utc();
    let mut events = Vec::new();
    let report = w.run_with(&base, "base", "RATELIMIT", &[], limits(), &mut events).unwrap();
    let RunOutcome::RateLimited(limit) = &report.outcome else {
        panic!("{:?}\n{}", report.outcome, w.log())
    };
    assert_eq!((limit.provider.as_str(), limit.kind), ("anthropic", LimitKind::RateLimit));
    assert!(limit.until.is_some_and(|t| t >= before + time::Duration::seconds(1)), "{limit:?}");
    assert!(events.iter().any(|e| matches!(e, AgentEvent::ProviderLimited(_))), "{events:?}");
    assert_eq!(w.log().matches("\"api_retry\"").count(), 1, "not cut at once:\n{}", w.log());

    let report = w.run_with(&base, "base", "QUOTA", &[], limits(), &mut Vec::new()).unwrap();
    match &report.outcome {
        RunOutcome::RateLimited(limit) => {
            assert_eq!((limit.kind, limit.until), (LimitKind::Quota, None), "{}", w.log());
            assert_eq!(limit.provider, "anthropic");
        }
        other => panic!("{other:?}\n{}", w.log()),
    }

    let env = [("CLAUDE_CODE_MAX_RETRIES", "1")];
    let mut events = Vec::new();
    let report = w.run_with(&base, "base", "OVERLOADED", &env, limits(), &mut events).unwrap();
    match &report.outcome {
        RunOutcome::Failed { message } => {
            assert!(message.contains("mock overloaded"), "{message}");
            assert!(message.contains("after 1 retries"), "{message}");
        }
        other => panic!("{other:?}\n{}", w.log()),
    }
    assert_eq!(report.exit_code, Some(1));
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Error { .. })), "{events:?}");
}

/// A stream that stops after `message_start`: Claude Code would wait 300 s before retrying;
/// under a shorter idle limit (here allowed below the driver's floor) the run is hung.
#[test]
fn a_stalled_stream_is_hung_at_the_idle_limit() {
    let Some(w) = world_with(Duration::ZERO) else { return };
    let base = w.create("hello").session;
    let limits = RunLimits {
        timeout: Duration::from_secs(120),
        idle_timeout: Duration::from_secs(4),
        spend_cap: None,
    };
    let report = w.run_with(&base, "base", "STALL", &[], limits, &mut Vec::new()).unwrap();
    assert!(matches!(report.outcome, RunOutcome::Hung { .. }), "{:?}\n{}", report.outcome, w.log());
}

/// The Bash tool's command runs in a session of its own: at the limit it is ended with Claude
/// Code, though a kill of Claude Code's group would miss it. (Claude Code ends it itself on
/// SIGTERM; were it killed outright, only the driver's following of its descendants would.)
#[test]
fn a_tool_command_in_its_own_session_does_not_outlive_a_timed_out_run() {
    let Some(w) = world() else { return };
    let base = w.create("hello").session;
    let pidfile = w.dir("tool.pid");
    let limits = RunLimits {
        timeout: Duration::from_secs(8),
        idle_timeout: Duration::from_secs(120),
        spend_cap: None,
    };
    let prompt = format!("PIDSLEEP:{}", pidfile.display());
    let report = w.run_with(&base, "base", &prompt, &[], limits, &mut Vec::new()).unwrap();
    assert!(
        matches!(report.outcome, RunOutcome::TimedOut { .. }),
        "{:?}\n{}",
        report.outcome,
        w.log()
    );
    let pid: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(!alive(pid), "the tool's shell {pid} outlived its run");
}

/// A stop request (Ctrl-C reaching kugetsu) ends a run as interrupted.
#[test]
fn a_stop_request_interrupts_a_run() {
    let Some(w) = world() else { return };
    let base = w.create("hello").session;
    let stop = w.stop.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        stop.trigger(2);
    });
    let report = w.run(&base, "base", "STALL");
    t.join().unwrap();
    assert_eq!(report.outcome, RunOutcome::Interrupted { signal: "SIGINT".into() });
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with(['Z', 'X'])))
        .is_some_and(|dead| !dead)
}

/// Claude Code's `total_cost_usd` is the session's running total (restored on resume, and a
/// fork's starts from its base's); `usage` is the turn's own. The driver says what each turn
/// cost: the total's growth (at the default model's prices, one stand-in request is $0.0124).
#[test]
fn each_turn_is_charged_its_own_cost_not_the_sessions_total() {
    let Some(w) = world() else { return };
    // Two requests (the tool call and the answer to its result).
    let base = w.create("WRITEFILE:primed.txt").session;
    assert!(last_footer(&w).ends_with("completed (tokens 24104, $0.0248)"), "{}", w.log());
    w.run(&base, "base", "hello");
    assert!(last_footer(&w).ends_with("completed (tokens 12052, $0.0124)"), "{}", w.log());
    let fork = w
        .driver
        .fork_session(&ForkRequest {
            base,
            dir: w.dir("tree"),
            title: "t".into(),
            env: AgentEnv::default(),
        })
        .unwrap();
    w.run(&fork, "tree", "hello");
    assert!(last_footer(&w).ends_with("completed (tokens 12052, $0.0124)"), "{}", w.log());
    w.run(&fork, "tree", "hello");
    assert!(last_footer(&w).ends_with("completed (tokens 12052, $0.0124)"), "{}", w.log());
}

fn last_footer(w: &World) -> String {
    w.log()
        .lines()
        .rfind(|l| l.starts_with("=== ") && !l.contains(" claude -p "))
        .unwrap()
        .to_owned()
}

/// A session carried to another host: exported on one `HOME` (a secret a tool printed
/// masked), imported into another `HOME` and directory, where its next turn (`--resume`) has
/// the earlier turn in its request and its tools run in the new directory.
#[test]
fn a_session_exported_on_one_host_carries_on_in_another() {
    let Some(a) = world() else { return };
    let Some(b) = world() else { return };
    let base = a.create("remember the word PELICAN-7 please").session;
    let secret = "tok-transfer-2b9f61d0c4e8a7";
    let env = [("SERVICE_TOKEN", secret)];
    let report =
        a.run_with(&base, "base", "ECHOENV:SERVICE_TOKEN", &env, limits(), &mut Vec::new());
    assert_eq!(report.unwrap().outcome, RunOutcome::Completed, "{}", a.log());
    let transcript = a.dir("home/.claude/projects");
    assert!(std::fs::read_dir(&transcript).is_ok_and(|mut d| d.next().is_some()));

    let agent_env = AgentEnv(env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let export = a.driver.export_session(&base, &agent_env).unwrap();
    assert!(export.contains("PELICAN-7"), "the history is in the export");
    assert!(!export.contains(secret), "a secret of the env reached the export");
    assert!(!export.contains(KEY), "the API key reached the export");

    let req = ForkRequest {
        base: base.clone(),
        dir: b.dir("tree"),
        title: "moved issue".into(),
        env: AgentEnv::default(),
    };
    let moved = b.driver.import_session(&export, &req).unwrap();
    assert_ne!(moved, base);
    let info = b.driver.session_info(&moved).unwrap().unwrap();
    assert_eq!((info.title.as_str(), info.directory), ("moved issue", b.dir("tree")));
    // Written as a fork is: every entry names the new session and directory.
    let text = transcript_of(&b, &moved);
    assert!(!text.contains(base.as_str()), "the old session id is left in the transcript");
    let tree = b.dir("tree").display().to_string();
    for entry in text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()) {
        assert!(entry.get("cwd").is_none_or(|c| *c == *tree), "{entry}");
    }

    let report = b.run(&moved, "tree", "WRITEFILE:moved.txt");
    assert_eq!(report.outcome, RunOutcome::Completed, "{}", b.log());
    assert!(b.dir("tree/moved.txt").is_file(), "{}", b.log());
    let requests = b.api.requests.lock().unwrap().clone();
    let first = &requests.iter().find(|(l, _, _)| l.starts_with("POST /v1/messages")).unwrap().2;
    assert!(first["messages"].to_string().contains("PELICAN-7"), "{first}");
    // The session's total came along: the turn is charged its own cost only.
    assert!(last_footer(&b).ends_with("completed (tokens 24104, $0.0248)"), "{}", b.log());

    let again = b.driver.import_session(&export, &req).unwrap();
    assert_ne!(again, moved, "a second import is a second session");
    assert_eq!(b.driver.list_sessions(&b.dir("tree")).unwrap().len(), 2);
}

/// The text of session `id`'s transcript in `w`'s `HOME`.
fn transcript_of(w: &World, id: &SessionId) -> String {
    let projects = w.dir("home/.claude/projects");
    let found = std::fs::read_dir(&projects)
        .unwrap()
        .map(|p| p.unwrap().path().join(format!("{id}.jsonl")))
        .find(|p| p.is_file())
        .unwrap();
    std::fs::read_to_string(found).unwrap()
}

/// A turn's spending cap (what is left of its budgets) is Claude Code's `--max-budget-usd`: it
/// counts what this process spends, not the session's running total, and stops after the
/// request that reaches it, before any tool that request asked for.
#[test]
fn a_spending_cap_stops_the_turn_after_the_request_that_reaches_it() {
    let Some(w) = world() else { return };
    // The session has spent $0.0248 already: a cap below it still lets a turn run.
    let base = w.create("WRITEFILE:primed.txt").session;
    let capped = |cap: f64, file: &str| {
        let mut limits = limits();
        limits.spend_cap = kugetsu_core::usage::Usd::new(cap);
        let prompt = format!("WRITEFILE:{file}");
        w.run_with(&base, "base", &prompt, &[], limits, &mut Vec::new()).expect("run")
    };
    // Two requests of $0.0124: both fit in $0.03.
    let report = capped(0.03, "roomy.txt");
    assert_eq!(report.outcome, RunOutcome::Completed, "{}", w.log());
    assert!(w.dir("base").join("roomy.txt").is_file());
    // The first request reaches $0.01: its tool call is not run.
    let report = capped(0.01, "capped.txt");
    let stopped = RunOutcome::Interrupted { signal: kugetsu_claude::outcome::SPEND_CAP.into() };
    assert_eq!(report.outcome, stopped, "{}", w.log());
    assert!(!w.dir("base").join("capped.txt").exists(), "the tool ran past the cap");
    let cost = report.usage.and_then(|u| u.cost_usd).map(kugetsu_core::usage::Usd::get);
    assert!(cost.is_some_and(|c| (c - 0.0124).abs() < 1e-9), "charged {cost:?}");
    assert!(w.log().contains("--max-budget-usd 0.01 "), "{}", w.log());
}
