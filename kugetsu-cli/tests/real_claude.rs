//! The `kugetsu` command line with `KUGETSU_AGENT=claude` against the REAL Claude Code 2.1.328
//! (from the npm registry) and a stand-in of the Messages API on 127.0.0.1, started as a user's
//! shell starts it (from another repository, `PWD` set there, the environment inherited; see
//! `support`): init --headless, start whose tool call writes inside the issue's worktree,
//! continue in the same session, a refused write reported as blocked, a 429 and a used-up
//! credit balance pausing the provider (not failing), doctor (--fix), SIGINT to a start whose tool runs,
//! destroy, prune; delegate through the daemon to a PM agent whose Bash runs start; and the
//! interactive `init`, its TUIs on a pseudo-terminal. The API key is given as a user gives it,
//! in the env file, and must show nowhere kugetsu writes.
//! Without npm or the registry it prints why and passes as skipped (`KUGETSU_REAL_CLAUDE=1`
//! makes that a failure).

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

mod support;

#[path = "../../kugetsu-claude/tests/support/mock_api.rs"]
#[allow(dead_code, missing_docs)]
mod mock_api;
#[path = "../../kugetsu-claude/tests/support/real.rs"]
mod real;
// The interactive `init` on a terminal (shared with the opencode suite).
mod pty;

use support::{Env, signal, wait_exit, wait_for};

const KEY: &str = "sk-ant-api03-cli-mock-key-0123456789";

