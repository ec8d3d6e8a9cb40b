//! fake-opencode itself keeps the real CLI's contract (CONFORMANCE.md): these are the
//! behaviours the driver is built around, checked on the fake directly.

use crate::support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::Sandbox;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-opencode");

fn fake(sb: &Sandbox, dir: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(FAKE);
    cmd.args(args)
        .current_dir(sb.path(dir))
        .env_clear()
        .envs(sb.base_env())
        // As a shell would after `cd dir`.
        .env("PWD", sb.path(dir))
        .env("FAKE_OPENCODE_RECORD", sb.path("record.jsonl"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("spawn fake");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).expect("write");
    }
    child.wait_with_output().expect("wait")
}

fn last_message(sb: &Sandbox) -> String {
    let text = std::fs::read_to_string(sb.path("record.jsonl")).expect("record");
    let line = text.lines().rev().find(|l| l.contains("\"message\":\"")).expect("a run");
    let v: Value = serde_json::from_str(line).expect("json");
    v["message"].as_str().expect("message").to_owned()
}

#[test]
fn strict_flags_and_version() {
    let sb = Sandbox::new();
    let out = fake(&sb, "base", &["run", "--workdir", "/tmp", "hi"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("opencode run [message..]"));
    let out = fake(&sb, "base", &["--version"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1.18.33");
    let out = fake(&sb, "base", &["run", "--format", "json"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("You must provide a message or a command")
    );
}

#[test]
fn positional_quirk_and_stdin() {
    let sb = Sandbox::new();
    assert!(fake(&sb, "base", &["run", "say hi", "now"], None).status.success());
    assert_eq!(last_message(&sb), "\"say hi\" now", "arguments with spaces get quotes");
    assert!(fake(&sb, "base", &["run"], Some("exact\n  \"text\"")).status.success());
    assert_eq!(last_message(&sb), "exact\n  \"text\"", "stdin alone is byte-exact");
    assert!(fake(&sb, "base", &["run", "msg"], Some("more")).status.success());
    assert_eq!(last_message(&sb), "msg\nmore");
}

#[test]
fn forks_keep_the_parent_dir_lose_rules_and_trap_other_dirs() {
    let sb = Sandbox::new();
    let base = new_base(&sb);
    assert_eq!(base.len(), 30);
    let out = fake(&sb, "base", &["run", "--fork", "-s", &base, "--format", "json", "go"], None);
    assert!(out.status.success());
    let first: Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().expect("line"))
            .expect("json");
    let fork = first["sessionID"].as_str().expect("id").to_owned();
    assert!(fork < base, "newer ids sort first");
    let list: Value = serde_json::from_slice(
        &fake(&sb, "base", &["session", "list", "--format", "json"], None).stdout,
    )
    .expect("list");
    let entry = list
        .as_array()
        .expect("list")
        .iter()
        .find(|s| s["id"] == fork.as_str())
        .expect("fork listed")
        .clone();
    assert_eq!(entry["title"], "b (fork #1)");
    assert_eq!(entry["directory"], sb.path("base").to_string_lossy().as_ref());
    let export: Value = serde_json::from_slice(&fake(&sb, "base", &["export", &fork], None).stdout)
        .expect("export");
    assert!(export["info"].get("permission").is_none(), "forks lose the rules");

    // The directory trap: started from another directory, it never answers.
    let child = Command::new(FAKE)
        .args(["run", "-s", &base, "--format", "json", "hi"])
        .current_dir(sb.path("tree"))
        .env_clear()
        .envs(sb.base_env())
        .env("PWD", sb.path("tree"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    assert_trapped(child);
}

/// Like the real opencode 1.18.33, the fake works in `PWD` when it is set, whatever its cwd: a
/// program that starts it in the right directory but passes on a shell's `PWD` from elsewhere
/// falls into the directory trap. `PWD` unset or equal to the cwd runs normally.
#[test]
fn pwd_elsewhere_traps_a_run_in_the_right_cwd() {
    let sb = Sandbox::new();
    let base = new_base(&sb);
    let run = |pwd: Option<&str>| {
        let mut cmd = Command::new(FAKE);
        cmd.args(["run", "-s", &base, "--format", "json", "hi"])
            .current_dir(sb.path("base"))
            .env_clear()
            .envs(sb.base_env())
            .env_remove("PWD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = pwd {
            cmd.env("PWD", sb.path(dir));
        }
        cmd.spawn().expect("spawn")
    };
    assert_trapped(run(Some("elsewhere")));
    for pwd in [Some("base"), None] {
        let out = run(pwd).wait_with_output().expect("wait");
        assert!(out.status.success(), "PWD {pwd:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.stdout.is_empty(), "PWD {pwd:?} answers");
    }
}

/// A new session titled `b` in the sandbox's `base` directory; its id.
fn new_base(sb: &Sandbox) -> String {
    let out = fake(sb, "base", &["run", "--format", "json", "--title", "b", "hi"], None);
    let first: Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().expect("line"))
            .expect("json");
    first["sessionID"].as_str().expect("id").to_owned()
}

/// The run is still going after a while, and has printed nothing; then it is killed.
fn assert_trapped(mut child: std::process::Child) {
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(child.try_wait().expect("try_wait").is_none(), "still running");
    child.kill().expect("kill");
    let out = child.wait_with_output().expect("wait");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "and printed nothing");
}

#[test]
fn unknown_sessions_and_sql() {
    let sb = Sandbox::new();
    let out = fake(&sb, "base", &["run", "-s", "ses_df5eb4af9ffemK92KrwWdJZMY3", "hi"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("\u{1b}[91m\u{1b}[1mError: \u{1b}[0mSession not found")
    );
    let out = fake(&sb, "base", &["session", "delete", "ses_df5eb4af9ffemK92KrwWdJZMY3"], None);
    assert_eq!(out.status.code(), Some(1));
    let out = fake(&sb, "base", &["db", "DROP TABLE session", "--format", "json"], None);
    assert_eq!(out.status.code(), Some(1), "unsupported SQL fails loudly");
    let out = fake(
        &sb,
        "base",
        &["db", "SELECT id FROM session WHERE id = 'x'' OR ''1''=''1'", "--format", "json"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]", "quotes are data, not SQL");
    assert!(
        fake(&sb, "base", &["session", "list", "--format", "json"], None).stdout.is_empty(),
        "no sessions: no output"
    );
}

/// `FAKE_OPENCODE_STARTUP_MS` makes every invocation pay a start-up cost, as every real
/// opencode process does (a lower bound only: the sleep is the contract, not the speed).
#[test]
fn every_invocation_can_pay_a_start_up_cost() {
    let sb = Sandbox::new();
    for args in [&["--version"][..], &["session", "list"], &["db", "path"]] {
        let started = std::time::Instant::now();
        let out = Command::new(FAKE)
            .args(args)
            .current_dir(sb.path("base"))
            .env_clear()
            .envs(sb.base_env())
            .env("PWD", sb.path("base"))
            .env("FAKE_OPENCODE_STARTUP_MS", "300")
            .stdin(Stdio::null())
            .output()
            .expect("run fake");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let took = started.elapsed();
        assert!(took >= std::time::Duration::from_millis(300), "{args:?} took {took:?}");
    }
}
