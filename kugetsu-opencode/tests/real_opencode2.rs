//! The 2.x driver against the REAL opencode 2.1.2 (npm `@opencode/cli`, installed into the
//! target dir by the first test that needs it) and the mock model, isolated with its own HOME
//! and XDG dirs. Skipped without npm or the registry, a failure with `KUGETSU_REAL_OPENCODE=1`.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use kugetsu_core::agent::{AgentDriver, AgentError, ForkRequest, RunOutcome, SessionId, WarmGuard};
use kugetsu_core::interrupt::Interrupt;
use kugetsu_opencode::{OpencodeOptions, OpencodeV2Driver, driver_for};
use serde_json::Value;

use crate::support::mock_model::MockModel;
use crate::support::real::{opencode, opencode2};
use crate::support::{Sandbox, Sink, agent_env, assert_group_gone, limits, read};

struct Real2 {
    sb: Sandbox,
    model: MockModel,
    driver: OpencodeV2Driver,
    options: OpencodeOptions,
    /// The daemon's way: a registered serve every driver of the sandbox uses.
    warm: Option<WarmGuard>,
}

impl Real2 {
    fn new(bin: PathBuf) -> Self {
        let sb = Sandbox::new();
        let model = MockModel::start();
        let options = options(&sb, &model, bin);
        Real2 { driver: OpencodeV2Driver::new(options.clone()), sb, model, options, warm: None }
    }

    /// With a serve kept warm, as the queue daemon keeps one.
    fn warm(bin: PathBuf) -> Self {
        let mut r = Real2::new(bin);
        r.warm = Some(r.driver.keep_warm(&agent_env(&[])).expect("warm").expect("a serve"));
        r
    }

    fn cache(&self) -> PathBuf {
        self.sb.path("home").join("kugetsu-cache")
    }

    fn create(&self, prompt: &str) -> SessionId {
        let report = self
            .driver
            .create_session(&self.sb.create_req("base", "kugetsu base", prompt), &mut Vec::new())
            .expect("create");
        assert_eq!(report.outcome, RunOutcome::Completed, "log:\n{}", read(&self.sb.log()));
        report.session
    }

    /// The registered serve's URL, password and pid.
    fn registration(&self) -> (String, String, u32) {
        let reg: Value =
            serde_json::from_str(&read(&self.cache().join("opencode2-serve.json"))).expect("reg");
        let pid = u32::try_from(reg["pid"].as_u64().expect("pid")).expect("pid");
        (
            reg["url"].as_str().expect("url").into(),
            reg["password"].as_str().expect("pw").into(),
            pid,
        )
    }

    /// GET `path` on the registered serve; the whole answer.
    fn get(&self, path: &str) -> Value {
        let (url, password, _) = self.registration();
        let addr = url.trim_start_matches("http://");
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("opencode:{password}"));
        let mut conn = std::net::TcpStream::connect(addr).expect("connect");
        let req = format!(
            "GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Basic {auth}\r\nconnection: close\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).expect("send");
        let mut answer = String::new();
        conn.read_to_string(&mut answer).expect("answer");
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        // A chunked body: the JSON is the line that parses.
        body.lines().find_map(|l| serde_json::from_str(l).ok()).unwrap_or(Value::Null)
    }
}

fn options(sb: &Sandbox, model: &MockModel, bin: PathBuf) -> OpencodeOptions {
    let mut env: Vec<(OsString, OsString)> = sb.base_env();
    for (k, v) in [
        ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
        ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
        ("OPENCODE_DISABLE_SHARE", "1"),
        ("npm_config_offline", "true"),
        // Not for the serve: it gets only what opencode needs.
        ("UNRELATED_SECRET_TOKEN", "tok-serve-must-not-see"),
    ] {
        env.push((k.into(), v.into()));
    }
    env.push(("OPENCODE_CONFIG_CONTENT".into(), model.opencode_config().into()));
    OpencodeOptions::new(bin)
        .base_env(env)
        .kill_grace(Duration::from_secs(3))
        .helper_dir(sb.path("home"))
        .export_cache(sb.path("home").join("kugetsu-cache"))
}

/// Live processes whose command line holds `needle`, and whose environment holds `env`.
fn live_with(needle: &str, env: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if !zombie
            && String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(needle)
            && String::from_utf8_lossy(&environ).contains(env)
        {
            out.push(pid);
        }
    }
    out
}

