//! The `kugetsu` command line against the REAL opencode 2.1.2 (npm `@opencode/cli`) and the
//! mock model: init --headless, start whose tool call writes in the issue's worktree, continue
//! in the same session, a rejected permission reported as blocked, destroy deleting the
//! session; after every command no opencode process of the sandbox is left and opencode's
//! background service was never started. And an issue started under 1.18.33 continues under
//! 2.1.2 with its history, after which 1.18.33 is refused.

use super::support::{Env, json, signal, wait_exit, wait_for};
use super::{mock_model, real, real_env};

/// The live processes started with this sandbox's opencode data directory.
fn opencode_processes(env: &Env) -> Vec<String> {
    let marker = format!("XDG_DATA_HOME={}", env.tmp.path().join("data").display());
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !zombie
            && String::from_utf8_lossy(&environ).split('\0').any(|v| v == marker)
            && cmdline.contains("opencode")
        {
            out.push(format!("{pid}: {cmdline}"));
        }
    }
    out
}

/// Nothing of opencode runs after a command, and its background service never ran.
fn assert_nothing_left(env: &Env, after: &str) {
    // The serve is stopped before kugetsu exits; give the kernel a moment to reap.
    let mut left = opencode_processes(env);
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = opencode_processes(env);
    }
    assert_eq!(left, Vec::<String>::new(), "opencode processes left after {after}");
    let service = env.tmp.path().join("xstate/opencode/service.json");
    assert!(!service.exists(), "opencode's background service registered after {after}");
}

