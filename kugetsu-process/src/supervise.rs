//! Runs one headless agent process to its end under a wall-clock and an idle limit, streaming
//! its output line by line, and makes sure nothing it started is left running.
//!
//! An agent can hang silently (opencode does, in several ways: see kugetsu-opencode's README),
//! so every run has limits; on a limit the whole process group gets SIGTERM, then SIGKILL after
//! a grace period, and so does every process seen descending from it that left the group
//! (followed by the `tree` module). The group leader is not reaped until its group has been
//! signalled, so the group id cannot be reused by an unrelated process in between.
//!
//! The idle limit counts silence only while the process tree does no work either (the
//! judgement is [`crate::activity`]'s). The wall-clock limit stays the hard stop whatever the
//! activity.
//!
//! A stop request ([`Interrupt`]: Ctrl-C, SIGTERM or a hang-up reaching kugetsu) ends a run the
//! same way, at once: the agent runs in its own process group, so the terminal's signals never
//! reach it, and nothing else would stop it.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use kugetsu_core::interrupt::Interrupt;
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

use crate::activity::Activity;
use crate::tree::Tree;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited by itself.
    Exited(ExitStatus),
    /// Killed at the wall-clock limit after this long.
    TimedOut(Duration),
    /// Killed after printing nothing, its process tree using no CPU or I/O worth counting
    /// (where that can be measured: [`crate::activity_is_watched`]), for this long.
    Hung(Duration),
    /// Killed because a stop was asked for.
    Interrupted,
}

/// Limits of one process.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The wall-clock limit.
    pub timeout: Duration,
    /// The idle limit, if any (see [`crate::activity`]).
    pub idle: Option<Duration>,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// What [`run`] reports while the process runs.
pub enum Seen<'a> {
    /// Started with this pid (= its process group id).
    Spawned(u32),
    /// One output line, with its newline if it had one.
    Line(Stream, &'a [u8]),
}

enum Msg {
    Line(Stream, Vec<u8>),
    Eof,
}

/// How long to keep reading after the leader exited while something else still holds the
/// pipes open (a background tool process); then the group is killed.
const PIPE_LINGER: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(50);
/// How often the process tree is scanned for processes that left the group, and
/// its CPU time and I/O sampled.
const SCAN_EVERY: Duration = Duration::from_millis(500);

/// Spawns `cmd` (built by [`crate::command::build_command`] in its own process group), writes
/// `stdin` to it and closes it, and reports its pid and every output line to `seen` until it
/// ends, or until `stop` is triggered.
pub fn run(
    mut cmd: Command,
    stdin: Option<Vec<u8>>,
    limits: Limits,
    stop: &Interrupt,
    seen: &mut dyn FnMut(Seen<'_>),
) -> std::io::Result<Ended> {
    if stop.is_triggered() {
        // Asked to stop before it began: start nothing.
        return Ok(Ended::Interrupted);
    }
    let mut child = cmd.spawn()?;
    seen(Seen::Spawned(child.id()));
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut readers = 0;
    if let Some(out) = child.stdout.take() {
        spawn_reader(out, Stream::Stdout, tx.clone());
        readers += 1;
    }
    if let Some(err) = child.stderr.take() {
        spawn_reader(err, Stream::Stderr, tx.clone());
        readers += 1;
    }
    drop(tx);
    // The prompt can be larger than a pipe buffer: write it from a thread while the output is
    // read, and close the pipe when done (an agent may read stdin to EOF before it starts).
    let writer = child.stdin.take().map(|mut pipe| {
        let bytes = stdin.unwrap_or_default();
        thread::spawn(move || {
            // A child that exits without reading makes this fail with EPIPE: nothing to do.
            let _ = pipe.write_all(&bytes);
        })
    });

    let mut tree = Tree::new(child.id());
    let mut last_scan: Option<Instant> = None;
    let start = Instant::now();
    let mut activity = limits.idle.map(|idle| Activity::new(idle, start));
    let mut exited_at: Option<Instant> = None;
    let mut lingering_killed = false;
    let ended = loop {
        let now = Instant::now();
        if readers == 0 && exited_at.is_some() {
            break None;
        }
        if last_scan.is_none_or(|t| now.duration_since(t) >= SCAN_EVERY) {
            let used = tree.scan();
            if let Some(a) = activity.as_mut() {
                a.used(now, used);
            }
            last_scan = Some(now);
        }
        if stop.is_triggered() {
            terminate(&child, &mut tree, limits.grace, stop);
            break Some(Ended::Interrupted);
        }
        if now.duration_since(start) >= limits.timeout {
            terminate(&child, &mut tree, limits.grace, stop);
            break Some(Ended::TimedOut(now.duration_since(start)));
        }
        if let Some(a) = &activity
            && exited_at.is_none()
            && a.is_hung(now)
        {
            terminate(&child, &mut tree, limits.grace, stop);
            break Some(Ended::Hung(a.quiet_for(now)));
        }
        if exited_at.is_none() && leader_exited(&child) {
            exited_at = Some(now);
        }
        if let Some(at) = exited_at
            && !lingering_killed
            && now.duration_since(at) >= PIPE_LINGER
        {
            // The leader is gone but something in its group keeps the pipes open.
            signal_group(&child, Signal::KILL);
            lingering_killed = true;
        }
        let mut wait = TICK.min(limits.timeout.saturating_sub(now.duration_since(start)));
        if let Some(a) = &activity {
            wait = wait.min(a.limit().saturating_sub(a.quiet_for(now)));
        }
        match rx.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(Msg::Line(stream, bytes)) => {
                if let Some(a) = activity.as_mut() {
                    a.output(Instant::now());
                }
                seen(Seen::Line(stream, &bytes));
            }
            Ok(Msg::Eof) => readers -= 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => readers = 0,
        }
    };
    // Whatever way it ended, nothing it started may survive the run (background processes a
    // tool started, members that ignored SIGTERM). The leader is still unreaped here.
    tree.scan();
    signal_group(&child, Signal::KILL);
    tree.signal(Signal::KILL);
    let status = child.wait()?;
    // Lines still queued (printed just before the end) are delivered too; bounded, in case
    // a process that left the group keeps writing.
    let drain_until = Instant::now() + Duration::from_millis(500);
    while readers > 0 {
        let left = drain_until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Msg::Line(stream, bytes)) => seen(Seen::Line(stream, &bytes)),
            Ok(Msg::Eof) => readers -= 1,
            Err(_) => break,
        }
        if left.is_zero() {
            break;
        }
    }
    if let Some(w) = writer {
        let _ = w.join();
    }
    Ok(ended.unwrap_or(Ended::Exited(status)))
}