/// No opencode background service was started for this sandbox: no `serve --service` process
/// with its HOME, no `service.json` in its state dir.
fn assert_no_service(sb: &Sandbox) {
    let home = format!("HOME={}", sb.path("home").display());
    assert_eq!(live_with("--service", &home), Vec::<u32>::new(), "a serve --service runs");
    let registered = sb.path("state").join("opencode").join("service.json");
    assert!(!registered.exists(), "{} exists", registered.display());
}

#[test]
fn real2_create_fork_run_continue_and_delete_through_a_private_serve() {
    let Some(bin) = opencode2() else { return };
    let r = Real2::new(bin);
    let base = r.create("You are the base session. Remember ZEBRA. WRITEFILE:primed.txt");
    assert_eq!(read(&r.sb.path("base").join("primed.txt")), "written by the mock\n");
    let (serve, _) = r.driver.own_serve().expect("the driver started a serve");
    assert!(!r.cache().join("opencode2-serve.json").exists(), "for itself: not registered");
    let environ = std::fs::read(format!("/proc/{serve}/environ")).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    assert!(!environ.contains("tok-serve-must-not-see"), "the serve got a clean environment");
    assert!(environ.contains("OPENCODE_CONFIG_CONTENT="), "and opencode's config");
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
    let info = r.driver.session_info(&fork).expect("info").expect("the fork exists");
    assert_eq!(info.directory, r.sb.path("tree"));
    assert_eq!(info.title, "issue 14");
    // The serve lists it in the worktree with its title.
    let listed = r.driver.list_sessions(&r.sb.path("tree")).expect("list the worktree");
    assert!(listed.iter().any(|s| s.id == fork && s.title == "issue 14"), "{listed:?}");
    assert!(r.driver.repair_session(&fork).expect("repair").is_none(), "rules kept");

    let mut sink = Sink::default();
    let mut req = r.sb.run_req(&fork, "tree", "please WRITEFILE:hello.txt now");
    req.env = agent_env(&[("KUGETSU_TEST_VAR", "from-kugetsu")]);
    let report = r.driver.run(&req, &mut sink).expect("run");
    assert_eq!(report.outcome, RunOutcome::Completed, "log:\n{}", read(&r.sb.log()));
    assert_eq!(read(&r.sb.path("tree").join("hello.txt")), "written by the mock\n");
    assert!(!r.sb.path("base").join("hello.txt").exists(), "ran in the worktree");
    let log = read(&r.sb.log());
    let usage = log.lines().rfind(|l| l.starts_with("=== turn usage: ")).expect("usage noted");
    let _ = writeln!(std::io::stderr(), "{usage}");
    assert!(!usage.contains("tokens input 0,"), "the turn's tokens: {usage}");
    let seen = r.model.requests.lock().expect("requests").clone();
    let last = seen.iter().rev().find(|b| b.to_string().contains("WRITEFILE:hello.txt"));
    assert!(last.expect("the turn's request").to_string().contains("ZEBRA"), "history kept");

    // A shell tool sees the agent's environment, not the serve's.
    let report = r
        .driver
        .run(
            &{
                let mut q = r.sb.run_req(
                    &fork,
                    "tree",
                    "BASH:echo \"var=$KUGETSU_TEST_VAR pw=$OPENCODE_PASSWORD\" > env.txt\n",
                );
                q.env = agent_env(&[("KUGETSU_TEST_VAR", "from-kugetsu")]);
                q
            },
            &mut Sink::default(),
        )
        .expect("continue");
    assert_eq!(report.outcome, RunOutcome::Completed, "log:\n{}", read(&r.sb.log()));
    assert_eq!(read(&r.sb.path("tree").join("env.txt")), "var=from-kugetsu pw=\n");

    // Another command's driver does not use a serve its owner may stop mid-turn...
    let other = OpencodeV2Driver::new(r.options.clone());
    assert!(other.session_exists(&fork).expect("exists"));
    let (other_serve, _) = other.own_serve().expect("a serve of its own");
    assert_ne!(other_serve, serve);
    drop(other);
    assert_group_gone(other_serve);
    // ...but the daemon's, registered while its guard lives.
    let warm = r.driver.keep_warm(&agent_env(&[])).expect("warm").expect("a serve");
    let (_, _, warm_pid) = r.registration();
    let other = OpencodeV2Driver::new(r.options.clone());
    assert!(other.session_exists(&fork).expect("exists"));
    assert_eq!(other.own_serve(), None, "it used the registered serve");
    // Found once per driver: a later operation does not look for the registration again.
    let file = r.cache().join("opencode2-serve.json");
    let aside = r.cache().join("registration-aside.json");
    std::fs::rename(&file, &aside).expect("rename");
    assert!(other.session_exists(&fork).expect("exists"));
    assert_eq!(other.own_serve(), None, "it kept the serve it found");
    std::fs::rename(&aside, &file).expect("rename back");
    // A fork is moved into its directory in the background: its first turn right after the
    // fork runs there, and a driver dropped right after a fork leaves it moved and titled.
    let fork_into = |driver: &OpencodeV2Driver, dir: &str| {
        std::fs::create_dir_all(r.sb.path(dir)).expect("dir");
        let req = ForkRequest {
            base: base.clone(),
            dir: r.sb.path(dir),
            title: format!("issue {dir}"),
            env: agent_env(&[]),
        };
        driver.fork_session(&req).expect("fork")
    };
    let quick = fork_into(&other, "tree2");
    let report = other
        .run(&r.sb.run_req(&quick, "tree2", "WRITEFILE:quick.txt"), &mut Sink::default())
        .expect("run");
    assert_eq!(report.outcome, RunOutcome::Completed, "log:\n{}", read(&r.sb.log()));
    assert!(r.sb.path("tree2").join("quick.txt").is_file(), "the first turn ran in the fork's dir");
    let dropped = OpencodeV2Driver::new(r.options.clone());
    let left = fork_into(&dropped, "tree3");
    drop(dropped);
    let info = other.session_info(&left).expect("info").expect("the fork exists");
    assert_eq!((info.directory, info.title.as_str()), (r.sb.path("tree3"), "issue tree3"));
    drop(warm);
    assert_group_gone(warm_pid);
    assert!(!r.cache().join("opencode2-serve.json").exists(), "unregistered");

    r.driver.delete_session(&fork).expect("delete");
    assert!(!r.driver.session_exists(&fork).expect("exists"));
    assert!(matches!(r.driver.delete_session(&fork), Err(AgentError::SessionNotFound { .. })));
    assert_no_service(&r.sb);

    // The serve is the driver's: it goes with it, and nothing of opencode is left.
    let (pid, _) = r.driver.own_serve().expect("the driver started a serve");
    let cache = r.cache();
    let Real2 { sb, driver, .. } = r;
    drop(other);
    drop(driver);
    assert_group_gone(pid);
    assert!(!cache.join("opencode2-serve.json").exists(), "unregistered");
    let home = format!("HOME={}", sb.path("home").display());
    assert_eq!(live_with("opencode", &home), Vec::<u32>::new(), "an opencode process is left");
    assert_no_service(&sb);
}

