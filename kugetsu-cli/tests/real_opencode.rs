//! The `kugetsu` command line against the REAL opencode 1.18.33 (from the npm registry) and a
//! mock model on 127.0.0.1, started as a user's shell starts it (from another repository,
//! `PWD` set there, the environment inherited; see `support`): init --headless, start whose
//! tool call writes a file inside the worktree, continue in the same session, a
//! rejected permission reported as blocked, `delegate` through the daemon to the PM agent,
//! SIGINT and SIGHUP to a start and a continue whose agent is mid-tool-call; and the
//! interactive `init`, its TUIs on a pseudo-terminal. Without npm or the registry it prints
//! why and passes as skipped (`KUGETSU_REAL_OPENCODE=1` makes that a failure).

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

mod support;

#[path = "../../kugetsu-opencode/tests/support/mock_model.rs"]
#[allow(dead_code, missing_docs)]
mod mock_model;
#[path = "../../kugetsu-opencode/tests/support/real.rs"]
mod real;
// The interactive `init` on a terminal.
mod pty;
mod real_loop;
mod real_opencode2;
// The smart-HTTP git server of kugetsu-git's tests: the loop's pushes go there.
#[path = "../../kugetsu-git/tests/support/http.rs"]
#[allow(dead_code, clippy::unwrap_used)]
mod git_http;

use support::{Env, alive, signal, wait_exit, wait_for};

/// A scratch home whose `kugetsu` runs the real `bin` against `model`, with opencode's own
/// directories inside it.
fn real_env(bin: &std::path::Path, model: &mock_model::MockModel) -> Env {
    let mut env = Env::new();
    for (k, v) in model.isolated_env(env.tmp.path()) {
        env.set(&k, &v);
    }
    support::sample_repo(&env, bin);
    std::fs::write(
        env.path("config"),
        format!(
            "KUGETSU_OPENCODE_BIN={}\nKUGETSU_DEFAULT_REPO=local.test/demo/app\nKUGETSU_AGENT_TIMEOUT_MINUTES=5\nKUGETSU_AGENT_IDLE_MINUTES=2\n",
            bin.display()
        ),
    )
    .unwrap();
    env
}

#[test]
fn the_cli_drives_the_real_opencode() {
    let Some(bin) = real::opencode() else { return };
    let model = mock_model::MockModel::start();
    let env = real_env(&bin, &model);

    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 0, "init: {}{}", out.stdout, out.stderr);
    assert_eq!(env.run(&["status"]).stdout, "ok\n");

    let out = env.run(&["start", "#1", "WRITEFILE:proof.txt"]);
    assert_eq!(out.code, 0, "start: {}{}", out.stdout, out.stderr);
    let wt = env.path("worktrees/local.test-demo-app-1");
    assert_eq!(
        std::fs::read_to_string(wt.join("proof.txt")).unwrap().trim(),
        "written by the mock",
        "the agent's tool call wrote inside the issue's worktree"
    );
    assert!(!env.path("workspace/proof.txt").exists(), "and not in the base session's directory");
    assert_usage_recorded(&env);
    let session = |env: &Env| -> String {
        let list: serde_json::Value =
            serde_json::from_str(&env.run(&["list", "--json"]).stdout).unwrap();
        list.as_array().unwrap()[2]["session_id"].as_str().unwrap().to_string()
    };
    let first = session(&env);

    let out = env.run(&["continue", "#1", "WRITEFILE:second.txt"]);
    assert_eq!(out.code, 0, "continue: {}{}", out.stdout, out.stderr);
    assert!(wt.join("second.txt").exists());
    assert_eq!(session(&env), first, "continue stays in the same session");

    let out = env.run(&["continue", "#1", "READETC"]);
    assert_eq!(out.code, 5, "a rejected permission is not a success: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("blocked"), "{}", out.stdout);
    let file = std::fs::read_to_string(env.path("sessions/local.test-demo-app-1.json")).unwrap();
    assert!(file.contains("\"state\": \"blocked\""), "{file}");
}

