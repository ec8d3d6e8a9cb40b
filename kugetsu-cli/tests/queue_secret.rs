//! The shared queue's password stays where the user put it: a real PostgreSQL server that
//! checks it (SCRAM), a password with `/`, `?`, `#` and `@`, given to every command on its
//! command line (`--config KUGETSU_QUEUE_URL=...`, the case that used to reach the daemon's
//! argv). While the daemon runs a PM item and an issue's item, every process's argv and the
//! environment of every process of this state directory (the daemon, the PM agent, the dev
//! agent, the warm serve, what they start) are searched for it; then everything the commands printed and every file under the
//! scratch directory. The PM agent's environment names the private file its `kugetsu`
//! commands read the URL from, and a command run with exactly that environment reaches the
//! queue.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use crate::{pg, support};

use support::{Env, json, read};

/// The planted password. Every spelling of it (as written, percent-encoded in either case)
/// holds `planted9` or its first characters, so those are what is searched for.
const PASSWORD: &str = "Pw/x?y#z@planted9";
const NEEDLES: &[&str] = &["planted9", "Pw/x", "Pw%2Fx", "Pw%2fx"];

fn leaks(text: &str) -> Option<&'static str> {
    NEEDLES.iter().copied().find(|n| text.contains(n))
}

/// Stops the daemon when the test ends, passed or not.
struct Daemon<'a>(&'a Env, &'a str);

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["--config", self.1, "queue-daemon", "stop"]);
    }
}

/// `/proc/<pid>/environ` as variables (empty when unreadable).
fn environ(pid: &str) -> BTreeMap<String, String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// What one look at `/proc` found: argv and environment of every process, the agents of
/// this state directory among them.
#[derive(Default)]
struct Seen {
    dev_agents: usize,
    pm_env: Option<BTreeMap<String, String>>,
    ours: usize,
}

fn look(state: &Path, seen: &mut Seen) {
    let home = format!("{}", state.display());
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let argv = String::from_utf8_lossy(
            &std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default(),
        )
        .replace('\0', " ");
        assert_eq!(leaks(&argv), None, "pid {pid}'s argv holds the password: {argv}");
        let env = environ(&pid);
        let of_this_state = env.get("KUGETSU_HOME") == Some(&home) || argv.contains(&home);
        if !of_this_state {
            continue;
        }
        seen.ours += 1;
        let first = argv.split(' ').next().unwrap_or_default();
        // Not even the daemon holds it in its environment: what it starts inherits that
        // (gix starts `git-upload-pack` for a local remote), so it reads it from a file.
        for (k, v) in &env {
            assert_eq!(leaks(v), None, "pid {pid} ({argv}) has the password in {k}");
        }
        if first.ends_with("opencode") && argv.contains(" run ") {
            if env.contains_key("KUGETSU_QUEUE_URL_FILE") {
                seen.pm_env = Some(env);
            } else {
                seen.dev_agents += 1;
            }
        }
    }
}

#[test]
fn a_queue_password_with_odd_characters_leaks_nowhere() {
    let Some(pg) = pg::Pg::start() else { return };
    let url = pg.database_with_password("kugetsu_pw", PASSWORD);
    let config = format!("KUGETSU_QUEUE_URL={url}");
    let (env, _repo) = Env::with_fake_agent();
    // Turns long enough to be seen in /proc while they run.
    std::fs::write(
        env.tmp.path().join("script.json"),
        r#"{"default": {"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "wrote WORK.md", "delay_ms": 1500}}"#,
    )
    .unwrap();
    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut run = |args: &[&str]| {
        let mut argv = vec!["--config", config.as_str()];
        argv.extend_from_slice(args);
        let out = env.run(&argv);
        outputs.push((format!("{args:?}"), format!("{}{}", out.stdout, out.stderr)));
        out
    };
    // The server checks the password: a wrong one is refused (once the reload applied).
    let wrong = url.replace("planted9", "wrong");
    support::wait_for("the server to check passwords", || {
        env.run(&["--config", &format!("KUGETSU_QUEUE_URL={wrong}"), "queue", "list"]).code != 0
    });

    assert_eq!(run(&["init", "--headless"]).code, 0);
    let started = run(&["--debug", "queue-daemon", "start"]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    let _daemon = Daemon(&env, &config);
    assert_eq!(run(&["--debug", "queue", "enqueue", "#5", "add a file"]).code, 0);
    assert_eq!(run(&["delegate", "tell me what runs"]).code, 0);

    let mut seen = Seen::default();
    let deadline = std::time::Instant::now() + support::HANG;
    loop {
        look(&env.state, &mut seen);
        let list = run(&["--json", "queue", "list"]);
        let items = json(&list.stdout)["items"].as_array().unwrap().clone();
        if items.len() == 2 && items.iter().all(|i| i["status"] == "completed") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the items did not complete: {items:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen.dev_agents > 0 && seen.ours > 1, "no dev agent seen running");
    let pm_env = seen.pm_env.expect("the PM agent was seen running");

    // The PM agent's `kugetsu` commands reach the shared queue from what its environment says.
    let file = Path::new(&pm_env["KUGETSU_QUEUE_URL_FILE"]).to_path_buf();
    assert_eq!(file, env.path("cache/queue-url"));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let as_pm = std::process::Command::new(env!("CARGO_BIN_EXE_kugetsu"))
        .args(["--json", "queue", "list"])
        .env_clear()
        .envs(&pm_env)
        .current_dir(env.elsewhere())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&as_pm.stdout).into_owned();
    assert_eq!(json(&listed)["items"].as_array().unwrap().len(), 2, "{listed}");
    let printed = format!("{listed}{}", String::from_utf8_lossy(&as_pm.stderr));
    assert_eq!(leaks(&printed), None, "the PM agent's queue list printed it: {printed}");

    for args in [
        &["queue", "list"][..],
        &["queue", "hosts"],
        &["queue", "stats"],
        &["queue-daemon", "status"],
        &["queue-daemon", "logs", "500"],
        &["logs", "500"],
        &["notify", "list"],
        &["--json", "notify", "list"],
        &["list"],
        &["status"],
        &["doctor"],
        &["--json", "doctor"],
        &["queue-daemon", "stop"],
    ] {
        run(args);
    }
    for (what, text) in &outputs {
        assert_eq!(leaks(text), None, "{what} printed the password:\n{text}");
    }
    // Every file of the scratch home (state directory, agents' store and records), but the one
    // place the URL is kept for the PM agent.
    for path in env.all_files() {
        if path == file || !path.is_file() {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
        assert_eq!(leaks(&text), None, "{} holds the password", path.display());
    }
    assert!(read(&env.path("queue/daemon.log")).contains("kugetsu"), "the daemon logged");
}
