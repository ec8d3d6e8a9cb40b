//! Test helper (feature `test-helper`): plays the other processes in the queue's integration
//! tests, because the guarantees under test (one claimer wins, never more agents than the
//! limit, nothing lost when a daemon is killed) are about processes, not threads.
//!
//! Modes:
//! - `claim <state> <out>`: claims items until none is left, appending each id to `<out>`.
//! - `enqueue <state> <n> <message>`: enqueues `n` items with issue ref `o/r#<i>`.
//! - `hold-slot <state> <limit> <hold-ms> <record-dir>`: takes a slot (waiting), holds it.
//! - `daemon <state> <limit> <record-dir> <interval-ms>`: a daemon whose dispatcher starts
//!   `agent` processes; runs until SIGTERM/SIGINT, which it handles as `kugetsu queue-daemon
//!   run` does.
//! - `pg-daemon <state> <limit> <record-dir> <interval-ms> <url> <host> <global> <lease-ms>`:
//!   the same daemon on the PostgreSQL backend (feature `postgres`), as host `<host>`.
//! - `agent <record-dir> <id> <ms> <lane> [<host> <issue>]`: a fake agent: counts itself in
//!   `<lane>`'s concurrency counter (and, with a host, in the host's and the item's), sleeps,
//!   records that it finished. It ends early, uncounting itself, on SIGTERM or when its
//!   daemon dies (a shared queue's agents end with their daemon).
//!
//! Concurrency is measured with a counter file under an flock (`<lane>.count`, with the
//! maximum ever seen in `<lane>.max`), which needs no clock and cannot miss an overlap.
#![allow(clippy::print_stderr, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use kugetsu_core::StateDir;
use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::queue::{AgentSlots, Claim, NewTask, QueueItem, TaskQueue};
use kugetsu_core::storage;
use kugetsu_process::identity as process;
use kugetsu_queue::daemon::{
    Daemon, DaemonError, DaemonOptions, DispatchContext, DispatchError, DispatchOutcome,
    Dispatcher, QueueEvent, request_stop,
};
use kugetsu_queue::{FileQueue, FileSlots};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let state = StateDir::new(arg(1));
    match arg(0).as_str() {
        "claim" => claim(&state, Path::new(&arg(2))),
        "enqueue" => {
            let q = FileQueue::new(&state);
            for i in 0..arg(2).parse::<usize>().unwrap() {
                q.enqueue(NewTask {
                    message: arg(3),
                    issue_ref: Some(format!("o/r#{i}")),
                    options: Default::default(),
                })
                .unwrap();
            }
            ExitCode::SUCCESS
        }
        "hold-slot" => {
            let slots = FileSlots::new(&state);
            let limit = arg(2).parse().unwrap();
            let hold = Duration::from_millis(arg(3).parse().unwrap());
            let record = PathBuf::from(arg(4));
            let guard = slots.acquire(limit, Duration::from_secs(120)).unwrap();
            count(&record, "slot", 1);
            std::thread::sleep(hold);
            count(&record, "slot", -1);
            append(&record.join("slot.done"), &format!("{}\n", guard.index()));
            ExitCode::SUCCESS
        }
        "daemon" => daemon(state, arg(2).parse().unwrap(), PathBuf::from(arg(3)), &arg(4), None),
        #[cfg(feature = "postgres")]
        "pg-daemon" => {
            let options = kugetsu_queue::postgres::PgOptions {
                url: arg(5),
                host: arg(6),
                lease_ttl: Duration::from_millis(arg(8).parse().unwrap()),
                host_lost: Duration::from_secs(300),
                global_limit: {
                    let g: usize = arg(7).parse().unwrap();
                    Arc::new(move || Some(g))
                },
            };
            daemon(state, arg(2).parse().unwrap(), PathBuf::from(arg(3)), &arg(4), Some(options))
        }
        "agent" => agent(&args),
        other => {
            eprintln!("queue-test-helper: unknown mode {other:?}");
            ExitCode::from(2)
        }
    }
}

