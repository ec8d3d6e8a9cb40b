//! A worktree's unsaved work carried to another host's mirror of the same repository: its
//! unpushed commits (ids kept) and its uncommitted files arrive as they were, with the real
//! `git` as the oracle (what was staged arrives unstaged); over the cap it is refused; a carried path cannot leave the worktree.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use crate::support;

use std::os::unix::fs::PermissionsExt;

use kugetsu_git::{CarriedFile, CarryError, WorktreeCarry, restore_carry, save_carry};
use support::Fixture;

#[test]
fn unsaved_work_round_trips_to_another_hosts_worktree() {
    let here = Fixture::new();
    let up = here.upstream("app", &[("README.md", "hello\n"), ("old.txt", "to delete\n")]);
    let req = here.request(&up, "app", 7);
    here.create(&req).unwrap();
    let wt = &req.path;
    // Two commits the remote does not have, then uncommitted work of every kind.
    here.commit_files(wt, &[("src/a.rs", "fn a() {}\n")], "first");
    here.commit_files(wt, &[("src/b.rs", "fn b() {}\n"), ("README.md", "hello again\n")], "second");
    std::fs::write(wt.join("README.md"), "changed, not committed\n").unwrap();
    std::fs::write(wt.join("new.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(wt.join("new.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(wt.join("deep/er")).unwrap();
    std::fs::write(wt.join("deep/er/WORK.md"), "untracked\n").unwrap();
    std::fs::remove_file(wt.join("old.txt")).unwrap();
    std::fs::write(wt.join("staged.txt"), "staged\n").unwrap();
    here.git(wt, &["add", "staged.txt"]);
    // Meanwhile the remote moves on: the other host starts from a newer base.
    here.commit_files(&up, &[("upstream.txt", "later\n")], "upstream moved");

    let carry = save_carry(wt, 1 << 20).unwrap();
    assert_eq!(carry.objects.iter().filter(|o| o.kind == "commit").count(), 2, "{carry:?}");
    let json = serde_json::to_string(&carry).unwrap();
    let carry: WorktreeCarry = serde_json::from_str(&json).unwrap();

    let there = Fixture::new();
    let req2 = there.request(&up, "app", 7);
    there.create(&req2).unwrap();
    let wt2 = &req2.path;
    restore_carry(wt2, &carry).unwrap();

    assert_eq!(there.rev(wt2, "HEAD"), here.rev(wt, "HEAD"), "the very commits, ids kept");
    let log = |fx: &Fixture, wt: &std::path::Path| fx.git(wt, &["log", "--format=%H %s"]);
    assert_eq!(log(&there, wt2), log(&here, wt));
    // The index is not carried: what was staged arrives as untracked.
    let status = here.status(wt).replace("A  staged.txt\n", "");
    let status2 = there.status(wt2).replace("?? staged.txt\n", "");
    assert_eq!(status2, status, "the same uncommitted work");
    for f in ["README.md", "new.sh", "deep/er/WORK.md", "src/a.rs", "src/b.rs", "staged.txt"] {
        assert_eq!(std::fs::read(wt2.join(f)).unwrap(), std::fs::read(wt.join(f)).unwrap(), "{f}");
    }
    assert!(!wt2.join("old.txt").exists());
    assert!(!wt2.join("upstream.txt").exists(), "the branch is where it was, not on the new base");
    let mode = std::fs::metadata(wt2.join("new.sh")).unwrap().permissions().mode();
    assert_ne!(mode & 0o111, 0, "new.sh stays executable");
    there.fsck(&there.mirror("app"));
}

#[test]
fn a_carry_over_its_cap_is_refused_and_paths_stay_inside() {
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("README.md", "hello\n")]);
    let req = fx.request(&up, "app", 1);
    fx.create(&req).unwrap();
    std::fs::write(req.path.join("big.txt"), "x".repeat(4096)).unwrap();
    match save_carry(&req.path, 1024) {
        Err(CarryError::TooBig { size, cap: 1024, .. }) => assert!(size > 4096),
        other => panic!("{other:?}"),
    }
    let clean = save_carry(&req.path, 1 << 20).unwrap();
    for bad in ["../escape.txt", "/etc/passwd", ".git/config", "a/../../b"] {
        let mut carry = clean.clone();
        carry.files = vec![CarriedFile {
            path: bad.into(),
            content: Some("eA==".into()),
            executable: false,
            symlink: false,
        }];
        assert!(matches!(restore_carry(&req.path, &carry), Err(CarryError::BadPath(_))), "{bad}");
    }
    assert!(!fx.worktree("escape.txt").exists());
}