#[test]
fn the_cli_drives_the_real_opencode2() {
    let Some(bin) = real::opencode2() else { return };
    let model = mock_model::MockModel::start();
    let env = real_env(&bin, &model);

    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 0, "init: {}{}", out.stdout, out.stderr);
    assert_nothing_left(&env, "init");
    let out = env.run(&["doctor"]);
    assert!(
        out.stdout.contains("agent: opencode 2.1.2, driven by the opencode 2.x driver"),
        "{}",
        out.stdout
    );

    let out = env.run(&["start", "#1", "WRITEFILE:proof.txt"]);
    assert_eq!(out.code, 0, "start: {}{}", out.stdout, out.stderr);
    assert_nothing_left(&env, "start");
    let wt = env.path("worktrees/local.test-demo-app-1");
    assert_eq!(std::fs::read_to_string(wt.join("proof.txt")).unwrap(), "written by the mock\n");
    assert!(!env.path("workspace/proof.txt").exists(), "not in the base session's directory");
    super::assert_usage_recorded(&env);
    let session = |env: &Env| -> String {
        let list = json(&env.run(&["list", "--json"]).stdout);
        list.as_array().unwrap()[2]["session_id"].as_str().unwrap().to_string()
    };
    let first = session(&env);

    let out = env.run(&["continue", "#1", "WRITEFILE:second.txt"]);
    assert_eq!(out.code, 0, "continue: {}{}", out.stdout, out.stderr);
    assert!(wt.join("second.txt").exists());
    assert_eq!(session(&env), first, "continue stays in the same session");
    assert_nothing_left(&env, "continue");
    let out = env.run(&["doctor", "--fix", "--fix-permissions"]);
    assert_eq!(out.code, 0, "doctor: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("no problems found"), "{}", out.stdout);
    assert_nothing_left(&env, "doctor");

    std::fs::write(wt.join(".env"), "A=1\n").unwrap();
    let out = env.run(&["continue", "#1", "READENV"]);
    assert_eq!(out.code, 5, "a rejected permission is not a success: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("blocked"), "{}", out.stdout);
    let file = std::fs::read_to_string(env.path("sessions/local.test-demo-app-1.json")).unwrap();
    assert!(file.contains("\"agent_major\": 2"), "{file}");

    let out = env.run(&["destroy", "#1", "--yes", "--force"]);
    assert_eq!(out.code, 0, "destroy: {}{}", out.stdout, out.stderr);
    assert_nothing_left(&env, "destroy");
    // Asked of a throwaway private server: the session is gone.
    let asked = std::process::Command::new(&bin)
        .args(["api", "--standalone", "GET", &format!("/api/session/{first}")])
        .env_clear()
        .envs(model.isolated_env(env.tmp.path()))
        .env("HOME", env.tmp.path().join("home"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(env.tmp.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&asked.stderr).contains("404"),
        "the session outlived destroy: {}{}",
        String::from_utf8_lossy(&asked.stdout),
        String::from_utf8_lossy(&asked.stderr)
    );
    assert_nothing_left(&env, "the check");
}

#[test]
fn an_issue_started_under_opencode1_continues_under_opencode2() {
    let (Some(bin1), Some(bin2)) = (real::opencode(), real::opencode2()) else { return };
    let model = mock_model::MockModel::start();
    let mut env = real_env(&bin1, &model);
    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 0, "init: {}{}", out.stdout, out.stderr);
    let out = env.run(&["start", "#1", "Remember OKAPI. WRITEFILE:one.txt"]);
    assert_eq!(out.code, 0, "start: {}{}", out.stdout, out.stderr);

    // The upgrade: the same data directory, the 2.x binary.
    env.set("KUGETSU_AGENT_BIN", bin2.to_str().unwrap());
    let out = env.run(&["continue", "#1", "WRITEFILE:two.txt"]);
    assert_eq!(out.code, 0, "continue under 2.x: {}{}", out.stdout, out.stderr);
    let wt = env.path("worktrees/local.test-demo-app-1");
    assert_eq!(std::fs::read_to_string(wt.join("two.txt")).unwrap(), "written by the mock\n");
    let seen = model.requests.lock().unwrap().clone();
    let last = seen.iter().rev().find(|b| b.to_string().contains("WRITEFILE:two.txt")).unwrap();
    assert!(last.to_string().contains("OKAPI"), "the 1.x history reached the model");
    assert_nothing_left(&env, "continue under 2.x");
    // A new issue forks the base 1.x primed (no daemon: by import on kugetsu's own serve).
    let out = env.run(&["start", "#2", "WRITEFILE:three.txt"]);
    assert_eq!(out.code, 0, "start under 2.x: {}{}", out.stdout, out.stderr);
    let wt2 = env.path("worktrees/local.test-demo-app-2");
    assert_eq!(std::fs::read_to_string(wt2.join("three.txt")).unwrap(), "written by the mock\n");
    let seen = model.requests.lock().unwrap().clone();
    let last = seen.iter().rev().find(|b| b.to_string().contains("WRITEFILE:three.txt")).unwrap();
    assert!(
        last.to_string().contains("developer agent managed by kugetsu"),
        "the base's 1.x priming reached the model"
    );
    assert!(!last.to_string().contains("OKAPI"), "not issue #1's history");
    assert_nothing_left(&env, "start under 2.x");

    // And back: refused, with what to do.
    env.set("KUGETSU_AGENT_BIN", bin1.to_str().unwrap());
    let out = env.run(&["continue", "#1", "again"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("was last run by opencode 2.x, but the configured opencode program is 1.x"),
        "{}",
        out.stderr
    );
}

/// Ctrl-C and SIGTERM reach a kugetsu whose opencode 2 turn runs a tool (the tool runs under
/// kugetsu's serve, not under the `run` client): kugetsu exits 130 / 143, the tool is gone,
/// the turn is recorded as interrupted, nothing of opencode is left, and the session works
/// again afterwards.
#[test]
fn signals_stop_the_real_opencode2_mid_tool_call() {
    let Some(bin) = real::opencode2() else { return };
    let model = mock_model::MockModel::start();
    let env = real_env(&bin, &model);
    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 0, "init: {}{}", out.stdout, out.stderr);
    for (i, (args, sig, code)) in [
        (["start", "#1", "BASHSLEEP:611"], "INT", 130),
        (["continue", "#1", "BASHSLEEP:612"], "TERM", 143),
    ]
    .into_iter()
    .enumerate()
    {
        let secs = 611 + u32::try_from(i).unwrap();
        let child = env
            .command(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for("the agent's tool to run", || !super::sleepers(secs).is_empty());
        signal(child.id(), sig);
        let (exit, stderr) = wait_exit(child);
        assert_eq!(exit, Some(code), "{args:?} after SIG{sig}: {stderr}");
        wait_for("its tool to be gone", || super::sleepers(secs).is_empty());
        assert_nothing_left(&env, &format!("SIG{sig}"));
        let session = super::session_file(&env);
        assert_eq!(session["state"], "interrupted", "{session}");
        assert_eq!(session["last_run"]["signal"], format!("SIG{sig}"), "{session}");
    }
    let out = env.run(&["continue", "#1", "WRITEFILE:after.txt"]);
    assert_eq!(out.code, 0, "continue after the signals: {}{}", out.stdout, out.stderr);
    assert!(env.path("worktrees/local.test-demo-app-1/after.txt").is_file());
}

/// `delegate` through the daemon on opencode 2: the daemon keeps its serve warm, the PM agent
/// gets the request, and stopping the daemon leaves nothing of opencode behind.
#[test]
fn delegate_reaches_the_real_opencode2_pm_agent_through_the_daemon() {
    let Some(bin) = real::opencode2() else { return };
    let model = mock_model::MockModel::start();
    let env = real_env(&bin, &model);
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    let out = env.run(&["queue-daemon", "start"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = env.run(&["delegate", "triage the open bugs please"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let status = || -> String {
        let list = json(&env.run(&["queue", "list", "--json"]).stdout);
        list["items"][0]["status"].as_str().unwrap().to_string()
    };
    let mut last = String::new();
    super::wait_for_long("the PM agent's turn to end", || {
        last = status();
        last != "pending" && last != "notified"
    });
    let log = env.run(&["queue-daemon", "logs"]).stdout;
    assert_eq!(last, "completed", "daemon log:\n{log}");
    let prompts: Vec<String> =
        model.requests.lock().unwrap().iter().map(|r| r.to_string()).collect();
    assert!(prompts.iter().any(|p| p.contains("triage the open bugs please")), "the model got it");
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
    assert_nothing_left(&env, "the daemon's stop");
}

/// `kugetsu init` without `--headless` on opencode 2: each TUI attaches to kugetsu's serve on a
/// session made with its title and rules, its priming prompt is submitted, the user quits it
/// with Ctrl-C, and the sessions work headless afterwards.
#[test]
fn interactive_init_runs_the_real_opencode2_tui() {
    let Some(bin) = real::opencode2() else { return };
    if !super::pty::relay_available("KUGETSU_REAL_OPENCODE") {
        return;
    }
    let model = mock_model::MockModel::start();
    let env = real_env(&bin, &model);
    let mut terminal = super::pty::Terminal::start(&env, &["init"]);
    // Each TUI is quit with Ctrl-C once the model got its prompt: which one runs is told by
    // the prompts the model got.
    let markers = ["developer agent managed by kugetsu", "PM agent of kugetsu"];
    let status = super::pty::leave_each_tui(
        &mut terminal,
        |_| markers.iter().rposition(|m| model.asked(m)),
        |terminal| terminal.type_keys(b"\x03"),
    );
    let shown = terminal.last(3000);
    assert_eq!(status.code(), Some(0), "kugetsu init survives Ctrl-C in the TUI:\n{shown}");
    let list = json(&env.run(&["list", "--json"]).stdout);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_nothing_left(&env, "the interactive init");
    let out = env.run(&["start", "#1", "WRITEFILE:proof.txt"]);
    assert_eq!(out.code, 0, "start: {}{}", out.stdout, out.stderr);
    assert!(env.path("worktrees/local.test-demo-app-1/proof.txt").is_file());
}

/// The titles of every session opencode keeps for this sandbox, read with opencode's own
/// `api --standalone` (no serve of kugetsu's runs then).
fn session_titles(env: &Env, bin: &std::path::Path) -> Vec<String> {
    let out =
        env.program(bin).args(["api", "--standalone", "GET", "/api/session"]).output().unwrap();
    assert!(out.status.success(), "opencode api: {out:?}");
    let listed = json(&String::from_utf8_lossy(&out.stdout));
    let items = listed.as_array().or(listed["data"].as_array()).cloned().unwrap_or_default();
    items.iter().map(|s| s["title"].as_str().unwrap_or_default().to_owned()).collect()
}

/// An interactive `init` stopped by SIGTERM (a closed SSH session, a `kill`) while its first
/// TUI runs: the TUI and kugetsu's serve stop, and the session made for that TUI, which nobody
/// could name afterwards, is deleted.
#[test]
fn interactive_init_stopped_by_a_signal_leaves_no_session_behind() {
    let Some(bin) = real::opencode2() else { return };
    if !super::pty::relay_available("KUGETSU_REAL_OPENCODE") {
        return;
    }
    let model = mock_model::MockModel::start();
    let env = real_env(&bin, &model);
    let shown = super::pty::init_stopped_by_sigterm(&env, |_| {
        model.asked("developer agent managed by kugetsu")
    });
    assert_nothing_left(&env, "the stopped init");
    assert_eq!(session_titles(&env, &bin), Vec::<String>::new(), "{shown}");
    super::pty::assert_not_initialized(&env);
}
