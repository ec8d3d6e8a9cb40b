//! The driver against the REAL opencode 1.18.33 (installed from npm into the target dir by
//! the first test that needs it) and a mock model on 127.0.0.1, isolated with its own HOME and
//! XDG dirs.
//!
//! Without npm or the registry these tests print why and pass as skipped; with
//! `KUGETSU_REAL_OPENCODE=1` that is a failure instead.

mod support;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kugetsu_core::agent::{AgentDriver, AgentEvent, ForkRequest, RunOutcome, SessionId};
use kugetsu_opencode::{OpencodeDriver, OpencodeOptions};
use support::Sink;
use support::mock_model::MockModel;
use support::real::opencode;
use support::{Sandbox, agent_env, assert_group_gone, limits, read};

struct Real {
    sb: Sandbox,
    _model: MockModel,
    driver: OpencodeDriver,
}

impl Real {
    fn new(bin: PathBuf) -> Self {
        let sb = Sandbox::new();
        let model = MockModel::start();
        let mut env: Vec<(OsString, OsString)> = sb.base_env();
        for (k, v) in [
            ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
            ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
            ("OPENCODE_DISABLE_SHARE", "1"),
        ] {
            env.push((k.into(), v.into()));
        }
        env.push(("OPENCODE_CONFIG_CONTENT".into(), model.opencode_config().into()));
        let driver = OpencodeDriver::new(
            OpencodeOptions::new(bin).base_env(env).kill_grace(Duration::from_secs(3)),
        );
        Real { sb, _model: model, driver }
    }

