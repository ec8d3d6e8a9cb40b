//! The flags of a `start` reach every form it can take: in the background (`--detach`) and
//! queued for the daemon (`--no-wait` with every slot busy) it does exactly what it would have
//! done in the foreground.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::process::Stdio;

use support::{Env, alive, git, signal, wait_exit, wait_for};

const WORKTREE: &str = "worktrees/local.test-demo-app-1";

/// An initialized scratch home whose issue #1 has a worktree with unsaved work in it.
fn dirty_issue() -> Env {
    let (env, _repo) = Env::with_fake_agent();
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    let out = env.run(&["start", "#1", "first"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::write(env.path(WORKTREE).join("notes.txt"), "unsaved\n").unwrap();
    env
}

fn session_state(env: &Env, issue: u32) -> String {
    let path = env.path(&format!("sessions/local.test-demo-app-{issue}.json"));
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default())
            .unwrap_or_default();
    file["state"].as_str().unwrap_or_default().to_string()
}

/// `start --detach --force` on a worktree with unsaved work recreates it in the background, as
/// the foreground `start --force` would; without `--force` the background run refuses.
#[test]
fn detach_keeps_force() {
    let env = dirty_issue();
    let wt = env.path(WORKTREE);

    let out = env.run(&["start", "#1", "again", "--detach"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = out.stdout.lines().find_map(|l| l.strip_prefix("log: ")).unwrap().to_string();
    wait_for("the background run to refuse", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("--force")
    });
    assert!(wt.join("notes.txt").is_file(), "the unsaved work is kept");

    let out = env.run(&["start", "#1", "again", "--detach", "--force"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = out.stdout.lines().find_map(|l| l.strip_prefix("log: ")).unwrap().to_string();
    wait_for("the background run to finish", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("completed")
    });
    assert!(
        !wt.join("notes.txt").exists(),
        "recreated clean: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(wt.join("WORK.md").is_file(), "and the agent worked in it");
}

/// `--base-ref` reaches the background run too.
#[test]
fn detach_keeps_base_ref() {
    let (env, repo) = Env::with_fake_agent();
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    git(&repo, &["checkout", "-q", "-b", "topic"]);
    std::fs::write(repo.join("TOPIC.md"), "on topic\n").unwrap();
    git(&repo, &["add", "TOPIC.md"]);
    git(&repo, &["commit", "-q", "-m", "topic"]);
    git(&repo, &["checkout", "-q", "main"]);

    let out = env.run(&["start", "#1", "go", "--detach", "--base-ref", "topic"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = out.stdout.lines().find_map(|l| l.strip_prefix("log: ")).unwrap().to_string();
    wait_for("the background run to finish", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("completed")
    });
    assert!(env.path(WORKTREE).join("TOPIC.md").is_file(), "branched from topic");
}

/// With every slot busy, `start --no-wait --force --base-ref R` is queued with its options, and
/// the daemon then starts afresh (it does not merely continue the existing session), forced,
/// from R.
#[test]
fn a_queued_start_keeps_its_flags() {
    let mut env = dirty_issue();
    env.set("MAX_CONCURRENT_AGENTS", "1");
    // Hold the only slot with a run that hangs on another issue.
    std::fs::write(
        env.tmp.path().join("script.json"),
        r#"{"turns": [{"mode": "hang", "after_output": true}],
            "default": {"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "ok"}}"#,
    )
    .unwrap();
    let holder = env
        .command(&["start", "#2", "hold the slot"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the slot holder to run", || session_state(&env, 2) == "running");

    let out = env.run(&["start", "#1", "again", "--no-wait", "--force", "--base-ref", "main"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("queued as q_"), "{}", out.stdout);
    let list: serde_json::Value =
        serde_json::from_str(&env.run(&["queue", "list", "--json"]).stdout).unwrap();
    let item = &list["items"][0];
    assert_eq!(
        item["options"],
        serde_json::json!({"start": true, "force": true, "base_ref": "main"})
    );

    // Free the slot, then let the daemon take the item.
    signal(holder.id(), "INT");
    let (code, _) = wait_exit(holder);
    assert_eq!(code, Some(130));
    assert_eq!(env.run(&["queue-daemon", "start"]).code, 0);
    wait_for("the daemon to finish the item", || {
        let list: serde_json::Value =
            serde_json::from_str(&env.run(&["queue", "list", "--json"]).stdout).unwrap();
        list["items"][0]["status"] == "completed" || list["items"][0]["status"] == "error"
    });
    let list = env.run(&["queue", "list", "--json"]).stdout;
    assert!(list.contains("\"completed\""), "{list}");
    assert!(!env.path(WORKTREE).join("notes.txt").exists(), "recreated, as --force asked");
    let pid = std::fs::read_to_string(env.path("queue/daemon.pid")).unwrap_or_default();
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
    if let Ok(pid) = pid.trim().parse::<u32>() {
        wait_for("the daemon to stop", || !alive(pid));
    }
}
