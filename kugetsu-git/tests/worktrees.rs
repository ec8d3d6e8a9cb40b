//! End-to-end behaviour of `GitWorktrees`, with the real `git` program as the oracle.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};

use kugetsu_core::worktree::{
    NoProgress, RemoveOptions, WorktreeError, WorktreePhase, WorktreeProgress, Worktrees,
};
use support::Fixture;

#[test]
fn created_worktree_is_clean_registered_and_usable_by_git() {
    let fx = Fixture::new();
    let up = fx.upstream(
        "app",
        &[
            ("README.md", "hello\n"),
            ("src/lib.rs", "pub fn f() {}\n"),
            (".gitattributes", "*.txt text eol=crlf\n*.bin binary\n"),
            ("notes.txt", "line one\nline two\n"),
            ("data.bin", "raw\r\nbytes\n"),
        ],
    );
    std::fs::write(up.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(up.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("src/lib.rs", up.join("link.rs")).unwrap();
    let head = fx.commit_files(&up, &[], "exec and symlink");

    let req = fx.request(&up, "app", 1);
    let info = fx.create(&req).expect("create");
    assert_eq!(info.path, req.path);
    assert_eq!(info.branch.as_deref(), Some("fix/issue-1"));
    assert_eq!(info.head.as_deref(), Some(head.as_str()));

    let wt = &req.path;
    assert_eq!(fx.status(wt), "", "git sees a clean worktree");
    assert_eq!(fx.rev(wt, "HEAD"), head);
    let listed = fx.git_worktrees(&fx.mirror("app"));
    assert!(
        listed.iter().any(|(p, b)| p == wt && b.as_deref() == Some("refs/heads/fix/issue-1")),
        "{listed:?}"
    );
    fx.fsck(&fx.mirror("app"));

    // Symlinks, the executable bit and line endings as git would have written them.
    let link = std::fs::symlink_metadata(wt.join("link.rs")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(std::fs::read_link(wt.join("link.rs")).unwrap(), std::path::Path::new("src/lib.rs"));
    let mode = std::fs::metadata(wt.join("run.sh")).unwrap().permissions().mode();
    assert_ne!(mode & 0o111, 0, "run.sh is executable");
    let mode = std::fs::metadata(wt.join("README.md")).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0, "README.md is not executable");
    assert_eq!(std::fs::read(wt.join("notes.txt")).unwrap(), b"line one\r\nline two\r\n");
    assert_eq!(std::fs::read(wt.join("data.bin")).unwrap(), b"raw\r\nbytes\n");

    // A commit inside works, and the mirror stays sound.
    std::fs::write(wt.join("README.md"), "changed\n").unwrap();
    fx.git(wt, &["commit", "-q", "-am", "work"]);
    assert_eq!(fx.status(wt), "");
    fx.fsck(&fx.mirror("app"));
}

#[test]
fn default_branch_other_than_main_and_named_base_refs() {
    let fx = Fixture::new();
    let up = fx.upstream("trunky", &[("a", "1\n")]);
    fx.git(&up, &["branch", "-m", "main", "trunk"]);
    let trunk = fx.commit_files(&up, &[("b", "2\n")], "second");
    fx.git(&up, &["branch", "release", "HEAD~1"]);
    fx.git(&up, &["tag", "v1", "HEAD~1"]);
    let release = fx.rev(&up, "release");

    let info = fx.create(&fx.request(&up, "trunky", 1)).expect("create");
    assert_eq!(info.head.as_deref(), Some(trunk.as_str()));

    for (issue, base) in [(2, "release"), (3, "v1"), (4, "origin/release"), (5, release.as_str())] {
        let mut req = fx.request(&up, "trunky", issue);
        req.base_ref = Some(base.to_string());
        let info = fx.create(&req).unwrap_or_else(|e| panic!("base {base}: {e}"));
        assert_eq!(info.head.as_deref(), Some(release.as_str()), "base {base}");
        assert_eq!(fx.rev(&req.path, "HEAD"), release);
    }

    let mut req = fx.request(&up, "trunky", 9);
    req.base_ref = Some("no-such-branch".into());
    match fx.create(&req) {
        Err(WorktreeError::BaseRefNotFound { base_ref, url }) => {
            assert_eq!(base_ref, "no-such-branch");
            assert_eq!(url, up.to_string_lossy());
        }
        other => panic!("expected BaseRefNotFound, got {other:?}"),
    }
    assert!(!req.path.exists());
    assert!(!fx.branch_exists(&fx.mirror("trunky"), "fix/issue-9"));
}

#[test]
fn fetches_before_each_create() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    fx.create(&fx.request(&up, "app", 1)).unwrap();
    let newer = fx.commit_files(&up, &[("a", "2\n")], "newer");
    let info = fx.create(&fx.request(&up, "app", 2)).unwrap();
    assert_eq!(info.head.as_deref(), Some(newer.as_str()));
}

#[test]
fn empty_and_missing_repositories_are_clear_errors() {
    let fx = Fixture::new();
    let empty = fx.root().join("upstream/empty");
    std::fs::create_dir_all(&empty).unwrap();
    fx.git(&empty, &["init", "-q"]);
    let req = fx.request(&empty, "empty", 1);
    let err = fx.create(&req).expect_err("empty repository");
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err).map(|s| s.to_string()).unwrap_or_default()
    );
    assert!(text.contains("empty"), "{text}");
    assert!(text.contains(&*empty.to_string_lossy()), "{text}");
    assert!(!req.path.exists());

    let missing = fx.root().join("upstream/nope");
    let req = fx.request(&missing, "nope", 1);
    match fx.create(&req) {
        Err(WorktreeError::RepoNotFound { url, .. }) => assert_eq!(url, missing.to_string_lossy()),
        other => panic!("expected RepoNotFound, got {other:?}"),
    }
    assert!(!fx.mirror("nope").exists(), "no half-made mirror");
    assert!(!req.path.exists());
}

