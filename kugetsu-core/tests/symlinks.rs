//! Symlinks planted in the state directory: kugetsu never follows them. Reads refuse with an
//! error naming the link, writes refuse and leave the target untouched, and pruning never
//! deletes anything outside the worktrees root, whether the link is a state file, a worktree
//! entry, something inside a leftover worktree, or a whole sub-directory of the state
//! directory.

// Test helpers unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use kugetsu_core::agent::NoEvents;
use kugetsu_core::config::Config;
use kugetsu_core::env_file::EnvFiles;
use kugetsu_core::notify::{NewNotification, NotificationType, Notifications};
use kugetsu_core::orchestrator::{Orchestrator, StartOptions};
use kugetsu_core::worktree::{NoProgress, RepoSource};
use kugetsu_core::{Index, IssueRef, StateDir, storage};

struct Env {
    tmp: tempfile::TempDir,
    state: StateDir,
    orch: Orchestrator,
}

impl Env {
    /// A directory outside the state directory with files that must survive.
    fn outside(&self) -> PathBuf {
        let dir = self.tmp.path().join("outside");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("precious.txt"), "precious").unwrap();
        std::fs::write(dir.join("sub").join("deep.txt"), "deep").unwrap();
        dir
    }

    /// An outside file standing in for /etc/passwd (never the real one: a broken build would
    /// overwrite it).
    fn outside_file(&self) -> PathBuf {
        let path = self.tmp.path().join("passwd");
        std::fs::write(&path, "root:x:0:0::/root:/bin/sh\n").unwrap();
        path
    }

    fn start(&self, n: u32) -> Result<(), String> {
        let issue = issue(n);
        let opts = StartOptions {
            source: RepoSource {
                url: "https://example.invalid/o/r.git".into(),
                mirror_key: issue.repo().mirror_key(),
                token: None,
            },
            issue,
            message: "go".into(),
            base_ref: None,
            force: false,
        };
        self.orch
            .start(&opts, &mut NoProgress, &AtomicBool::new(false), &mut NoEvents)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn issue(n: u32) -> IssueRef {
    IssueRef::parse(&format!("github.com/o/r#{n}")).unwrap()
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path().join("state"));
    let orch = common::initialized_orchestrator(&state);
    Env { tmp, state, orch }
}

/// Every file under `dir` with its bytes, to prove nothing there changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn replace_with_link(path: &Path, target: &Path) {
    if path.is_dir() {
        std::fs::remove_dir_all(path).unwrap();
    } else {
        let _ = std::fs::remove_file(path);
    }
    symlink(target, path).unwrap();
}

#[test]
fn a_linked_index_is_neither_read_nor_written() {
    let e = env();
    let passwd = e.outside_file();
    replace_with_link(&e.state.index_path(), &passwd);
    let shown = e.state.index_path().display().to_string();
    let err = e.orch.read_index().unwrap_err();
    assert!(err.to_string().contains(&shown) && err.to_string().contains("symbolic link"));
    let err = e.orch.list().unwrap_err().to_string();
    assert!(err.contains(&shown), "{err}");
    let err = e.start(1).unwrap_err();
    assert!(err.contains(&shown), "{err}");
    let err = storage::write_json(&e.state.index_path(), &Index::default()).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    let findings = e.orch.doctor(true, true).unwrap();
    assert!(findings.iter().any(|f| f.problem.contains("symbolic link")), "{findings:?}");
    assert_eq!(std::fs::read_to_string(&passwd).unwrap(), "root:x:0:0::/root:/bin/sh\n");
    assert!(e.state.index_path().symlink_metadata().unwrap().file_type().is_symlink());
}

#[test]
fn a_linked_session_file_is_reported_and_its_target_untouched() {
    let e = env();
    e.start(1).unwrap();
    e.start(2).unwrap();
    let target = e.outside_file();
    let path = e.state.issue_session_path(&issue(1));
    replace_with_link(&path, &target);
    let list = e.orch.list().unwrap();
    let one = list.iter().find(|l| l.issue_ref == issue(1).to_string()).unwrap();
    let problem = one.problem.as_deref().unwrap_or_default();
    assert!(problem.contains("symbolic link"), "{list:?}");
    let two = list.iter().find(|l| l.issue_ref == issue(2).to_string()).unwrap();
    assert!(two.problem.is_none() && two.state.is_some(), "the other session is still listed");
    let err = e.orch.continue_issue(&issue(1), "more", &mut NoEvents).unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");
    let err = e.orch.destroy_issue(&issue(1), true).unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");
    let _ = e.orch.doctor(true, true).unwrap();
    let _ = e.orch.prune(true).unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "root:x:0:0::/root:/bin/sh\n");
    // The base session file too.
    replace_with_link(&e.state.base_session_path(), &target);
    // Starting an issue needs only the base id from the index; whatever it does, it neither
    // follows nor replaces the link, and doctor reports it.
    let _ = e.start(3);
    assert!(e.state.base_session_path().symlink_metadata().unwrap().file_type().is_symlink());
    let findings = e.orch.doctor(true, true).unwrap();
    assert!(findings.iter().any(|f| f.problem.contains("symbolic link")), "{findings:?}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "root:x:0:0::/root:/bin/sh\n");
}

