//! SIGKILL at random moments while every kind of state file is being rewritten, through the
//! same library calls the commands use: `index.json` and a session file (`write_json`), a queue
//! item (`write_json` of a `QueueItem`, as the file queue does), `notifications.json`
//! (`Notifications::add`), an env file (`EnvFiles::set`) and `config` (`atomic_write`).
//!
//! After every kill each file must parse as its type and be exactly one whole version written by
//! the killed process or an earlier one, never a prefix, a mix or an empty file. The test
//! binary re-executes itself as the writer (selected by an environment variable), as
//! `crash.rs` does.

use crate::common;

use common::Rng;
use kugetsu_test_support::harness_name;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kugetsu_core::config::Config;
use kugetsu_core::env_file::EnvFiles;
use kugetsu_core::notify::{NewNotification, NotificationType, Notifications};
use kugetsu_core::{Index, IssueRef, QueueItem, SessionFile, StateDir, storage};
use serde_json::{Value, json};
use time::OffsetDateTime;

const CHILD_DIR: &str = "KUGETSU_CRASH_ALL_KINDS_CHILD_DIR";
const KILLS: usize = 500;
const TEST_NAME: &str = "sigkill_never_tears_any_kind_of_state_file";
const AGENT: &str = "default";
const ENV_KEY: &str = "KUGETSU_CRASH_GEN";

fn issue() -> IssueRef {
    IssueRef::parse("github.com/shoko/kugetsu#14").expect("ref")
}

/// Varying sizes so that some writes span several pages.
fn pad(g: u64, unit: usize) -> String {
    "x".repeat((g % 7) as usize * unit)
}

fn index_for(g: u64) -> Index {
    serde_json::from_value(json!({
        "base": format!("ses_base{g}"),
        "issues": {"github.com/shoko/kugetsu#14": "github.com-shoko-kugetsu-14.json"},
        "generation": g,
        "padding": pad(g, 2000),
    }))
    .expect("index")
}

fn session_for(g: u64) -> SessionFile {
    serde_json::from_value(json!({
        "type": "forked",
        "issue_ref": issue().to_string(),
        "opencode_session_id": format!("ses_{g}"),
        "created_at": "2026-03-29T18:16:10+02:00",
        "state": if g.is_multiple_of(2) { "idle" } else { "running" },
        "generation": g,
        "notes": pad(g, 1500),
    }))
    .expect("session")
}

fn queue_item_for(g: u64) -> QueueItem {
    serde_json::from_value(json!({
        "id": "q_000001",
        "status": if g.is_multiple_of(3) { "pending" } else { "notified" },
        "message": format!("work on issue #14 ({g}) {}", pad(g, 1000)),
        "created_at": "2026-03-29T18:16:10Z",
        "attempts": g,
    }))
    .expect("queue item")
}

fn env_value_for(g: u64) -> String {
    format!("{g}-{}", pad(g, 700))
}

fn config_for(g: u64) -> String {
    format!(
        "# generation {g}\n# {}\nKUGETSU_AGENT_TIMEOUT_MINUTES={}\n",
        pad(g, 900),
        60 + g % 1000
    )
}

fn notification_time(g: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + g as i64).expect("time")
}

fn generation(extra: &serde_json::Map<String, Value>) -> u64 {
    extra.get("generation").and_then(Value::as_u64).expect("generation field")
}

/// The generation of each kind of file, in the order the writer writes them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Gens([u64; 6]);

fn read(path: &Path) -> Vec<u8> {
    storage::read_bytes(path).expect("read").unwrap_or_else(|| panic!("{} missing", path.display()))
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let bytes = read(path);
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!("torn {} ({e}): {}", path.display(), String::from_utf8_lossy(&bytes))
    })
}

/// The generation of one kind of file (0 index, 1 session, 2 queue item, 3 notifications,
/// 4 env, 5 config), insisting the file is one whole version. Nothing is moved aside.
fn generation_of(state: &StateDir, kind: usize) -> u64 {
    match kind {
        0 => {
            let index: Index = parse(&state.index_path());
            let g = generation(&index.extra);
            assert_eq!(index, index_for(g), "index.json is not exactly generation {g}");
            g
        }
        1 => {
            let session: SessionFile = parse(&state.issue_session_path(&issue()));
            let g = generation(&session.extra);
            assert_eq!(session, session_for(g), "session file is not exactly generation {g}");
            g
        }
        2 => {
            let item: QueueItem = parse(&state.queue_items_dir().join("q_000001.json"));
            let g = u64::from(item.attempts);
            assert_eq!(item, queue_item_for(g), "queue item is not exactly generation {g}");
            g
        }
        3 => {
            // A run of consecutive generations, each a whole notification, ending at the last
            // one added.
            let notes = Notifications::new(state).list(false).expect("notifications parse");
            assert_eq!(notes.unreadable, 0, "every notification entry is whole");
            let gens: Vec<u64> = notes
                .notifications
                .iter()
                .map(|n| {
                    let g: u64 = n.message.parse().expect("message is a generation");
                    assert_eq!(n.timestamp, notification_time(g));
                    g
                })
                .collect();
            assert!(
                gens.windows(2).all(|w| w[1] == w[0] + 1),
                "notifications skip or repeat: {gens:?}"
            );
            *gens.last().expect("at least the seed notification")
        }
        4 => {
            let env = EnvFiles::new(state).load(AGENT).expect("env file parses");
            let value = env.get(ENV_KEY).expect("env key present");
            let g: u64 =
                value.split('-').next().and_then(|g| g.parse().ok()).expect("env generation");
            assert_eq!(value, env_value_for(g), "env file is not exactly generation {g}");
            assert_eq!(env.vars().len(), 1, "env file has exactly its one variable");
            g
        }
        _ => {
            let text = String::from_utf8(read(&state.config_path())).expect("config is UTF-8");
            let g: u64 = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# generation "))
                .and_then(|g| g.parse().ok())
                .unwrap_or_else(|| panic!("torn config: {text}"));
            assert_eq!(text, config_for(g), "config is not exactly generation {g}");
            let path = state.config_path();
            Config::resolve(Path::new("/home/u"), Some((&path, &text)), &|_| None, &[])
                .expect("config resolves");
            g
        }
    }
}

