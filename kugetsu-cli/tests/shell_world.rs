//! What differs between a test's world and a user's shell, tried one by one through the real
//! binary: a git hook's `GIT_*` variables, no `HOME`, a missing `TMPDIR`, a read-only or
//! deleted working directory, a relative `KUGETSU_HOME`, output into a pipe that closes early,
//! and the message on stdin from a file.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::io::Read;
use std::process::Stdio;

use support::{Env, git};

/// A git hook runs kugetsu with `GIT_DIR`, `GIT_WORK_TREE` and `GIT_INDEX_FILE` naming the
/// repository the hook belongs to. kugetsu works on the issue's own repository, its agent sees
/// none of them, and the hook's repository is left exactly as it was.
#[test]
fn a_git_hooks_variables_steer_nothing() {
    let (mut env, _repo) = Env::with_fake_agent();
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    let hooked = env.elsewhere();
    std::fs::write(hooked.join("tracked.txt"), "x\n").unwrap();
    git(&hooked, &["add", "tracked.txt"]);
    git(&hooked, &["commit", "-q", "-m", "hook repo"]);
    let before = git(&hooked, &["log", "--all", "--format=%H %s"])
        + &git(&hooked, &["status", "--porcelain"]);
    env.set("GIT_DIR", hooked.join(".git").to_str().unwrap());
    env.set("GIT_WORK_TREE", hooked.to_str().unwrap());
    env.set("GIT_INDEX_FILE", hooked.join(".git/index").to_str().unwrap());
    let record = env.tmp.path().join("record.jsonl");
    assert_eq!(env.run(&["env", "set", "FAKE_OPENCODE_RECORD", record.to_str().unwrap()]).code, 0);

    let out = env.run(&["start", "#1", "work"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let wt = env.path("worktrees/local.test-demo-app-1");
    assert!(wt.join("WORK.md").is_file(), "the agent worked in the issue's worktree");
    assert_eq!(git(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(), "fix/issue-1");
    let after = git(&hooked, &["log", "--all", "--format=%H %s"])
        + &git(&hooked, &["status", "--porcelain"]);
    assert_eq!(before, after, "the hook's repository is untouched");
    let records = std::fs::read_to_string(&record).unwrap();
    assert!(!records.contains("\"GIT_DIR\""), "the agent got no GIT_DIR: {records}");
    assert!(!records.contains("\"GIT_WORK_TREE\""), "{records}");
}

/// No `HOME` (a cron job, a stripped service environment): with `KUGETSU_HOME` set, everything
/// works; without either, a one-line error says what to set.
#[test]
fn no_home_is_handled() {
    let env = Env::new();
    let out = env.command(&["status"]).env_remove("HOME").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kugetsu_not_initialized\n");
    let out =
        env.command(&["list"]).env_remove("HOME").env_remove("KUGETSU_HOME").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A `TMPDIR` that does not exist (a shell started before a reboot cleared it) does not stop a
/// start: the fork's transcript is written in the private state directory.
#[test]
fn a_missing_tmpdir_does_not_break_a_start() {
    let (mut env, _repo) = Env::with_fake_agent();
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    env.set("TMPDIR", env.tmp.path().join("gone").to_str().unwrap());
    let out = env.run(&["start", "#1", "work"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

/// Started from a read-only directory, or from one deleted under the shell: kugetsu writes
/// nothing where it stands and needs nothing from it.
#[test]
fn a_read_only_or_deleted_cwd_is_no_problem() {
    use std::os::unix::fs::PermissionsExt;
    let (env, _repo) = Env::with_fake_agent();
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    let ro = env.tmp.path().join("read-only");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let out =
        env.command(&["start", "#1", "work"]).current_dir(&ro).env("PWD", &ro).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);

    // `cd doomed && rm -r ../doomed && kugetsu continue ...`, as a shell leaves it.
    let doomed = env.tmp.path().join("doomed");
    std::fs::create_dir(&doomed).unwrap();
    let shell_env = env.command(&[]);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"cd "$DOOMED" && rmdir "$DOOMED" && exec "$KUGETSU_EXE" continue '#1' more"#)
        .env_clear()
        .envs(shell_env.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))))
        .envs(std::env::vars_os().filter(|(k, _)| k == "PATH"))
        .env("DOOMED", &doomed)
        .env("KUGETSU_EXE", env!("CARGO_BIN_EXE_kugetsu"))
        .current_dir(env.tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!doomed.exists());
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A relative `KUGETSU_HOME` is taken relative to where the user stands, once, and everything
/// kugetsu starts (the agent, the daemon) gets it absolute.
#[test]
fn a_relative_kugetsu_home_is_made_absolute() {
    let mut env = Env::new();
    env.set("KUGETSU_HOME", "rel-state");
    let out = env.run(&["env", "set", "X", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(env.elsewhere().join("rel-state/env/default.env").is_file());
}

/// `kugetsu completions bash | head -1`: the reader closes the pipe early; kugetsu stops
/// quietly instead of printing an error about it.
#[test]
fn a_closed_pipe_ends_output_quietly() {
    let env = Env::new();
    let mut child = env
        .command(&["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Error") && !stderr.contains("panicked"), "{stderr}");
}

/// A message on stdin from a file (`kugetsu start ... - < brief.md`) arrives byte-exact.
#[test]
fn a_message_from_a_file_on_stdin_arrives_exactly() {
    let (env, _repo) = Env::with_fake_agent();
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    let record = env.tmp.path().join("record.jsonl");
    assert_eq!(env.run(&["env", "set", "FAKE_OPENCODE_RECORD", record.to_str().unwrap()]).code, 0);
    let brief = env.tmp.path().join("brief.md");
    let text = "line one\n  \"quoted\" $HOME `tick`\n\ttab\n";
    std::fs::write(&brief, text).unwrap();
    let out = env
        .command(&["start", "#1", "-"])
        .stdin(std::fs::File::open(&brief).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records = std::fs::read_to_string(&record).unwrap();
    let run = records
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["message"].is_string() && r["argv"].to_string().contains("--session"))
        .unwrap();
    assert_eq!(run["message"], text);
}
