//! A state directory in the original kugetsu's shapes (checked in under
//! `tests/fixtures/original-state`, with fields this version does not know) loads with the
//! current types, and rewriting it keeps every field it had.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kugetsu_core::config::{Config, Verbosity};
use kugetsu_core::env_file::{EnvFiles, MASK, PM_AGENT};
use kugetsu_core::notify::{NotificationType, Notifications};
use kugetsu_core::repos::{Repos, clone_url_for};
use kugetsu_core::servers::Servers;
use kugetsu_core::{
    Index, IssueRef, QueueItem, QueueStatus, SessionFile, SessionKind, SessionState, StateDir,
    storage,
};
use serde_json::Value;
use time::macros::datetime;

fn fixture() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/original-state"))
}

/// Copies the fixture into a private temp state directory (git does not keep modes).
fn copy_fixture() -> (tempfile::TempDir, StateDir) {
    fn copy(from: &Path, to: &Path) {
        storage::ensure_dir(to).expect("mkdir");
        for entry in fs::read_dir(from).expect("read fixture") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                copy(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), &target).expect("copy");
                fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).expect("chmod");
            }
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(tmp.path().join("kugetsu"));
    copy(fixture(), state.root());
    state.ensure().expect("state dir");
    (tmp, state)
}

fn raw(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).expect("read")).expect("json")
}

/// Every field of `old` is in `new` with the same value (`new` may add defaulted fields).
fn assert_kept(old: &Value, new: &Value, at: &str) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, v) in o {
                let Some(nv) = n.get(k) else { panic!("{at}.{k} was dropped") };
                assert_kept(v, nv, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(old, new, "{at} changed"),
    }
}

#[test]
fn index_and_sessions_load_and_round_trip_exactly() {
    let (_tmp, state) = copy_fixture();
    let index: Index = storage::read_json(&state.index_path()).expect("read").expect("exists");
    assert_eq!(index.base.as_ref().map(|i| i.as_str()), Some("ses_abc123"));
    assert_eq!(index.pm_agent.as_ref().map(|i| i.as_str()), Some("ses_pm_xyz789"));
    assert_eq!(index.issues["github.com/shoko/kugetsu#14"], "github.com-shoko-kugetsu-14.json");
    assert_eq!(index.extra["version"], "2.2");
    assert_eq!(serde_json::to_value(&index).expect("ser"), raw(&state.index_path()));

    let issue = IssueRef::parse("github.com/shoko/kugetsu#14").expect("ref");
    let issue_path = state.issue_session_path(&issue);
    assert_eq!(
        issue_path,
        state.session_path(&index.issues[&issue.to_string()]),
        "same naming as the original"
    );
    for (path, kind) in [
        (state.base_session_path(), SessionKind::Base),
        (state.pm_session_path(), SessionKind::PmAgent),
        (issue_path.clone(), SessionKind::Forked),
    ] {
        let s: SessionFile = storage::read_json(&path).expect("read").expect("exists");
        assert_eq!(s.kind, kind, "{}", path.display());
        assert_eq!(s.state, SessionState::Idle);
        // The original knew only opencode and recorded no driver: the id is opencode's, and
        // the file is written back without a driver added.
        assert_eq!(s.agent, None);
        assert_eq!(s.agent(), "opencode");
        assert_eq!(Some(s.agent_session_id.as_str()), raw(&path)["opencode_session_id"].as_str());
        assert_eq!(serde_json::to_value(&s).expect("ser"), raw(&path), "{}", path.display());
    }

    let mut forked: SessionFile = storage::read_json(&issue_path).expect("read").expect("exists");
    assert_eq!(forked.created_at, datetime!(2026-03-29 18:16:10 +02:00));
    assert_eq!(forked.extra["pr"]["number"], 92);
    let before = raw(&issue_path);
    forked.state = SessionState::Running;
    storage::write_json(&issue_path, &forked).expect("write");
    let after = raw(&issue_path);
    assert_eq!(after["created_at"], "2026-03-29T18:16:10+02:00", "offset kept");
    assert_eq!(after["state"], "running");
    assert_eq!(after["forked_from"], before["forked_from"]);
    assert_eq!(after["pr"], before["pr"]);
}

#[test]
fn queue_item_loads_and_keeps_unknown_fields() {
    let (_tmp, state) = copy_fixture();
    let path = state.queue_items_dir().join("q_1234567890.json");
    let item: QueueItem = storage::read_json(&path).expect("read").expect("exists");
    assert_eq!(item.id, "q_1234567890");
    assert_eq!(item.status, QueueStatus::Pending);
    assert_eq!(item.issue_ref.as_deref(), Some("github.com/shoko/kugetsu#14"));
    assert_eq!(item.extra["retries"], 0);
    let original = raw(&path);
    storage::write_json(&path, &item).expect("write");
    assert_kept(&original, &raw(&path), "item");
}

#[test]
fn notifications_load_and_keep_unknown_types_and_fields() {
    let (_tmp, state) = copy_fixture();
    let n = Notifications::new(&state);
    let all = n.list(false).expect("list");
    assert_eq!(all.unreadable, 0);
    assert_eq!(all.notifications.len(), 3);
    assert_eq!(all.notifications[1].kind, NotificationType::TaskCompleted);
    assert_eq!(all.notifications[1].extra["pr_url"], "https://github.com/shoko/kugetsu/pull/92");
    assert_eq!(all.notifications[2].kind, NotificationType::Other("review_requested".into()));
    assert_eq!(n.list(true).expect("list").notifications.len(), 2);
    let original = raw(n.path());
    assert_eq!(n.mark_all_read().expect("clear"), 2);
    let mut expected = original.clone();
    for entry in expected.as_array_mut().expect("array") {
        entry["read"] = Value::Bool(true);
    }
    assert_eq!(raw(n.path()), expected);
}

#[test]
fn config_env_repos_and_servers_load() {
    let (_tmp, state) = copy_fixture();
    let no_env = |_: &str| None;
    let config = Config::load(&state, Path::new("/home/user"), &no_env, &[]).expect("config");
    assert_eq!(config.max_concurrent_agents, 4);
    assert_eq!(config.verbosity, Verbosity::Quiet);
    assert_eq!(config.warnings().len(), 1, "the dropped batch-size key warns");

    let env = EnvFiles::new(&state);
    let merged = env.merged(PM_AGENT).expect("env");
    assert_eq!(merged.0["GITEA_TOKEN"], "ghp_xxx");
    assert_eq!(merged.0["GIT_AUTHOR_NAME"], "kugetsu pm");
    assert!(env.show(PM_AGENT).expect("show").contains(&("GITEA_TOKEN".into(), MASK.into())));

    let servers = Servers::new(&state).load().expect("servers");
    let repos = Repos::new(&state).load().expect("repos");
    let url =
        |r: &str| clone_url_for(&IssueRef::parse(r).expect("ref"), &servers, &repos).expect("url");
    assert_eq!(url("github.com/shoko/kugetsu#14"), "https://custom.repo.url/owner/repo.git");
    assert_eq!(url("github.com/shoko/kugetsu#15"), "https://github.com/shoko/kugetsu.git");
}
