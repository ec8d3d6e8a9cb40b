//! Forks of the opencode driver against `fake-opencode`: trusted without a second look, one
//! `import` from the base's kept export (refreshed on request, dropped with the base, never
//! kept when it shows a secret), or a replay into a warm `opencode serve` while one runs.

use crate::support;
use crate::support_fake::{FAKE, Fake};

use std::time::Duration;

use kugetsu_core::agent::{AgentDriver, AgentError, ForkRequest, RunOutcome, SessionId};
use kugetsu_opencode::{OpencodeDriver, OpencodeOptions};
use serde_json::{Value, json};
use support::Sink;
use support::{agent_env, assert_group_gone, read};

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