fn claim(state: &StateDir, out: &Path) -> ExitCode {
    let q = FileQueue::new(state);
    let claim =
        Claim::new(std::process::id(), process::own_token(), time::OffsetDateTime::now_utc());
    while let Some(item) = q.claim_next(&claim, time::OffsetDateTime::now_utc()).unwrap() {
        append(out, &format!("{}\n", item.id));
    }
    ExitCode::SUCCESS
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new().append(true).create(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn agent(args: &[String]) -> ExitCode {
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let record = PathBuf::from(arg(1));
    let (id, ms, lane) = (arg(2), arg(3).parse::<u64>().unwrap(), arg(4));
    let host = args.get(5).cloned();
    let mut lanes = vec![lane];
    if let Some(h) = &host {
        lanes.push(format!("host-{}", h));
        lanes.push(format!("item-{id}"));
    }
    let term = Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone()).unwrap();
    let parent = rustix::process::getppid();
    append(&record.join(format!("agent-{id}.pid")), &format!("{}\n", std::process::id()));
    for l in &lanes {
        count(&record, l, 1);
    }
    let deadline = std::time::Instant::now() + Duration::from_millis(ms);
    let mut finished = true;
    while std::time::Instant::now() < deadline {
        if term.load(std::sync::atomic::Ordering::Relaxed)
            || (host.is_some() && rustix::process::getppid() != parent)
        {
            finished = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for l in &lanes {
        count(&record, l, -1);
    }
    if !finished {
        return ExitCode::from(143);
    }
    append(&record.join("agents.done"), &format!("{id}\n"));
    if let Some(h) = host {
        append(&record.join("runs.log"), &format!("{id} {h} {}\n", arg(6)));
    }
    ExitCode::SUCCESS
}

/// Adds `delta` to `<lane>.count` and raises `<lane>.max`, under `<lane>.lock`.
fn count(record: &Path, lane: &str, delta: i64) {
    let lock = record.join(format!("{lane}.lock"));
    let r: Result<(), storage::StorageError> = storage::with_exclusive_lock(&lock, || {
        let read = |p: PathBuf| -> i64 {
            std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
        };
        let n = read(record.join(format!("{lane}.count"))) + delta;
        std::fs::write(record.join(format!("{lane}.count")), n.to_string()).unwrap();
        if n > read(record.join(format!("{lane}.max"))) {
            std::fs::write(record.join(format!("{lane}.max")), n.to_string()).unwrap();
        }
        Ok(())
    });
    r.unwrap();
}

/// Starts a fake agent per item in its own process group, like the real driver does.
/// Messages: `sleep:<ms>` (default 300), `fail` (retryable, no agent), `fatal`, `spend` (held
/// while `budget-spent` exists in the record directory, then as `sleep`).
struct FakeDispatcher {
    record: PathBuf,
    host: Option<String>,
}

impl Dispatcher for FakeDispatcher {
    fn dispatch(
        &self,
        item: &QueueItem,
        ctx: &mut DispatchContext<'_>,
    ) -> Result<DispatchOutcome, DispatchError> {
        if item.message == "fail" {
            return Err(DispatchError::Retry("fake failure".into()));
        }
        if item.message == "fatal" {
            return Err(DispatchError::Fatal("fake fatal failure".into()));
        }
        // Held while the file `budget-spent` of the record directory exists (a spent budget);
        // removing it is raising the limit.
        if item.message == "spend" && self.record.join("budget-spent").exists() {
            return Err(DispatchError::Held {
                reason: "held: daily budget $5.00 spent ($5.02)".into(),
                frees_at: None,
            });
        }
        let ms = item.message.strip_prefix("sleep:").and_then(|m| m.parse().ok()).unwrap_or(300u64);
        let lane = if item.issue_ref.is_some() { "dev" } else { "pm" };
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["agent", &self.record.to_string_lossy(), &item.id, &ms.to_string(), lane]);
        if let Some(h) = &self.host {
            cmd.args([h.as_str(), item.issue_ref.as_deref().unwrap_or("-")]);
        }
        let mut child =
            cmd.process_group(0).spawn().map_err(|e| DispatchError::Retry(e.to_string()))?;
        ctx.agent_started(child.id());
        let status = child.wait().map_err(|e| DispatchError::Retry(e.to_string()))?;
        if status.success() {
            Ok(DispatchOutcome { summary: format!("agent {} done", child.id()) })
        } else {
            Err(DispatchError::Retry(format!("agent exited with {status}")))
        }
    }
}

#[cfg(not(feature = "postgres"))]
type PgOptions = ();
#[cfg(feature = "postgres")]
use kugetsu_queue::postgres::PgOptions;

fn daemon(
    state: StateDir,
    limit: usize,
    record: PathBuf,
    interval_ms: &str,
    pg: Option<PgOptions>,
) -> ExitCode {
    let interval = Duration::from_millis(interval_ms.parse().unwrap_or(60_000));
    let events = record.join("events.log");
    let notifier = move |e: &QueueEvent| {
        append(&events, &format!("{} {} {}\n", e.kind.as_str(), e.item_id, e.detail));
    };
    let host = pg.as_ref().map(pg_host);
    let stop = Interrupt::new();
    stop_on_signals(&state, &stop);
    let mut daemon = Daemon::new(
        state,
        Arc::new(FakeDispatcher { record: record.clone(), host }),
        Arc::new(move || limit),
    );
    if let Some(options) = pg {
        daemon = daemon.with_backend(pg_backend(options));
    }
    let daemon = daemon.with_notifier(Arc::new(notifier)).with_options(DaemonOptions {
        interval,
        retry_backoff: Duration::from_millis(50),
        hold_recheck: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(1),
        cleanup_age: None,
        ..DaemonOptions::default()
    });
    match daemon.run(&stop) {
        Ok(exit) => {
            append(&record.join("daemon.exit"), &format!("{exit:?}\n"));
            ExitCode::SUCCESS
        }
        Err(DaemonError::AlreadyRunning { .. }) => {
            append(&record.join("daemon.refused"), "already running\n");
            ExitCode::from(3)
        }
        Err(DaemonError::HostTaken { host }) => {
            append(&record.join("daemon.refused"), &format!("host {host} taken\n"));
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("queue-test-helper daemon: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What `kugetsu queue-daemon run` does with signals, done the same way here: SIGTERM and
/// SIGINT stop the daemon (a second one exits at once, with 130), SIGHUP is ignored.
fn stop_on_signals(state: &StateDir, stop: &Interrupt) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, seen.clone()).unwrap();
        signal_hook::flag::register(sig, seen.clone()).unwrap();
    }
    signal_hook::flag::register(SIGHUP, Arc::default()).unwrap();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).unwrap();
    let (state, stop) = (state.clone(), stop.clone());
    std::thread::spawn(move || {
        for sig in signals.forever() {
            request_stop(&state, &stop, sig);
        }
    });
}

#[cfg(feature = "postgres")]
fn pg_host(o: &PgOptions) -> String {
    o.host.clone()
}

#[cfg(feature = "postgres")]
fn pg_backend(o: PgOptions) -> kugetsu_queue::Backend {
    kugetsu_queue::postgres::backend(o).unwrap()
}

#[cfg(not(feature = "postgres"))]
fn pg_host(_: &PgOptions) -> String {
    unreachable!()
}

#[cfg(not(feature = "postgres"))]
fn pg_backend(_: PgOptions) -> kugetsu_queue::Backend {
    unreachable!()
}