#[test]
fn recreate_refuses_to_lose_work_unless_forced() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n"), ("b", "1\n")]);
    let req = fx.request(&up, "app", 7);
    fx.create(&req).unwrap();
    let wt = req.path.clone();

    // Clean: recreated silently.
    fx.create(&req).expect("recreating a clean worktree");
    assert_eq!(fx.status(&wt), "");

    // Modified tracked file.
    std::fs::write(wt.join("a"), "changed\n").unwrap();
    expect_lost(&fx, &req, &["a"], 0);
    // Untracked file.
    std::fs::write(wt.join("a"), "1\n").unwrap();
    std::fs::create_dir_all(wt.join("new/dir")).unwrap();
    std::fs::write(wt.join("new/dir/file"), "x").unwrap();
    expect_lost(&fx, &req, &["new/dir/file"], 0);
    std::fs::remove_dir_all(wt.join("new")).unwrap();
    // Staged deletion.
    fx.git(&wt, &["rm", "-q", "b"]);
    expect_lost(&fx, &req, &["b"], 0);
    fx.git(&wt, &["reset", "-q", "--hard"]);
    // Unpushed commit.
    fx.commit_files(&wt, &[("c", "3\n")], "local only");
    let err = expect_lost(&fx, &req, &[], 1);
    let WorktreeError::WouldLoseWork { unsaved, .. } = err else { unreachable!() };
    assert!(unsaved.unpushed_commits[0].ends_with(" local only"), "{unsaved:?}");

    // Pushed: nothing is lost any more.
    fx.git(&wt, &["push", "-q", "origin", "fix/issue-7"]);
    fx.create(&req).expect("recreate after push");
    assert!(!wt.join("c").exists(), "recreated from the default branch");

    // Forced: work is thrown away and the result is clean.
    std::fs::write(wt.join("a"), "changed\n").unwrap();
    std::fs::write(wt.join("untracked"), "x").unwrap();
    fx.commit_files(&wt, &[("d", "4\n")], "another local");
    std::fs::write(wt.join("a"), "changed again\n").unwrap();
    let mut forced = req.clone();
    forced.force = true;
    fx.create(&forced).expect("forced recreate");
    assert_eq!(fx.status(&wt), "");
    assert!(!wt.join("untracked").exists());
    assert_eq!(fx.rev(&wt, "HEAD"), fx.rev(&up, "main"));
    fx.fsck(&fx.mirror("app"));
}

