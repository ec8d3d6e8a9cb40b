//! The opencode 2 contract on the fake's 2.x dialect, and what only the fake can show (see
//! `v2_contract.rs` for where it deliberately differs from the real one).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{Value, json};

use crate::v2_contract::{Subject, Turn, contract_tests, events, text};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-opencode");

contract_tests!(Some(Subject::fake(FAKE)));

/// The final `step_finish` is left out, as the real one usually does, unless scripted.
#[test]
fn final_step_finish_only_when_scripted() {
    let s = Subject::fake(FAKE);
    let id = s.create("t", "base", json!([]))["id"].as_str().expect("id").to_owned();
    let out = s.run("base", &id, Turn::Plain, &[]);
    let kinds: Vec<Value> = events(&out).iter().map(|e| e["type"].clone()).collect();
    assert_eq!(kinds, [json!("step_start"), json!("text")]);
    let script = json!({"turns": [{"mode": "ok", "step_finish": true}]});
    std::fs::write(s.sb.path("script.json"), script.to_string()).expect("script");
    let mut c =
        s.command("base", &["run", "--server", &s.url, "-s", &id, "--format", "json", "hi"]);
    let out = c.env("OPENCODE_PASSWORD", crate::v2_contract::PASSWORD).output().expect("run");
    let last = events(&out).pop().expect("events");
    assert_eq!(last["type"], "step_finish", "{}", text(&out.stdout));
    assert_eq!(last["part"]["reason"], "stop");
}

/// Without `--server` or `--standalone`, `run` starts the background service and leaves it
/// running (its own session, not our child), registered in `<state>/service.json` (0600).
/// `--standalone` leaves nothing.
#[test]
fn run_without_server_leaves_the_service() {
    let s = Subject::fake(FAKE);
    let service = s.sb.path("state").join("opencode/service.json");
    let out = s
        .command("base", &["run", "--standalone", "--format", "json", "hi"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!service.exists(), "--standalone starts no service");

    let out = s.command("base", &["run", "--format", "json", "hi"]).output().expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(events(&out).iter().any(|e| e["type"] == "text"));
    let mode = std::fs::metadata(&service).expect("service.json").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let doc: Value = serde_json::from_slice(&std::fs::read(&service).expect("read")).expect("json");
    let pid = doc["pid"].as_u64().expect("pid") as i32;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the service runs");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat").1.split_whitespace().collect();
    assert_ne!(fields[1], std::process::id().to_string(), "orphaned, not our child");
    assert_eq!(fields[3], pid.to_string(), "in its own session");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert!(String::from_utf8_lossy(&cmdline).contains("serve\0--service"));
    assert!(doc["url"].as_str().is_some_and(|u| u.starts_with("http://127.0.0.1:")));
    // A second command reuses it.
    let out = s.command("base", &["run", "--format", "json", "again"]).output().expect("run");
    assert!(out.status.success());
    let again: Value =
        serde_json::from_slice(&std::fs::read(&service).expect("read")).expect("json");
    assert_eq!(again["pid"], doc["pid"]);
    // The test started it: it ends it now rather than after the fake's minute.
    let pid = rustix::process::Pid::from_raw(pid).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    std::thread::sleep(Duration::from_millis(10));
}

/// SIGINT of the client interrupts the turn in the serve (the real one does so usually, not
/// always: see `v2_contract.rs`).
#[test]
fn sigint_interrupts_the_turn_in_the_serve() {
    let s = Subject::fake(FAKE);
    let id = s.create("stall", "base", json!([]))["id"].as_str().expect("id").to_owned();
    let prompt = s.prompt(Turn::Stall);
    let client = s.spawn_run("elsewhere", &id, &prompt, &[]);
    s.wait_for("the turn is active", |s| s.active().get(&id).is_some());
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(client.id() as i32).expect("pid"),
        rustix::process::Signal::INT,
    )
    .expect("SIGINT");
    assert_eq!(client.wait_with_output().expect("wait").status.code(), Some(130));
    s.wait_for("SIGINT ended the turn", |s| s.active().get(&id).is_none());
    assert_eq!(s.get(&id)["outcome"], "interrupted");
}

/// The 1.x fake's test hooks work in 2.x too: the client's `FAKE_OPENCODE_TRACE` traces the
/// turn run in the serve, and `FAKE_OPENCODE_FAIL` fails a subcommand.
#[test]
fn trace_and_injected_failures() {
    let s = Subject::fake(FAKE);
    let id = s.create("t", "base", json!([]))["id"].as_str().expect("id").to_owned();
    let trace = s.sb.path("trace.txt");
    let trace_str = trace.to_str().expect("utf-8");
    let out = s.run("base", &id, Turn::Plain, &[("FAKE_OPENCODE_TRACE", trace_str)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = std::fs::read_to_string(&trace)
        .expect("trace")
        .lines()
        .map(|l| l.rsplit_once(' ').expect("time").0.to_owned())
        .collect();
    assert_eq!(lines, [format!("start {id}"), format!("end {id}")]);
    let out = s
        .command("base", &["run", "--server", &s.url, "-s", &id, "hi"])
        .env("FAKE_OPENCODE_FAIL", "serve,run")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("injected failure of `run`"));
}

/// The fake's TUI runs its `--prompt` as a turn of the session (`-s`, or a new one in the
/// directory it is given) and exits, as if the user quit once it was answered.
#[test]
fn tui_runs_its_prompt_and_exits() {
    let s = Subject::fake(FAKE);
    let id = s.create("tui", "base", json!([]))["id"].as_str().expect("id").to_owned();
    let tree = s.sb.path("tree");
    let mut c = s.command("elsewhere", &["--server", &s.url, "-s", &id, "--prompt", "prime it"]);
    let out = c.env("OPENCODE_PASSWORD", crate::v2_contract::PASSWORD).output().expect("tui");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.get(&id)["outcome"], "succeeded");
    let history = s.api("GET", &format!("/api/session/{id}/message"), None).json();
    assert!(history["data"].as_array().expect("messages").iter().any(|m| m["text"] == "prime it"));

    let args = [tree.to_str().expect("utf-8"), "--server", &s.url, "--prompt", "new one"];
    let out = s
        .command("elsewhere", &args)
        .env("OPENCODE_PASSWORD", crate::v2_contract::PASSWORD)
        .output()
        .expect("tui");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = s.api("GET", &format!("/api/session?directory={}", tree.display()), None).json();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
}
