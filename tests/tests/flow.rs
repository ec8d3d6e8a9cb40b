//! The whole flow through the `kugetsu` program, for every driver of the CLI's table that has a
//! bundled fake: `init`, `start`, `continue`, `list`, `delegate` drained by the queue daemon,
//! `destroy`. The program is `kugetsu_cli::main` as this package builds it (`kugetsu-e2e`), run
//! the way a shell runs it (this process's environment, `PWD` elsewhere) with only the state
//! made hermetic, and its agent is the driver's fake: the same program under the driver's
//! program name, as in `kugetsu demo`. The CLI's own suites (`kugetsu-cli/tests/`) go into
//! every corner of each step; this one is the steps in a row, through the table alone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kugetsu_cli::agents::{BundledFake, DRIVERS, DriverEntry};
use kugetsu_test_support::git;
use serde_json::Value;

const KUGETSU: &str = env!("CARGO_BIN_EXE_kugetsu-e2e");

#[test]
fn init_start_continue_list_delegate_daemon_destroy() {
    let mut flowed = 0;
    for entry in DRIVERS {
        let Some(fake) = &entry.fake else { continue };
        flow(entry, fake);
        flowed += 1;
    }
    assert!(flowed > 0, "no driver in the table has a bundled fake: no flow ran");
}

/// A scratch home, a one-commit repository known as `local.test/demo/app`, and the driver's
/// fake scripted to write `WORK.md` on every turn.
struct World {
    tmp: tempfile::TempDir,
    entry: &'static DriverEntry,
    fake: &'static BundledFake,
}

impl World {
    fn new(entry: &'static DriverEntry, fake: &'static BundledFake) -> Self {
        let tmp = tempfile::Builder::new().prefix("kugetsu-flow-").tempdir().expect("tmp");
        let w = World { tmp, entry, fake };
        for dir in ["home", "bin", "repo", "elsewhere", "state"] {
            std::fs::create_dir_all(w.path(dir)).expect("mkdir");
        }
        std::fs::set_permissions(
            w.path("state"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod");
        let program = w.path("bin").join(entry.program.expect("a fake runs under a program"));
        std::os::unix::fs::symlink(KUGETSU, &program).expect("link the fake");
        let repo = w.path("repo");
        std::fs::write(repo.join("README.md"), "# demo\n").expect("README");
        for args in [&["init", "-q"][..], &["add", "."], &["commit", "-q", "-m", "init"]] {
            git(&repo, args);
        }
        git(&w.path("elsewhere"), &["init", "-q"]);
        let config = format!(
            "KUGETSU_AGENT={}\nKUGETSU_AGENT_BIN={}\nKUGETSU_DEFAULT_REPO=local.test/demo/app\n",
            entry.name,
            program.display()
        );
        std::fs::write(w.path("state/config"), config).expect("config");
        let repos = serde_json::json!({ "local.test/demo/app": repo });
        std::fs::write(w.path("state/repos.json"), repos.to_string()).expect("repos.json");
        let script = (fake.script)("WORK.md", "done\n", "wrote WORK.md");
        std::fs::write(w.path("script.json"), script).expect("script");
        w
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// `kugetsu args...` run to its end as a shell in `elsewhere` would run it; its stdout,
    /// after checking that it succeeded.
    fn kugetsu(&self, args: &[&str]) -> String {
        let elsewhere = self.path("elsewhere");
        let mut cmd = Command::new(KUGETSU);
        cmd.args(args);
        for (key, _) in std::env::vars() {
            let agents = self.fake.env_prefixes.iter().any(|p| key.starts_with(p));
            if key.starts_with("KUGETSU_") || key.starts_with("GIT_") || agents {
                cmd.env_remove(key);
            }
        }
        let home = self.path("home");
        cmd.env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("KUGETSU_HOME", self.path("state"))
            .envs((self.fake.env)(&self.path("script.json"), self.tmp.path()))
            .env("PWD", &elsewhere)
            .current_dir(&elsewhere)
            .stdin(std::process::Stdio::null());
        let out = cmd.output().expect("run kugetsu");
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "{}: kugetsu {args:?}: {}\n{stdout}{stderr}",
            self.entry.name,
            out.status
        );
        stdout.into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.kugetsu(args)).expect("JSON")
    }

    fn worktree(&self, issue: u32) -> PathBuf {
        self.path(&format!("state/worktrees/local.test-demo-app-{issue}"))
    }
}

fn flow(entry: &'static DriverEntry, fake: &'static BundledFake) {
    let w = World::new(entry, fake);
    let name = entry.name;
    w.kugetsu(&["init", "--headless"]);

    w.kugetsu(&["start", "#1", "do the work"]);
    assert_eq!(
        read(&w.worktree(1).join("WORK.md")),
        "done\n",
        "{name}: the turn ran in the worktree"
    );
    let session: Value =
        serde_json::from_str(&read(&w.path("state/sessions/local.test-demo-app-1.json")))
            .expect("session file");
    assert_eq!(session["agent"], name, "the session file names its driver");
    assert_eq!(session["state"], "idle", "{name}: {session}");
    w.kugetsu(&["continue", "local.test/demo/app#1", "more"]);

    let listed = w.json(&["list", "--json"]);
    let issues: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|row| row["issue_ref"].as_str())
        .collect();
    assert!(issues.contains(&"local.test/demo/app#1"), "{name}: {listed}");

    // A request with no issue of its own, drained by the daemon (through the PM agent: the fake).
    w.kugetsu(&["delegate", "work on #2"]);
    w.kugetsu(&["queue-daemon", "start"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let items = loop {
        let items = w.json(&["queue", "list", "--json"])["items"].clone();
        let settled = items.as_array().is_some_and(|items| {
            items.iter().all(|i| matches!(i["status"].as_str(), Some("completed" | "error")))
        });
        if settled {
            break items;
        }
        assert!(Instant::now() < deadline, "{name}: the daemon never settled the item: {items}");
        std::thread::sleep(Duration::from_millis(50));
    };
    w.kugetsu(&["queue-daemon", "stop"]);
    assert_eq!(items[0]["status"], "completed", "{name}: {items}");

    // The agents file is unsaved work: `destroy` needs `--force`.
    w.kugetsu(&["destroy", "local.test/demo/app#1", "-y", "--force"]);
    assert!(!w.worktree(1).exists(), "{name}: the worktree is gone");
    let listed = w.json(&["list", "--json"]).to_string();
    assert!(!listed.contains("local.test/demo/app#1"), "{name}: {listed}");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
