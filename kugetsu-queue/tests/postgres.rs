//! The PostgreSQL backend against a real server the test starts itself: the conformance suite
//! every backend passes, then what only a shared queue has: the schema, affinity, limits
//! across hosts, expiring leases, an unreachable server and a restarted one.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

use crate::{conformance, pg};

use std::sync::Arc;
use std::time::Duration;

use kugetsu_core::queue::{QueueError, TaskQueue as _};
use kugetsu_queue::postgres::{self, PgOptions};
use time::OffsetDateTime;

fn options(url: &str, host: &str, global: Option<usize>, ttl: Duration) -> PgOptions {
    PgOptions {
        url: url.to_string(),
        host: host.to_string(),
        lease_ttl: ttl,
        host_lost: Duration::from_secs(300),
        global_limit: Arc::new(move || global),
    }
}

#[test]
fn postgres_backend() {
    let Some(pg) = pg::Pg::start() else { return };

    // The same suite as the file queue.
    conformance::run_all(&|| {
        postgres::backend(options(&pg.database(), "h1", None, Duration::from_secs(30)))
            .unwrap()
            .queue
    });

    // Two hosts queueing the same keys at once: one item per key.
    let url = pg.database();
    conformance::racing_hosts_enqueue_each_key_once(
        postgres::backend(options(&url, "r1", None, Duration::from_secs(30))).unwrap().queue,
        postgres::backend(options(&url, "r2", None, Duration::from_secs(30))).unwrap().queue,
    );

    // The schema is created once, versioned, and migrating again changes nothing.
    let url = pg.database();
    let first = postgres::migrate(&url).unwrap();
    assert_eq!((first.was, first.version), (0, postgres::SCHEMA_VERSION));
    let again = postgres::migrate(&url).unwrap();
    assert_eq!((again.was, again.version), (postgres::SCHEMA_VERSION, postgres::SCHEMA_VERSION));

    // Affinity: the host that first claims an issue keeps it; other hosts take other work.
    let a = postgres::backend(options(&url, "a", None, Duration::from_secs(30))).unwrap();
    let b = postgres::backend(options(&url, "b", None, Duration::from_secs(30))).unwrap();
    let now = OffsetDateTime::now_utc();
    let mut claim_a = conformance::claim("a1");
    claim_a.host = Some("a".into());
    let mut claim_b = conformance::claim("b1");
    claim_b.host = Some("b".into());
    let first = a.queue.enqueue(conformance::task("one", Some("github.com/o/r#1"))).unwrap();
    assert_eq!(a.queue.claim_next(&claim_a, now).unwrap().unwrap().id, first.id);
    let second = a.queue.enqueue(conformance::task("two", Some("github.com/o/r#1"))).unwrap();
    let other = a.queue.enqueue(conformance::task("other", Some("github.com/o/r#2"))).unwrap();
    assert_eq!(
        b.queue.claim_next(&claim_b, now).unwrap().unwrap().id,
        other.id,
        "b skips the issue that lives on a"
    );
    assert!(b.queue.claim_next(&claim_b, now).unwrap().is_none());
    assert_eq!(a.queue.claim_next(&claim_a, now).unwrap().unwrap().id, second.id);
    let seen = postgres::inspect(&url).unwrap();
    assert_eq!(seen.version, postgres::SCHEMA_VERSION);
    assert!(seen.hosts.iter().any(|h| h.host == "a" && h.items == 2), "{seen:?}");
    assert!(seen.stuck.is_empty(), "{seen:?}");
    // A host gone for good: its claimed items go back, its issues are free for others.
    let admin =
        postgres::PgQueue::connect(&options(&url, "admin", None, Duration::from_secs(30))).unwrap();
    let (issues, requeued) = admin.release_host("a").unwrap();
    assert_eq!(issues, vec!["github.com/o/r#1".to_string()]);
    assert_eq!(requeued.len(), 2);
    assert_eq!(b.queue.claim_next(&claim_b, now).unwrap().unwrap().id, first.id);

    // An item whose lease ran out is reported as stuck until a daemon recovers it.
    let url = pg.database();
    let short = postgres::backend(options(&url, "gone", None, Duration::from_millis(300))).unwrap();
    short.queue.enqueue(conformance::task("x", None)).unwrap();
    short.queue.claim_next(&conformance::claim("g"), OffsetDateTime::now_utc()).unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(postgres::inspect(&url).unwrap().stuck.len(), 1);

    // A host whose clock is an hour ahead still sees a fresh lease as live: expiries are the
    // server's, shifted onto the reader's clock.
    let url = pg.database();
    let live = postgres::backend(options(&url, "a", None, Duration::from_secs(30))).unwrap();
    live.queue.enqueue(conformance::task("y", None)).unwrap();
    live.queue.claim_next(&conformance::claim("l"), OffsetDateTime::now_utc()).unwrap().unwrap();
    let ahead = OffsetDateTime::now_utc() + time::Duration::hours(1);
    let skewed = postgres::PgQueue::connect(&options(&url, "b", None, Duration::from_secs(30)))
        .unwrap()
        .with_clock(Arc::new(kugetsu_core::clock::FixedClock(ahead)));
    let claim = skewed.claimed().unwrap().remove(0).claim.unwrap();
    assert!(live.liveness.holder_alive(&claim, ahead), "{claim:?} judged on a clock an hour ahead");

    // Limits: per host and across hosts, both at once.
    let url = pg.database();
    let hosts: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|h| postgres::backend(options(&url, h, Some(4), Duration::from_secs(30))).unwrap())
        .collect();
    let mut held = Vec::new();
    for h in &hosts {
        held.push(h.slots.try_acquire(2).unwrap());
        held.push(h.slots.try_acquire(2).unwrap());
    }
    let granted = held.iter().filter(|g| g.is_some()).count();
    // a: 2, b: 2, c: 0 (global 4 reached).
    assert_eq!(granted, 4, "never more than 4 in all");
    assert!(held[4].is_none() && held[5].is_none(), "c got none: a and b hold all 4");
    assert!(hosts[0].slots.try_acquire(2).unwrap().is_none(), "a has its 2");
    assert_eq!(hosts[0].slots.active().unwrap(), 2);
    held.clear();
    assert!(hosts[2].slots.try_acquire(2).unwrap().is_some(), "released slots are free again");

    // A slot is renewed while its guard lives, and a slot whose holder stopped renewing (a
    // killed daemon) frees itself when its lease runs out.
    let url = pg.database();
    let ttl = Duration::from_millis(600);
    let live = postgres::backend(options(&url, "a", Some(1), ttl)).unwrap();
    let other = postgres::backend(options(&url, "b", Some(1), ttl)).unwrap();
    let guard = live.slots.try_acquire(1).unwrap().unwrap();
    std::thread::sleep(ttl * 3);
    assert!(other.slots.try_acquire(1).unwrap().is_none(), "renewed by the heartbeat");
    drop(guard);
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    client
        .execute(
            "INSERT INTO kugetsu_slots (host, idx, holder, expires_us)
             VALUES ('dead', 0, 'dead/0', kugetsu_now_us() + 500000)",
            &[],
        )
        .unwrap();
    assert!(other.slots.try_acquire(1).unwrap().is_none(), "the dead host's slot still counts");
    std::thread::sleep(Duration::from_millis(800));
    assert!(other.slots.try_acquire(1).unwrap().is_some(), "its lease ran out");

    // PostgreSQL unreachable: a clean error naming the server without its password; nothing
    // written. Then restarted: the same backend reconnects and carries on.
    let url = pg.database();
    let q = postgres::backend(options(&url, "a", None, Duration::from_secs(30))).unwrap().queue;
    q.enqueue(conformance::task("before", None)).unwrap();
    pg.stop();
    let err = q.enqueue(conformance::task("while down", None)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, QueueError::Unavailable { .. }), "{text}");
    assert!(!text.contains("s3cretpw"), "the password is masked: {text}");
    assert!(text.contains("127.0.0.1"), "the server is named: {text}");
    pg.restart();
    q.enqueue(conformance::task("after", None)).unwrap();
    let messages: Vec<String> = q.list().unwrap().items.into_iter().map(|i| i.message).collect();
    assert_eq!(messages, vec!["before", "after"], "nothing half-written while it was down");
}

