//! A process killed with SIGKILL at any moment while rewriting state files leaves each file
//! whole: parseable, and equal to a complete old or new version, never a mix or a prefix.
//!
//! The test binary re-executes itself as the writer (selected by an environment variable),
//! lets it rewrite `index.json` and a session file in a tight loop with `storage::write_json`,
//! kills it at a random moment, checks both files, and repeats.

use crate::common;

use common::Rng;
use kugetsu_test_support::harness_name;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kugetsu_core::{Index, IssueRef, SessionFile, StateDir, storage};
use serde_json::{Value, json};

const CHILD_DIR: &str = "KUGETSU_CRASH_TEST_CHILD_DIR";
const KILLS: usize = 500;
const TEST_NAME: &str = "sigkill_while_writing_never_tears_a_file";

fn issue() -> IssueRef {
    IssueRef::parse("github.com/shoko/kugetsu#14").expect("ref")
}

/// Generation `g` of the index: its size varies so that some writes span several pages.
fn index_for(g: u64) -> Index {
    let mut index: Index = serde_json::from_value(json!({
        "base": format!("ses_base{g}"),
        "pm_agent": "ses_pm",
        "generation": g,
        "padding": "x".repeat((g % 7) as usize * 3000),
    }))
    .expect("index");
    for i in 0..(g % 40) {
        index.issues.insert(format!("github.com/o/r#{i}"), format!("github.com-o-r-{i}-{g}.json"));
    }
    index
}

fn session_for(g: u64) -> SessionFile {
    serde_json::from_value(json!({
        "type": "forked",
        "issue_ref": issue().to_string(),
        "opencode_session_id": format!("ses_{g}"),
        "worktree_path": "/state/worktrees/github.com-shoko-kugetsu-14",
        "created_at": "2026-03-29T18:16:10+02:00",
        "state": if g.is_multiple_of(2) { "idle" } else { "running" },
        "generation": g,
        "notes": "y".repeat((g % 5) as usize * 1500),
    }))
    .expect("session")
}

fn generation(extra: &serde_json::Map<String, Value>) -> u64 {
    extra.get("generation").and_then(Value::as_u64).expect("generation field")
}

/// Reads both files without moving anything aside, insisting each is a whole version.
fn check(state: &StateDir) -> (u64, u64) {
    let index_bytes =
        storage::read_bytes(&state.index_path()).expect("read").expect("index exists");
    let index: Index = serde_json::from_slice(&index_bytes).unwrap_or_else(|e| {
        panic!("torn index.json ({e}): {}", String::from_utf8_lossy(&index_bytes))
    });
    let gi = generation(&index.extra);
    assert_eq!(index, index_for(gi), "index.json is not exactly generation {gi}");
    let path = state.issue_session_path(&issue());
    let session_bytes = storage::read_bytes(&path).expect("read").expect("session exists");
    let session: SessionFile = serde_json::from_slice(&session_bytes).unwrap_or_else(|e| {
        panic!("torn session file ({e}): {}", String::from_utf8_lossy(&session_bytes))
    });
    let gs = generation(&session.extra);
    assert_eq!(session, session_for(gs), "session file is not exactly generation {gs}");
    (gi, gs)
}

/// [`check`], with no writer running: each round writes the index, then the session, so they
/// are never more than one apart. (While a writer runs, the two reads are not one snapshot.)
fn check_quiet(state: &StateDir) -> (u64, u64) {
    let (gi, gs) = check(state);
    assert!(gs == gi || gs + 1 == gi, "index at {gi}, session at {gs}");
    (gi, gs)
}

fn child(root: &Path) -> ! {
    let state = StateDir::new(root);
    let (gi, gs) = check_quiet(&state);
    if gs < gi {
        // The last writer was killed between the two files: finish its round first.
        storage::write_json(&state.issue_session_path(&issue()), &session_for(gi))
            .expect("write session");
    }
    let mut g = gi + 1;
    loop {
        storage::write_json(&state.index_path(), &index_for(g)).expect("write index");
        storage::write_json(&state.issue_session_path(&issue()), &session_for(g))
            .expect("write session");
        g += 1;
    }
}

#[test]
fn sigkill_while_writing_never_tears_a_file() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir));
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(tmp.path().join("kugetsu"));
    state.ensure().expect("state");
    storage::write_json(&state.index_path(), &index_for(0)).expect("seed");
    storage::write_json(&state.issue_session_path(&issue()), &session_for(0)).expect("seed");

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng::seeded(seed);
    let exe = std::env::current_exe().expect("test binary");
    let (mut last_i, mut last_s) = (0, 0);
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["--exact", &harness_name(module_path!(), TEST_NAME), "--test-threads=1"])
            .env(CHILD_DIR, state.root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        // Wait until the writer is really writing, then kill it at a random moment.
        let started = Instant::now();
        loop {
            let (gi, _) = check(&state);
            if gi > last_i {
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
        std::thread::sleep(Duration::from_micros(rng.next() % 3000));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let (gi, gs) = check_quiet(&state);
        assert!(gi >= last_i && gs >= last_s, "round {round}: went back in time");
        (last_i, last_s) = (gi, gs);
    }
    assert!(last_i >= KILLS as u64, "every round saw at least one new version");
    let leftovers = std::fs::read_dir(state.root())
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .count();
    eprintln!(
        "{KILLS} kills, {last_i} index versions, {leftovers} temp files left by killed writes"
    );
    let swept = storage::remove_stale_temp_files(state.root(), &kugetsu_process::SystemLiveness)
        .expect("sweep")
        .len()
        + storage::remove_stale_temp_files(&state.sessions_dir(), &kugetsu_process::SystemLiveness)
            .expect("sweep")
            .len();
    assert!(swept >= leftovers, "every writer is dead, so all its temp files go");
    let remaining = |dir: &Path| {
        std::fs::read_dir(dir)
            .expect("ls")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .count()
    };
    assert_eq!(remaining(state.root()) + remaining(&state.sessions_dir()), 0);
    check_quiet(&state);
}
