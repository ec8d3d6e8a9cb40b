//! Figures for the queue's speed targets (printed, not asserted: machines are shared and
//! noisy): enqueue throughput, `stats` over 10,000 items, and the latency from an enqueue to
//! the daemon dispatching it.
//!
//! With the `postgres` feature it also starts a throwaway PostgreSQL server (as the tests do)
//! and prints the same figures for the shared queue beside the file queue's, in one run:
//! enqueue throughput, claim latency, enqueue → dispatch from one host to another host's
//! daemon, and `queue stats` with 100,000 items.
//!
//! Run: `cargo bench -p kugetsu-queue --bench queue` (add `--features postgres` for the
//! shared queue)
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kugetsu_core::StateDir;
use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::queue::{NewTask, QueueItem, QueueStatus, TaskQueue};
use kugetsu_queue::FileQueue;
use kugetsu_queue::daemon::{
    Daemon, DaemonOptions, DispatchContext, DispatchError, DispatchOutcome, Dispatcher,
};
use time::OffsetDateTime;

fn state() -> (tempfile::TempDir, StateDir) {
    // Under the target directory rather than /tmp, which may be a tmpfs where fsync is free.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let state = StateDir::new(dir.path().join("state"));
    state.ensure().unwrap();
    (dir, state)
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:.2} ms, p95 {:.2} ms, max {:.2} ms ({} samples)",
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.95).as_secs_f64() * 1e3,
        pick(1.0).as_secs_f64() * 1e3,
        samples.len()
    )
}

fn task(i: usize) -> NewTask {
    NewTask {
        message: format!("work on issue #{i}"),
        issue_ref: Some(format!("o/r#{i}")),
        options: Default::default(),
    }
}

fn enqueue_throughput() {
    let (_dir, state) = state();
    let q = FileQueue::new(&state);
    let n = 500;
    let start = Instant::now();
    for i in 0..n {
        q.enqueue(task(i)).unwrap();
    }
    let took = start.elapsed();
    println!(
        "enqueue: {n} items in {:.2} s = {:.0} items/s ({:.2} ms each, durable: item file and directory fsynced)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1e3 / n as f64
    );
}

fn stats_10k() {
    let (_dir, state) = state();
    // Written directly (not through enqueue) to set up quickly; the files are identical.
    let now = OffsetDateTime::now_utc();
    for i in 0..10_000u64 {
        let id = format!("q_{:020}", 1_700_000_000_000_000_000u64 + i);
        let status = match i % 10 {
            0 => QueueStatus::Pending,
            1 => QueueStatus::Error,
            _ => QueueStatus::Completed,
        };
        let task = NewTask {
            message: format!("work on issue #{i}"),
            issue_ref: Some(format!("github.com/o/r#{i}")),
            options: Default::default(),
        };
        let item = QueueItem { status, attempts: 1, ..QueueItem::pending(id.clone(), &task, now) };
        std::fs::write(
            state.queue_items_dir().join(format!("{id}.json")),
            serde_json::to_vec_pretty(&item).unwrap(),
        )
        .unwrap();
    }
    let cache = state.queue_dir().join("items.cache");
    let touch = || {
        // Any change in the directory (here: one item rewritten) invalidates settled scans.
        let q = FileQueue::new(&state);
        let id = "q_01700000000000000000";
        q.update(id, &mut |i| i.attempts += 1).unwrap();
    };
    let time_stats = |q: &FileQueue| {
        let t = Instant::now();
        let s = q.stats().unwrap();
        assert_eq!(s.total, 10_000);
        t.elapsed()
    };
    let no_cache: Vec<Duration> = (0..3)
        .map(|_| {
            let _ = std::fs::remove_file(&cache);
            time_stats(&FileQueue::new(&state))
        })
        .collect();
    let changed: Vec<Duration> = (0..10)
        .map(|_| {
            touch();
            time_stats(&FileQueue::new(&state))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1100));
    let settled: Vec<Duration> = (0..10).map(|_| time_stats(&FileQueue::new(&state))).collect();
    let daemon = FileQueue::new(&state);
    daemon.list().unwrap();
    let warm_changed: Vec<Duration> = (0..10)
        .map(|_| {
            touch();
            time_stats(&daemon)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1100));
    daemon.list().unwrap();
    let warm_settled: Vec<Duration> = (0..10).map(|_| time_stats(&daemon)).collect();
    println!("stats, 10,000 items, new process, no cache (first ever):   {}", summary(no_cache));
    println!("stats, 10,000 items, new process, an item just changed:    {}", summary(changed));
    println!("stats, 10,000 items, new process, directory settled:       {}", summary(settled));
    println!(
        "stats, 10,000 items, daemon (warm), an item just changed:  {}",
        summary(warm_changed)
    );
    println!(
        "stats, 10,000 items, daemon (warm), directory settled:     {}",
        summary(warm_settled)
    );
}