/// The ids of every session opencode 1.x keeps for this sandbox (`opencode db`).
fn session_ids(env: &Env, bin: &std::path::Path) -> Vec<String> {
    let out = env
        .program(bin)
        .args(["db", "SELECT id FROM session", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "opencode db: {out:?}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

/// An interactive `init` stopped by SIGTERM (a closed SSH session, a `kill`) once its first
/// TUI sent the priming prompt: the TUI stops, and the session it made, which nobody could
/// name afterwards, is deleted.
#[test]
fn interactive_init_stopped_by_a_signal_leaves_no_session_behind() {
    let Some(bin) = real::opencode() else { return };
    if !pty::relay_available("KUGETSU_REAL_OPENCODE") {
        return;
    }
    let model = mock_model::MockModel::start();
    let env = real_env(&bin, &model);
    let shown =
        pty::init_stopped_by_sigterm(&env, |_| model.asked("developer agent managed by kugetsu"));
    assert_eq!(session_ids(&env, &bin), Vec::<String>::new(), "{shown}");
    pty::assert_not_initialized(&env);
}

/// `kugetsu init` without `--headless` opens the real opencode TUI on a terminal (a
/// pseudo-terminal relayed by python3): each priming prompt is submitted, the user quits each
/// TUI with Ctrl-C, and kugetsu, which must survive that Ctrl-C, records both sessions.
#[test]
fn interactive_init_runs_the_real_tui() {
    let Some(bin) = real::opencode() else { return };
    if !pty::relay_available("KUGETSU_REAL_OPENCODE") {
        return;
    }
    let model = mock_model::MockModel::start();
    let env = real_env(&bin, &model);
    let mut terminal = pty::Terminal::start(&env, &["init"]);
    // Quit each TUI the usual way once the model has answered its prompt: Ctrl-C, once, and
    // again only if that TUI is still there 15 s later. A TUI that quits prints how to continue
    // its session (`opencode -s ses_...`), which tells whose turn it is.
    let markers = ["developer agent managed by kugetsu", "PM agent of kugetsu"];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let mut quit_sent: Option<(usize, std::time::Instant)> = None;
    let status = loop {
        if let Some(status) = terminal.try_wait() {
            break status;
        }
        let drawn = terminal.shown();
        assert!(
            std::time::Instant::now() < deadline,
            "init never finished; the terminal showed:\n{}",
            terminal.last(3000)
        );
        let current = drawn.matches("opencode -s ses_").count();
        let prompted = markers.get(current).is_some_and(|marker| model.asked(marker));
        let due = prompted
            && match quit_sent {
                Some((tui, at)) if tui == current => {
                    at.elapsed() > std::time::Duration::from_secs(15)
                }
                _ => true,
            };
        if due {
            // Let the TUI draw the answer first.
            std::thread::sleep(std::time::Duration::from_secs(2));
            terminal.type_keys(b"\x03");
            quit_sent = Some((current, std::time::Instant::now()));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let shown = terminal.last(3000);
    assert_eq!(status.code(), Some(0), "kugetsu init survives Ctrl-C in the TUI:\n{shown}");
    assert!(shown.contains("base session"), "{shown}");
    let prompts: Vec<String> =
        model.requests.lock().unwrap().iter().map(|r| r.to_string()).collect();
    assert!(prompts.iter().any(|p| p.contains("PM agent of kugetsu")), "the PM prompt was sent");
    let list: serde_json::Value =
        serde_json::from_str(&env.run(&["list", "--json"]).stdout).unwrap();
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    for row in rows {
        assert!(row["session_id"].as_str().unwrap().starts_with("ses_"), "{row}");
    }
    assert_eq!(env.run(&["status"]).stdout, "ok\n");
    // The TUI's sessions work headless afterwards: an issue forks from the base.
    let out = env.run(&["start", "#1", "WRITEFILE:proof.txt"]);
    assert_eq!(out.code, 0, "start: {}{}", out.stdout, out.stderr);
    assert!(env.path("worktrees/local.test-demo-app-1/proof.txt").is_file());
}

/// Live `sleep <secs>` processes (the mock's bash tool calls), by pid.
fn sleepers(secs: u32) -> Vec<u32> {
    let want = format!("sleep\0{secs}");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&want) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

fn session_file(env: &Env) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(env.path("sessions/local.test-demo-app-1.json")).unwrap(),
    )
    .unwrap()
}

/// Ctrl-C and a hang-up reach a kugetsu whose real opencode is running a tool (a `sleep` that
/// opencode starts in its own session): kugetsu exits 130 / 129, opencode and the tool are
/// gone, the turn is recorded as interrupted, and the session works again afterwards.
#[test]
fn signals_stop_the_real_opencode_mid_tool_call() {
    let Some(bin) = real::opencode() else { return };
    let model = mock_model::MockModel::start();
    let env = real_env(&bin, &model);
    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 0, "init: {}{}", out.stdout, out.stderr);
    for (i, (args, sig, code)) in [
        (["start", "#1", "BASHSLEEP:601"], "INT", 130),
        (["continue", "#1", "BASHSLEEP:602"], "HUP", 129),
    ]
    .into_iter()
    .enumerate()
    {
        let secs = 601 + u32::try_from(i).unwrap();
        let child = env
            .command(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for("the agent's tool to run", || !sleepers(secs).is_empty());
        let agent = session_file(&env)["agent_pid"].as_u64().expect("agent pid recorded");
        let agent = u32::try_from(agent).unwrap();
        signal(child.id(), sig);
        let (exit, stderr) = wait_exit(child);
        assert_eq!(exit, Some(code), "{args:?} after SIG{sig}: {stderr}");
        wait_for("opencode to be gone", || !alive(agent));
        wait_for("its tool to be gone", || sleepers(secs).is_empty());
        let session = session_file(&env);
        assert_eq!(session["state"], "interrupted", "{session}");
        assert_eq!(session["last_run"]["signal"], format!("SIG{sig}"), "{session}");
    }
    let out = env.run(&["continue", "#1", "WRITEFILE:after.txt"]);
    assert_eq!(out.code, 0, "continue after the signals: {}{}", out.stdout, out.stderr);
    assert!(env.path("worktrees/local.test-demo-app-1/after.txt").is_file());
}

/// `delegate` through the daemon: the daemon (started from a shell elsewhere) runs the PM
/// agent on the real opencode, which receives the request in its own directory.
#[test]
fn delegate_reaches_the_real_pm_agent_through_the_daemon() {
    let Some(bin) = real::opencode() else { return };
    let model = mock_model::MockModel::start();
    let env = real_env(&bin, &model);
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    let out = env.run(&["queue-daemon", "start"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = env.run(&["delegate", "triage the open bugs please"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let status = || -> String {
        let list: serde_json::Value =
            serde_json::from_str(&env.run(&["queue", "list", "--json"]).stdout).unwrap();
        list["items"][0]["status"].as_str().unwrap().to_string()
    };
    let mut last = String::new();
    wait_for_long("the PM agent's turn to end", || {
        last = status();
        last != "pending" && last != "notified"
    });
    let log = env.run(&["queue-daemon", "logs"]).stdout;
    assert_eq!(last, "completed", "daemon log:\n{log}");
    let prompts: Vec<String> =
        model.requests.lock().unwrap().iter().map(|r| r.to_string()).collect();
    assert!(prompts.iter().any(|p| p.contains("triage the open bugs please")), "the model got it");
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
}

/// A real opencode turn takes seconds on a busy machine: a longer bound than [`support::HANG`].
fn wait_for_long(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// What the turn cost and used, priced by opencode from the mock model's `cost`, is recorded in
/// the session file (the turn and the total) and shown by `list`.
fn assert_usage_recorded(env: &Env) {
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.path("sessions/local.test-demo-app-1.json")).unwrap(),
    )
    .unwrap();
    let turn = &file["last_run"]["usage"];
    assert!(turn["cost_usd"].as_f64().is_some_and(|c| c > 0.0), "the turn's cost: {file}");
    assert!(turn["tokens"]["input"].as_u64().is_some_and(|n| n > 0), "its tokens: {file}");
    assert!(turn["tokens"]["output"].as_u64().is_some_and(|n| n > 0), "its tokens: {file}");
    assert_eq!(file["usage"]["cost_usd"], turn["cost_usd"], "the issue's total: {file}");
    let list: serde_json::Value =
        serde_json::from_str(&env.run(&["list", "--json"]).stdout).unwrap();
    assert_eq!(list[2]["cost_usd"], turn["cost_usd"], "{list}");
}