#[test]
fn linked_env_notification_and_config_files_are_refused() {
    let e = env();
    let target = e.outside_file();
    let envs = EnvFiles::new(&e.state);
    envs.set("A", "1", "default").unwrap();
    replace_with_link(&envs.path("default").unwrap(), &target);
    assert!(envs.load("default").unwrap_err().to_string().contains("symbolic link"));
    assert!(envs.set("B", "2", "default").unwrap_err().to_string().contains("symbolic link"));
    let notes = Notifications::new(&e.state);
    replace_with_link(notes.path(), &target);
    let new =
        NewNotification { kind: NotificationType::TaskError, message: "x".into(), issue_ref: None };
    let err = notes.add(new, time::macros::datetime!(2026-11-23 12:00 UTC)).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(notes.list(false).is_err());
    replace_with_link(&e.state.config_path(), &target);
    let err = Config::load(&e.state, Path::new("/home/u"), &|_| None, &[]).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "root:x:0:0::/root:/bin/sh\n");
}

#[test]
fn a_linked_env_directory_is_refused() {
    let e = env();
    let outside = e.outside();
    let before = snapshot(&outside);
    replace_with_link(&e.state.env_dir(), &outside);
    let envs = EnvFiles::new(&e.state);
    let err = envs.set("A", "1", "default").unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(snapshot(&outside), before);
}

#[test]
fn prune_never_deletes_outside_the_worktrees_root() {
    let e = env();
    e.start(1).unwrap();
    let outside = e.outside();
    let before = snapshot(&outside);
    // A link as a worktree entry, a leftover worktree holding links to outside, and a link in
    // place of a known issue's worktree.
    symlink(&outside, e.state.worktrees_dir().join("evil")).unwrap();
    let leftover = e.state.worktrees_dir().join("leftover");
    std::fs::create_dir_all(&leftover).unwrap();
    symlink(&outside, leftover.join("link-to-dir")).unwrap();
    symlink(outside.join("precious.txt"), leftover.join("link-to-file")).unwrap();
    let report = e.orch.prune(true).unwrap();
    assert!(report.removed);
    assert!(!leftover.exists() && e.state.worktrees_dir().join("evil").symlink_metadata().is_err());
    assert_eq!(snapshot(&outside), before, "nothing outside the worktrees root was deleted");
    let known = e.state.worktree_path(&issue(1));
    replace_with_link(&known, &outside);
    let _ = e.orch.prune(true);
    let _ = e.orch.destroy_issue(&issue(1), true);
    assert_eq!(snapshot(&outside), before, "nothing outside the worktrees root was deleted");
}

#[test]
fn a_linked_worktrees_directory_is_never_pruned_through() {
    let e = env();
    let outside = e.outside();
    let before = snapshot(&outside);
    replace_with_link(&e.state.worktrees_dir(), &outside);
    let result = e.orch.prune(true);
    assert_eq!(snapshot(&outside), before, "prune deleted through a linked worktrees/: {result:?}");
    let err = result.unwrap_err().to_string();
    assert!(err.contains("symbolic link") && err.contains("worktrees"), "{err}");
    let findings = e.orch.doctor(true, true).unwrap();
    assert!(findings.iter().any(|f| f.problem.contains("worktrees")), "{findings:?}");
    assert_eq!(snapshot(&outside), before);
}

#[test]
fn a_linked_sessions_directory_is_never_written_through() {
    let e = env();
    let outside = e.outside();
    let before = snapshot(&outside);
    replace_with_link(&e.state.sessions_dir(), &outside);
    let err = e.start(1).unwrap_err();
    assert!(err.contains("symbolic link"), "{err}");
    let _ = e.orch.prune(true);
    let findings = e.orch.doctor(true, true).unwrap();
    assert!(findings.iter().any(|f| f.problem.contains("symbolic link")), "{findings:?}");
    assert_eq!(snapshot(&outside), before, "nothing was written or deleted through the link");
}