    /// Runs opencode directly (for checks the driver API does not expose); its stdout.
    fn opencode(&self, args: &[&str]) -> String {
        let opts = self.driver.options();
        let out = Command::new(&opts.program)
            .args(args)
            .env_clear()
            .envs(opts.base_env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("opencode");
        assert!(
            out.status.success(),
            "opencode {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn create(&self) -> SessionId {
        self.create_with("You are the base session.")
    }

    fn create_with(&self, prompt: &str) -> SessionId {
        let report = self
            .driver
            .create_session(&self.sb.create_req("base", "kugetsu base", prompt), &mut Vec::new())
            .expect("create");
        assert_eq!(report.outcome, RunOutcome::Completed, "log:\n{}", read(&self.sb.log()));
        report.session
    }
}

#[test]
fn real_create_fork_run_and_continue() {
    let Some(bin) = opencode() else { return };
    let r = Real::new(bin);
    // A base whose history holds a tool call too: the fork must carry tool parts over.
    let base = r.create_with("You are the base session. WRITEFILE:primed.txt");
    assert_eq!(read(&r.sb.path("base").join("primed.txt")), "written by the mock\n");
    assert!(r.driver.session_exists(&base).expect("exists"));
    let listed = r.driver.list_sessions(&r.sb.path("base")).expect("list");
    assert!(listed.iter().any(|s| s.id == base && s.title == "kugetsu base"), "{listed:?}");

    let fork = r
        .driver
        .fork_session(&ForkRequest {
            base: base.clone(),
            dir: r.sb.path("tree"),
            title: "issue 14".into(),
            env: agent_env(&[]),
        })
        .expect("fork");
    assert_ne!(fork, base);
    assert!(!r.driver.fix_permissions(&fork).expect("fix"), "the fork kept its deny rules");
    let listed = r.driver.list_sessions(&r.sb.path("tree")).expect("list");
    let entry = listed.iter().find(|s| s.id == fork).expect("the fork is listed");
    assert_eq!(entry.title, "issue 14");
    assert_eq!(entry.directory, r.sb.path("tree"));

    // Rules lost (as by an upstream `run --fork`) are put back through `opencode db`.
    r.opencode(&["db", &format!("UPDATE session SET permission = NULL WHERE id = '{fork}'")]);
    assert!(r.driver.fix_permissions(&fork).expect("fix"));
    assert!(!r.driver.fix_permissions(&fork).expect("fix again"));
    let rows = r.opencode(&[
        "db",
        &format!("SELECT permission FROM session WHERE id = '{fork}'"),
        "--format",
        "json",
    ]);
    for name in ["question", "plan_enter", "plan_exit"] {
        assert!(
            rows.contains(&format!(
                r#"\"permission\":\"{name}\",\"pattern\":\"*\",\"action\":\"deny\""#
            )),
            "{rows}"
        );
    }

    let mut sink = Sink::default();
    let report = r
        .driver
        .run(&r.sb.run_req(&fork, "tree", "please WRITEFILE:hello.txt now"), &mut sink)
        .expect("run");
    assert_eq!(report.outcome, RunOutcome::Completed, "log:\n{}", read(&r.sb.log()));
    assert_eq!(report.session, fork);
    assert_eq!(read(&r.sb.path("tree").join("hello.txt")), "written by the mock\n");
    assert!(
        !r.sb.path("base").join("hello.txt").exists(),
        "the fork ran in the worktree, not the base dir"
    );
    assert!(
        sink.events
            .iter()
            .any(|e| matches!(e, AgentEvent::ToolUse { tool, .. } if tool == "write"))
    );

    // The same session goes on.
    let report = r
        .driver
        .run(&r.sb.run_req(&fork, "tree", "and now just talk"), &mut Sink::default())
        .expect("continue");
    assert_eq!(report.outcome, RunOutcome::Completed, "log:\n{}", read(&r.sb.log()));

    r.driver.delete_session(&fork).expect("delete");
    assert!(!r.driver.session_exists(&fork).expect("exists"));
}

#[test]
fn real_permission_rejection_is_blocked_and_api_error_failed() {
    let Some(bin) = opencode() else { return };
    let r = Real::new(bin);
    let s = r.create();
    let report = r
        .driver
        .run(&r.sb.run_req(&s, "base", "please READETC"), &mut Sink::default())
        .expect("run");
    assert_eq!(report.exit_code, Some(0), "opencode exits 0 after rejecting");
    match &report.outcome {
        RunOutcome::Blocked { permission } => {
            assert!(permission.contains("external_directory"), "{permission}")
        }
        other => panic!("expected Blocked, got {other:?}; log:\n{}", read(&r.sb.log())),
    }
    // A provider error ends the turn as Failed with the provider's message.
    let report = r
        .driver
        .run(&r.sb.run_req(&s, "base", "please APIERROR"), &mut Sink::default())
        .expect("run");
    match &report.outcome {
        RunOutcome::Failed { message } => {
            assert!(message.contains("mock bad request"), "{message}")
        }
        other => panic!("expected Failed, got {other:?}; log:\n{}", read(&r.sb.log())),
    }
}

/// Live processes whose command line contains `needle`.
fn live_with_cmdline(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(needle) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn real_hung_bash_tool_is_killed_with_its_detached_command() {
    let Some(bin) = opencode() else { return };
    let r = Real::new(bin);
    let s = r.create();
    // A unique duration finds the command again; opencode's bash tool starts it detached.
    let secs = format!(
        "300.{}{}",
        std::process::id(),
        std::time::UNIX_EPOCH.elapsed().map(|d| d.subsec_micros()).unwrap_or(0)
    );
    let mut req = r.sb.run_req(&s, "base", &format!("please BASHSLEEP:{secs}"));
    // The idle limit must exceed opencode's cold start on a busy machine (seen: 6 to 9 s).
    req.limits = limits(90, 20);
    let needle = format!("sleep {secs}");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (done, needle) = (done.clone(), needle.clone());
        std::thread::spawn(move || {
            let mut seen = false;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                seen |= !live_with_cmdline(&needle).is_empty();
                std::thread::sleep(Duration::from_millis(200));
            }
            seen
        })
    };
    let mut sink = Sink::default();
    let report = r.driver.run(&req, &mut sink).expect("run");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        watcher.join().expect("watcher"),
        "the bash tool's sleep never ran ({:?}): the test would prove nothing; log:\n{}",
        report.outcome,
        read(&r.sb.log())
    );
    assert!(
        matches!(report.outcome, RunOutcome::Hung { .. } | RunOutcome::TimedOut { .. }),
        "{:?}",
        report.outcome
    );
    assert_group_gone(sink.pid.expect("pid"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !live_with_cmdline(&needle).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the bash tool's sleep survived the run");
        std::thread::sleep(Duration::from_millis(100));
    }
}