#[test]
fn real2_rejected_permission_is_blocked_api_error_failed_and_bad_sessions_refused() {
    let Some(bin) = opencode2() else { return };
    let r = Real2::new(bin);
    let s = r.create("You are the base session.");
    std::fs::write(r.sb.path("base").join(".env"), "A=1\n").expect(".env");
    let report = r
        .driver
        .run(&r.sb.run_req(&s, "base", "please READENV"), &mut Sink::default())
        .expect("run");
    match &report.outcome {
        RunOutcome::Blocked { permission } => assert!(permission.contains("read"), "{permission}"),
        other => panic!("expected Blocked, got {other:?}; log:\n{}", read(&r.sb.log())),
    }
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
    // `run -s` would make an unknown session; the driver refuses to.
    let unknown = SessionId::new("ses_db05ffffeffeKugetsuTest0001").expect("id");
    let err = r
        .driver
        .run(&r.sb.run_req(&unknown, "base", "anyone?"), &mut Sink::default())
        .expect_err("unknown");
    assert!(matches!(err, AgentError::SessionNotFound { .. }), "{err}");
    assert!(!r.driver.session_exists(&unknown).expect("exists"), "not made");
    let err = r
        .driver
        .run(&r.sb.run_req(&s, "tree", "elsewhere"), &mut Sink::default())
        .expect_err("wrong dir");
    assert!(
        err.to_string().contains("failed") && format!("{err:?}").contains("lives in"),
        "{err:?}"
    );
    assert_no_service(&r.sb);
}

