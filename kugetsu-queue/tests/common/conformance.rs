//! The behaviour every queue backend must have, run against the file queue and the
//! PostgreSQL queue alike: FIFO claims, one winner per item under racing threads, lanes,
//! backoff, fencing, lease renewal, unknown fields kept, bad tasks refused, clear.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use kugetsu_core::queue::{Claim, ClaimLane, NewTask, Once, QueueError, QueueStatus, TaskQueue};
use time::{Duration, OffsetDateTime};

pub fn claim(lease: &str) -> Claim {
    let mut c = Claim::new(
        std::process::id(),
        kugetsu_process::identity::own_token(),
        OffsetDateTime::now_utc(),
    );
    c.lease = Some(lease.to_string());
    c
}

pub fn task(msg: &str, issue: Option<&str>) -> NewTask {
    NewTask {
        message: msg.into(),
        issue_ref: issue.map(str::to_string),
        options: Default::default(),
    }
}

/// Runs every case, each on a fresh queue from `make`.
pub fn run_all(make: &dyn Fn() -> Arc<dyn TaskQueue>) {
    fifo_and_each_item_once(&*make());
    not_before_delays_a_claim(&*make());
    lanes_separate_pm_and_issue_work(&*make());
    a_claimer_that_lost_its_item_writes_nothing(&*make());
    renew_keeps_only_what_is_still_held(&*make());
    updates_keep_unknown_fields(&*make());
    bad_tasks_are_refused(&*make());
    clear_removes_only_old_finished_items(&*make());
    racing_threads_never_share_an_item(make().clone());
    enqueue_once_queues_one_item_per_key(&*make());
}

fn enqueue_once_queues_one_item_per_key(q: &dyn TaskQueue) {
    let issue = Some("github.com/o/r#1");
    let first = q.enqueue_once(task("start", issue), "watch-start github.com/o/r#1").unwrap();
    let Once::Added(item) = &first else { panic!("{first:?}") };
    assert_eq!(item.once_key.as_deref(), Some("watch-start github.com/o/r#1"));
    // Claimed, finished: the key still stands.
    let now = OffsetDateTime::now_utc();
    assert_eq!(q.claim_next(&claim("o1"), now).unwrap().unwrap().id, item.id);
    q.update(&item.id, &mut |i| i.status = QueueStatus::Completed).unwrap();
    let again = q.enqueue_once(task("start again", issue), "watch-start github.com/o/r#1").unwrap();
    assert_eq!(again, Once::Found(q.get(&item.id).unwrap()));
    // Another key, or a plain enqueue, adds.
    let other = q.enqueue_once(task("round", issue), "loop-checks github.com/o/r#1 abc").unwrap();
    assert!(matches!(other, Once::Added(_)), "{other:?}");
    q.enqueue(task("plain", issue)).unwrap();
    assert_eq!(q.list().unwrap().items.len(), 3);
    for bad in ["", "a\nb"] {
        let err = q.enqueue_once(task("x", issue), bad).unwrap_err();
        assert!(matches!(err, QueueError::InvalidTask { .. }), "{err:?}");
    }
}

/// Two handles on one queue (two hosts of a shared one), several threads each, all queueing
/// the same keys at once: one item per key.
pub fn racing_hosts_enqueue_each_key_once(a: Arc<dyn TaskQueue>, b: Arc<dyn TaskQueue>) {
    let keys = 5;
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let q = if t % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                (0..keys)
                    .map(|k| {
                        let issue = format!("github.com/o/r#{k}");
                        let once = q
                            .enqueue_once(
                                task(&format!("t{t}"), Some(&issue)),
                                &format!("s {issue}"),
                            )
                            .unwrap();
                        matches!(once, Once::Added(_))
                    })
                    .filter(|added| *added)
                    .count()
            })
        })
        .collect();
    let added: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(added, keys, "one item added per key");
    let items = a.list().unwrap().items;
    assert_eq!(items.len(), keys, "{items:?}");
    let unique: HashSet<Option<String>> = items.into_iter().map(|i| i.once_key).collect();
    assert_eq!(unique.len(), keys);
}

