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
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use kugetsu_core::interrupt::Interrupt;
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

use crate::activity::Activity;
use crate::tree::Tree;

/// Why a process could not be run to its end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// It could not be started (no such program, not executable, a failed `pre_exec` step).
    #[error("cannot start {}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for it failed.
    #[error("cannot wait for process {pid}")]
    Wait {
        /// Its pid.
        pid: u32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The system's error, for callers whose own error carries the program already.
    pub fn into_io(self) -> std::io::Error {
        match self {
            Error::Spawn { source, .. } | Error::Wait { source, .. } => source,
        }
    }
}

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
    /// Killed because its watcher cut it short ([`run_cut`]: what it printed said it cannot
    /// get anywhere, such as a provider refusing it).
    Cut,
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
    cmd: Command,
    stdin: Option<Vec<u8>>,
    limits: Limits,
    stop: &Interrupt,
    seen: &mut dyn FnMut(Seen<'_>),
) -> Result<Ended, Error> {
    run_watching(cmd, stdin, limits, None, stop, seen)
}

/// [`run`], where the work of the descendants of process `also` (not `also` itself) counts
/// as the run's activity too: an agent whose tools run under a server of its own, not under
/// the process started here. They are only watched: nothing of theirs is signalled.
pub fn run_watching(
    cmd: Command,
    stdin: Option<Vec<u8>>,
    limits: Limits,
    also: Option<u32>,
    stop: &Interrupt,
    seen: &mut dyn FnMut(Seen<'_>),
) -> Result<Ended, Error> {
    run_cut(cmd, stdin, limits, also, stop, &Interrupt::new(), seen)
}

/// What [`run_cut`] writes to the child's stdin before closing it.
#[derive(Debug)]
pub enum Stdin {
    /// These bytes, at once (none: stdin is closed at once).
    Now(Option<Vec<u8>>),
    /// The bytes sent here, once they come: the child starts meanwhile (an agent's client boots
    /// while what its turn needs is made ready). If the sender is dropped without sending,
    /// nothing is written and the pipe is closed; the run does not wait for either.
    Later(mpsc::Receiver<Vec<u8>>),
}

impl From<Option<Vec<u8>>> for Stdin {
    fn from(bytes: Option<Vec<u8>>) -> Self {
        Stdin::Now(bytes)
    }
}

/// [`run_watching`], ended as [`Ended::Cut`] (the same way as a stop) once `cut` is triggered:
/// by `seen` on a line that says the run cannot get anywhere, or by another thread watching
/// the run from elsewhere. Unlike `stop`, `cut` is the run's own.
pub fn run_cut(
    mut cmd: Command,
    stdin: impl Into<Stdin>,
    limits: Limits,
    also: Option<u32>,
    stop: &Interrupt,
    cut: &Interrupt,
    seen: &mut dyn FnMut(Seen<'_>),
) -> Result<Ended, Error> {
    if stop.is_triggered() {
        // Asked to stop before it began: start nothing.
        return Ok(Ended::Interrupted);
    }
    let mut child =
        cmd.spawn().map_err(|source| Error::Spawn { program: cmd.get_program().into(), source })?;
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
    let stdin = stdin.into();
    let joined = matches!(stdin, Stdin::Now(_));
    let writer = child.stdin.take().map(|mut pipe| {
        thread::spawn(move || {
            let bytes = match stdin {
                Stdin::Now(bytes) => bytes.unwrap_or_default(),
                Stdin::Later(rx) => rx.recv().unwrap_or_default(),
            };
            // A child that exits without reading makes this fail with EPIPE: nothing to do.
            let _ = pipe.write_all(&bytes);
        })
    });

    let mut tree = Tree::new(child.id());
    let mut also = also.map(Tree::descendants_of);
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
            let mut used = tree.scan();
            if let Some(t) = also.as_mut() {
                used = used.add(t.scan());
            }
            if let Some(a) = activity.as_mut() {
                a.used(now, used.work, used.own);
            }
            last_scan = Some(now);
        }
        if stop.is_triggered() {
            terminate(&child, &mut tree, limits.grace, stop);
            break Some(Ended::Interrupted);
        }
        if cut.is_triggered() {
            terminate(&child, &mut tree, limits.grace, stop);
            break Some(Ended::Cut);
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
    let status = child.wait().map_err(|source| Error::Wait { pid: child.id(), source })?;
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
    // A later stdin's sender may outlive the run (it keeps the pipe open until the child is
    // gone): its writer ends on its own once the sender is dropped.
    if let Some(w) = writer.filter(|_| joined) {
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
) -> Result<(Ended, Vec<u8>, Vec<u8>), Error> {
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
) -> Result<ExitStatus, Error> {
    let pid = child.id();
    let failed = |source| Error::Wait { pid, source };
    loop {
        if let Some(status) = child.try_wait().map_err(failed)? {
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
            return child.wait().map_err(failed);
        }
        thread::sleep(TICK);
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::Path;

    use super::*;
    use crate::command::{CommandSpec, Io, build_command};
    use crate::procfs;

    fn sh(script: &str, io: Io) -> Command {
        let args = [OsString::from("-c"), OsString::from(script)];
        let base = [(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))];
        build_command(&CommandSpec {
            program: Path::new("sh"),
            args: &args,
            cwd: None,
            base_env: &base,
            agent_env: None,
            drop_vars: &[],
            io,
            die_with_parent: false,
        })
    }

    fn limits(timeout_ms: u64, idle_ms: Option<u64>) -> Limits {
        Limits {
            timeout: Duration::from_millis(timeout_ms),
            idle: idle_ms.map(Duration::from_millis),
            grace: Duration::from_millis(200),
        }
    }

    #[test]
    fn stdin_is_written_and_closed_and_both_streams_come_back() {
        // `cat` ends only once its stdin is closed.
        let cmd = sh("cat; echo done >&2", Io::PipedStdin);
        let (ended, out, err) =
            run_captured(cmd, Some(b"hello\n".to_vec()), limits(20_000, None), &Interrupt::new())
                .expect("sh");
        assert!(matches!(ended, Ended::Exited(s) if s.success()), "{ended:?}");
        assert_eq!((out.as_slice(), err.as_slice()), (&b"hello\n"[..], &b"done\n"[..]));
    }

    #[test]
    fn a_later_stdin_is_written_once_sent_while_the_child_already_runs() {
        // The child says it started before it reads anything: the bytes are sent only then.
        let cmd = sh("echo started >&2; cat", Io::PipedStdin);
        let (tx, rx) = mpsc::channel();
        let mut tx = Some(tx);
        let mut out = Vec::new();
        let (stop, cut) = (Interrupt::new(), Interrupt::new());
        let ended = run_cut(
            cmd,
            Stdin::Later(rx),
            limits(20_000, None),
            None,
            &stop,
            &cut,
            &mut |s| match s {
                Seen::Line(Stream::Stderr, b"started\n") => {
                    let _ = tx.take().expect("started once").send(b"late\n".to_vec());
                }
                Seen::Line(Stream::Stdout, line) => out.extend_from_slice(line),
                _ => {}
            },
        )
        .expect("sh");
        assert!(matches!(ended, Ended::Exited(s) if s.success()), "{ended:?}");
        assert_eq!(out, b"late\n");
        // A sender dropped without sending: stdin is closed empty and the run ends.
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        drop(tx);
        let cmd = sh("cat; echo eof", Io::PipedStdin);
        let mut out = Vec::new();
        let ended =
            run_cut(cmd, Stdin::Later(rx), limits(20_000, None), None, &stop, &cut, &mut |s| {
                if let Seen::Line(Stream::Stdout, line) = s {
                    out.extend_from_slice(line);
                }
            })
            .expect("sh");
        assert!(matches!(ended, Ended::Exited(s) if s.success()), "{ended:?}");
        assert_eq!(out, b"eof\n");
    }

    #[test]
    fn a_run_past_its_limit_is_killed_with_what_it_started_out_of_its_group() {
        // A background `sleep` in a session of its own, as opencode's bash tool starts
        // commands: the group kill misses it, the tree does not.
        let cmd = sh("setsid sleep 300 & echo $!; wait", Io::NullStdin);
        let mut pid = None;
        let ended = run(cmd, None, limits(1_500, None), &Interrupt::new(), &mut |seen| {
            if let Seen::Line(Stream::Stdout, line) = seen {
                pid = String::from_utf8_lossy(line).trim().parse::<u32>().ok();
            }
        })
        .expect("sh");
        assert!(matches!(ended, Ended::TimedOut(_)), "{ended:?}");
        let pid = pid.expect("the background pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while procfs::is_running(pid) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(!procfs::is_running(pid), "the detached sleep {pid} outlived its run");
    }

    #[test]
    fn silence_without_work_is_hung_and_a_stop_request_ends_a_run() {
        let ended = run_captured(
            sh("sleep 30", Io::NullStdin),
            None,
            limits(20_000, Some(1_000)),
            &Interrupt::new(),
        )
        .expect("sh")
        .0;
        assert!(matches!(ended, Ended::Hung(_)), "{ended:?}");

        let stop = Interrupt::new();
        let trigger = stop.clone();
        let ended =
            run(sh("sleep 30", Io::NullStdin), None, limits(20_000, None), &stop, &mut |s| {
                if let Seen::Spawned(_) = s {
                    trigger.trigger(15);
                }
            })
            .expect("sh");
        assert!(matches!(ended, Ended::Interrupted), "{ended:?}");
    }

    #[test]
    fn a_line_that_cuts_the_run_ends_it_as_cut() {
        let cut = Interrupt::new();
        let trigger = cut.clone();
        let cmd = sh("echo refused; sleep 30", Io::NullStdin);
        let stop = Interrupt::new();
        let ended = run_cut(cmd, None, limits(20_000, None), None, &stop, &cut, &mut |s| {
            if let Seen::Line(_, line) = s
                && line.starts_with(b"refused")
            {
                trigger.trigger(0);
            }
        })
        .expect("sh");
        assert!(matches!(ended, Ended::Cut), "{ended:?}");
        assert!(!stop.is_triggered(), "the cut is the run's own");
    }
}