fn expect_lost(
    fx: &Fixture,
    req: &kugetsu_core::worktree::WorktreeRequest,
    files: &[&str],
    commits: usize,
) -> WorktreeError {
    let before = std::fs::read_dir(&req.path).unwrap().count();
    match fx.create(req) {
        Err(err @ WorktreeError::WouldLoseWork { .. }) => {
            let WorktreeError::WouldLoseWork { path, unsaved } = &err else { unreachable!() };
            assert_eq!(path, &req.path);
            assert_eq!(unsaved.changed_files, files, "{unsaved:?}");
            assert_eq!(unsaved.unpushed_commits.len(), commits, "{unsaved:?}");
            assert_eq!(std::fs::read_dir(&req.path).unwrap().count(), before, "nothing touched");
            err
        }
        other => panic!("expected WouldLoseWork, got {other:?}"),
    }
}

#[test]
fn existing_branch_is_reset_only_when_nothing_would_be_lost() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    let mirror = fx.mirror("app");
    let req = fx.request(&up, "app", 3);
    fx.create(&req).unwrap();
    fx.commit_files(&req.path, &[("x", "x\n")], "kept on the branch");
    // Remove the worktree but keep the branch with its unpushed commit.
    fx.backend().remove(&req.path, RemoveOptions { force: true, delete_branch: false }).unwrap();
    assert!(fx.branch_exists(&mirror, "fix/issue-3"));

    match fx.create(&req) {
        Err(WorktreeError::WouldLoseWork { unsaved, .. }) => {
            assert_eq!(unsaved.unpushed_commits.len(), 1);
            assert!(unsaved.changed_files.is_empty());
        }
        other => panic!("expected WouldLoseWork, got {other:?}"),
    }
    assert!(!req.path.exists());

    // A branch made by git at the base commit is simply reused.
    fx.git(&mirror, &["branch", "fix/issue-4", "refs/remotes/origin/main"]);
    fx.create(&fx.request(&up, "app", 4)).expect("existing branch without unpushed work");

    let mut forced = req.clone();
    forced.force = true;
    fx.create(&forced).unwrap();
    assert_eq!(fx.rev(&req.path, "HEAD"), fx.rev(&up, "main"));
    assert_eq!(fx.status(&req.path), "");
}

