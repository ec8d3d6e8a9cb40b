//! The driver against the fake Claude Code: the dialect it speaks, where sessions go, how runs
//! end, and that nothing a tool started outlives its run.

use std::path::PathBuf;
use std::time::Duration;

use kugetsu_claude::{ClaudeDriver, ClaudeOptions};
use kugetsu_core::agent::{
    AgentDriver, AgentEnv, AgentError, AgentEvent, CreateSessionRequest, ForkRequest, RunLimits,
    RunOutcome, RunReport, RunRequest, SessionId,
};
use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::pause::LimitKind;
use serde_json::{Value, json};

/// A scratch `HOME` and state directory with a driver of the fake (shared with the other
/// tests against the fake).
pub(crate) struct World {
    _tmp: tempfile::TempDir,
    pub(crate) root: PathBuf,
    pub(crate) driver: ClaudeDriver,
    stop: Interrupt,
}

impl World {
    pub(crate) fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().canonicalize().expect("canonical");
        for d in ["home", "base", "tree", "state"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        let stop = Interrupt::new();
        let env = [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("HOME", root.join("home").display().to_string()),
            ("FAKE_CLAUDE_SCRIPT", root.join("script.json").display().to_string()),
            ("FAKE_CLAUDE_RECORD", root.join("record.jsonl").display().to_string()),
            // What a Claude Code tool process has: not for the Claude Code kugetsu starts.
            ("CLAUDECODE", "1".into()),
            ("CLAUDE_CODE_SESSION_ID", "caller".into()),
            ("ANTHROPIC_API_KEY", "sk-ant-secret-value-1234".into()),
        ];
        let options = ClaudeOptions::new(env!("CARGO_BIN_EXE_fake-claude"), root.join("state"))
            .base_env(env)
            .kill_grace(Duration::from_millis(500))
            .min_idle(Duration::ZERO)
            .interrupt(stop.clone());
        World { _tmp: tmp, root: root.clone(), driver: ClaudeDriver::new(options), stop }
    }

    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub(crate) fn script(&self, turns: Value) {
        std::fs::write(self.dir("script.json"), json!({ "turns": turns }).to_string())
            .expect("script");
    }

    pub(crate) fn create(&self, dir: &str) -> RunReport {
        let req = CreateSessionRequest {
            title: "kugetsu base".into(),
            prompt: "prime me".into(),
            dir: self.dir(dir),
            env: AgentEnv::default(),
            interactive: false,
            limits: limits(),
            log_path: self.dir("run.log"),
        };
        self.driver.create_session(&req, &mut Vec::new()).expect("create")
    }

    pub(crate) fn run(
        &self,
        session: &SessionId,
        dir: &str,
        prompt: &str,
    ) -> Result<RunReport, AgentError> {
        self.run_limited(session, dir, prompt, limits())
    }

    fn run_limited(
        &self,
        session: &SessionId,
        dir: &str,
        prompt: &str,
        limits: RunLimits,
    ) -> Result<RunReport, AgentError> {
        let req = RunRequest {
            session: session.clone(),
            dir: self.dir(dir),
            prompt: prompt.into(),
            env: AgentEnv::default(),
            limits,
            log_path: self.dir("run.log"),
        };
        self.driver.run(&req, &mut Vec::new())
    }

    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir("record.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record"))
            .collect()
    }

    /// The project directory a transcript of `id` is in, if any.
    pub(crate) fn transcript(&self, id: &SessionId) -> Option<PathBuf> {
        let projects = self.dir("home/.claude/projects");
        std::fs::read_dir(projects)
            .ok()?
            .flatten()
            .map(|p| p.path().join(format!("{id}.jsonl")))
            .find(|p| p.is_file())
    }

    fn fork(&self, base: &SessionId) -> SessionId {
        self.driver
            .fork_session(&ForkRequest {
                base: base.clone(),
                dir: self.dir("tree"),
                title: "issue 7".into(),
                env: AgentEnv::default(),
            })
            .expect("fork")
    }
}

