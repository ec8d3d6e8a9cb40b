//! `ssh://` and scp-like remotes go through the system `ssh`, which must never prompt.
//!
//! The `ssh` here is a stand-in script first on `PATH`: it records its arguments and runs the
//! remote command (`git-upload-pack '<path>'`) locally, which is all git's ssh transport asks of
//! `ssh`. Since `PATH` and `GIT_SSH_COMMAND` of a running test must not change (other tests run
//! in parallel threads), each case re-runs this test binary with its own environment.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use kugetsu_core::worktree::{NoProgress, WorktreeError, Worktrees};
use kugetsu_git::{Committer, GitConfig, GitWorktrees};
use support::Fixture;

const CHILD_DIR: &str = "KUGETSU_SSH_TEST_DIR";
const CHILD_EXPECT: &str = "KUGETSU_SSH_TEST_EXPECT";
const LOG: &str = "KUGETSU_FAKE_SSH_LOG";
const REFUSE: &str = "KUGETSU_FAKE_SSH_REFUSE";

const FAKE_SSH: &str = r#"#!/bin/sh
# Records its arguments, skips ssh's options and the host, runs the remote command here.
printf '%s\n' "$*" >> "$KUGETSU_FAKE_SSH_LOG"
if [ -n "$KUGETSU_FAKE_SSH_REFUSE" ]; then
  printf '%s\r\n' "$KUGETSU_FAKE_SSH_REFUSE" >&2
  exit 255
fi
while [ $# -gt 0 ]; do
  case "$1" in
    -o) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
shift
PATH="$(git --exec-path):$PATH" exec sh -c "$*"
"#;

fn write_fake_ssh(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("ssh");
    std::fs::write(&path, FAKE_SSH).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs the `ssh_child` test in a fresh process with `PATH` starting at the stand-in `ssh`.
fn run_child(expect: &str, user_command: Option<&Path>, refuse: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    write_fake_ssh(&dir.path().join("bin"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![dir.path().join("bin")];
    paths.extend(std::env::split_paths(&path));
    support::run_child_test(module_path!(), "ssh_child", |cmd| {
        cmd.env(CHILD_DIR, dir.path())
            .env(CHILD_EXPECT, expect)
            .env(LOG, dir.path().join("ssh.log"))
            .env("PATH", std::env::join_paths(paths).unwrap())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GIT_SSH")
            .env_remove("GIT_SSH_COMMAND");
        if let Some(command) = user_command {
            cmd.env("GIT_SSH_COMMAND", command);
        }
        if let Some(message) = refuse {
            cmd.env(REFUSE, message);
        }
    });
}

#[test]
fn ssh_remotes_run_ssh_in_batch_mode() {
    run_child("batch", None, None);
}

/// Where batch mode refuses instead of prompting, the error names the remote: a refused key is
/// an authentication error; for what gix does not recognize (an unknown host key, which ssh
/// reports on stderr) the connection's early end is reported as such. The CLI adds a hint.
#[test]
fn an_ssh_refusal_names_the_remote() {
    run_child("refused", None, Some("git@git.example.invalid: Permission denied (publickey)."));
    run_child("closed", None, Some("Host key verification failed."));
}

#[test]
fn a_user_chosen_ssh_command_is_used_as_is() {
    let own = tempfile::tempdir().unwrap();
    write_fake_ssh(own.path());
    run_child("custom", Some(&own.path().join("ssh")), None);
}

#[test]
#[ignore = "run by the tests above, each with its own PATH and GIT_SSH_COMMAND"]
fn ssh_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR).map(PathBuf::from) else { return };
    let expect = std::env::var(CHILD_EXPECT).unwrap();
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n"), ("dir/b", "2\n")]);
    let backend = GitWorktrees::new(
        fx.mirrors(),
        fx.state().join("locks"),
        Committer::new("kugetsu test", "kugetsu@example.invalid"),
    )
    .with_git_config(GitConfig::User);
    let no = AtomicBool::new(false);

    let mut req = fx.request(&up, "app", 1);
    req.source.url = format!("ssh://git.example.invalid{}", up.display());
    if expect == "refused" || expect == "closed" {
        match backend.create(&req, &mut NoProgress, &no) {
            Err(WorktreeError::AuthFailed { url }) if expect == "refused" => {
                assert_eq!(url, req.source.url)
            }
            Err(WorktreeError::SshFailed { url }) if expect == "closed" => {
                assert_eq!(url, req.source.url)
            }
            other => panic!("expected {expect}, got {other:?}"),
        }
        assert!(!fx.mirror("app").exists());
        assert!(!req.path.exists());
        return;
    }
    let info = backend.create(&req, &mut NoProgress, &no).expect("clone over ssh://");
    assert_eq!(info.head.as_deref(), Some(fx.rev(&up, "main").as_str()));
    assert_eq!(fx.status(&req.path), "");

    let newer = fx.commit_files(&up, &[("a", "3\n")], "newer");
    let mut second = fx.request(&up, "app", 2);
    // The scp-like form of the same remote: the fetch goes through ssh too.
    second.source.url = format!("git.example.invalid:{}", up.display());
    let info = backend.create(&second, &mut NoProgress, &no).expect("fetch over scp-like ssh");
    assert_eq!(info.head.as_deref(), Some(newer.as_str()));
    fx.fsck(&fx.mirror("app"));

    let log = std::fs::read_to_string(dir.join("ssh.log")).unwrap();
    let calls: Vec<&str> = log.lines().filter(|l| l.contains("git-upload-pack")).collect();
    assert_eq!(calls.len(), 2, "{log}");
    for call in &calls {
        assert!(call.contains("git.example.invalid"), "{log}");
        match expect.as_str() {
            "batch" => assert!(call.contains("-o BatchMode=yes"), "{log}"),
            _ => assert!(!call.contains("BatchMode"), "{log}"),
        }
    }
    // Only in memory: the mirror's configuration does not change how `git` itself runs ssh.
    let config = std::fs::read_to_string(fx.mirror("app").join("config")).unwrap();
    assert!(!config.contains("sshCommand"), "{config}");
}