#[test]
fn branch_checked_out_elsewhere_and_foreign_paths_are_refused() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    let first = fx.request(&up, "app", 5);
    fx.create(&first).unwrap();

    let mut second = first.clone();
    second.path = fx.worktree("elsewhere");
    match fx.create(&second) {
        Err(WorktreeError::BranchCheckedOut { branch, path }) => {
            assert_eq!(branch, "fix/issue-5");
            assert_eq!(path, first.path);
        }
        other => panic!("expected BranchCheckedOut, got {other:?}"),
    }
    assert!(!second.path.exists());

    let foreign = fx.request(&up, "app", 6);
    std::fs::create_dir_all(&foreign.path).unwrap();
    std::fs::write(foreign.path.join("precious"), "keep me").unwrap();
    match fx.create(&foreign) {
        Err(WorktreeError::PathNotWorktree { path }) => assert_eq!(path, foreign.path),
        other => panic!("expected PathNotWorktree, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(foreign.path.join("precious")).unwrap(), "keep me");
    assert!(!fx.branch_exists(&fx.mirror("app"), "fix/issue-6"));

    // An empty directory is fine.
    let empty = fx.request(&up, "app", 8);
    std::fs::create_dir_all(&empty.path).unwrap();
    fx.create(&empty).expect("empty directory becomes the worktree");
}

#[test]
fn git_and_kugetsu_remove_each_others_worktrees() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    let mirror = fx.mirror("app");
    let req = fx.request(&up, "app", 1);
    fx.create(&req).unwrap();
    fx.git(&mirror, &["worktree", "remove", &req.path.to_string_lossy()]);
    assert!(!req.path.exists());
    assert!(fx.git_worktrees(&mirror).iter().all(|(p, _)| p != &req.path));

    let by_git = fx.worktree("by-git");
    fx.git(
        &mirror,
        &["worktree", "add", "-q", "-b", "fix/issue-2", &by_git.to_string_lossy(), "origin/main"],
    );
    let backend = fx.backend();
    let listed = backend.list().unwrap();
    assert!(
        listed.iter().any(|i| i.path == by_git && i.branch.as_deref() == Some("fix/issue-2")),
        "{listed:?}"
    );
    backend
        .remove(&by_git, RemoveOptions { force: false, delete_branch: true })
        .expect("remove git's worktree");
    assert!(!by_git.exists());
    assert!(!fx.branch_exists(&mirror, "fix/issue-2"));
    assert_eq!(fx.git_worktrees(&mirror).len(), 1, "only the bare mirror is left");
    fx.fsck(&mirror);
}

#[test]
fn remove_refuses_unsaved_work_and_respects_locks() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    let mirror = fx.mirror("app");
    let req = fx.request(&up, "app", 1);
    fx.create(&req).unwrap();
    let backend = fx.backend();

    std::fs::write(req.path.join("scratch"), "x").unwrap();
    assert_eq!(backend.unsaved_work(&req.path).unwrap().changed_files, vec!["scratch".to_string()]);
    match backend.remove(&req.path, RemoveOptions::default()) {
        Err(WorktreeError::WouldLoseWork { unsaved, .. }) => {
            assert_eq!(unsaved.changed_files, ["scratch"])
        }
        other => panic!("expected WouldLoseWork, got {other:?}"),
    }
    assert!(req.path.join("scratch").exists());

    fx.git(
        &mirror,
        &["worktree", "lock", "--reason", "on a usb disk", &req.path.to_string_lossy()],
    );
    match backend.remove(&req.path, RemoveOptions::default()) {
        Err(WorktreeError::Locked { path, reason }) => {
            assert_eq!(path, req.path);
            assert_eq!(reason.as_deref(), Some("on a usb disk"));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(backend.list().unwrap().iter().any(|i| i.path == req.path && i.locked));

    backend.remove(&req.path, RemoveOptions { force: true, delete_branch: true }).unwrap();
    assert!(!req.path.exists());
    assert!(!fx.branch_exists(&mirror, "fix/issue-1"));
    match backend.remove(&req.path, RemoveOptions::default()) {
        Err(WorktreeError::NoSuchWorktree { path }) => assert_eq!(path, req.path),
        other => panic!("expected NoSuchWorktree, got {other:?}"),
    }
}

#[test]
fn prune_drops_registrations_of_deleted_directories() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    let mirror = fx.mirror("app");
    let gone = fx.request(&up, "app", 1);
    let kept = fx.request(&up, "app", 2);
    fx.create(&gone).unwrap();
    fx.create(&kept).unwrap();
    std::fs::remove_dir_all(&gone.path).unwrap();

    let backend = fx.backend();
    let listed = backend.list().unwrap();
    assert!(listed.iter().any(|i| i.path == gone.path && i.prunable), "{listed:?}");
    assert!(listed.iter().any(|i| i.path == kept.path && !i.prunable), "{listed:?}");
    assert_eq!(backend.prune().unwrap(), vec![gone.path.clone()]);
    let paths: Vec<_> = fx.git_worktrees(&mirror).into_iter().map(|(p, _)| p).collect();
    assert!(!paths.contains(&gone.path) && paths.contains(&kept.path), "{paths:?}");
    assert!(backend.prune().unwrap().is_empty());

    // The issue can be started again at the same path.
    fx.create(&gone).expect("recreate after prune");
    assert_eq!(fx.status(&gone.path), "");
}

