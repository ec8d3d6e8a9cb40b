//! Clone and fetch over smart HTTP, in-process, with and without a required token.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use crate::support;

use kugetsu_core::worktree::{Secret, WorktreeError};
use support::http::GitHttpServer;
use support::{Fixture, assert_no_file_contains, error_text};

const TOKEN: &str = "kgs_tok_3f9a1c77e2b54d08";

#[test]
fn clone_and_fetch_over_http_without_credentials() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    let server = GitHttpServer::start(up.parent().unwrap(), &fx.home(), None);
    let mut req = fx.request(&up, "app", 1);
    req.source.url = server.url("app");
    let info = fx.create(&req).expect("clone over http");
    assert_eq!(info.head.as_deref(), Some(fx.rev(&up, "main").as_str()));
    assert_eq!(fx.status(&req.path), "");

    let newer = fx.commit_files(&up, &[("a", "2\n")], "newer");
    let mut second = fx.request(&up, "app", 2);
    second.source.url = server.url("app");
    let info = fx.create(&second).expect("fetch over http");
    assert_eq!(info.head.as_deref(), Some(newer.as_str()));
    fx.fsck(&fx.mirror("app"));

    let mut missing = fx.request(&up, "missing", 1);
    missing.source.url = server.url("missing");
    match fx.create(&missing) {
        Err(WorktreeError::RepoNotFound { url, .. }) => assert_eq!(url, server.url("missing")),
        other => panic!("expected RepoNotFound, got {other:?}"),
    }
}

#[test]
fn credentials_are_demanded_and_never_sent_in_clear_text() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    let server = GitHttpServer::start(up.parent().unwrap(), &fx.home(), Some(TOKEN));

    // No token: a clear authentication error, and no prompt.
    let mut req = fx.request(&up, "app", 1);
    req.source.url = server.url("app");
    match fx.create(&req) {
        Err(WorktreeError::AuthFailed { url }) => assert_eq!(url, server.url("app")),
        other => panic!("expected AuthFailed, got {other:?}"),
    }
    assert!(!fx.mirror("app").exists());

    // A token over plain http is refused before it leaves the process, and never echoed.
    req.source.token = Some(Secret::new(TOKEN));
    let err = fx.create(&req).expect_err("token over http");
    let text = error_text(&err);
    assert!(text.contains("use https"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(!fx.mirror("app").exists());
    assert_no_file_contains(&fx.state(), TOKEN);
}

/// A server that stops sending in the middle of a fetch does not hang `create`: the transfer
/// fails (gix's http client gives up on a read that receives nothing for 30 seconds), the error
/// names the repository, the mirror lock is released and the mirror stays usable. Ctrl-C during
/// such a stall is reported as the interruption it is, not as the read's failure.
#[test]
fn a_stalled_transfer_fails_instead_of_hanging() {
    use kugetsu_core::worktree::{NoProgress, Worktrees};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    let server = GitHttpServer::start(up.parent().unwrap(), &fx.home(), None);
    // Two mirrors of one upstream, so that the two stalled fetches below do not queue on one
    // mirror lock.
    let request = |key: &str, issue: u32| {
        let mut req = fx.request(&up, key, issue);
        req.source.url = server.url("app");
        req
    };
    for key in ["app", "other"] {
        fx.create(&request(key, 1)).expect("clone over http");
    }

    fx.commit_files(&up, &[("a", "2\n")], "newer");
    server.stall.store(true, Ordering::SeqCst);
    let run = |req: kugetsu_core::worktree::WorktreeRequest, interrupt: Arc<AtomicBool>| {
        let (tx, rx) = std::sync::mpsc::channel();
        let backend = fx.backend();
        std::thread::spawn(move || {
            let _ = tx.send(backend.create(&req, &mut NoProgress, &interrupt));
        });
        rx
    };
    let stalled = request("app", 2);
    let timed_out = run(stalled.clone(), Arc::new(AtomicBool::new(false)));
    let ctrl_c = Arc::new(AtomicBool::new(false));
    let interrupted = run(request("other", 2), Arc::clone(&ctrl_c));
    // Ctrl-C once both transfers hang in the stall.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.stalled.load(Ordering::SeqCst) < 2 {
        assert!(std::time::Instant::now() < deadline, "the transfers never reached the stall");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    ctrl_c.store(true, Ordering::SeqCst);

    // Hang guards, not timing assertions: the bound itself is the http client's.
    let guard = std::time::Duration::from_secs(180);
    let err = timed_out.recv_timeout(guard).expect("create hung").expect_err("stalled fetch");
    let text = error_text(&err);
    assert!(text.contains(&server.url("app")), "{text}");
    assert!(text.contains("timed out"), "{text}");
    assert!(!stalled.path.exists(), "no half-made worktree at {}", stalled.path.display());
    let result = interrupted.recv_timeout(guard).expect("interrupted create hung");
    assert!(matches!(result, Err(WorktreeError::Interrupted)), "{result:?}");

    server.stall.store(false, Ordering::SeqCst);
    let newer = fx.rev(&up, "main");
    let info = fx.create(&stalled).expect("the mirror is usable after the stall");
    assert_eq!(info.head.as_deref(), Some(newer.as_str()));
    fx.fsck(&fx.mirror("app"));
}

const NO_GIT_STATE: &str = "KUGETSU_NO_GIT_TEST_STATE";
const NO_GIT_URL: &str = "KUGETSU_NO_GIT_TEST_URL";

/// With no `git` program on `PATH` at all, kugetsu still clones and fetches over http, makes
/// worktrees, lists them, sees unsaved work and removes them: git is needed only by the test
/// server (in this process) and by the oracle afterwards.
#[test]
fn create_list_status_and_remove_need_no_git_program() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n"), ("dir/b", "2\n")]);
    let server = GitHttpServer::start(up.parent().unwrap(), &fx.home(), None);
    let empty = tempfile::tempdir().unwrap();
    support::run_child_test(module_path!(), "no_git_child", |cmd| {
        cmd.env(NO_GIT_STATE, fx.state())
            .env(NO_GIT_URL, server.url("app"))
            .env("PATH", empty.path());
    });
    // The oracle: what the git-less process left is what git expects.
    let kept = fx.worktree("app-2");
    assert_eq!(fx.status(&kept), "");
    assert_eq!(fx.rev(&kept, "HEAD"), fx.rev(&up, "main"));
    let listed = fx.git_worktrees(&fx.mirror("app"));
    assert_eq!(listed.len(), 2, "the mirror and app-2: {listed:?}");
    assert!(!fx.worktree("app-1").exists());
    assert!(!fx.branch_exists(&fx.mirror("app"), "fix/issue-1"));
    fx.fsck(&fx.mirror("app"));
}

