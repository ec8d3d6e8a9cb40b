//! Clone and fetch over smart HTTP, in-process, with and without a required token.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod support;

use std::path::Path;

use kugetsu_core::worktree::{Secret, WorktreeError};
use support::Fixture;
use support::http::GitHttpServer;

const TOKEN: &str = "kgs_tok_3f9a1c77e2b54d08";

/// Every file under `dir` (recursively), as bytes, with its path.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let ft = entry.file_type().unwrap();
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                out.push((entry.path(), std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

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
    for (path, bytes) in files_under(&fx.state()) {
        assert!(!contains(&bytes, TOKEN), "token written to {}", path.display());
    }
}

/// Display and Debug of an error and all its sources.
pub fn error_text(err: &WorktreeError) -> String {
    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    text
}

/// A server that stops sending in the middle of a fetch does not hang `create`: the transfer
/// fails (gix's http client gives up on a read that receives nothing for 30 seconds), the error
/// names the repository, the mirror lock is released and the mirror stays usable.
#[test]
fn a_stalled_transfer_fails_instead_of_hanging() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    let server = GitHttpServer::start(up.parent().unwrap(), &fx.home(), None);
    let mut first = fx.request(&up, "app", 1);
    first.source.url = server.url("app");
    fx.create(&first).expect("clone over http");

    fx.commit_files(&up, &[("a", "2\n")], "newer");
    server.stall.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut second = fx.request(&up, "app", 2);
    second.source.url = server.url("app");
    let (tx, rx) = std::sync::mpsc::channel();
    let backend = fx.backend();
    let stalled = second.clone();
    std::thread::spawn(move || {
        let no = std::sync::atomic::AtomicBool::new(false);
        let _ = tx.send(kugetsu_core::worktree::Worktrees::create(
            &backend,
            &stalled,
            &mut kugetsu_core::worktree::NoProgress,
            &no,
        ));
    });
    // A hang guard, not a timing assertion: the bound itself is the http client's.
    let result = rx.recv_timeout(std::time::Duration::from_secs(180)).expect("create hung");
    let err = result.expect_err("a stalled fetch must fail");
    let text = error_text(&err);
    assert!(text.contains(&server.url("app")), "{text}");
    assert!(text.contains("timed out"), "{text}");
    assert!(!second.path.exists(), "no half-made worktree at {}", second.path.display());

    server.stall.store(false, std::sync::atomic::Ordering::SeqCst);
    let newer = fx.rev(&up, "main");
    let info = fx.create(&second).expect("the mirror is usable after the stall");
    assert_eq!(info.head.as_deref(), Some(newer.as_str()));
    fx.fsck(&fx.mirror("app"));
}
