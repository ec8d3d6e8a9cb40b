//! Fixture repositories made with the real `git` program in a hermetic environment, and helpers
//! to ask `git` (as an oracle) about what kugetsu made.

#![allow(dead_code)]

pub mod http;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::AtomicBool;

use kugetsu_core::worktree::{
    NoProgress, RepoSource, WorktreeError, WorktreeInfo, WorktreeRequest, Worktrees,
};
use kugetsu_git::{Committer, GitConfig, GitWorktrees};

/// A temporary world: a HOME for git, upstream repositories and a kugetsu state directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let fx = Fixture { dir };
        std::fs::create_dir_all(fx.home()).unwrap();
        std::fs::write(
            fx.home().join(".gitconfig"),
            "[user]\n\tname = Fixture\n\temail = fixture@example.invalid\n\
             [init]\n\tdefaultBranch = main\n[protocol \"file\"]\n\tallow = always\n\
             [advice]\n\tdetachedHead = false\n",
        )
        .unwrap();
        fx
    }
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }
    pub fn state(&self) -> PathBuf {
        self.root().join("state")
    }
    pub fn mirrors(&self) -> PathBuf {
        self.state().join("mirrors")
    }
    pub fn worktree(&self, name: &str) -> PathBuf {
        self.state().join("worktrees").join(name)
    }
    pub fn backend(&self) -> GitWorktrees {
        GitWorktrees::new(
            self.mirrors(),
            self.state().join("locks"),
            Committer::new("kugetsu test", "kugetsu@example.invalid"),
        )
        .with_git_config(GitConfig::Isolated)
    }

    /// Runs git with a cleared environment; panics with its output on failure.
    pub fn git(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.git_output(cwd, args);
        assert!(
            out.status.success(),
            "git {args:?} in {} failed:\n{}{}",
            cwd.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn git_output(&self, cwd: &Path, args: &[&str]) -> Output {
        kugetsu_test_support::git_command(cwd, &self.home()).args(args).output().expect("run git")
    }

    /// A non-bare upstream repository `name` with one commit of `files` (path, content).
    pub fn upstream(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.root().join("upstream").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        self.git(&dir, &["init", "-q"]);
        self.commit_files(&dir, files, "initial");
        dir
    }

    pub fn commit_files(&self, repo: &Path, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let p = repo.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        }
        self.git(repo, &["add", "-A"]);
        self.git(repo, &["commit", "-q", "--allow-empty", "-m", message]);
        self.rev(repo, "HEAD")
    }

    pub fn rev(&self, repo: &Path, rev: &str) -> String {
        self.git(repo, &["rev-parse", rev]).trim().to_string()
    }

    pub fn source(&self, url: &Path, key: &str) -> RepoSource {
        RepoSource {
            url: url.to_string_lossy().into_owned(),
            mirror_key: key.to_string(),
            token: None,
        }
    }

    pub fn request(&self, url: &Path, key: &str, issue: u32) -> WorktreeRequest {
        WorktreeRequest {
            source: self.source(url, key),
            path: self.worktree(&format!("{key}-{issue}")),
            branch: format!("fix/issue-{issue}"),
            base_ref: None,
            force: false,
        }
    }

    pub fn create(&self, req: &WorktreeRequest) -> Result<WorktreeInfo, WorktreeError> {
        self.backend().create(req, &mut NoProgress, &AtomicBool::new(false))
    }

    pub fn mirror(&self, key: &str) -> PathBuf {
        self.mirrors().join(format!("{key}.git"))
    }

    /// `git status --porcelain` output of a worktree (empty when clean).
    pub fn status(&self, worktree: &Path) -> String {
        self.git(worktree, &["status", "--porcelain", "--untracked-files=all"])
    }

    /// `(path, branch)` pairs of `git worktree list --porcelain` in `repo`.
    pub fn git_worktrees(&self, repo: &Path) -> Vec<(PathBuf, Option<String>)> {
        let out = self.git(repo, &["worktree", "list", "--porcelain"]);
        let mut list = Vec::new();
        for block in out.split("\n\n").filter(|b| !b.trim().is_empty()) {
            let mut path = None;
            let mut branch = None;
            for line in block.lines() {
                if let Some(p) = line.strip_prefix("worktree ") {
                    path = Some(PathBuf::from(p));
                }
                if let Some(b) = line.strip_prefix("branch ") {
                    branch = Some(b.to_string());
                }
            }
            list.push((path.expect("worktree line"), branch));
        }
        list
    }

    pub fn fsck(&self, repo: &Path) {
        self.git(repo, &["fsck", "--no-progress"]);
    }

    pub fn branch_exists(&self, repo: &Path, branch: &str) -> bool {
        self.git_output(repo, &["rev-parse", "--verify", "-q", &format!("refs/heads/{branch}")])
            .status
            .success()
    }
}

/// Every file under `dir` (recursively) with its bytes, sorted by path.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let file_type = entry.file_type().unwrap();
            if file_type.is_dir() {
                stack.push(entry.path());
            } else if file_type.is_file() {
                out.push((entry.path(), std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Panics if any file under `dir` contains `secret`; returns how many files were searched.
pub fn assert_no_file_contains(dir: &Path, secret: &str) -> usize {
    let files = files_under(dir);
    for (path, bytes) in &files {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} written to {}",
            path.display()
        );
    }
    files.len()
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

/// Runs the ignored test `name` of module `module` (its `module_path!()`) of this test binary
/// in a child process, set up by `configure` (the environment of a running test must not
/// change: other tests run in parallel threads), and asserts that it ran and passed.
pub fn run_child_test(module: &str, name: &str, configure: impl FnOnce(&mut Command)) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    let name = kugetsu_test_support::harness_name(module, name);
    cmd.args(["--exact", &name, "--include-ignored", "--nocapture", "--test-threads=1"]);
    configure(&mut cmd);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where a child test run by [`run_child_trusting_test_ca`] finds the throwaway CA's files.
const TEST_CA_ENV: &str = "KUGETSU_HTTPS_TEST_DIR";

/// Runs the ignored test `child` of `module` in a process whose only trusted root is a
/// throwaway CA for 127.0.0.1 (`SSL_CERT_FILE`, as a system's setting would give it).
pub fn run_child_trusting_test_ca(module: &str, child: &str) {
    let certs = tempfile::tempdir().unwrap();
    http::make_certificates(certs.path());
    run_child_test(module, child, |cmd| {
        cmd.env(TEST_CA_ENV, certs.path())
            .env("SSL_CERT_FILE", certs.path().join("ca.pem"))
            .env_remove("SSL_CERT_DIR");
    });
}

/// In a child of [`run_child_trusting_test_ca`]: a fixture, its upstream `app` (one commit of
/// file `a`), and that upstream served over https, asking for `token` if given. `None` when
/// not run as such a child (the test then does nothing).
pub fn https_upstream(token: Option<&str>) -> Option<(Fixture, PathBuf, http::GitHttpServer)> {
    let certs = PathBuf::from(std::env::var_os(TEST_CA_ENV)?);
    let fx = Fixture::new();
    let up = fx.upstream("app", &[("a", "1\n")]);
    let server = http::GitHttpServer::start_tls(
        up.parent().unwrap(),
        &fx.home(),
        token,
        http::server_config(&certs),
    );
    Some((fx, up, server))
}