fn fifo_and_each_item_once(q: &dyn TaskQueue) {
    let ids: Vec<String> = (0..5)
        .map(|i| q.enqueue(task(&format!("t{i}"), Some("github.com/o/r#1"))).unwrap().id)
        .collect();
    let listed: Vec<String> = q.list().unwrap().items.into_iter().map(|i| i.id).collect();
    assert_eq!(listed, ids, "listed in enqueue order");
    let now = OffsetDateTime::now_utc();
    for (n, id) in ids.iter().enumerate() {
        let item = q.claim_next(&claim(&format!("l{n}")), now).unwrap().unwrap();
        assert_eq!(&item.id, id, "claimed in enqueue order");
        assert_eq!(item.status, QueueStatus::Notified);
        assert_eq!(item.attempts, 1);
        assert_eq!(item.claim.as_ref().unwrap().lease.as_deref(), Some(format!("l{n}").as_str()));
    }
    assert!(q.claim_next(&claim("x"), now).unwrap().is_none());
    let s = q.stats().unwrap();
    assert_eq!((s.total, s.notified, s.pending), (5, 5, 0));
    assert_eq!(q.claimed().unwrap().len(), 5);
    assert_eq!(q.get(&ids[2]).unwrap().id, ids[2]);
    assert!(matches!(q.get("q_1"), Err(QueueError::NotFound { .. })));
}

fn not_before_delays_a_claim(q: &dyn TaskQueue) {
    let a = q.enqueue(task("a", None)).unwrap();
    let b = q.enqueue(task("b", None)).unwrap();
    let now = OffsetDateTime::now_utc();
    let at = now + Duration::minutes(5);
    q.update(&a.id, &mut |i| i.not_before = Some(at)).unwrap();
    assert_eq!(q.claim_next(&claim("1"), now).unwrap().unwrap().id, b.id, "a is not due yet");
    assert!(q.claim_next(&claim("2"), now).unwrap().is_none());
    let next = q.next_retry_at(now).unwrap().unwrap();
    assert!((next - at).abs() < Duration::milliseconds(1), "{next} vs {at}");
    assert_eq!(q.claim_next(&claim("3"), now + Duration::minutes(6)).unwrap().unwrap().id, a.id);
}

fn lanes_separate_pm_and_issue_work(q: &dyn TaskQueue) {
    let pm = q.enqueue(task("pm", None)).unwrap();
    let dev = q.enqueue(task("dev", Some("github.com/o/r#2"))).unwrap();
    let now = OffsetDateTime::now_utc();
    assert_eq!(q.claim_next_in(&claim("1"), now, ClaimLane::Issues).unwrap().unwrap().id, dev.id);
    assert!(q.claim_next_in(&claim("2"), now, ClaimLane::Issues).unwrap().is_none());
    assert_eq!(q.claim_next_in(&claim("3"), now, ClaimLane::Pm).unwrap().unwrap().id, pm.id);
}

fn a_claimer_that_lost_its_item_writes_nothing(q: &dyn TaskQueue) {
    let a = q.enqueue(task("a", None)).unwrap();
    let now = OffsetDateTime::now_utc();
    let first = claim("first");
    q.claim_next(&first, now).unwrap().unwrap();
    // Its lease ends (recovered by someone), and another claimer takes the item.
    q.update(&a.id, &mut |i| {
        i.status = QueueStatus::Pending;
        i.claim = None;
    })
    .unwrap();
    let second = claim("second");
    q.claim_next(&second, now).unwrap().unwrap();
    let err =
        q.update_claimed(&a.id, &first, &mut |i| i.status = QueueStatus::Completed).unwrap_err();
    assert!(matches!(err, QueueError::LeaseLost { .. }), "{err}");
    let now_item = q.get(&a.id).unwrap();
    assert_eq!(now_item.status, QueueStatus::Notified, "the stale outcome was not recorded");
    assert_eq!(now_item.claim.unwrap().lease.as_deref(), Some("second"));
    let done = q
        .update_claimed(&a.id, &second, &mut |i| {
            i.status = QueueStatus::Completed;
            i.claim = None;
        })
        .unwrap();
    assert_eq!(done.status, QueueStatus::Completed);
    // Finished: even its rightful owner can no longer write as a claimer.
    assert!(q.update_claimed(&a.id, &second, &mut |_| {}).is_err());
}

