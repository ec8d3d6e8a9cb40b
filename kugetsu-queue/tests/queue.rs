//! The file queue and slots in one process: FIFO, claims, updates, clear, corrupt files.

#![allow(clippy::unwrap_used)]

use crate::{common, conformance};

use std::sync::{Arc, Mutex};

use kugetsu_core::clock::FixedClock;
use kugetsu_core::queue::{Claim, NewTask, QueueError, QueueStatus, TaskQueue};
use kugetsu_queue::FileQueue;
use time::{Duration, OffsetDateTime};

fn claim() -> Claim {
    Claim::new(
        std::process::id(),
        kugetsu_process::identity::own_token(),
        OffsetDateTime::now_utc(),
    )
}

fn task(msg: &str) -> NewTask {
    NewTask {
        message: msg.into(),
        issue_ref: Some("github.com/o/r#1".into()),
        options: Default::default(),
    }
}

#[test]
fn fifo_claims_in_enqueue_order_and_each_item_once() {
    let env = common::env();
    // A fixed clock: ids must still be unique and ordered (bumped past the last one).
    let q = FileQueue::with_clock(&env.state, Arc::new(FixedClock(OffsetDateTime::UNIX_EPOCH)));
    let ids: Vec<String> = (0..5).map(|i| q.enqueue(task(&format!("t{i}"))).unwrap().id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ids sort in enqueue order");
    let listed: Vec<String> = q.list().unwrap().items.into_iter().map(|i| i.id).collect();
    assert_eq!(listed, ids);
    let now = OffsetDateTime::now_utc();
    for id in &ids {
        let item = q.claim_next(&claim(), now).unwrap().unwrap();
        assert_eq!(&item.id, id);
        assert_eq!(item.status, QueueStatus::Notified);
        assert_eq!(item.attempts, 1);
        assert_eq!(item.claim.as_ref().unwrap().owner_pid, std::process::id());
    }
    assert!(q.claim_next(&claim(), now).unwrap().is_none());
    let stats = q.stats().unwrap();
    assert_eq!((stats.total, stats.notified, stats.pending), (5, 5, 0));
}

#[test]
fn not_before_delays_a_claim() {
    let env = common::env();
    let q = FileQueue::new(&env.state);
    let a = q.enqueue(task("a")).unwrap();
    let b = q.enqueue(task("b")).unwrap();
    let now = OffsetDateTime::now_utc();
    q.update(&a.id, &mut |i| i.not_before = Some(now + Duration::minutes(5))).unwrap();
    assert_eq!(q.claim_next(&claim(), now).unwrap().unwrap().id, b.id, "a is not due yet");
    assert!(q.claim_next(&claim(), now).unwrap().is_none());
    assert_eq!(q.next_retry_at(now).unwrap(), Some(now + Duration::minutes(5)));
    let later = now + Duration::minutes(6);
    assert_eq!(q.claim_next(&claim(), later).unwrap().unwrap().id, a.id);
}

#[test]
fn update_keeps_unknown_fields_and_the_id() {
    let env = common::env();
    let q = FileQueue::new(&env.state);
    let a = q.enqueue(task("a")).unwrap();
    let path = q.item_path(&a.id).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["from_the_future"] = serde_json::json!({"x": 1});
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let updated = q
        .update(&a.id, &mut |i| {
            i.status = QueueStatus::Completed;
            i.id = "q_999".into();
        })
        .unwrap();
    assert_eq!(updated.id, a.id);
    let back = q.get(&a.id).unwrap();
    assert_eq!(back.status, QueueStatus::Completed);
    assert_eq!(back.extra["from_the_future"]["x"], 1);
    assert!(matches!(q.update("q_1", &mut |_| {}), Err(QueueError::NotFound { .. })));
    assert!(matches!(q.update("../../etc/passwd", &mut |_| {}), Err(QueueError::NotFound { .. })));
}

#[test]
fn bad_tasks_are_refused_with_the_reason() {
    let env = common::env();
    let q = FileQueue::new(&env.state);
    for (t, want) in [
        (NewTask { message: "  ".into(), issue_ref: None, options: Default::default() }, "empty"),
        (
            NewTask { message: "x".repeat(70_000), issue_ref: None, options: Default::default() },
            "bytes",
        ),
        (NewTask { message: "a\0b".into(), issue_ref: None, options: Default::default() }, "NUL"),
        (
            NewTask {
                message: "ok".into(),
                issue_ref: Some("o/r #1".into()),
                options: Default::default(),
            },
            "spaces",
        ),
    ] {
        let err = q.enqueue(t).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
    }
    assert_eq!(q.stats().unwrap().total, 0);
}

#[test]
fn clear_removes_only_old_finished_items() {
    let env = common::env();
    let q = FileQueue::new(&env.state);
    let ids: Vec<String> = (0..4).map(|i| q.enqueue(task(&format!("{i}"))).unwrap().id).collect();
    let old = OffsetDateTime::now_utc() - Duration::days(10);
    q.update(&ids[0], &mut |i| {
        i.status = QueueStatus::Completed;
        i.updated_at = Some(old);
    })
    .unwrap();
    q.update(&ids[1], &mut |i| {
        i.status = QueueStatus::Error;
        i.updated_at = Some(old);
    })
    .unwrap();
    q.update(&ids[2], &mut |i| i.status = QueueStatus::Completed).unwrap(); // recent
    q.update(&ids[3], &mut |i| i.updated_at = Some(old)).unwrap(); // old but pending
    let removed = q.clear(OffsetDateTime::now_utc() - Duration::days(7)).unwrap();
    assert_eq!(removed, 2);
    let left: Vec<String> = q.list().unwrap().items.into_iter().map(|i| i.id).collect();
    assert_eq!(left, vec![ids[2].clone(), ids[3].clone()]);
}

#[test]
fn a_corrupt_item_is_reported_kept_aside_and_the_rest_still_listed_and_claimed() {
    let env = common::env();
    let q = FileQueue::new(&env.state);
    let a = q.enqueue(task("a")).unwrap();
    let bad = env.state.queue_items_dir().join("q_00000000000000000001.json");
    std::fs::write(&bad, b"{\"id\": \"q_1\", \"status\": ").unwrap();
    let b = q.enqueue(task("b")).unwrap();

    let listing = q.list().unwrap();
    let ids: Vec<&str> = listing.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, vec![a.id.as_str(), b.id.as_str()]);
    assert_eq!(listing.problems.len(), 1, "{:?}", listing.problems);
    assert!(listing.problems[0].contains("q_00000000000000000001.json"), "{:?}", listing.problems);
    assert!(!bad.exists(), "moved aside");
    let kept: Vec<_> = std::fs::read_dir(env.state.queue_items_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1);
    let kept_path = env.state.queue_items_dir().join(&kept[0]);
    assert_eq!(std::fs::read(&kept_path).unwrap(), b"{\"id\": \"q_1\", \"status\": ");

    // Still reported afterwards (kept aside), and counted.
    let again = q.list().unwrap();
    assert!(again.problems.iter().any(|p| p.contains(&kept[0])), "{:?}", again.problems);
    let stats = q.stats().unwrap();
    assert_eq!((stats.total, stats.pending, stats.corrupt), (2, 2, 1));
    let now = OffsetDateTime::now_utc();
    assert_eq!(q.claim_next(&claim(), now).unwrap().unwrap().id, a.id);
    assert_eq!(q.claim_next(&claim(), now).unwrap().unwrap().id, b.id);
}