#[test]
fn repository_with_a_submodule() {
    let fx = Fixture::new();
    let lib = fx.upstream("lib", &[("lib.txt", "lib\n")]);
    let up = fx.upstream("app", &[("a", "1\n")]);
    fx.git(
        &up,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            &lib.to_string_lossy(),
            "vendor/lib",
        ],
    );
    fx.git(&up, &["commit", "-q", "-m", "add submodule"]);

    let req = fx.request(&up, "app", 1);
    fx.create(&req).expect("create with submodule");
    assert_eq!(fx.status(&req.path), "");
    assert!(req.path.join(".gitmodules").exists());
    assert!(req.path.join("vendor/lib").is_dir());
    // The submodule can be initialised by git afterwards.
    fx.git(&req.path, &["-c", "protocol.file.allow=always", "submodule", "update", "--init", "-q"]);
    assert!(req.path.join("vendor/lib/lib.txt").exists());
    fx.fsck(&fx.mirror("app"));

    // Work inside the initialized submodule counts as work that would be lost.
    std::fs::write(req.path.join("vendor/lib/lib.txt"), "edited\n").unwrap();
    let unsaved = fx.backend().unsaved_work(&req.path).unwrap();
    assert_eq!(unsaved.changed_files, ["vendor/lib"], "{unsaved:?}");
    assert!(matches!(fx.create(&req), Err(WorktreeError::WouldLoseWork { .. })));
    assert_eq!(std::fs::read_to_string(req.path.join("vendor/lib/lib.txt")).unwrap(), "edited\n");

    // Even clean, an initialized submodule is only removed with force, as git does.
    fx.git(&req.path.join("vendor/lib"), &["checkout", "-q", "--", "."]);
    assert!(fx.backend().unsaved_work(&req.path).unwrap().is_empty());
    match fx.backend().remove(&req.path, RemoveOptions::default()) {
        Err(WorktreeError::WouldLoseWork { unsaved, .. }) => {
            assert_eq!(unsaved.changed_files, ["(an initialized submodule)"]);
        }
        other => panic!("expected WouldLoseWork, got {other:?}"),
    }
    fx.backend().remove(&req.path, RemoveOptions { force: true, delete_branch: true }).unwrap();
    assert!(!req.path.exists());
}

#[test]
fn concurrent_creates_on_one_repository_serialize() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n"), ("dir/b", "2\n")]);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=4)
            .map(|i| {
                let req = fx.request(&up, "app", i);
                let fx = &fx;
                s.spawn(move || fx.create(&req))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        r.as_ref().expect("every concurrent create succeeds");
    }
    let mirror = fx.mirror("app");
    fx.fsck(&mirror);
    assert_eq!(fx.git_worktrees(&mirror).len(), 5);
    for i in 1..=4 {
        assert_eq!(fx.status(&fx.request(&up, "app", i).path), "");
    }
}

#[derive(Default)]
struct Recorder {
    phases: Vec<WorktreePhase>,
    totals: Vec<Option<u64>>,
    last_done: Vec<Option<u64>>,
    finished: usize,
}
impl WorktreeProgress for Recorder {
    fn phase(&mut self, phase: WorktreePhase, total: Option<u64>) {
        self.phases.push(phase);
        self.totals.push(total);
        self.last_done.push(None);
    }
    fn advance(&mut self, done: u64) {
        if let Some(last) = self.last_done.last_mut() {
            *last = Some(done);
        }
    }
    fn finish(&mut self) {
        self.finished += 1;
    }
}