fn renew_keeps_only_what_is_still_held(q: &dyn TaskQueue) {
    let a = q.enqueue(task("a", None)).unwrap();
    let b = q.enqueue(task("b", None)).unwrap();
    let now = OffsetDateTime::now_utc();
    let ca = claim("a");
    let cb = claim("b");
    q.claim_next(&ca, now).unwrap().unwrap();
    q.claim_next(&cb, now).unwrap().unwrap();
    q.update(&b.id, &mut |i| {
        i.status = QueueStatus::Pending;
        i.claim = None;
    })
    .unwrap();
    let kept = q.renew(&[(a.id.clone(), ca), (b.id.clone(), cb)]).unwrap();
    assert_eq!(kept, vec![a.id.clone()]);
}

fn updates_keep_unknown_fields(q: &dyn TaskQueue) {
    let a = q.enqueue(task("a", None)).unwrap();
    q.update(&a.id, &mut |i| {
        i.extra.insert("from_the_future".into(), serde_json::json!({"x": 1}));
    })
    .unwrap();
    q.update(&a.id, &mut |i| i.last_error = Some("e".into())).unwrap();
    let back = q.get(&a.id).unwrap();
    assert_eq!(back.extra["from_the_future"], serde_json::json!({"x": 1}));
    assert_eq!(back.last_error.as_deref(), Some("e"));
}

fn bad_tasks_are_refused(q: &dyn TaskQueue) {
    for bad in ["", "   ", "a\0b"] {
        let err = q.enqueue(task(bad, None)).unwrap_err();
        assert!(matches!(err, QueueError::InvalidTask { .. }), "{bad:?}: {err}");
    }
    let err = q.enqueue(task("x", Some("has space"))).unwrap_err();
    assert!(matches!(err, QueueError::InvalidTask { .. }), "{err}");
    assert_eq!(q.stats().unwrap().total, 0, "nothing half-written");
}

fn clear_removes_only_old_finished_items(q: &dyn TaskQueue) {
    let done = q.enqueue(task("done", None)).unwrap();
    let failed = q.enqueue(task("failed", None)).unwrap();
    let waiting = q.enqueue(task("waiting", None)).unwrap();
    q.update(&done.id, &mut |i| i.status = QueueStatus::Completed).unwrap();
    q.update(&failed.id, &mut |i| i.status = QueueStatus::Error).unwrap();
    let past = OffsetDateTime::now_utc() - Duration::days(1);
    assert_eq!(q.clear(past).unwrap(), 0, "nothing is a day old");
    let future = OffsetDateTime::now_utc() + Duration::days(1);
    assert_eq!(q.clear(future).unwrap(), 2);
    let left: Vec<String> = q.list().unwrap().items.into_iter().map(|i| i.id).collect();
    assert_eq!(left, vec![waiting.id]);
}

fn racing_threads_never_share_an_item(q: Arc<dyn TaskQueue>) {
    let n = 40;
    for i in 0..n {
        q.enqueue(task(&format!("r{i}"), None)).unwrap();
    }
    let got = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let q = q.clone();
            let got = got.clone();
            std::thread::spawn(move || {
                let mut k = 0;
                while let Some(i) =
                    q.claim_next(&claim(&format!("{t}/{k}")), OffsetDateTime::now_utc()).unwrap()
                {
                    got.lock().unwrap().push(i.id);
                    k += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let got = got.lock().unwrap();
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(got.len(), n, "every item claimed");
    assert_eq!(unique.len(), n, "no item claimed twice");
}
