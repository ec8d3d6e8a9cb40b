//! Live updates: one watcher per dashboard notices that the state changed and tells every
//! open event stream (`GET /api/events`), and a run log can be followed as it grows
//! (`GET /api/logs/<name>/events`).
//!
//! Every state file is written by an atomic rename into its directory, which moves the
//! directory's modification time: watching the few directories (the root for the index and the
//! notifications, `sessions/`, `queue/items/`, `logs/` for new runs, `stops/`) costs a handful
//! of `stat`s per tick however many sessions and items there are, and a tick every
//! [`TICK`] keeps a change within a second of the page. A queue shared by several hosts lives
//! in a database, where no directory moves: its [`Remote`] state is asked every
//! [`REMOTE_TICK`] instead.

use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::watch;

use kugetsu_core::StateDir;

/// How often the state directories are looked at.
pub const TICK: Duration = Duration::from_millis(200);

/// How often a [`Remote`] source is asked (one small query).
pub const REMOTE_TICK: Duration = Duration::from_secs(1);

/// State that lives outside the state directory (a shared queue), summed up in a value that
/// changes whenever it does; `None` when it cannot be read now (nothing is reported then).
pub type Remote = Box<dyn Fn() -> Option<String> + Send>;

/// How often a followed log is read for new lines.
pub const LOG_TICK: Duration = Duration::from_millis(200);

/// Most of a log's end sent when a follower starts.
pub const LOG_BACKLOG: u64 = 64 * 1024;

/// Keep-alive comments on idle streams, so proxies and browsers keep them open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn watched(state: &StateDir) -> [PathBuf; 5] {
    [
        state.root().to_path_buf(),
        state.sessions_dir(),
        state.queue_items_dir(),
        state.logs_dir(),
        state.stops_dir(),
    ]
}

fn fingerprint(dirs: &[PathBuf]) -> Vec<Option<SystemTime>> {
    dirs.iter().map(|d| std::fs::metadata(d).and_then(|m| m.modified()).ok()).collect()
}

/// Starts the watcher thread; the receiver's value goes up by one on every change of the state
/// directory or of `remote`.
pub fn watch_state(state: &StateDir, remote: Option<Remote>) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    let dirs = watched(state);
    // The starting points are taken before this returns, so before the server answers
    // anyone: a change made after the page loaded can never be taken for the start.
    let mut last = fingerprint(&dirs);
    let has_remote = remote.is_some();
    let ask = move || remote.as_ref().and_then(|r| r());
    let mut remote_last = ask();
    let spawned = std::thread::Builder::new().name("dashboard-watch".into()).spawn(move || {
        let mut recent = false;
        let mut remote_at = std::time::Instant::now();
        loop {
            std::thread::sleep(TICK);
            if tx.is_closed() {
                return;
            }
            let now = fingerprint(&dirs);
            // A directory changed twice within its clock's granularity shows one time: when a
            // change is that fresh, the next tick reports again, so the second one is not lost.
            let fresh = now
                .iter()
                .flatten()
                .any(|t| SystemTime::now().duration_since(*t).is_ok_and(|age| age < TICK));
            let mut remote_changed = false;
            if has_remote && remote_at.elapsed() >= REMOTE_TICK {
                remote_at = std::time::Instant::now();
                let now = ask();
                remote_changed = now.is_some() && now != remote_last;
                if now.is_some() {
                    remote_last = now;
                }
            }
            if now != last || recent || remote_changed {
                tx.send_modify(|n| *n += 1);
            }
            recent = fresh;
            last = now;
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the dashboard's watcher; pages will not update");
    }
    rx
}

/// `GET /api/events`: `hello` once, then `change` (data: `{"generation": n}`) after every
/// change of the state.
pub fn changes(mut rx: watch::Receiver<u64>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let first = *rx.borrow_and_update();
    let stream = futures_util::stream::unfold((rx, Some(first)), |(mut rx, hello)| async move {
        if let Some(n) = hello {
            let ev = Event::default().event("hello").data(format!("{{\"generation\":{n}}}"));
            return Some((Ok(ev), (rx, None)));
        }
        rx.changed().await.ok()?;
        let n = *rx.borrow_and_update();
        let ev = Event::default().event("change").data(format!("{{\"generation\":{n}}}"));
        Some((Ok(ev), (rx, None)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// Turns one line of a log into the lines a follower sees (rendered and redacted).
pub type Render = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// What a follower of one log has read so far.
struct Follow {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    render: Render,
    started: bool,
}

fn read_more(f: &mut Follow) -> std::io::Result<Vec<String>> {
    let mut file = std::fs::File::open(&f.path)?;
    let len = file.metadata()?.len();
    if len < f.offset {
        // Rewritten from the start (never by kugetsu; by hand): follow the new content.
        f.offset = 0;
        f.partial.clear();
    }
    if !f.started {
        f.started = true;
        f.offset = len.saturating_sub(LOG_BACKLOG);
    }
    file.seek(SeekFrom::Start(f.offset))?;
    let mut buf = Vec::new();
    file.take(1 << 20).read_to_end(&mut buf)?;
    f.offset += buf.len() as u64;
    f.partial.extend_from_slice(&buf);
    let mut lines = Vec::new();
    while let Some(nl) = f.partial.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = f.partial.drain(..=nl).collect();
        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        lines.extend((f.render)(&text));
    }
    Ok(lines)
}

/// `GET /api/logs/<name>/events`: the end of the log, then each line as it is written, as
/// `line` events (already rendered and redacted by `render`).
pub fn follow(path: PathBuf, render: Render) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let state = Follow { path, offset: 0, partial: Vec::new(), render, started: false };
    let stream = futures_util::stream::unfold(
        (state, std::collections::VecDeque::<String>::new()),
        |(mut f, mut pending)| async move {
            loop {
                if let Some(line) = pending.pop_front() {
                    return Some((Ok(Event::default().event("line").data(line)), (f, pending)));
                }
                let (back, read) = tokio::task::spawn_blocking(move || {
                    let r = read_more(&mut f);
                    (f, r)
                })
                .await
                .ok()?;
                f = back;
                match read {
                    Ok(lines) if !lines.is_empty() => pending.extend(lines),
                    Ok(_) => tokio::time::sleep(LOG_TICK).await,
                    // The log went away (pruned): the stream ends.
                    Err(_) => return None,
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}