struct Timestamps(Mutex<Sender<Instant>>);

impl Dispatcher for Timestamps {
    fn dispatch(
        &self,
        _item: &QueueItem,
        _ctx: &mut DispatchContext<'_>,
    ) -> Result<DispatchOutcome, DispatchError> {
        let _ = self.0.lock().unwrap().send(Instant::now());
        Ok(DispatchOutcome::default())
    }
}

fn enqueue_to_dispatch() {
    let (_dir, state) = state();
    let (tx, rx) = mpsc::channel();
    let daemon = Daemon::new(state.clone(), Arc::new(Timestamps(Mutex::new(tx))), Arc::new(|| 3))
        .with_options(DaemonOptions {
            // Only the enqueue's wake-up can make dispatch fast.
            interval: Duration::from_secs(3600),
            cleanup_age: None,
            ..DaemonOptions::default()
        });
    let stop = Interrupt::new();
    let handle = {
        let stop = stop.clone();
        std::thread::spawn(move || daemon.run(&stop).unwrap())
    };
    std::thread::sleep(Duration::from_millis(300));
    let q = FileQueue::new(&state);
    let mut from_call = Vec::new();
    let mut from_return = Vec::new();
    for i in 0..50 {
        let before = Instant::now();
        q.enqueue(task(i)).unwrap();
        let returned = Instant::now();
        let dispatched = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        from_call.push(dispatched.saturating_duration_since(before));
        from_return.push(dispatched.saturating_duration_since(returned));
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.trigger(0);
    handle.join().unwrap();
    println!("enqueue -> dispatch, from enqueue returning: {}", summary(from_return));
    println!("enqueue -> dispatch, from enqueue called:    {}", summary(from_call));
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("queue bench: run with `cargo bench -p kugetsu-queue --bench queue`");
        return;
    }
    enqueue_throughput();
    stats_10k();
    enqueue_to_dispatch();
    #[cfg(feature = "postgres")]
    shared::main();
}

#[cfg(feature = "postgres")]
#[path = "../tests/common/pg.rs"]
mod pg;

/// The file queue and the PostgreSQL queue side by side.
#[cfg(feature = "postgres")]
mod shared {
    use super::*;
    use kugetsu_core::queue::Claim;
    use kugetsu_queue::postgres::{self, PgOptions};

    fn options(url: &str, host: &str) -> PgOptions {
        PgOptions {
            url: url.to_string(),
            host: host.to_string(),
            lease_ttl: Duration::from_secs(30),
            host_lost: Duration::from_secs(300),
            global_limit: Arc::new(|| None),
        }
    }

    fn rate(n: usize, took: Duration) -> String {
        format!(
            "{:.0} items/s ({:.2} ms each, {n} items)",
            n as f64 / took.as_secs_f64(),
            took.as_secs_f64() * 1e3 / n as f64
        )
    }

    fn enqueue_rate(q: &dyn TaskQueue, n: usize) -> String {
        let start = Instant::now();
        for i in 0..n {
            q.enqueue(task(i)).unwrap();
        }
        rate(n, start.elapsed())
    }

    fn claim_latency(q: &dyn TaskQueue, n: usize) -> String {
        for i in 0..n {
            q.enqueue(task(i)).unwrap();
        }
        let samples = (0..n)
            .map(|i| {
                let mut claim = Claim::new(std::process::id(), "bench", OffsetDateTime::now_utc());
                claim.lease = Some(format!("bench/{i}"));
                claim.host = Some("bench".into());
                let t = Instant::now();
                q.claim_next(&claim, OffsetDateTime::now_utc()).unwrap().unwrap();
                t.elapsed()
            })
            .collect();
        summary(samples)
    }

    fn stats_time(q: &dyn TaskQueue, n: usize) -> String {
        let samples = (0..5)
            .map(|_| {
                let t = Instant::now();
                assert_eq!(q.stats().unwrap().total, n);
                t.elapsed()
            })
            .collect();
        summary(samples)
    }

    /// 100,000 items written straight into the item files / the table (the same rows
    /// `enqueue` would write), 10% pending, 10% error, the rest completed.
    fn fill_files(state: &StateDir, n: usize) {
        let now = OffsetDateTime::now_utc();
        for i in 0..n as u64 {
            let id = format!("q_{:020}", 1_700_000_000_000_000_000u64 + i);
            let status = match i % 10 {
                0 => "pending",
                1 => "error",
                _ => "completed",
            };
            let text = format!(
                r#"{{"id":"{id}","status":"{status}","message":"work on issue #{i}","issue_ref":"github.com/o/r#{i}","created_at":"{}","attempts":1}}"#,
                now.format(&time::format_description::well_known::Rfc3339).unwrap()
            );
            std::fs::write(state.queue_items_dir().join(format!("{id}.json")), text).unwrap();
        }
    }

