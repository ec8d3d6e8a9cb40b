//! Signals sent to a real `kugetsu` process whose agent is mid-turn, as a user's shell, `kill`,
//! `timeout` or a dropped SSH connection sends them: Ctrl-C (SIGINT), SIGTERM, a hang-up
//! (SIGHUP), twice in a row, and SIGKILL. Each must stop the agent's processes, leave the
//! session resumable (not `running`), and end kugetsu with the exit status a shell expects.
//!
//! The agent is the bundled fake in a turn that prints one event and then hangs, with a tool
//! process in its group and one that left it (as opencode's bash tool starts commands).

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use support::{Env, alive, signal, wait_exit, wait_for};

const SESSION_FILE: &str = "sessions/local.test-demo-app-1.json";

struct Busy {
    env: Env,
    trace: PathBuf,
}

impl Busy {
    /// An initialized scratch home whose next agent turn hangs mid-turn with two tool
    /// processes (one in the agent's group, one in its own session).
    fn new() -> Self {
        let (env, _repo) = Env::with_fake_agent();
        let trace = env.tmp.path().join("trace.log");
        let out = env.run(&["env", "set", "FAKE_OPENCODE_TRACE", trace.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let out = env.run(&["init", "--headless"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        Busy { env, trace }
    }

    /// The next agent turn hangs; later ones write WORK.md and answer.
    fn next_turn_hangs(&self) {
        std::fs::write(
            self.env.tmp.path().join("script.json"),
            r#"{"turns": [{"mode": "hang", "children": 1, "detached_children": 1, "after_output": true}],
                "default": {"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "wrote WORK.md"}}"#,
        )
        .unwrap();
    }

    /// Starts `kugetsu args...` and waits until its agent is mid-turn; returns it with the
    /// agent's pid (its process group).
    fn spawn_busy(&self, args: &[&str]) -> (Child, u32) {
        let turns_before = self.turns_started();
        self.next_turn_hangs();
        let child =
            self.env.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        wait_for("the agent's turn to start", || self.turns_started() > turns_before);
        let wt = self.env.path("worktrees/local.test-demo-app-1");
        wait_for("the tool processes", || tool_processes(&wt).len() == 2);
        let pid = self.session()["agent_pid"].as_u64().expect("the agent's pid is recorded");
        (child, u32::try_from(pid).unwrap())
    }

    fn turns_started(&self) -> usize {
        std::fs::read_to_string(&self.trace).unwrap_or_default().matches("start ").count()
    }

    fn session(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.env.path(SESSION_FILE)).unwrap())
            .unwrap()
    }
}

/// Live processes of the fake's tools working in `dir`.
fn tool_processes(dir: &Path) -> Vec<u32> {
    let tag = dir.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline =
            String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default())
                .into_owned();
        if cmdline.contains("__sleep") && cmdline.contains(&tag) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// After the signal: kugetsu exited with `code`, the agent and its tools are gone, the turn is
/// recorded as interrupted by `sig`, and `continue` works again.
fn assert_stopped(b: &Busy, child: Child, agent: u32, sig: &str, code: i32) {
    let (exit, stderr) = wait_exit(child);
    assert_eq!(exit, Some(code), "exit status after {sig}: {stderr}");
    wait_for("the agent to be gone", || !alive(agent));
    let wt = b.env.path("worktrees/local.test-demo-app-1");
    wait_for("the tool processes to be gone", || tool_processes(&wt).is_empty());
    let session = b.session();
    assert_eq!(session["state"], "interrupted", "{session}");
    assert!(session["agent_pid"].is_null(), "{session}");
    assert_eq!(session["last_run"]["outcome"], "interrupted", "{session}");
    assert_eq!(session["last_run"]["signal"], sig, "{session}");
    let list = b.env.run(&["list"]);
    assert!(list.stdout.contains("interrupted"), "list shows it: {}", list.stdout);
    // The slot and the issue lock were released: the next turn runs at once.
    let out = b.env.run(&["continue", "#1", "carry on"]);
    assert_eq!(out.code, 0, "continue resumes after {sig}: {}{}", out.stdout, out.stderr);
    assert_eq!(b.session()["state"], "idle");
    assert!(wt.join("WORK.md").is_file());
}

#[test]
fn sigint_sigterm_and_sighup_stop_a_busy_start() {
    for (sig, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let b = Busy::new();
        let (child, agent) = b.spawn_busy(&["start", "#1", "go"]);
        signal(child.id(), sig);
        assert_stopped(&b, child, agent, &format!("SIG{sig}"), code);
    }
}

#[test]
fn sigint_sigterm_and_sighup_stop_a_busy_continue() {
    let b = Busy::new();
    let out = b.env.run(&["start", "#1", "first turn"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (sig, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let (child, agent) = b.spawn_busy(&["continue", "#1", "go"]);
        signal(child.id(), sig);
        assert_stopped(&b, child, agent, &format!("SIG{sig}"), code);
    }
}

/// A user who presses Ctrl-C twice does not wait for the grace period, and never leaves the
/// agent behind.
#[test]
fn a_second_ctrl_c_still_stops_everything() {
    let b = Busy::new();
    let (child, agent) = b.spawn_busy(&["start", "#1", "go"]);
    signal(child.id(), "INT");
    signal(child.id(), "INT");
    assert_stopped(&b, child, agent, "SIGINT", 130);
}

/// kugetsu killed outright (SIGKILL, the OOM killer) takes its foreground agent with it, and
/// the next command that reads the session shows it as not running.
#[test]
fn sigkill_of_kugetsu_takes_the_agent_along() {
    let b = Busy::new();
    let (child, agent) = b.spawn_busy(&["start", "#1", "go"]);
    signal(child.id(), "KILL");
    let (exit, _) = wait_exit(child);
    assert_eq!(exit, None, "killed by the signal");
    wait_for("the agent to die with kugetsu", || !alive(agent));
    let list = b.env.run(&["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(rows[2]["state"], "failed", "{rows}");
    assert_eq!(b.session()["state"], "failed");
    let out = b.env.run(&["continue", "#1", "carry on"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // The tools opencode started are not its process: they are reparented, and nothing that
    // would be safe to rely on names them any more (see the README). Clean up after the test.
    for pid in tool_processes(&b.env.path("worktrees/local.test-demo-app-1")) {
        signal(pid, "KILL");
    }
}

/// `--detach` runs leave the terminal's session: started on a terminal (`script` gives it a
/// pseudo-terminal) that then goes away, the background run keeps going to its end, in a
/// session of its own with no controlling terminal.
#[test]
fn a_detached_run_outlives_its_terminal() {
    let b = Busy::new();
    std::fs::write(
        b.env.tmp.path().join("script.json"),
        r#"{"default": {"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "ok", "delay_ms": 3000}}"#,
    )
    .unwrap();
    let kugetsu = b.env.command(&[]);
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{} start '#1' go --detach", env!("CARGO_BIN_EXE_kugetsu")),
            "/dev/null",
        ])
        .env_clear()
        .envs(kugetsu.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))))
        .envs(std::env::vars_os().filter(|(k, _)| k == "PATH"))
        .current_dir(kugetsu.get_current_dir().unwrap())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(out.status.success(), "{shown}");
    let pid: u32 = shown
        .split("(pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {shown}"));
    let log = shown.lines().find_map(|l| l.strip_prefix("log: ")).unwrap().trim().to_string();
    // The terminal is gone now; the run goes on, on its own.
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        assert_eq!(fields[3], pid.to_string(), "a session of its own: {stat}");
        assert_eq!(fields[4], "0", "no controlling terminal: {stat}");
    }
    wait_for("the detached run to finish", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("completed")
    });
    assert!(b.env.path("worktrees/local.test-demo-app-1/WORK.md").is_file());
}