/// Reads every file, insisting each is one whole version.
fn check(state: &StateDir) -> Gens {
    let mut gens = Gens::default();
    for (kind, g) in gens.0.iter_mut().enumerate() {
        *g = generation_of(state, kind);
    }
    gens
}

fn write_all(state: &StateDir, g: u64) {
    storage::write_json(&state.index_path(), &index_for(g)).expect("write index");
    storage::write_json(&state.issue_session_path(&issue()), &session_for(g))
        .expect("write session");
    storage::write_json(&state.queue_items_dir().join("q_000001.json"), &queue_item_for(g))
        .expect("write queue item");
    let new = NewNotification {
        kind: NotificationType::TaskCompleted,
        message: g.to_string(),
        issue_ref: None,
    };
    Notifications::new(state).add(new, notification_time(g)).expect("add notification");
    EnvFiles::new(state).set(ENV_KEY, &env_value_for(g), AGENT).expect("set env");
    storage::atomic_write(&state.config_path(), config_for(g).as_bytes()).expect("write config");
}

/// With no writer running the files were written in order, round after round, so each is at
/// the generation of the one before it or one behind.
fn check_quiet(state: &StateDir) -> Gens {
    let gens = check(state);
    let g = gens.0;
    assert!(
        g.windows(2).all(|w| w[1] == w[0] || w[1] + 1 == w[0]) && g[0] <= g[5] + 1,
        "files out of step: {gens:?}"
    );
    gens
}

fn child(root: &Path) -> ! {
    let state = StateDir::new(root);
    let gens = check_quiet(&state);
    let mut g = gens.0[0];
    if gens.0[5] < g {
        // The last writer was killed part-way through a round: the notification must not be
        // added twice, the rest is idempotent.
        let done_notification = gens.0[3] == g;
        storage::write_json(&state.issue_session_path(&issue()), &session_for(g)).expect("s");
        storage::write_json(&state.queue_items_dir().join("q_000001.json"), &queue_item_for(g))
            .expect("q");
        if !done_notification {
            let new = NewNotification {
                kind: NotificationType::TaskCompleted,
                message: g.to_string(),
                issue_ref: None,
            };
            Notifications::new(&state).add(new, notification_time(g)).expect("n");
        }
        EnvFiles::new(&state).set(ENV_KEY, &env_value_for(g), AGENT).expect("e");
        storage::atomic_write(&state.config_path(), config_for(g).as_bytes()).expect("c");
    }
    loop {
        g += 1;
        write_all(&state, g);
    }
}

fn temp_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .count()
}

#[test]
fn sigkill_never_tears_any_kind_of_state_file() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir));
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(tmp.path().join("kugetsu"));
    state.ensure().expect("state");
    write_all(&state, 0);

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng::seeded(seed);
    let exe = std::env::current_exe().expect("test binary");
    let mut last = check_quiet(&state);
    // Where each kill landed: the kind of file the writer was in the middle of (the first one
    // behind the index), so the figures show every kind was hit.
    let mut hit = [0usize; 6];
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["--exact", &harness_name(module_path!(), TEST_NAME), "--test-threads=1"])
            .env(CHILD_DIR, state.root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        // Wait until the writer has rewritten a randomly chosen kind of file, then kill it
        // moments later, so kills land in every kind of write however fast the writer runs.
        let after = rng.below(6);
        let started = Instant::now();
        loop {
            if generation_of(&state, after) > last.0[after] {
                break;
            }
            if let Some(status) = child.try_wait().expect("wait") {
                panic!("round {round}: writer exited early with {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "round {round}: writer made no progress"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_micros(rng.next() % 2000));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let now = check_quiet(&state);
        assert!(
            now.0.iter().zip(last.0.iter()).all(|(n, l)| n >= l),
            "round {round}: went back in time: {last:?} -> {now:?}"
        );
        let behind = now.0.iter().position(|&g| g < now.0[0]).unwrap_or(0);
        hit[behind] += 1;
        last = now;
    }
    eprintln!(
        "{KILLS} kills, {} rounds of writes; kills landed before completing \
         [index(or between rounds), session, queue item, notifications, env, config] = {hit:?}",
        last.0[0]
    );
    let dirs = [
        state.root().to_path_buf(),
        state.sessions_dir(),
        state.queue_items_dir(),
        state.env_dir(),
    ];
    for dir in &dirs {
        storage::remove_stale_temp_files(dir, &kugetsu_process::SystemLiveness).expect("sweep");
    }
    assert_eq!(
        dirs.iter().map(|d| temp_files(d)).sum::<usize>(),
        0,
        "dead writers' temp files swept"
    );
    // Every kind of file was being written when some kill landed.
    assert!(hit[1..].iter().all(|&h| h > 0), "some kind of file was never interrupted: {hit:?}");
    check_quiet(&state);
}