#[test]
fn items_of_the_original_kugetsu_load_and_sort_first() {
    let env = common::env();
    let q = FileQueue::new(&env.state);
    let new = q.enqueue(task("new")).unwrap();
    let old = serde_json::json!({
        "id": "q_1712300000",
        "status": "pending",
        "message": "work on issue #14",
        "created_at": "2024-04-05T08:00:00Z",
        "attempts": 1,
        "worker": "bash"
    });
    std::fs::write(
        env.state.queue_items_dir().join("q_1712300000.json"),
        serde_json::to_vec(&old).unwrap(),
    )
    .unwrap();
    let items = q.list().unwrap().items;
    assert_eq!(items[0].id, "q_1712300000");
    assert_eq!(items[1].id, new.id);
    assert_eq!(items[0].extra["worker"], "bash");
}

#[test]
fn concurrent_claims_from_threads_never_share_an_item() {
    let env = common::env();
    let q = Arc::new(FileQueue::new(&env.state));
    for i in 0..60 {
        q.enqueue(task(&format!("{i}"))).unwrap();
    }
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Some(i) = q.claim_next(&claim(), OffsetDateTime::now_utc()).unwrap() {
                    got.push(i.id);
                }
                got
            })
        })
        .collect();
    let mut all: Vec<String> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (60, 60));
}

#[test]
fn cached_scans_and_cold_stats_see_every_change_made_by_others() {
    let env = common::env();
    let mine = FileQueue::new(&env.state);
    let other = FileQueue::new(&env.state);
    let ids: Vec<String> =
        (0..3).map(|i| other.enqueue(task(&format!("{i}"))).unwrap().id).collect();
    // Let the directory settle so that scans (and the stats cache) are trusted and reused.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(mine.list().unwrap().items.len(), 3);
    assert_eq!(FileQueue::new(&env.state).stats().unwrap().pending, 3);
    assert!(env.state.queue_dir().join("items.cache").exists());
    assert_eq!(FileQueue::new(&env.state).stats().unwrap().pending, 3, "from the cache");

    other.update(&ids[0], &mut |i| i.status = QueueStatus::Completed).unwrap();
    other.enqueue(task("3")).unwrap();
    let fresh = FileQueue::new(&env.state).stats().unwrap();
    assert_eq!((fresh.total, fresh.pending, fresh.completed), (4, 3, 1));
    let warm = mine.stats().unwrap();
    assert_eq!((warm.total, warm.pending, warm.completed), (4, 3, 1));
    assert_eq!(mine.get(&ids[0]).unwrap().status, QueueStatus::Completed);

    // A damaged cache is only a cache: stats are still right, and nothing is kept aside.
    std::fs::write(env.state.queue_dir().join("items.cache"), b"{garbage").unwrap();
    let again = FileQueue::new(&env.state).stats().unwrap();
    assert_eq!((again.total, again.pending, again.completed, again.corrupt), (4, 3, 1, 0));
}

/// The behaviour every backend shares (the PostgreSQL queue runs the same suite).
#[test]
fn the_file_queue_passes_the_conformance_suite() {
    let dirs = Mutex::new(Vec::new());
    conformance::run_all(&|| {
        let env = common::env();
        let q: Arc<dyn TaskQueue> = Arc::new(FileQueue::new(&env.state));
        dirs.lock().unwrap().push(env);
        q
    });
    let env = common::env();
    conformance::racing_hosts_enqueue_each_key_once(
        Arc::new(FileQueue::new(&env.state)),
        Arc::new(FileQueue::new(&env.state)),
    );
}