#[test]
fn progress_reports_clone_fetch_and_checkout() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n"), ("b/c", "2\n"), ("b/d", "3\n")]);
    let backend = fx.backend();
    let mut rec = Recorder::default();
    backend.create(&fx.request(&up, "app", 1), &mut rec, &AtomicBool::new(false)).unwrap();
    assert_eq!(rec.phases, [WorktreePhase::Clone, WorktreePhase::Checkout]);
    assert_eq!(rec.finished, 2);
    assert_eq!(rec.totals[1], Some(3), "checkout announces the number of files");
    assert_eq!(rec.last_done[1], Some(3), "and reports all of them done");
    let mut rec = Recorder::default();
    backend.create(&fx.request(&up, "app", 2), &mut rec, &AtomicBool::new(false)).unwrap();
    assert_eq!(rec.phases, [WorktreePhase::Fetch, WorktreePhase::Checkout]);
}

/// Sets the interrupt flag as soon as checkout starts.
struct InterruptAt<'a>(WorktreePhase, &'a AtomicBool);
impl WorktreeProgress for InterruptAt<'_> {
    fn phase(&mut self, phase: WorktreePhase, _total: Option<u64>) {
        if phase == self.0 {
            self.1.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn interruption_leaves_no_worktree_or_branch() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    let backend = fx.backend();
    let mirror = fx.mirror("app");

    let flag = AtomicBool::new(true);
    let req = fx.request(&up, "app", 1);
    assert!(matches!(
        backend.create(&req, &mut NoProgress, &flag),
        Err(WorktreeError::Interrupted)
    ));
    assert!(!mirror.exists(), "an interrupted first clone leaves no mirror");
    assert!(!req.path.exists());

    let flag = AtomicBool::new(false);
    let res = backend.create(&req, &mut InterruptAt(WorktreePhase::Checkout, &flag), &flag);
    assert!(matches!(res, Err(WorktreeError::Interrupted)), "{res:?}");
    assert!(!req.path.exists(), "no half-made worktree");
    assert!(!fx.branch_exists(&mirror, "fix/issue-1"), "no branch left behind");
    assert_eq!(fx.git_worktrees(&mirror).len(), 1);
    fx.fsck(&mirror);

    // And afterwards it works.
    fx.create(&req).unwrap();
    assert_eq!(fx.status(&req.path), "");
}

#[test]
fn bad_requests_are_refused_with_what_is_wrong() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    let mut req = fx.request(&up, "app", 1);
    req.path = "relative/wt".into();
    assert!(fx.create(&req).unwrap_err().to_string().contains("relative/wt"));

    let mut req = fx.request(&up, "../escape", 1);
    req.path = fx.worktree("x");
    let err = fx.create(&req).unwrap_err();
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(text.contains("../escape"), "{text}");

    let mut req = fx.request(&up, "app", 1);
    req.branch = "bad..name".into();
    assert!(fx.create(&req).unwrap_err().to_string().contains("bad..name"));

    let mut req = fx.request(&up, "app", 1);
    req.source.url = "https://user:hunter2@example.invalid/o/r.git".into();
    let err = fx.create(&req).unwrap_err();
    let text = format!("{err:?} {err}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn worktrees_half_made_by_killed_processes_are_replaced() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n"), ("b", "2\n")]);
    let mirror = fx.mirror("app");
    let req = fx.request(&up, "app", 1);
    fx.create(&req).unwrap();
    // What a process killed in the middle of checkout leaves: the registration locked
    // "initializing" (as gix and git do while adding) and only part of the files.
    let admin = mirror.join("worktrees").join(req.path.file_name().unwrap());
    assert!(admin.is_dir(), "registration at {}", admin.display());
    std::fs::write(admin.join("locked"), "initializing\n").unwrap();
    std::fs::remove_file(req.path.join("b")).unwrap();

    fx.create(&req).expect("a half-made worktree is replaced without force");
    assert_eq!(fx.status(&req.path), "");
    assert!(req.path.join("b").exists());
    assert!(fx.backend().list().unwrap().iter().all(|i| !i.locked));

    // Likewise a removal killed after the checkout was partly deleted.
    std::fs::write(admin.join("locked"), "kugetsu: removing\n").unwrap();
    std::fs::remove_file(req.path.join("a")).unwrap();
    fx.create(&req).expect("a half-removed worktree is replaced without force");
    assert_eq!(fx.status(&req.path), "");
    std::fs::write(admin.join("locked"), "kugetsu: removing\n").unwrap();
    std::fs::remove_file(req.path.join("a")).unwrap();
    fx.backend().remove(&req.path, RemoveOptions::default()).expect("and its removal is finished");
    assert!(!req.path.exists() && !admin.exists());
    fx.create(&req).unwrap();

    // A lock with any other reason is the user's and is respected.
    std::fs::write(admin.join("locked"), "on a usb disk\n").unwrap();
    assert!(matches!(fx.create(&req), Err(WorktreeError::Locked { .. })));
    let mut forced = req.clone();
    forced.force = true;
    fx.create(&forced).expect("force overrides the user's lock");
    assert!(fx.backend().list().unwrap().iter().all(|i| !i.locked));
}

