//! Helpers shared by the integration tests of every kugetsu crate.
//!
//! One place for what more than one crate's tests need and no crate's code does: the real
//! `git` program run hermetically (a fixture maker and an oracle, never what kugetsu itself
//! uses), and the name the test harness gives a test, for tests that re-run one of their own
//! tests in a child process. It depends on nothing but the standard library and serde_json,
//! so that linking it costs a test binary next to nothing.

pub mod forge;
pub mod npm;

use std::path::Path;
use std::process::{Command, Stdio};

/// A `git` command in `dir` that sees nothing of the machine's user: the environment cleared
/// but for `PATH`, `HOME` set to `home` (whose `.gitconfig`, if any, is the only one read), no
/// system configuration, no prompt for credentials, the C locale (stable messages), stdin
/// closed. Add the arguments and run it.
pub fn git_command(dir: &Path, home: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    cmd
}

/// Runs `git args...` hermetically in `dir` (which is also its `HOME`), with a committer
/// identity and `main` as the default branch given on the command line; returns stdout and
/// fails the test, with git's stderr, when git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_command(dir, dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run git {args:?}: {e}"));
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The name the test harness knows test `test` of module `module_path` by (pass
/// `module_path!()`): its path without the crate's name, as `--exact` wants it. A test file
/// `mod`ded by a runner is a module of it, so its tests are `file::test`, not `test`.
pub fn harness_name(module_path: &str, test: &str) -> String {
    match module_path.split_once("::") {
        Some((_crate, module)) => format!("{module}::{test}"),
        None => test.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_names_drop_the_crate() {
        assert_eq!(harness_name("runner::crash", "kill"), "crash::kill");
        assert_eq!(harness_name("runner::a::b", "t"), "a::b::t");
        assert_eq!(harness_name("crash", "kill"), "kill");
    }

    #[test]
    fn git_sees_no_user_settings() {
        let dir = std::env::temp_dir().join(format!("kugetsu-test-support-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        git(&dir, &["init", "-q"]);
        assert_eq!(git(&dir, &["config", "user.name"]).trim(), "t");
        assert_eq!(git(&dir, &["symbolic-ref", "HEAD"]).trim(), "refs/heads/main");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