/// A stalled provider ends `hung` and a stop ends `interrupted`; either way the turn is
/// interrupted on the serve too (killing the client alone leaves it running there).
#[test]
fn real2_hung_and_interrupted_turns_stop_on_the_serve() {
    let Some(bin) = opencode2() else { return };
    let r = Real2::warm(bin);
    let s = r.create("You are the base session.");
    let mut req = r.sb.run_req(&s, "base", "please HANG");
    req.limits = limits(300, 20);
    let mut sink = Sink::default();
    let report = r.driver.run(&req, &mut sink).expect("run");
    assert!(matches!(report.outcome, RunOutcome::Hung { .. }), "{:?}", report.outcome);
    assert_group_gone(sink.pid.expect("pid"));
    assert_eq!(r.get("/api/session/active")["data"], serde_json::json!({}), "still running");

    let stop = Interrupt::new();
    let stopping = OpencodeV2Driver::new(r.options.clone().interrupt(stop.clone()));
    let trigger = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(5));
            stop.trigger(15);
        })
    };
    let mut sink = Sink::default();
    let report = stopping.run(&r.sb.run_req(&s, "base", "please HANG"), &mut sink).expect("run");
    trigger.join().expect("trigger");
    assert!(matches!(report.outcome, RunOutcome::Interrupted { .. }), "{:?}", report.outcome);
    assert_eq!(r.get("/api/session/active")["data"], serde_json::json!({}), "still running");
}

/// The version picks the driver, and is read from `--version` only once per binary.
#[test]
fn real2_version_picks_the_driver_and_is_cached() {
    let Some(bin) = opencode2() else { return };
    let sb = Sandbox::new();
    let model = MockModel::start();
    let opts = options(&sb, &model, bin.clone());
    let picked = driver_for(opts.clone()).expect("version");
    assert_eq!((picked.version.major, picked.version.text.as_str()), (2, "2.1.2"));
    assert_eq!(picked.driver_name, "opencode 2.x");
    let cached = sb.path("home").join("kugetsu-cache").join("opencode-version.json");
    // A cache entry of this very binary is believed: no `--version` is asked again.
    let text = read(&cached).replace("\"major\":2", "\"major\":1");
    std::fs::write(&cached, text).expect("edit");
    assert_eq!(driver_for(opts.clone()).expect("version").version.major, 1);
    // Another binary (here a copy: another path) is asked.
    let copy = sb.path("home").join("opencode-copy");
    std::fs::copy(&bin, &copy).expect("copy");
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let picked = driver_for(options(&sb, &model, copy)).expect("version");
    assert_eq!(picked.version.major, 2);
}

/// A state dir made with 1.x goes on under 2.x: its session continues with its history on the
/// same data dir.
#[test]
fn real2_continues_a_session_made_by_1x() {
    let (Some(bin1), Some(bin2)) = (opencode(), opencode2()) else { return };
    let sb = Sandbox::new();
    let model = MockModel::start();
    let v1 = kugetsu_opencode::OpencodeDriver::new(options(&sb, &model, bin1));
    let report = v1
        .create_session(
            &sb.create_req("base", "kugetsu base", "Remember GIRAFFE."),
            &mut Vec::new(),
        )
        .expect("create with 1.x");
    assert_eq!(report.outcome, RunOutcome::Completed, "log:\n{}", read(&sb.log()));
    let v2 = OpencodeV2Driver::new(options(&sb, &model, bin2));
    let report = v2
        .run(&sb.run_req(&report.session, "base", "WRITEFILE:after.txt"), &mut Sink::default())
        .expect("run with 2.x");
    assert_eq!(report.outcome, RunOutcome::Completed, "log:\n{}", read(&sb.log()));
    assert_eq!(read(&sb.path("base").join("after.txt")), "written by the mock\n");
    let seen = model.requests.lock().expect("requests").clone();
    let last = seen.iter().rev().find(|b| b.to_string().contains("WRITEFILE:after.txt"));
    assert!(last.expect("the turn's request").to_string().contains("GIRAFFE"), "history kept");
}