#[test]
fn the_lock_is_per_repository() {
    let fx = Fixture::new();
    let a = fx.upstream("a", &[("a", "1\n")]);
    let b = fx.upstream("b", &[("b", "1\n")]);
    let lock_a = fx.state().join("locks/mirror-a.lock");
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let lock_a = &lock_a;
        s.spawn(move || {
            let r: Result<(), kugetsu_core::storage::StorageError> =
                kugetsu_core::storage::with_exclusive_lock(lock_a, || {
                    held_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    Ok(())
                });
            r.unwrap();
        });
        held_rx.recv().unwrap();
        // Another process holds repository a: b proceeds, a waits.
        let waiting = s.spawn(|| fx.create(&fx.request(&a, "a", 1)));
        fx.create(&fx.request(&b, "b", 1)).expect("b does not wait for a");
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!waiting.is_finished(), "a waits for its lock");
        assert!(!fx.mirror("a").exists());
        release_tx.send(()).unwrap();
        waiting.join().unwrap().expect("a proceeds once the lock is free");
    });
    assert_eq!(fx.status(&fx.request(&a, "a", 1).path), "");
}

#[test]
fn waiting_for_the_lock_can_be_interrupted() {
    let fx = Fixture::new();
    let a = fx.upstream("a", &[("a", "1\n")]);
    let lock_a = fx.state().join("locks/mirror-a.lock");
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let flag = AtomicBool::new(false);
    std::thread::scope(|s| {
        let lock_a = &lock_a;
        s.spawn(move || {
            let r: Result<(), kugetsu_core::storage::StorageError> =
                kugetsu_core::storage::with_exclusive_lock(lock_a, || {
                    held_tx.send(()).unwrap();
                    // Released by the test, or after a while so a broken build fails, not hangs.
                    let _ = release_rx.recv_timeout(std::time::Duration::from_secs(20));
                    Ok(())
                });
            r.unwrap();
        });
        held_rx.recv().unwrap();
        let waiting =
            s.spawn(|| fx.backend().create(&fx.request(&a, "a", 1), &mut NoProgress, &flag));
        std::thread::sleep(std::time::Duration::from_millis(200));
        flag.store(true, Ordering::SeqCst);
        let result = waiting.join().unwrap();
        release_tx.send(()).unwrap();
        assert!(matches!(result, Err(WorktreeError::Interrupted)), "{result:?}");
    });
    assert!(!fx.mirror("a").exists());
}

#[test]
fn a_clone_abandoned_by_a_killed_process_is_swept() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    let partial = fx.mirrors().join(".app.git.partial-999999");
    std::fs::create_dir_all(partial.join("objects")).unwrap();
    fx.create(&fx.request(&up, "app", 1)).unwrap();
    assert!(!partial.exists());
    let names: Vec<_> =
        std::fs::read_dir(fx.mirrors()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["app.git"]);
}