#[test]
#[ignore = "run by create_list_status_and_remove_need_no_git_program without git on PATH"]
fn no_git_child() {
    use kugetsu_core::worktree::{NoProgress, RemoveOptions, WorktreeRequest, Worktrees};
    let Some(state) = std::env::var_os(NO_GIT_STATE).map(std::path::PathBuf::from) else {
        return;
    };
    let url = std::env::var(NO_GIT_URL).unwrap();
    let none = std::process::Command::new("git").arg("--version").output();
    assert!(none.is_err(), "git must not be runnable here");
    let backend = kugetsu_git::GitWorktrees::new(
        state.join("mirrors"),
        state.join("locks"),
        kugetsu_git::Committer::new("kugetsu test", "kugetsu@example.invalid"),
    )
    .with_git_config(kugetsu_git::GitConfig::Isolated);
    let no = std::sync::atomic::AtomicBool::new(false);
    let request = |issue: u32| WorktreeRequest {
        source: kugetsu_core::worktree::RepoSource {
            url: url.clone(),
            mirror_key: "app".into(),
            token: None,
        },
        path: state.join("worktrees").join(format!("app-{issue}")),
        branch: format!("fix/issue-{issue}"),
        base_ref: None,
        force: false,
    };
    backend.create(&request(1), &mut NoProgress, &no).expect("clone without git");
    backend.create(&request(2), &mut NoProgress, &no).expect("fetch without git");
    assert_eq!(backend.list().unwrap().len(), 2);

    std::fs::write(request(1).path.join("new.txt"), "unsaved\n").unwrap();
    match backend.create(&request(1), &mut NoProgress, &no) {
        Err(WorktreeError::WouldLoseWork { unsaved, .. }) => {
            assert_eq!(unsaved.changed_files, vec!["new.txt".to_string()])
        }
        other => panic!("expected WouldLoseWork, got {other:?}"),
    }
    backend
        .remove(&request(1).path, RemoveOptions { force: true, delete_branch: true })
        .expect("remove without git");
}