pub(crate) fn limits() -> RunLimits {
    RunLimits {
        timeout: Duration::from_secs(120),
        idle_timeout: Duration::from_secs(60),
        spend_cap: None,
    }
}

fn argv(record: &Value) -> Vec<String> {
    serde_json::from_value(record["argv"].clone()).expect("argv")
}

#[test]
fn a_fork_is_made_by_its_first_turn_from_its_own_directory_and_later_turns_resume_it() {
    let w = World::new();
    w.script(json!([{"mode": "tool", "path": "primed.txt", "content": "x"}]));
    let base = w.create("base").session;
    assert!(kugetsu_claude::args::is_uuid(base.as_str()), "{base}");
    assert!(w.dir("base/primed.txt").exists());

    let fork = w.fork(&base);
    // Recorded, not made: no process ran for it.
    assert_eq!(w.records().len(), 1);
    assert!(w.transcript(&fork).is_none());
    assert!(w.driver.session_exists(&fork).expect("exists"));
    let listed = w.driver.list_sessions(&w.dir("tree")).expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].id.clone(), listed[0].title.as_str()), (fork.clone(), "issue 7"));

    w.script(json!([{"mode": "tool", "path": "one.txt", "content": "1"}, {"mode": "tool", "path": "two.txt", "content": "2"}]));
    let first = w.run(&fork, "tree", "the task, with a secret-looking word").expect("run");
    assert_eq!(first.outcome, RunOutcome::Completed, "{}", log(&w));
    let second = w.run(&fork, "tree", "follow up").expect("run");
    assert_eq!(second.outcome, RunOutcome::Completed, "{}", log(&w));
    assert!(w.dir("tree/one.txt").exists() && w.dir("tree/two.txt").exists());
    assert!(!w.dir("base/one.txt").exists());

    let records = w.records();
    let (prime, first, second) = (argv(&records[0]), argv(&records[1]), argv(&records[2]));
    let head = ["-p", "--output-format", "stream-json", "--verbose"];
    assert_eq!(&prime[..6], [&head[..], &["--session-id", base.as_str()]].concat());
    assert_eq!(
        &first[..9],
        [&head[..], &["--resume", base.as_str(), "--fork-session", "--session-id", fork.as_str()]]
            .concat()
    );
    assert_eq!(&second[..6], [&head[..], &["--resume", fork.as_str()]].concat());
    for a in [&prime, &first, &second] {
        assert!(a.windows(2).any(|w| w == ["--permission-mode", "acceptEdits"]), "{a:?}");
        assert!(!a.iter().any(|x| x.contains("bypass") || x.contains("dangerously")), "{a:?}");
        assert!(
            !a.iter().any(|x| x.contains("task") || x.contains("prime")),
            "prompt in argv: {a:?}"
        );
    }
    assert_eq!(records[1]["stdin"], "the task, with a secret-looking word");
    assert_eq!(records[1]["cwd"], json!(w.dir("tree")));
    // The fork's transcript is the base's history under the worktree's project directory.
    let path = w.transcript(&fork).expect("the fork's transcript");
    assert!(path.parent().expect("dir").ends_with(
        w.dir("tree").display().to_string().replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    ));
    assert!(std::fs::read_to_string(&path).expect("read").contains("prime me"));

    let env: Vec<String> = serde_json::from_value(records[1]["env_names"].clone()).expect("env");
    for quiet in ["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "DISABLE_TELEMETRY", "TMPDIR"] {
        assert!(env.iter().any(|e| e == quiet), "{quiet} missing from {env:?}");
    }
    assert!(!env.iter().any(|e| e == "CLAUDECODE" || e == "CLAUDE_CODE_SESSION_ID"), "{env:?}");
    assert!(!log(&w).contains("sk-ant-secret-value-1234"));

    w.driver.delete_session(&fork).expect("delete");
    assert!(!w.driver.session_exists(&fork).expect("exists"));
    assert!(w.transcript(&fork).is_none());
    assert!(w.driver.session_exists(&base).expect("exists"));
    assert!(matches!(w.driver.delete_session(&fork), Err(AgentError::SessionNotFound { .. })));
    assert!(matches!(w.run(&fork, "tree", "x"), Err(AgentError::SessionNotFound { .. })));
}