/// A scratch home whose `kugetsu` runs the real `bin` (`KUGETSU_AGENT=claude`) against `api`.
fn real_env(bin: &std::path::Path, api: &mock_api::MockApi) -> Env {
    let env = Env::new();
    support::sample_repo(&env, bin);
    std::fs::write(
        env.path("config"),
        format!(
            "KUGETSU_AGENT=claude\nKUGETSU_AGENT_BIN={}\nKUGETSU_DEFAULT_REPO=local.test/demo/app\nKUGETSU_AGENT_TIMEOUT_MINUTES=10\nKUGETSU_AGENT_IDLE_MINUTES=6\n",
            bin.display()
        ),
    )
    .unwrap();
    for (k, v) in [("ANTHROPIC_BASE_URL", api.base_url.as_str()), ("ANTHROPIC_API_KEY", KEY)] {
        let out = env.run(&["env", "set", k, v]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    env
}

#[test]
fn the_cli_drives_the_real_claude_code() {
    let Some(bin) = real::claude() else { return };
    let api = mock_api::MockApi::start();
    let env = real_env(&bin, &api);

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
    assert!(!env.elsewhere().join("proof.txt").exists(), "not where the shell stood");
    let session = |env: &Env| -> String {
        let list: serde_json::Value =
            serde_json::from_str(&env.run(&["list", "--json"]).stdout).unwrap();
        list.as_array().unwrap()[2]["session_id"].as_str().unwrap().to_string()
    };
    let first = session(&env);

    let out = env.run(&["doctor"]);
    assert_eq!(out.code, 0, "doctor: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("2.1.328 (Claude Code)"), "{}", out.stdout);

    let out = env.run(&["continue", "#1", "WRITEFILE:second.txt"]);
    assert_eq!(out.code, 0, "continue: {}{}", out.stdout, out.stderr);
    assert!(wt.join("second.txt").exists());
    assert_eq!(session(&env), first, "continue stays in the same session");

    let out = env.run(&["continue", "#1", "WRITEETC"]);
    assert_eq!(out.code, 5, "a refused write is not a success: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("blocked"), "{}", out.stdout);
    assert!(out.stdout.contains("/etc/kugetsu-mock"), "what was refused is said: {}", out.stdout);

    // A 429 (`retry-after: 1`) pauses the provider for the second the retry line tells, not
    // six minutes of Claude Code's retries; the next turn waits it out. A used-up credit
    // balance pauses it until a person resumes it.
    let out = env.run(&["continue", "#1", "RATELIMIT"]);
    assert_eq!(out.code, 4, "rate limited, not failed: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("rate limited by anthropic until"), "{}", out.stdout);
    let out = env.run(&["continue", "#1", "QUOTA"]);
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("quota used up by anthropic"), "{}", out.stdout);
    let said = "paused until `kugetsu queue resume` (anthropic: quota)";
    assert!(env.run(&["status"]).stdout.contains(said));
    let out = env.run(&["queue", "resume"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "resumed anthropic\n"), "{}", out.stderr);

    // A tool prints the key (Claude Code hands its tools its environment); nothing kugetsu
    // writes holds it (the run logs hold Claude Code's whole output).
    let out = env.run(&["continue", "#1", "ECHOENV:ANTHROPIC_API_KEY"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains(KEY) && !out.stderr.contains(KEY), "{}{}", out.stdout, out.stderr);
    for file in env.all_files() {
        if file.starts_with(env.path("")) {
            let text =
                String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
            assert!(
                !text.contains(KEY) || file.starts_with(env.path("env")),
                "the key is in {}",
                file.display()
            );
        }
    }

    let out = env.run(&["doctor", "--fix", "--fix-permissions"]);
    assert_eq!(out.code, 0, "doctor --fix: {}{}", out.stdout, out.stderr);
    let out = env.run(&["destroy", "#1", "-y", "--force"]);
    assert_eq!(out.code, 0, "destroy: {}{}", out.stdout, out.stderr);
    assert!(!wt.exists());
    let out = env.run(&["prune", "--force"]);
    assert_eq!(out.code, 0, "prune: {}{}", out.stdout, out.stderr);
    // The base and PM sessions survive, and no pause is left; what the turns cost is told
    // (a refused turn cut before it reported anything is not counted).
    let status = env.run(&["status"]).stdout;
    assert!(status.starts_with("ok\nspent today (UTC): $"), "{status}");
    assert!(!status.contains("paused") && !status.contains("unknown"), "{status}");
}

/// SIGINT to a `start` whose agent runs a tool command: the run ends as interrupted, and the
/// command (in a session of its own) does not outlive it.
#[test]
fn sigint_interrupts_a_start_whose_tool_runs() {
    let Some(bin) = real::claude() else { return };
    let api = mock_api::MockApi::start();
    let env = real_env(&bin, &api);
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    let pidfile = env.tmp.path().join("tool.pid");
    let prompt = format!("PIDSLEEP:{}", pidfile.display());
    let child = env
        .command(&["start", "#1", &prompt])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the tool's pid", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
    });
    let tool: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    signal(child.id(), "INT");
    let (code, stderr) = wait_exit(child);
    assert_ne!(code, Some(0), "{stderr}");
    wait_for("the tool command to end", || !support::alive(tool));
    let file = std::fs::read_to_string(env.path("sessions/local.test-demo-app-1.json")).unwrap();
    assert!(file.contains("interrupted"), "{file}");
}

/// `delegate` through the daemon: the daemon runs the PM agent on the real Claude Code, whose
/// Bash tool runs `kugetsu start`, which forks the base into the new issue's worktree.
#[test]
fn delegate_reaches_the_pm_agent_whose_bash_starts_an_issue() {
    let Some(bin) = real::claude() else { return };
    let api = mock_api::MockApi::start();
    let env = real_env(&bin, &api);
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    let out = env.run(&["queue-daemon", "start"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let kugetsu = env!("CARGO_BIN_EXE_kugetsu");
    let out = env.run(&["delegate", &format!("BASH:{kugetsu} start '#2' WRITEFILE:pm.txt")]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let status = || -> String {
        let list: serde_json::Value =
            serde_json::from_str(&env.run(&["queue", "list", "--json"]).stdout).unwrap();
        list["items"][0]["status"].as_str().unwrap_or_default().to_string()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    let last = loop {
        let now = status();
        if !matches!(now.as_str(), "pending" | "notified") {
            break now;
        }
        assert!(std::time::Instant::now() < deadline, "the PM agent's turn never ended");
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    let log = env.run(&["queue-daemon", "logs"]).stdout;
    assert_eq!(last, "completed", "daemon log:\n{log}");
    let wt = env.path("worktrees/local.test-demo-app-2");
    assert!(wt.join("pm.txt").is_file(), "the PM agent's start worked in #2's worktree\n{log}");
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
}

/// The live `claude` processes started with this sandbox's home.
fn claude_processes(env: &Env) -> Vec<String> {
    let marker = format!("HOME={}", env.home.display());
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if support::alive(pid)
            && String::from_utf8_lossy(&environ).split('\0').any(|v| v == marker)
            && cmdline.contains("claude")
        {
            out.push(format!("{pid}: {cmdline}"));
        }
    }
    out
}

/// `s` without its blanks: the TUI draws some as cursor moves, which the terminal's text may
/// not show.
fn flat(s: &str) -> String {
    s.split_whitespace().collect()
}

/// `kugetsu init` (no `--headless`) on a terminal (a pseudo-terminal relayed by python3) whose
/// user answers the first run's dialogs as a user does, with keystrokes: trusts the workspace,
/// and answers whether to use the API key of the environment with Yes (`use_key`) or with the
/// default, No. Each TUI is left with `/exit` once its priming prompt was answered, by the
/// stand-in or, without the key, by the TUI's own refusal. What init exited with, and the
/// terminal's last lines.
fn init_in_the_tui(env: &Env, api: &mock_api::MockApi, use_key: bool) -> (Option<i32>, String) {
    // Claude Code's onboarding (on a configuration that has never run it) first checks that
    // Anthropic's own hosts answer, whatever ANTHROPIC_BASE_URL says, and exits 1 when they do
    // not: out of reach of a test that talks to a stand-in on 127.0.0.1. So the scratch home
    // starts past the onboarding; the dialogs that follow it are answered below.
    std::fs::write(env.home.join(".claude.json"), "{\"hasCompletedOnboarding\": true}\n").unwrap();
    let mut terminal = pty::Terminal::start(env, &["init"]);
    let mut dialogs = FirstRunDialogs::new(use_key);
    // Which TUI runs is told by the prompts the stand-in got (or the refusals drawn); each
    // is left once answered, and again if it is still there 15 s later.
    let markers = ["developer agent managed by kugetsu", "PM agent of kugetsu"];
    let status = pty::leave_each_tui(
        &mut terminal,
        |terminal| {
            dialogs.answer(terminal);
            let shown = flat(&terminal.shown());
            let refused = shown.matches("Notloggedin·Pleaserun/login").count().checked_sub(1);
            markers.iter().rposition(|m| api.asked(m)).max(refused)
        },
        |terminal| {
            // The command is typed, then sent.
            terminal.type_keys(b"/exit");
            std::thread::sleep(std::time::Duration::from_millis(500));
            terminal.type_keys(b"\r");
        },
    );
    let shown = terminal.last(3000);
    dialogs.assert_answered(&shown);
    assert_eq!(claude_processes(env), Vec::<String>::new(), "claude left running after init");
    (status.code(), shown)
}

/// The dialogs of Claude Code's first run in a directory, answered as a user does: trust the
/// workspace, and use the API key of the environment (Yes, or the default No).
struct FirstRunDialogs {
    /// Each dialog: what it asks, the arrow key that selects the wanted answer (none keeps the
    /// default), then `None` until it is drawn, then the `❯` drawn when the key was typed, and
    /// whether it was answered.
    dialogs: [(&'static str, &'static str, Option<usize>, bool); 2],
}

impl FirstRunDialogs {
    fn new(use_key: bool) -> Self {
        let key_answer = if use_key { "\x1b[A" } else { "" };
        FirstRunDialogs {
            dialogs: [
                ("Is this a project you created or one you trust?", "\x1b[B", None, false),
                ("Do you want to use this API key?", key_answer, None, false),
            ],
        }
    }

    /// Answers what the terminal now shows: once a dialog is drawn, its key; then Enter once
    /// the selection is redrawn (the TUI redraws only the moved `❯`).
    fn answer(&mut self, terminal: &mut pty::Terminal) {
        let shown = flat(&terminal.shown());
        for (asks, key, selecting, answered) in &mut self.dialogs {
            let Some(pointers) =
                shown.rfind(&flat(asks)).map(|at| shown[at..].matches('❯').count())
            else {
                continue;
            };
            match selecting {
                None => {
                    // Keys typed while it is still being drawn can be lost.
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    terminal.type_keys(key.as_bytes());
                    *selecting = Some(pointers);
                }
                Some(before) if !*answered && (key.is_empty() || pointers > *before) => {
                    terminal.type_keys(b"\r");
                    *answered = true;
                }
                _ => {}
            }
        }
    }

    fn assert_answered(&self, shown: &str) {
        for (asks, _, _, answered) in &self.dialogs {
            assert!(answered, "the first run never asked {asks:?}:\n{shown}");
        }
    }
}

/// Session files Claude Code keeps under the scratch home.
fn transcripts(env: &Env) -> Vec<std::path::PathBuf> {
    let Ok(projects) = std::fs::read_dir(env.home.join(".claude/projects")) else {
        return Vec::new();
    };
    projects
        .flatten()
        .flat_map(|p| std::fs::read_dir(p.path()).into_iter().flatten().flatten())
        .map(|f| f.path())
        .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .collect()
}

/// An interactive `init` stopped by SIGTERM (a closed SSH session, a `kill`) while the TUI
/// waits for its priming prompt's answer: the TUI is stopped, and the session it had begun
/// (its file written when the prompt was sent), which nobody could name afterwards, is removed.
#[test]
fn interactive_init_stopped_by_a_signal_leaves_no_session_behind() {
    let Some(bin) = real::claude() else { return };
    if !pty::relay_available("KUGETSU_REAL_CLAUDE") {
        return;
    }
    let api = mock_api::MockApi::start();
    api.stall_all.store(true, std::sync::atomic::Ordering::SeqCst);
    let env = real_env(&bin, &api);
    std::fs::write(env.home.join(".claude.json"), "{\"hasCompletedOnboarding\": true}\n").unwrap();
    let mut dialogs = FirstRunDialogs::new(true);
    let shown = pty::init_stopped_by_sigterm(&env, |terminal| {
        dialogs.answer(terminal);
        api.asked("developer agent managed by kugetsu") && !transcripts(&env).is_empty()
    });
    assert_eq!(transcripts(&env), Vec::<std::path::PathBuf>::new(), "{shown}");
    assert_eq!(claude_processes(&env), Vec::<String>::new(), "claude left running");
    pty::assert_not_initialized(&env);
}

/// The interactive `init` on Claude Code's TUI: the first run asks to trust the workspace and
/// to use the API key, each TUI sends its priming prompt, and kugetsu records both sessions,
/// which work headless afterwards. The key, whose end the TUI showed, is in nothing kugetsu
/// keeps.
#[test]
fn interactive_init_runs_the_real_claude_tui() {
    let Some(bin) = real::claude() else { return };
    if !pty::relay_available("KUGETSU_REAL_CLAUDE") {
        return;
    }
    let api = mock_api::MockApi::start();
    let env = real_env(&bin, &api);
    let (code, shown) = init_in_the_tui(&env, &api, true);
    assert_eq!(code, Some(0), "kugetsu init:\n{shown}");
    let list: serde_json::Value =
        serde_json::from_str(&env.run(&["list", "--json"]).stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let shown_part = &KEY[KEY.len() - 20..];
    for file in env.all_files() {
        if file.starts_with(env.path("")) && !file.starts_with(env.path("env")) {
            let text =
                String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
            assert!(!text.contains(shown_part), "the key is in {}", file.display());
        }
    }
    // The TUI's sessions work headless afterwards: an issue forks from the base.
    let out = env.run(&["start", "#1", "WRITEFILE:proof.txt"]);
    assert_eq!(out.code, 0, "start: {}{}", out.stdout, out.stderr);
    assert!(env.path("worktrees/local.test-demo-app-1/proof.txt").is_file());
    assert_eq!(claude_processes(&env), Vec::<String>::new(), "claude left running after start");
}

/// The same, the API key declined (the TUI's default answer): the TUI cannot call the API, so
/// the priming prompt gets no answer, and init fails saying so rather than keep a base that was
/// never primed; nothing is recorded, and the session Claude Code began is deleted.
#[test]
fn interactive_init_fails_when_the_tui_got_no_answer() {
    let Some(bin) = real::claude() else { return };
    if !pty::relay_available("KUGETSU_REAL_CLAUDE") {
        return;
    }
    let api = mock_api::MockApi::start();
    let env = real_env(&bin, &api);
    let (code, shown) = init_in_the_tui(&env, &api, false);
    assert_eq!(code, Some(1), "kugetsu init:\n{shown}");
    assert!(flat(&shown).contains(&flat("the priming prompt got no answer")), "{shown}");
    assert!(api.requests.lock().unwrap().is_empty(), "nothing reached the API");
    pty::assert_not_initialized(&env);
    assert_eq!(transcripts(&env), Vec::<std::path::PathBuf>::new(), "the unprimed session");
}
