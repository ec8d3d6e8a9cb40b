//! Runs the `kugetsu` binary the way a user's shell does, with only the state made hermetic.
//!
//! Every run starts from an unrelated directory (another git repository, as a user's shell
//! usually stands in one), with `PWD` set to it as a shell sets it, and with this process's
//! environment inherited. Only what is state is replaced: `HOME`, the XDG directories, the
//! state directory, and kugetsu's, opencode's and git's own settings from the machine's user
//! (which would otherwise steer the runs). Helpers capture stdout, stderr and the exit status
//! together so one snapshot pins all three.

#![allow(dead_code)]
// Also a test target of its own (tests/*.rs): its helpers unwrap as the tests do.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch home with its own state directory.
pub struct Env {
    /// The scratch directory; everything lives below it.
    pub tmp: tempfile::TempDir,
    /// `HOME` of every run.
    pub home: PathBuf,
    /// `KUGETSU_HOME` of every run.
    pub state: PathBuf,
    extra: Vec<(String, String)>,
}

/// What a run printed and how it exited.
pub struct Output {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// `stdout`, `stderr` and the exit status in one text, with the scratch paths replaced.
    pub fn snapshot(&self, env: &Env) -> String {
        let clean = |s: &str| env.redact(s);
        format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code,
            clean(&self.stdout),
            clean(&self.stderr)
        )
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    /// A fresh scratch home.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).expect("home");
        let state = home.join(".kugetsu");
        Env { tmp, home, state, extra: Vec::new() }
    }

    /// Adds an environment variable for every later run.
    pub fn set(&mut self, key: &str, value: &str) {
        self.extra.push((key.into(), value.into()));
    }

    /// Replaces the scratch path with `[TMP]` so snapshots are stable.
    pub fn redact(&self, s: &str) -> String {
        s.replace(self.tmp.path().to_str().expect("utf-8 temp path"), "[TMP]")
    }

    /// The directory every run starts from: a git repository that has nothing to do with the
    /// issues kugetsu works on (made on first use).
    pub fn elsewhere(&self) -> PathBuf {
        let dir = self.tmp.path().join("elsewhere");
        if !dir.join(".git").exists() {
            std::fs::create_dir_all(&dir).expect("elsewhere");
            git(&dir, &["init", "-q"]);
        }
        dir
    }

    /// A `kugetsu` command as a shell in [`Env::elsewhere`] would start it, stdin closed.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.program(env!("CARGO_BIN_EXE_kugetsu"));
        cmd.args(args);
        cmd
    }

    /// `program` (no arguments yet) as a shell in [`Env::elsewhere`] would start it: the
    /// environment and directory [`Env::command`] gives kugetsu, stdin closed.
    pub fn program(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let elsewhere = self.elsewhere();
        for (key, _) in std::env::vars_os() {
            if is_users_setting(&key.to_string_lossy()) {
                cmd.env_remove(&key);
            }
        }
        cmd.env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env("XDG_STATE_HOME", self.home.join(".local/state"))
            .env("KUGETSU_HOME", &self.state)
            .env("NO_COLOR", "1")
            .env("PWD", &elsewhere)
            .current_dir(&elsewhere)
            .stdin(std::process::Stdio::null());
        for (k, v) in &self.extra {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `kugetsu args...` to the end.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("run kugetsu");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `kugetsu args...`, failing the test unless it exits 0; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
        out.stdout
    }

    /// Appends `line` to the state directory's `config`.
    pub fn configure(&self, line: &str) {
        let path = self.path("config");
        let mut text = read(&path);
        text.push_str(line);
        text.push('\n');
        std::fs::write(&path, text).expect("write config");
    }

    /// Every queue item, as `queue list --json` shows them.
    pub fn queue_items(&self) -> Vec<serde_json::Value> {
        let v = json(&self.ok(&["--json", "queue", "list"]));
        let list = v.get("items").cloned().unwrap_or(v);
        list.as_array().cloned().unwrap_or_default()
    }

    /// The first queue item whose issue ref ends with `issue` (`#1`), `null` if none.
    pub fn queue_item(&self, issue: &str) -> serde_json::Value {
        let ends =
            |i: &serde_json::Value| i["issue_ref"].as_str().is_some_and(|r| r.ends_with(issue));
        self.queue_items().into_iter().find(ends).unwrap_or_default()
    }

    /// How many queue items of `issue_ref` completed.
    pub fn completed(&self, issue_ref: &str) -> usize {
        let done =
            |i: &&serde_json::Value| i["issue_ref"] == issue_ref && i["status"] == "completed";
        self.queue_items().iter().filter(done).count()
    }

    /// A path inside the state directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.state.join(rel)
    }

    /// Every file under the scratch directory, for "nothing was created outside" checks.
    pub fn all_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    out.push(p.clone());
                    if p.is_dir() && !p.is_symlink() {
                        walk(&p, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(self.tmp.path(), &mut out);
        out.sort();
        out
    }
}

