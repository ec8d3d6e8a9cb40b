//! Corrupt state files of every kind, table-driven: each kind of file (index, session file,
//! queue item, notifications, servers, repos, env file, config) is replaced by each kind of
//! damage (empty, truncated, NUL bytes, wrong schema, invalid UTF-8, 10 MB of garbage), and the
//! API that reads it must return a clear error naming the file, without panicking.
//!
//! JSON files are kept aside as `<name>.corrupt-<timestamp>` with their exact bytes (so the next
//! write starts afresh instead of failing forever), never replaced by an empty state.
//! Text files (config, env) are reported with their path and line and left untouched. And the
//! healthy files next to the broken one are still used: `list` still shows the other sessions,
//! `doctor` reports the broken one, other env files and queue items still load.

// Test helpers unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use kugetsu_core::agent::NoEvents;
use kugetsu_core::config::Config;
use kugetsu_core::env_file::EnvFiles;
use kugetsu_core::notify::{NewNotification, NotificationType, Notifications};
use kugetsu_core::orchestrator::{Orchestrator, StartOptions};
use kugetsu_core::repos::Repos;
use kugetsu_core::servers::Servers;
use kugetsu_core::worktree::{NoProgress, RepoSource};
use kugetsu_core::{IssueRef, QueueItem, StateDir, storage};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Index,
    Session,
    QueueItem,
    Notifications,
    Servers,
    Repos,
    Env,
    Config,
}

const KINDS: [Kind; 8] = [
    Kind::Index,
    Kind::Session,
    Kind::QueueItem,
    Kind::Notifications,
    Kind::Servers,
    Kind::Repos,
    Kind::Env,
    Kind::Config,
];

impl Kind {
    fn is_text(self) -> bool {
        matches!(self, Kind::Env | Kind::Config)
    }
}

struct Env {
    _tmp: tempfile::TempDir,
    state: StateDir,
    orch: Orchestrator,
}

fn issue(n: u32) -> IssueRef {
    IssueRef::parse(&format!("github.com/o/r#{n}")).unwrap()
}

fn queue_item(id: &str) -> QueueItem {
    serde_json::from_value(json!({
        "id": id,
        "status": "pending",
        "message": "work on issue #1",
        "created_at": "2026-11-23T12:00:00Z",
    }))
    .unwrap()
}

/// A healthy state directory with every kind of file in it: two issues, two queue items,
/// notifications, servers, repos, two env files and a config.
fn healthy() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path().join("state"));
    let orch = common::initialized_orchestrator(&state);
    for n in [1, 2] {
        let issue = issue(n);
        let opts = StartOptions {
            source: RepoSource {
                url: "https://example.invalid/o/r.git".into(),
                mirror_key: issue.repo().mirror_key(),
                token: None,
            },
            issue,
            message: "go".into(),
            base_ref: None,
            force: false,
        };
        orch.start(&opts, &mut NoProgress, &AtomicBool::new(false), &mut NoEvents).unwrap();
    }
    for id in ["q_1", "q_2"] {
        storage::write_json(&state.queue_items_dir().join(format!("{id}.json")), &queue_item(id))
            .unwrap();
    }
    let new = NewNotification {
        kind: NotificationType::TaskCompleted,
        message: "done".into(),
        issue_ref: None,
    };
    Notifications::new(&state).add(new, time::macros::datetime!(2026-11-23 12:00 UTC)).unwrap();
    Servers::new(&state).add("work", "https://git.example.com").unwrap();
    Repos::new(&state).set("github.com/o/r", "https://github.com/o/r.git").unwrap();
    let envs = EnvFiles::new(&state);
    envs.set("GITHUB_TOKEN", "t0ken", "default").unwrap();
    envs.set("OTHER", "1", "other").unwrap();
    storage::atomic_write(
        &state.config_path(),
        b"# settings\nMAX_CONCURRENT_AGENTS=3\nKUGETSU_VERBOSITY=quiet\n",
    )
    .unwrap();
    let e = Env { _tmp: tmp, state, orch };
    for kind in KINDS {
        assert_eq!(read_through_api(&e, kind), None, "the healthy {kind:?} file reads");
    }
    e
}

fn path_of(state: &StateDir, kind: Kind) -> PathBuf {
    match kind {
        Kind::Index => state.index_path(),
        Kind::Session => state.issue_session_path(&issue(1)),
        Kind::QueueItem => state.queue_items_dir().join("q_1.json"),
        Kind::Notifications => state.notifications_path(),
        Kind::Servers => state.servers_path(),
        Kind::Repos => state.repos_path(),
        Kind::Env => state.env_dir().join("default.env"),
        Kind::Config => state.config_path(),
    }
}

/// A well-formed file of the wrong shape for each kind.
fn wrong_schema(kind: Kind) -> Vec<u8> {
    match kind {
        Kind::Index => br#"{"base": 5, "issues": ["github.com/o/r#1"]}"#.to_vec(),
        Kind::Session => br#"{"type": "forked", "state": "sleeping"}"#.to_vec(),
        Kind::QueueItem => br#"{"id": "q_1", "status": 7}"#.to_vec(),
        Kind::Notifications => br#"{"notifications": "none"}"#.to_vec(),
        Kind::Servers => br#"{"servers": ["https://git.example.com"]}"#.to_vec(),
        Kind::Repos => br#"{"github.com/o/r": {"url": 1}}"#.to_vec(),
        Kind::Env => b"GITHUB_TOKEN=ok\nthis is not an assignment\n".to_vec(),
        Kind::Config => b"KUGETSU_VERBOSITY=quiet\nMAX_CONCURRENT_AGENTS=many\n".to_vec(),
    }
}

/// Reproducible garbage.
fn garbage(len: usize) -> Vec<u8> {
    common::Rng::seeded(0x9e37_79b9_7f4a_7c15).bytes(len)
}

