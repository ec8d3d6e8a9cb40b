//! kugetsu run from a git hook, or from a shell inside another repository, inherits `GIT_DIR`,
//! `GIT_WORK_TREE`, `GIT_INDEX_FILE` and friends. They must not steer what kugetsu does to its
//! own mirrors and worktrees, neither in gix nor in the `git upload-pack` gix runs for a local
//! remote. The environment of a running test must not change, so the case re-runs this test
//! binary with the variables set.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use crate::support;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use kugetsu_core::worktree::{NoProgress, RemoveOptions, Worktrees};
use kugetsu_git::{Committer, GitConfig, GitWorktrees};
use support::Fixture;

const CHILD_DIR: &str = "KUGETSU_GIT_ENV_TEST_DIR";

#[test]
fn inherited_git_variables_do_not_steer_kugetsu() {
    let fx = Fixture::new();
    let decoy = fx.upstream("decoy", &[("decoy.txt", "keep me\n")]);
    let before = support::files_under(&decoy);
    support::run_child_test(module_path!(), "git_env_child", |cmd| {
        cmd.env(CHILD_DIR, fx.root())
            .env("GIT_DIR", decoy.join(".git"))
            .env("GIT_WORK_TREE", &decoy)
            .env("GIT_INDEX_FILE", decoy.join(".git/index"))
            .env("GIT_OBJECT_DIRECTORY", decoy.join(".git/objects"))
            .env("GIT_COMMON_DIR", decoy.join(".git"))
            .env("GIT_PREFIX", "sub/");
    });
    assert_eq!(support::files_under(&decoy), before, "the decoy repository was changed");
}

#[test]
#[ignore = "run by inherited_git_variables_do_not_steer_kugetsu with GIT_* variables set"]
fn git_env_child() {
    let Some(root) = std::env::var_os(CHILD_DIR).map(PathBuf::from) else { return };
    for var in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"] {
        assert!(std::env::var_os(var).is_some(), "{var} is not set in the child");
    }
    let state = root.join("child-state");
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n"), ("dir/b", "2\n")]);
    let backend = GitWorktrees::new(
        state.join("mirrors"),
        state.join("locks"),
        Committer::new("kugetsu test", "kugetsu@example.invalid"),
    )
    .with_git_config(GitConfig::User);
    let no = AtomicBool::new(false);
    let mut req = fx.request(&up, "app", 1);
    req.path = state.join("worktrees/app-1");
    let info = backend.create(&req, &mut NoProgress, &no).expect("clone");
    assert_eq!(info.head.as_deref(), Some(fx.rev(&up, "main").as_str()));
    let newer = fx.commit_files(&up, &[("a", "3\n")], "newer");
    let mut second = fx.request(&up, "app", 2);
    second.path = state.join("worktrees/app-2");
    let info = backend.create(&second, &mut NoProgress, &no).expect("fetch");
    assert_eq!(info.head.as_deref(), Some(newer.as_str()));
    // The oracle runs with a cleared environment.
    assert_eq!(fx.status(&req.path), "");
    assert_eq!(std::fs::read_to_string(second.path.join("a")).unwrap(), "3\n");
    assert!(second.path.join("dir/b").is_file());
    fx.fsck(&state.join("mirrors/app.git"));
    let listed = backend.list().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    backend.remove(&req.path, RemoveOptions { force: false, delete_branch: true }).unwrap();
    assert!(!req.path.exists());
}