/// Two hosts watching the same repository on one shared queue, polling at the same moment:
/// each labelled issue is queued once, and both hosts record that one item as the issue's.
#[test]
fn two_hosts_watching_one_repository_queue_each_issue_once() {
    use kugetsu_core::forge::{Forge, ForgeError, Issue, ListQuery, Listing};
    use kugetsu_core::state::StateDir;
    use kugetsu_core::watch::{Watches, poll};

    struct Labelled;
    impl Forge for Labelled {
        fn list_issues(&self, _: &str, _: &ListQuery) -> Result<Listing, ForgeError> {
            let issue = |number| Issue {
                number,
                title: format!("issue {number}"),
                body: String::new(),
                open: true,
                labels: vec!["kugetsu".into()],
            };
            Ok(Listing::Issues { issues: (1..=6).map(issue).collect(), etag: None, pause: None })
        }
        fn get_issue(&self, _: &str, _: u64) -> Result<Issue, ForgeError> {
            unreachable!()
        }
    }

    let Some(pg) = pg::Pg::start() else { return };
    let url = pg.database();
    let repo = "github.com/o/r";
    let hosts: Vec<_> = ["wa", "wb"]
        .into_iter()
        .map(|host| {
            let dir = tempfile::tempdir().unwrap();
            let state = StateDir::new(dir.path().join("k"));
            state.ensure().unwrap();
            let watches = Watches::new(&state);
            watches.add(repo, "kugetsu").unwrap();
            let queue = postgres::backend(options(&url, host, None, Duration::from_secs(30)))
                .unwrap()
                .queue;
            (dir, watches, queue)
        })
        .collect();
    let start = std::sync::Barrier::new(hosts.len());
    let enqueued: usize = std::thread::scope(|s| {
        let polls: Vec<_> = hosts
            .iter()
            .map(|(_, watches, queue)| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    let now = OffsetDateTime::now_utc();
                    poll(watches, repo, &Labelled, "o/r", &**queue, &[], now)
                        .unwrap()
                        .enqueued
                        .len()
                })
            })
            .collect();
        polls.into_iter().map(|p| p.join().unwrap()).sum()
    });
    let items = hosts[0].2.list().unwrap().items;
    assert_eq!((enqueued, items.len()), (6, 6), "{items:#?}");
    for (_, watches, _) in &hosts {
        let taken = &watches.load().unwrap().watches[repo].taken;
        let ids: Vec<&str> = taken.values().map(|t| t.item.as_str()).collect();
        assert_eq!(ids, items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>());
    }
}