/// Each damage, applied to the healthy bytes of a file.
fn damages(kind: Kind, healthy: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut nul = healthy.to_vec();
    let mid = nul.len() / 2;
    nul.splice(mid..mid, [0u8; 16]);
    let mut utf8 = healthy.to_vec();
    utf8.splice(mid..mid, [0xff, 0xfe, 0xc3]);
    let mut out = vec![
        ("truncated", healthy[..healthy.len() / 2].to_vec()),
        ("NUL bytes", nul),
        ("all NUL", vec![0u8; 4096]),
        ("wrong schema", wrong_schema(kind)),
        ("invalid UTF-8", utf8),
        ("10 MB of garbage", garbage(10 * 1024 * 1024)),
    ];
    if !kind.is_text() {
        // An empty config or env file is a valid one with nothing set.
        out.push(("empty", Vec::new()));
    }
    out
}

/// Calls the API that reads `kind`, returning its error message (or `None` if it succeeded).
fn read_through_api(e: &Env, kind: Kind) -> Option<String> {
    let state = &e.state;
    match kind {
        Kind::Index => e.orch.read_index().err().map(|e| e.to_string()),
        Kind::Session => {
            let list = e.orch.list().expect("list survives a corrupt session file");
            assert_eq!(list.len(), 4, "base, PM and both issues are still listed: {list:?}");
            let two = list.iter().find(|l| l.issue_ref == issue(2).to_string()).unwrap();
            assert_eq!(
                two.state,
                Some(kugetsu_core::SessionState::Idle),
                "the healthy session is still read"
            );
            assert!(two.problem.is_none());
            let one = list.iter().find(|l| l.issue_ref == issue(1).to_string()).unwrap();
            one.problem.clone()
        }
        Kind::QueueItem => {
            let other = storage::read_json::<QueueItem>(&state.queue_items_dir().join("q_2.json"));
            assert_eq!(other.unwrap(), Some(queue_item("q_2")), "the healthy item still reads");
            storage::read_json::<QueueItem>(&path_of(state, kind)).err().map(|e| e.to_string())
        }
        Kind::Notifications => Notifications::new(state).list(false).err().map(|e| e.to_string()),
        Kind::Servers => Servers::new(state).load().err().map(|e| e.to_string()),
        Kind::Repos => Repos::new(state).load().err().map(|e| e.to_string()),
        Kind::Env => {
            let envs = EnvFiles::new(state);
            let listed = envs.list().expect("list survives a corrupt env file");
            let other = listed.iter().find(|s| s.agent == "other").unwrap();
            assert_eq!(other.keys, ["OTHER"], "the healthy env file is still read");
            let bad = listed.iter().find(|s| s.agent == "default").unwrap();
            let err = envs.load("default").err().map(|e| e.to_string());
            assert_eq!(bad.problem, err, "list reports the bad env file as load does");
            err
        }
        Kind::Config => {
            Config::load(state, Path::new("/home/u"), &|_| None, &[]).err().map(|e| e.to_string())
        }
    }
}

/// What happened to the bytes: still at `path`, or kept aside next to it.
fn kept_copies(path: &Path) -> Vec<PathBuf> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut out: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{name}.corrupt-")))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

fn run_case(kind: Kind, bytes: &[u8]) -> Result<(), String> {
    let e = healthy();
    let path = path_of(&e.state, kind);
    std::fs::write(&path, bytes).unwrap();
    let shown = path.display().to_string();
    let message = read_through_api(&e, kind).ok_or("the API accepted it")?;
    if !message.contains(&shown) {
        return Err(format!("the error does not name {shown}: {message}"));
    }
    if message.lines().count() != 1 || message.len() > 2000 {
        return Err(format!("the error is not one short line: {} bytes", message.len()));
    }
    let kept = kept_copies(&path);
    if kind.is_text() {
        let line_named = message.contains(&format!("{shown}:")) || message.contains("line ");
        if !line_named {
            return Err(format!("the error names no line: {message}"));
        }
        if !kept.is_empty() || std::fs::read(&path).ok().as_deref() != Some(bytes) {
            return Err("a text file was moved or changed; it must be left for the user".into());
        }
    } else if path.exists() {
        return Err("the bad bytes were left in place instead of kept aside".into());
    } else {
        match kept.as_slice() {
            [copy] if std::fs::read(copy).unwrap() == bytes => {
                if !message.contains(&copy.display().to_string()) {
                    return Err(format!("the error does not say where the bytes went: {message}"));
                }
            }
            [_] => return Err("the kept copy differs from the corrupt file".into()),
            other => return Err(format!("expected one kept copy, found {other:?}")),
        }
    }
    // Healthy state goes on: doctor runs and reports the problem.
    let findings = e.orch.doctor(false, false).map_err(|e| format!("doctor failed: {e}"))?;
    if matches!(kind, Kind::Index | Kind::Session) && findings.is_empty() {
        return Err("doctor found nothing wrong".into());
    }
    Ok(())
}

#[test]
fn every_kind_of_corrupt_state_file_is_reported_and_kept() {
    let mut failures = Vec::new();
    let mut cases = 0;
    for kind in KINDS {
        let healthy_bytes = {
            let e = healthy();
            std::fs::read(path_of(&e.state, kind)).unwrap()
        };
        for (damage, bytes) in damages(kind, &healthy_bytes) {
            cases += 1;
            let outcome = std::panic::catch_unwind(|| run_case(kind, &bytes))
                .unwrap_or_else(|_| Err("panicked".into()));
            if let Err(why) = outcome {
                failures.push(format!("{kind:?} / {damage}: {why}"));
            }
        }
    }
    assert!(cases >= 50, "{cases} cases");
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
