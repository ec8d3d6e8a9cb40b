//! Pushing an issue branch to the real `git http-backend`, over http and https, with the
//! token: only what the remote lacks is sent, a second push sends nothing, a branch with no
//! commits of its own is not pushed, and a remote branch with commits kugetsu did not make is
//! never forced over.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use crate::support;

use std::path::{Path, PathBuf};

use kugetsu_core::worktree::{Secret, Worktrees as _};
use kugetsu_git::{GitConfig, PushError, PushOutcome, push_branch};
use support::Fixture;
use support::http::GitHttpServer;

const TOKEN: &str = "kgs_push_tok_5e1f08c2";

/// Clones `app` from `url` with `token` into issue 1's worktree; returns its path.
fn worktree(fx: &Fixture, up: &Path, url: String, token: Option<&str>) -> PathBuf {
    let mut req = fx.request(up, "app", 1);
    req.source.url = url;
    req.source.token = token.map(Secret::new);
    fx.create(&req).unwrap();
    req.path
}

fn push(fx: &Fixture, wt: &Path, url: &str, token: Option<&str>) -> Result<PushOutcome, PushError> {
    let mut source = fx.source(Path::new(url), "app");
    source.url = url.to_string();
    source.token = token.map(Secret::new);
    push_branch(wt, "fix/issue-1", &source, GitConfig::Isolated)
}

/// The whole sequence against a server at `url` serving `up`, which wants `token` if any.
fn pushes_fast_forwards_only(fx: &Fixture, up: &Path, url: &str, token: Option<&str>) {
    let wt = worktree(fx, up, url.to_string(), token);
    assert_eq!(push(fx, &wt, url, token).unwrap(), PushOutcome::NothingToPush);
    assert!(!fx.branch_exists(up, "fix/issue-1"));

    let first = fx.commit_files(&wt, &[("src/fix.rs", "fn fix() {}\n")], "Fix it");
    match push(fx, &wt, url, token).unwrap() {
        PushOutcome::Pushed { commit, already: false } => assert_eq!(commit.to_string(), first),
        other => panic!("expected a push, got {other:?}"),
    }
    assert_eq!(fx.rev(up, "fix/issue-1"), first);
    fx.fsck(up);
    // As after `git push`: the tracking ref follows, so the commits count as pushed.
    assert_eq!(fx.rev(&wt, "refs/remotes/origin/fix/issue-1"), first);
    assert!(fx.backend().unsaved_work(&wt).unwrap().unpushed_commits.is_empty());
    match push(fx, &wt, url, token).unwrap() {
        PushOutcome::Pushed { already: true, .. } => {}
        other => panic!("expected nothing new to send, got {other:?}"),
    }

    let second = fx.commit_files(&wt, &[("src/fix.rs", "fn fix() { 2 }\n")], "Fix it more");
    assert!(matches!(push(fx, &wt, url, token).unwrap(), PushOutcome::Pushed { .. }));
    assert_eq!(fx.rev(up, "fix/issue-1"), second);
    fx.fsck(up);

    // Someone else pushes to the branch: kugetsu's next push is refused, the branch unchanged.
    fx.git(up, &["checkout", "-q", "fix/issue-1"]);
    let theirs = fx.commit_files(up, &[("THEIRS", "x\n")], "Not kugetsu's");
    fx.git(up, &["checkout", "-q", "main"]);
    fx.commit_files(&wt, &[("src/fix.rs", "fn fix() { 3 }\n")], "Third");
    match push(fx, &wt, url, token).unwrap() {
        PushOutcome::Refused(why) => assert!(why.contains("did not make"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(fx.rev(up, "fix/issue-1"), theirs);

    if token.is_some() {
        // Without the token, or with a wrong one: an error that shows no token.
        let err = push(fx, &wt, url, None).unwrap_err().to_string();
        assert!(err.contains("push fix/issue-1 to"), "{err}");
        let err = push(fx, &wt, url, Some("kgs_wrong_tok_77")).unwrap_err().to_string();
        assert!(!err.contains("kgs_wrong_tok_77") && !err.contains(TOKEN), "{err}");
        assert_eq!(fx.rev(up, "fix/issue-1"), theirs);
    }
}

#[test]
fn pushes_over_http_send_what_is_missing_never_force_nor_send_a_token() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n"), ("dir/b", "2\n")]);
    let server = GitHttpServer::start(up.parent().unwrap(), &fx.home(), None);
    let url = server.url("app");
    pushes_fast_forwards_only(&fx, &up, &url, None);
    // A token is never sent in clear text.
    let err = push(&fx, &fx.worktree("app-1"), &url, Some(TOKEN)).unwrap_err().to_string();
    assert!(err.contains("clear text") && !err.contains(TOKEN), "{err}");
}

#[test]
fn only_http_and_https_remotes_are_pushed_to() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    let mut req = fx.request(&up, "app", 1);
    req.source.token = None;
    fx.create(&req).unwrap();
    fx.commit_files(&req.path, &[("c", "3\n")], "Change");
    for url in ["ssh://git@127.0.0.1:9/o/app.git", up.to_str().unwrap()] {
        match push(&fx, &req.path, url, None).unwrap() {
            PushOutcome::Refused(why) => assert!(why.contains("is not supported"), "{why}"),
            other => panic!("{url}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn pushes_over_https_with_the_token() {
    support::run_child_trusting_test_ca(module_path!(), "https_push_child");
}

#[test]
#[ignore = "run by pushes_over_https_with_the_token with SSL_CERT_FILE set"]
fn https_push_child() {
    let Some((fx, up, server)) = support::https_upstream(Some(TOKEN)) else { return };
    pushes_fast_forwards_only(&fx, &up, &server.https_url("app"), Some(TOKEN));
}
