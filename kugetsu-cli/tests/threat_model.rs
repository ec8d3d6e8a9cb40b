//! The promises of `docs/threat-model.md` that no other suite holds, one test each (the
//! dashboard's are in `dashboard.rs` and `browser.rs`, the SSH script's in `remote_ssh.rs`).

#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use support::Env;

fn is_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// A directory another local user could have prepared for the demo, with the `bin/opencode`
/// the demo would run planted in it once the demo made `bin/`: refused before anything runs.
fn refused(env: &Env, dir: &Path, why: &str) {
    let out = env.run(&["demo", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains(why), "{why:?} missing in {}", out.stderr);
    assert!(!out.stdout.contains("[1]"), "no step ran: {}", out.stdout);
    assert!(!dir.join("bin").exists() && !dir.join("state").exists(), "nothing was made");
}

/// The demo runs the `bin/opencode` of its scratch directory: a directory in the shared temp
/// dir whose name another user can guess (and make first) would let them run anything as the
/// demo's user. So the default is a fresh, random, private directory made by a call that fails
/// if the name exists, and `--dir` takes only a new directory or an empty one of the user's
/// own that others cannot write to.
#[test]
fn the_demo_works_only_in_a_directory_nobody_else_can_have_prepared() {
    let mut env = Env::new();
    let shared = env.tmp.path().join("shared-tmp");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, PermissionsExt::from_mode(0o1777)).unwrap();
    env.set("TMPDIR", shared.to_str().unwrap());

    let writable = shared.join("writable");
    std::fs::create_dir(&writable).unwrap();
    std::fs::set_permissions(&writable, PermissionsExt::from_mode(0o777)).unwrap();
    refused(&env, &writable, "lets others write to it");
    let link = shared.join("link");
    let mine = env.tmp.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::os::unix::fs::symlink(&mine, &link).unwrap();
    refused(&env, &link, "is a symbolic link");
    if is_root() {
        let theirs = shared.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(&theirs, PermissionsExt::from_mode(0o755)).unwrap();
        refused(&env, &theirs, "owned by uid 65534");
    }

    let out = env.run(&["demo", "--keep"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let made = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("kugetsu demo: the whole flow in "))
        .map(std::path::PathBuf::from)
        .unwrap();
    assert_eq!(made.parent(), Some(shared.as_path()), "in the temp dir it was given");
    let name = made.file_name().unwrap().to_str().unwrap();
    let rest = name.strip_prefix("kugetsu-demo-").unwrap();
    assert!(!rest.contains(&std::process::id().to_string()) && !rest.contains('-'), "{name}");
    let meta = std::fs::symlink_metadata(&made).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o7777, 0o700, "private");
    assert_eq!(meta.uid(), std::fs::metadata("/proc/self").unwrap().uid());
    std::fs::remove_dir_all(&made).unwrap();
}
