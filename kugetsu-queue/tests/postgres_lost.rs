//! Lost hosts on a real PostgreSQL server: a host whose lease has been expired long enough is
//! lost, and its issues with work waiting move, once, saying what stayed behind; the lost host
//! cannot record over the move, never claims a moved issue again, and is told of each move.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

use crate::{conformance, pg};

use std::sync::Arc;
use std::time::{Duration, Instant};

use kugetsu_core::queue::{QueueError, QueueStatus};
use kugetsu_queue::postgres::{self, PgOptions};
use time::OffsetDateTime;

fn options(url: &str, host: &str) -> PgOptions {
    PgOptions {
        url: url.to_string(),
        host: host.to_string(),
        lease_ttl: Duration::from_secs(1),
        host_lost: Duration::from_secs(1),
        global_limit: Arc::new(|| None),
    }
}

#[test]
fn a_lost_hosts_waiting_issues_move_once_and_it_is_fenced_out() {
    let Some(pg) = pg::Pg::start() else { return };
    let url = pg.database();
    let a = postgres::backend(options(&url, "a")).unwrap();
    let b = postgres::backend(options(&url, "b")).unwrap();
    let c = postgres::backend(options(&url, "c")).unwrap();
    let (a_hosts, b_hosts, c_hosts) =
        (a.hosts.clone().unwrap(), b.hosts.clone().unwrap(), c.hosts.clone().unwrap());
    a_hosts.beat().unwrap();
    let now = OffsetDateTime::now_utc();
    let mut claim_a = conformance::claim("a1");
    claim_a.host = Some("a".into());
    let mut claim_b = conformance::claim("b1");
    claim_b.host = Some("b".into());
    let done = |id: &str| {
        a.queue.update_claimed(id, &claim_a, &mut |it| it.status = QueueStatus::Completed).unwrap()
    };
    // #1: a finished turn on a, and an item waiting for it. #2: a turn running on a. #3: a
    // finished turn and nothing waiting (it stays).
    let one = a.queue.enqueue(conformance::task("one", Some("o/r#1"))).unwrap();
    assert_eq!(a.queue.claim_next(&claim_a, now).unwrap().unwrap().id, one.id);
    done(&one.id);
    let two = a.queue.enqueue(conformance::task("two", Some("o/r#2"))).unwrap();
    assert_eq!(a.queue.claim_next(&claim_a, now).unwrap().unwrap().id, two.id);
    let three = a.queue.enqueue(conformance::task("three", Some("o/r#3"))).unwrap();
    assert_eq!(a.queue.claim_next(&claim_a, now).unwrap().unwrap().id, three.id);
    done(&three.id);
    let again = a.queue.enqueue(conformance::task("one again", Some("o/r#1"))).unwrap();
    // a keeps #1's history for others; b, which does not keep #1, cannot write it.
    let doc = r#"{"session": "s", "missing": ["the worktree: too big"]}"#;
    assert!(a_hosts.save_history("o/r#1", doc).unwrap());
    assert!(!b_hosts.save_history("o/r#1", "{}").unwrap());

    // a is alive: nothing moves, and b may not take a's issues.
    assert!(b_hosts.move_lost().unwrap().is_empty());
    assert!(b.queue.claim_next(&claim_b, now).unwrap().is_none());

    // a falls silent: once its lease has been expired for host_lost, b moves its issues.
    let deadline = Instant::now() + Duration::from_secs(30);
    let moves = loop {
        b_hosts.beat().unwrap();
        let moves = b_hosts.move_lost().unwrap();
        if !moves.is_empty() {
            break moves;
        }
        assert!(Instant::now() < deadline, "a never counted as lost");
        std::thread::sleep(Duration::from_millis(200));
    };
    let issues: Vec<&str> = moves.iter().map(|m| m.issue_ref.as_str()).collect();
    assert_eq!(issues, ["o/r#1", "o/r#2"], "{moves:?}");
    assert!(moves.iter().all(|m| m.from_host == "a"));
    assert!(moves[0].why.contains("moves with its history"), "{}", moves[0].why);
    assert!(moves[0].why.contains("(not saved: the worktree: too big)"), "{}", moves[0].why);
    assert!(moves[1].why.contains("no finished turn"), "{}", moves[1].why);
    // The running item is back to pending, saying its turn was lost; the waiting one says why
    // it starts afresh.
    let two_now = b.queue.get(&two.id).unwrap();
    assert_eq!(two_now.status, QueueStatus::Pending);
    assert!(two_now.claim.is_none());
    assert!(two_now.last_error.unwrap().contains("the turn it was running there is lost"));
    let again_now = b.queue.get(&again.id).unwrap();
    assert!(again_now.last_error.unwrap().contains("moves with its history"));
    // Once: another live host finds nothing left to move.
    c_hosts.beat().unwrap();
    assert!(c_hosts.move_lost().unwrap().is_empty());

    // a comes back: its old claim records nothing, it takes neither moved issue, and it is told
    // of each move once, naming the host that took it.
    assert!(matches!(
        a.queue.update_claimed(&two.id, &claim_a, &mut |it| it.status = QueueStatus::Completed),
        Err(QueueError::LeaseLost { .. })
    ));
    a_hosts.beat().unwrap();
    assert!(a.queue.claim_next(&claim_a, now).unwrap().is_none(), "a took a moved issue");
    let took: Vec<String> =
        std::iter::from_fn(|| b.queue.claim_next(&claim_b, now).unwrap()).map(|i| i.id).collect();
    assert_eq!(took, [two.id.clone(), again.id.clone()]);
    let told = a_hosts.moved_away().unwrap();
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(told.iter().all(|m| m.to_host.as_deref() == Some("b")), "{told:?}");
    assert!(a_hosts.moved_away().unwrap().is_empty());
    // The history is b's to use, and no longer a's to write.
    assert_eq!(b_hosts.history("o/r#1").unwrap(), Some(("a".to_string(), doc.to_string())));
    assert!(!a_hosts.save_history("o/r#1", "{}").unwrap(), "a lost #1");
    assert_eq!(a_hosts.history("o/r#3").unwrap(), None);
    let admin = postgres::PgQueue::connect(&options(&url, "admin")).unwrap();
    assert_eq!(admin.moves().unwrap().len(), 2);
}