    fn fill_table(url: &str, n: usize) {
        let mut c = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
        c.batch_execute(&format!(
            "INSERT INTO kugetsu_queue (id, status, issue_ref, updated_us, doc)
             SELECT 'q_' || lpad((1700000000000000000 + g)::text, 20, '0'),
                    CASE g % 10 WHEN 0 THEN 'pending' WHEN 1 THEN 'error' ELSE 'completed' END,
                    'github.com/o/r#' || g, 0,
                    json_build_object('id', 'q_' || lpad((1700000000000000000 + g)::text, 20, '0'),
                        'status', CASE g % 10 WHEN 0 THEN 'pending' WHEN 1 THEN 'error'
                                  ELSE 'completed' END,
                        'message', 'work on issue #' || g, 'issue_ref', 'github.com/o/r#' || g,
                        'created_at', '2026-01-01T00:00:00Z', 'attempts', 1)::text
             FROM generate_series(0, {}) g;
             ANALYZE kugetsu_queue;",
            n - 1
        ))
        .unwrap();
    }

    /// A daemon of host b on the shared queue; items enqueued through host a's backend.
    fn across_hosts(url: &str) -> String {
        let (_dir, state) = state();
        let (tx, rx) = mpsc::channel();
        let backend = postgres::backend(options(url, "b")).unwrap();
        let daemon =
            Daemon::new(state.clone(), Arc::new(Timestamps(Mutex::new(tx))), Arc::new(|| 3))
                .with_backend(backend)
                .with_options(DaemonOptions {
                    // Only LISTEN/NOTIFY can make dispatch fast.
                    interval: Duration::from_secs(3600),
                    cleanup_age: None,
                    ..DaemonOptions::default()
                });
        let stop = Interrupt::new();
        let handle = {
            let stop = stop.clone();
            std::thread::spawn(move || daemon.run(&stop).unwrap())
        };
        std::thread::sleep(Duration::from_millis(1000));
        let a = postgres::backend(options(url, "a")).unwrap().queue;
        let mut samples = Vec::new();
        for i in 0..50 {
            let returned = {
                a.enqueue(task(i)).unwrap();
                Instant::now()
            };
            let dispatched = rx.recv_timeout(Duration::from_secs(30)).unwrap();
            samples.push(dispatched.saturating_duration_since(returned));
            std::thread::sleep(Duration::from_millis(20));
        }
        kugetsu_queue::daemon::request_stop(&state, &stop, 0);
        handle.join().unwrap();
        summary(samples)
    }

    pub fn main() {
        let Some(pg) = pg::Pg::start_durable() else { return };
        println!();
        println!("file queue and PostgreSQL queue (server on loopback, fsync on) in one run:");
        let file_q = |_: ()| {
            let (dir, state) = state();
            (dir, FileQueue::new(&state))
        };
        let pg_q = || postgres::backend(options(&pg.database(), "bench")).unwrap().queue;
        let (_d1, f) = file_q(());
        println!("enqueue, file:        {}", enqueue_rate(&f, 500));
        println!("enqueue, PostgreSQL:  {}", enqueue_rate(&*pg_q(), 500));
        let (_d2, f) = file_q(());
        println!("claim, file:          {}", claim_latency(&f, 200));
        println!("claim, PostgreSQL:    {}", claim_latency(&*pg_q(), 200));
        println!(
            "enqueue on host a -> dispatch by host b's daemon (LISTEN/NOTIFY), from enqueue returning: {}",
            across_hosts(&pg.database())
        );
        let n = 100_000;
        let (_d3, state3) = state();
        fill_files(&state3, n);
        let cold: Vec<Duration> = (0..3)
            .map(|_| {
                let _ = std::fs::remove_file(state3.queue_dir().join("items.cache"));
                let t = Instant::now();
                assert_eq!(FileQueue::new(&state3).stats().unwrap().total, n);
                t.elapsed()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1100));
        FileQueue::new(&state3).stats().unwrap();
        let settled: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                assert_eq!(FileQueue::new(&state3).stats().unwrap().total, n);
                t.elapsed()
            })
            .collect();
        println!("stats, 100,000 items, file, new process, no cache:   {}", summary(cold));
        println!("stats, 100,000 items, file, new process, settled:    {}", summary(settled));
        let url = pg.database();
        let q = postgres::backend(options(&url, "bench")).unwrap().queue;
        fill_table(&url, n);
        println!("stats, 100,000 items, PostgreSQL:                    {}", stats_time(&*q, n));
    }
}