#[test]
fn a_write_outside_the_directory_is_blocked_and_an_api_error_fails() {
    let w = World::new();
    let base = w.create("base").session;
    w.script(json!([{"mode": "tool", "path": "/etc/kugetsu-nope", "content": "x"}]));
    let report = w.run(&base, "base", "write elsewhere").expect("run");
    match report.outcome {
        RunOutcome::Blocked { permission } => {
            assert_eq!(permission, "Write `/etc/kugetsu-nope`")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(report.exit_code, Some(0));

    // Overloaded is not a refusal of the account: Claude Code's own retries, then failed.
    w.script(json!([{"mode": "api_error", "status": 529, "message": "slow down", "retries": 3}]));
    match w.run(&base, "base", "x").expect("run").outcome {
        RunOutcome::Failed { message } => {
            assert!(message.contains("529 slow down"), "{message}");
            assert!(message.contains("after 3 retries"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

/// The fake keeps a spending cap as the real one does (the same check on the real CLI is in
/// `real_claude`): counted per process, after each request, no tool past it.
#[test]
fn a_spending_cap_stops_the_turn_after_the_request_that_reaches_it() {
    let w = World::new();
    let base = w.create("base").session;
    let capped = |cap: f64, file: &str| {
        w.script(json!([{"mode": "tool", "path": file, "content": "x", "cost": 0.0248}]));
        let limits = RunLimits { spend_cap: kugetsu_core::usage::Usd::new(cap), ..limits() };
        w.run_limited(&base, "base", "write", limits).expect("run")
    };
    assert_eq!(capped(0.03, "roomy.txt").outcome, RunOutcome::Completed, "{}", log(&w));
    assert!(w.dir("base").join("roomy.txt").is_file());
    let report = capped(0.01, "capped.txt");
    let stopped = RunOutcome::Interrupted { signal: kugetsu_claude::outcome::SPEND_CAP.into() };
    assert_eq!(report.outcome, stopped, "{}", log(&w));
    assert!(!w.dir("base").join("capped.txt").exists(), "the tool ran past the cap");
    let cost = report.usage.and_then(|u| u.cost_usd).map(kugetsu_core::usage::Usd::get);
    assert!(cost.is_some_and(|c| (c - 0.0124).abs() < 1e-9), "charged {cost:?}");
}

/// A 429 is the provider refusing: the driver reports it with the reset time Claude Code's
/// retry line tells (its `retry-after`), cuts the run at once instead of letting Claude Code
/// retry for minutes, and the turn ends `rate_limited`, not failed.
#[test]
fn a_rate_limit_cuts_the_run_at_its_first_retry_with_the_reset_time() {
    let w = World::new();
    let base = w.create("base").session;
    assert_eq!(w.driver.provider().as_deref(), Some("anthropic"));
    // Three retries 5 s apart: uncut, all three would reach the log.
    w.script(json!([{"mode": "api_error", "status": 429, "message": "slow down",
        "retries": 3, "delay_ms": 5_000}]));
    let before = time::OffsetDateTime::now_utc();
    let mut events = Vec::new();
    let report = w
        .driver
        .run(
            &RunRequest {
                session: base.clone(),
                dir: w.dir("base"),
                prompt: "x".into(),
                env: AgentEnv::default(),
                limits: limits(),
                log_path: w.dir("run.log"),
            },
            &mut events,
        )
        .expect("run");
    let after = time::OffsetDateTime::now_utc();
    let RunOutcome::RateLimited(limit) = &report.outcome else {
        panic!("{:?}\n{}", report.outcome, log(&w))
    };
    assert_eq!((limit.provider.as_str(), limit.kind), ("anthropic", LimitKind::RateLimit));
    let until = limit.until.expect("a reset time");
    assert!(
        until >= before + time::Duration::seconds(5) && until <= after + time::Duration::seconds(5),
        "{until} not 5 s after the retry line"
    );
    assert_eq!(log(&w).matches("\"api_retry\"").count(), 1, "not cut at once:\n{}", log(&w));
    assert!(limit.message.contains("429"), "{}", limit.message);
    assert_eq!(report.exit_code, None);
    let told: Vec<_> =
        events.iter().filter(|e| matches!(e, AgentEvent::ProviderLimited(_))).collect();
    assert_eq!(told.len(), 1, "{events:?}");
    assert!(log(&w).contains("rate limited by anthropic until"), "{}", log(&w));
}

/// A used-up credit balance (Claude Code's `billing_error`, not retried) pauses the provider
/// until a person acts: a quota refusal without a reset time.
#[test]
fn a_used_up_credit_balance_is_a_quota_refusal_without_a_reset_time() {
    let w = World::new();
    let base = w.create("base").session;
    let words = "Your credit balance is too low to access the Anthropic API.";
    w.script(json!([{"mode": "api_error", "status": 400, "error": "billing_error",
        "message": words}]));
    let report = w.run(&base, "base", "x").expect("run");
    match &report.outcome {
        RunOutcome::RateLimited(limit) => {
            assert_eq!(limit.kind, LimitKind::Quota);
            assert_eq!((limit.until, limit.message.as_str()), (None, words));
        }
        other => panic!("{other:?}\n{}", log(&w)),
    }
}

/// The Bash tool's command in a process group of its own outlives a SIGKILL of Claude Code's
/// group; the supervision must end it anyway.
#[test]
fn a_timed_out_run_leaves_no_tool_process_behind_even_out_of_its_group() {
    let w = World::new();
    let base = w.create("base").session;
    w.script(json!([{"mode": "hang", "detached": true}]));
    let mut events = Vec::new();
    let req = RunRequest {
        session: base.clone(),
        dir: w.dir("base"),
        prompt: "hang".into(),
        env: AgentEnv::default(),
        limits: RunLimits {
            timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(60),
            spend_cap: None,
        },
        log_path: w.dir("run.log"),
    };
    let report = w.driver.run(&req, &mut events).expect("run");
    assert!(matches!(report.outcome, RunOutcome::TimedOut { .. }), "{:?}", report.outcome);
    let pid = tool_pid(&log(&w)).expect("the tool's pid in the log");
    assert!(!alive(pid), "the tool process {pid} outlived its run");
}

#[test]
fn a_stop_request_interrupts_a_run() {
    let w = World::new();
    let base = w.create("base").session;
    w.script(json!([{"mode": "hang"}]));
    let stop = w.stop.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        stop.trigger(2);
    });
    let report = w.run(&base, "base", "x").expect("run");
    t.join().expect("thread");
    assert_eq!(report.outcome, RunOutcome::Interrupted { signal: "SIGINT".into() });
}

#[test]
fn a_session_claude_code_does_not_know_is_not_found() {
    let w = World::new();
    let unknown = SessionId::new("5b1f0e36-0000-4000-8000-000000000000").expect("id");
    assert!(!w.driver.session_exists(&unknown).expect("exists"));
    assert!(matches!(w.driver.session_info(&unknown), Ok(None)));
    assert!(matches!(w.driver.delete_session(&unknown), Err(AgentError::SessionNotFound { .. })));
    let fork = w.driver.fork_session(&ForkRequest {
        base: unknown.clone(),
        dir: w.dir("tree"),
        title: "t".into(),
        env: AgentEnv::default(),
    });
    assert!(matches!(fork, Err(AgentError::SessionNotFound { id }) if id == unknown));
}

pub(crate) fn log(w: &World) -> String {
    std::fs::read_to_string(w.dir("run.log")).unwrap_or_default()
}

fn tool_pid(log: &str) -> Option<u32> {
    log.lines().find_map(|l| {
        let v: Value = serde_json::from_str(l).ok()?;
        (v["subtype"] == "task_started").then(|| v["task_id"].as_str()?.parse().ok())?
    })
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for this purpose.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(')').next().unwrap_or_default().trim_start().starts_with('Z'))
        .unwrap_or(false)
}
