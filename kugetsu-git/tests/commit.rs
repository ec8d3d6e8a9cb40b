//! Committing what an agent left in a worktree, with the real `git` reading the result: the
//! commit holds the changed, new and deleted files and no ignored ones, carries the identity
//! the repository's configuration names, moves the branch with a reflog entry, and leaves
//! `git status` clean but for the files it would not commit (too big, env files, secrets).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use crate::support;

use std::path::{Path, PathBuf};

use kugetsu_git::{CommitPolicy, Committer, GitConfig, Skipped, commit_changes};
use support::Fixture;

const SECRET: &str = "kgs_commit_secret_5c81d0";

fn policy() -> CommitPolicy {
    CommitPolicy {
        max_file_bytes: 1000,
        secrets: vec![SECRET.to_string()],
        fallback: Committer::new("kugetsu fallback", "fallback@example.invalid"),
    }
}

fn worktree(fx: &Fixture) -> PathBuf {
    let up = fx.upstream(
        "app",
        &[
            ("README.md", "hello\n"),
            ("src/a.rs", "fn a() {}\n"),
            ("old.txt", "going away\n"),
            (".gitignore", "target/\n"),
        ],
    );
    let req = fx.request(&up, "app", 1);
    fx.create(&req).unwrap();
    req.path
}

fn write(root: &Path, path: &str, content: &[u8]) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

#[test]
fn commits_changes_and_leaves_status_clean() {
    let fx = Fixture::new();
    let wt = worktree(&fx);
    fx.git(&wt, &["config", "user.name", "Ada Tester"]);
    fx.git(&wt, &["config", "user.email", "ada@example.invalid"]);
    let before = fx.rev(&wt, "HEAD");
    write(&wt, "src/a.rs", b"fn a() { 1 }\n");
    std::fs::remove_file(wt.join("old.txt")).unwrap();
    write(&wt, "new/deep/b.rs", b"fn b() {}\n");
    write(&wt, "run.sh", b"#!/bin/sh\necho hi\n");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(wt.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    std::os::unix::fs::symlink("README.md", wt.join("link")).unwrap();
    write(&wt, "target/out.o", b"build output\n");
    write(&wt, ".env", b"X=1\n");
    write(&wt, "config/.env.local", b"Y=2\n");
    write(&wt, "notes.txt", format!("token: {SECRET}\n").as_bytes());
    write(&wt, "big.bin", &[7u8; 1001]);

    let message = "kugetsu: github.com/o/app#1 turn 1\n\nFixed a.\n";
    let done = commit_changes(&wt, message, &policy(), GitConfig::Isolated).unwrap();

    let head = fx.rev(&wt, "HEAD");
    assert_eq!(done.commit.map(|c| c.to_string()), Some(head.clone()));
    assert_eq!(fx.rev(&wt, "HEAD^"), before);
    assert_eq!(fx.rev(&wt, "fix/issue-1"), head);
    assert_eq!(done.files, ["link", "new/deep/b.rs", "old.txt", "run.sh", "src/a.rs"]);
    let skipped = |path: &str, why: &str| Skipped { path: path.into(), why: why.into() };
    assert_eq!(
        done.skipped,
        [
            skipped(".env", "an env file"),
            skipped("big.bin", "larger than 1000 bytes"),
            skipped("config/.env.local", "an env file"),
            skipped("notes.txt", "holds a secret"),
        ]
    );
    // What git sees: only the skipped files are left, untracked; the ignored file is not shown.
    assert_eq!(
        fx.status(&wt),
        "?? .env\n?? big.bin\n?? config/.env.local\n?? notes.txt\n",
        "{}",
        fx.git(&wt, &["diff", "--cached", "--stat"])
    );
    let tree = fx.git(&wt, &["ls-tree", "-r", "HEAD"]);
    let modes: Vec<(String, String)> = tree
        .lines()
        .map(|l| {
            let (meta, path) = l.split_once('\t').unwrap();
            (path.to_string(), meta.split(' ').next().unwrap().to_string())
        })
        .collect();
    let mode = |p: &str| modes.iter().find(|(path, _)| path == p).map(|(_, m)| m.as_str());
    assert_eq!(mode("run.sh"), Some("100755"));
    assert_eq!(mode("link"), Some("120000"));
    assert_eq!(mode("new/deep/b.rs"), Some("100644"));
    assert_eq!(mode("old.txt"), None);
    assert_eq!(mode("target/out.o"), None);
    assert_eq!(mode(".env"), None);
    assert_eq!(fx.git(&wt, &["show", "HEAD:src/a.rs"]), "fn a() { 1 }\n");
    assert_eq!(fx.git(&wt, &["show", "HEAD:link"]), "README.md");
    assert_eq!(
        fx.git(&wt, &["log", "-1", "--format=%an <%ae>|%cn <%ce>|%B"]).trim_end(),
        "Ada Tester <ada@example.invalid>|Ada Tester <ada@example.invalid>|\
         kugetsu: github.com/o/app#1 turn 1\n\nFixed a."
    );
    let reflog = fx.git(&wt, &["reflog", "show", "--format=%gs", "fix/issue-1"]);
    assert_eq!(reflog.lines().next(), Some("commit: kugetsu: github.com/o/app#1 turn 1"));
    let reflog = fx.git(&wt, &["reflog", "show", "--format=%gs", "HEAD"]);
    assert_eq!(reflog.lines().next(), Some("commit: kugetsu: github.com/o/app#1 turn 1"));
    fx.fsck(&wt);

    // Nothing left to commit: no new commit, the branch where it was.
    let again = commit_changes(&wt, "second", &policy(), GitConfig::Isolated).unwrap();
    assert_eq!(again.commit, None);
    assert!(again.files.is_empty());
    assert_eq!(again.skipped.len(), 4);
    assert_eq!(fx.rev(&wt, "HEAD"), head);
}

#[test]
fn without_an_identity_the_fallback_commits() {
    let fx = Fixture::new();
    let wt = worktree(&fx);
    write(&wt, "src/a.rs", b"fn a() { 2 }\n");
    commit_changes(&wt, "kugetsu: turn 1", &policy(), GitConfig::Isolated).unwrap();
    assert_eq!(
        fx.git(&wt, &["log", "-1", "--format=%an <%ae>"]).trim(),
        "kugetsu fallback <fallback@example.invalid>"
    );
    assert_eq!(fx.status(&wt), "");
}

#[test]
fn a_detached_head_is_refused_untouched() {
    let fx = Fixture::new();
    let wt = worktree(&fx);
    fx.git(&wt, &["checkout", "-q", "--detach"]);
    write(&wt, "src/a.rs", b"fn a() { 3 }\n");
    let err = commit_changes(&wt, "m", &policy(), GitConfig::Isolated).unwrap_err();
    assert!(err.to_string().contains("HEAD is detached"), "{err}");
    assert_eq!(fx.status(&wt), " M src/a.rs\n");
}