fn spawn_reader<R: Read + Send + 'static>(pipe: R, stream: Stream, tx: mpsc::Sender<Msg>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(Msg::Line(stream, line)).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(Msg::Eof);
    });
}

/// Whether the leader has exited, without reaping it (so its pid, which is the group id,
/// stays reserved until the group has been signalled).
fn leader_exited(child: &Child) -> bool {
    let pid = Pid::from_child(child);
    matches!(
        rustix::process::waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
        ),
        Ok(Some(_))
    )
}

fn signal_group(child: &Child, sig: Signal) {
    // ESRCH (group already empty) is the expected case after a clean exit.
    let _ = rustix::process::kill_process_group(Pid::from_child(child), sig);
}

/// SIGTERM to the group and every process seen in the tree, up to `grace` for the leader to
/// exit, then SIGKILL to all of them. A repeated stop request (a second Ctrl-C) cuts the grace
/// short.
fn terminate(child: &Child, tree: &mut Tree, grace: Duration, stop: &Interrupt) {
    tree.scan();
    signal_group(child, Signal::TERM);
    tree.signal(Signal::TERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && !leader_exited(child) && !stop.is_urgent() {
        thread::sleep(Duration::from_millis(20));
    }
    tree.scan();
    signal_group(child, Signal::KILL);
    tree.signal(Signal::KILL);
}

/// Runs a short helper command (a listing, an export, ...) to its end and returns its status
/// and whole stdout and stderr.
pub fn run_captured(
    cmd: Command,
    stdin: Option<Vec<u8>>,
    limits: Limits,
    stop: &Interrupt,
) -> std::io::Result<(Ended, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let ended = run(cmd, stdin, limits, stop, &mut |seen| match seen {
        Seen::Spawned(_) => {}
        Seen::Line(Stream::Stdout, bytes) => out.extend_from_slice(bytes),
        Seen::Line(Stream::Stderr, bytes) => err.extend_from_slice(bytes),
    })?;
    Ok((ended, out, err))
}

/// Waits for a child that shares this process's terminal and process group (a TUI), ending it
/// (TERM, then KILL after `grace`) if `stop` is triggered first.
pub fn wait_foreground(
    mut child: Child,
    grace: Duration,
    stop: &Interrupt,
) -> std::io::Result<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if stop.is_triggered() {
            let pid = Pid::from_child(&child);
            let _ = rustix::process::kill_process(pid, Signal::TERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && !leader_exited(&child) && !stop.is_urgent() {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            return child.wait();
        }
        thread::sleep(TICK);
    }
}