/// A tool runs under the serve, not under the run: its work (a silent busy loop longer than
/// the idle limit) must still count as the turn's, or a long build would be judged hung.
#[test]
fn real2_silent_busy_tool_outlives_the_idle_limit() {
    let Some(bin) = opencode2() else { return };
    let r = Real2::new(bin);
    let s = r.create("You are the base session.");
    let command = "timeout 40 sh -c 'while :; do :; done'; echo finished > busy.txt";
    let mut req = r.sb.run_req(&s, "base", &format!("please\nBASH:{command}\n"));
    req.limits = limits(300, 20);
    let started = std::time::Instant::now();
    let report = r.driver.run(&req, &mut Sink::default()).expect("run");
    assert_eq!(report.outcome, RunOutcome::Completed, "log:\n{}", read(&r.sb.log()));
    assert!(started.elapsed() >= Duration::from_secs(40), "the loop ran its 40 s");
    assert_eq!(read(&r.sb.path("base").join("busy.txt")), "finished\n");
}

#[test]
fn real2_a_session_moves_to_another_data_dir_and_continues() {
    let Some(bin) = opencode2() else { return };
    let here = Real2::new(bin.clone());
    let base = here.create("You are the base session. Remember ZEBRA. token s3cr3t-t0ken-value");
    let env = agent_env(&[("MY_API_KEY", "s3cr3t-t0ken-value")]);
    let export = here.driver.export_session(&base, &env).expect("export");
    assert!(export.contains("ZEBRA"), "{export}");
    assert!(!export.contains("s3cr3t-t0ken-value"), "the secret travels masked");

    let there = Real2::new(bin);
    std::fs::create_dir_all(there.sb.path("moved")).expect("dir");
    let req = ForkRequest {
        base: base.clone(),
        dir: there.sb.path("moved"),
        title: "moved".into(),
        env: agent_env(&[]),
    };
    let moved = there.driver.import_session(&export, &req).expect("import");
    assert_ne!(moved, base, "a fresh id");
    let info = there.driver.session_info(&moved).expect("info").expect("imported");
    assert_eq!((info.directory, info.title.as_str()), (there.sb.path("moved"), "moved"));
    assert!(there.driver.repair_session(&moved).expect("repair").is_none(), "rules came along");
    let twice = there.driver.import_session(&export, &req).expect("import again");
    assert_ne!(twice, moved, "a second import is a second session");

    let req = there.sb.run_req(&moved, "moved", "please WRITEFILE:after.txt now");
    let report = there.driver.run(&req, &mut Sink::default()).expect("run");
    assert_eq!(report.outcome, RunOutcome::Completed, "log:\n{}", read(&there.sb.log()));
    assert_eq!(read(&there.sb.path("moved").join("after.txt")), "written by the mock\n");
    let seen = there.model.requests.lock().expect("requests").clone();
    let last = seen.iter().rev().find(|b| b.to_string().contains("WRITEFILE:after.txt"));
    assert!(last.expect("the turn's request").to_string().contains("ZEBRA"), "history kept");
}

/// opencode 2 retries a 429 (the client prints a `step_start` per attempt, nothing else) and
/// shows the retry on the session's message; a used-up quota fails the turn at once with
/// `provider.quota`. Both end as rate limited, by the provider the session names.
#[test]
fn real2_refusals_for_a_limit_end_the_turn_as_rate_limited() {
    let Some(bin) = opencode2() else { return };
    let r = Real2::new(bin);
    let s = r.create("You are the base session.");
    for (prompt, kind) in [
        ("please RATELIMIT", kugetsu_core::pause::LimitKind::RateLimit),
        ("QUOTA now", kugetsu_core::pause::LimitKind::Quota),
    ] {
        let mut req = r.sb.run_req(&s, "base", prompt);
        // Only the refusal can end the turn before these.
        req.limits = limits(900, 600);
        let mut sink = Sink::default();
        let report = r.driver.run(&req, &mut sink).expect("run");
        let RunOutcome::RateLimited(limit) = &report.outcome else {
            panic!("{prompt}: {:?}; log:\n{}", report.outcome, read(&r.sb.log()))
        };
        assert_eq!((limit.provider.as_str(), limit.kind), ("mock", kind), "{limit:?}");
        // The retry says when: 30 s after the refusal (`Retry-After`).
        assert_eq!(limit.until.is_some(), kind == kugetsu_core::pause::LimitKind::RateLimit);
        assert_group_gone(sink.pid.expect("pid"));
    }
}