/// Variables of the machine's user that are settings, not environment: kugetsu's config keys,
/// opencode's and the fake agent's settings, git's location and identity variables, and the
/// terminal width that would rewrap `--help` in snapshots.
fn is_users_setting(key: &str) -> bool {
    key.starts_with("KUGETSU_")
        || key.starts_with("OPENCODE_")
        || key.starts_with("FAKE_OPENCODE_")
        || key.starts_with("GIT_")
        || key.starts_with("QUEUE_")
        || matches!(key, "MAX_CONCURRENT_AGENTS" | "COLUMNS" | "LINES" | "NO_COLOR" | "OLDPWD")
}

/// The real `git` (a fixture maker and oracle only), run hermetically in `dir`; returns stdout.
pub use kugetsu_test_support::git;

/// A one-commit repository under the scratch directory, known to kugetsu through `repos.json`
/// as `local.test/demo/app` (also the default repository for `#N` refs); returns its path.
pub fn sample_repo(env: &Env, opencode_bin: &Path) -> PathBuf {
    let repo = env.tmp.path().join("repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    std::fs::write(repo.join("README.md"), "# demo\n").expect("README");
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    std::fs::create_dir_all(&env.state).expect("state dir");
    std::fs::set_permissions(&env.state, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod state");
    std::fs::write(
        env.path("config"),
        format!(
            "KUGETSU_OPENCODE_BIN={}\nKUGETSU_DEFAULT_REPO=local.test/demo/app\n",
            opencode_bin.display()
        ),
    )
    .expect("config");
    std::fs::write(
        env.path("repos.json"),
        format!("{{\"local.test/demo/app\": \"{}\"}}\n", repo.display()),
    )
    .expect("repos.json");
    repo
}

impl Env {
    /// A scratch home with [`sample_repo`] and the bundled fake agent (this `kugetsu` binary
    /// linked as `opencode`), scripted by `script.json` to write `WORK.md` on every turn.
    pub fn with_fake_agent() -> (Env, PathBuf) {
        let env = Env::new();
        let bin = env.tmp.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kugetsu"), bin.join("opencode"))
            .expect("link the fake agent");
        let repo = sample_repo(&env, &bin.join("opencode"));
        let script = env.tmp.path().join("script.json");
        std::fs::write(
            &script,
            r#"{"default": {"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "wrote WORK.md"}}"#,
        )
        .expect("script");
        let db = env.tmp.path().join("fake-db.json");
        for (k, v) in [("OPENCODE_DB", db), ("FAKE_OPENCODE_SCRIPT", script)] {
            let out = env.run(&["env", "set", k, v.to_str().expect("utf-8 path")]);
            assert_eq!(out.code, 0, "{}", out.stderr);
        }
        (env, repo)
    }
}

/// How long a test waits for something before calling it a hang: generous, because these
/// machines are shared; it bounds a wait for an event, it does not measure speed.
pub const HANG: std::time::Duration = std::time::Duration::from_secs(60);

/// Polls `done` until it holds, failing the test after [`HANG`].
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + HANG;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether `pid` is a process that has not exited (a zombie has).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().chars().next()))
        .is_some_and(|state| !matches!(state, Some('Z' | 'X')))
}

/// Sends `sig` (a name `kill -s` knows: INT, TERM, HUP, KILL) to `pid`.
pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill").args(["-s", sig, &pid.to_string()]).status();
    assert!(status.unwrap().success(), "kill -s {sig} {pid}");
}

/// Waits for `child` to exit; its exit code (None: killed by a signal) and stderr.
pub fn wait_exit(mut child: std::process::Child) -> (Option<i32>, String) {
    let deadline = std::time::Instant::now() + HANG;
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned());
        }
        assert!(std::time::Instant::now() < deadline, "kugetsu did not exit after the signal");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// An initialized scratch home with the fake agent ([`Env::with_fake_agent`]) whose agent turns
/// are traced (`trace.log`) and recorded (`record.jsonl`) in the scratch directory.
pub fn ready() -> Env {
    let (env, _repo) = Env::with_fake_agent();
    for (key, file) in
        [("FAKE_OPENCODE_TRACE", "trace.log"), ("FAKE_OPENCODE_RECORD", "record.jsonl")]
    {
        let path = env.tmp.path().join(file);
        let out = env.run(&["env", "set", key, path.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    env
}

/// `text` as JSON, failing the test with the text when it is not.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A file's text, empty when it cannot be read (yet).
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
