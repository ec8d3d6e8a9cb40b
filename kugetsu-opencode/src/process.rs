//! Runs one headless opencode process to its end under a wall-clock and an idle limit,
//! streaming its output line by line, and makes sure nothing it started is left running.
//!
//! opencode can hang silently (a session in another directory, a permission ask, a stdin pipe
//! left open), so every run has limits; on a limit the whole process group gets SIGTERM, then
//! SIGKILL after a grace period, and so does every process seen descending from it that left
//! the group (see [`crate::tree`]). The group leader is not reaped until its group has been
//! signalled, so the group id cannot be reused by an unrelated process in between.
//!
//! Idle means stuck, not quiet: opencode prints a tool's event only when the tool has
//! finished, so an agent running a long silent build prints nothing for as long as the build
//! runs. A run is killed as hung only when, for the whole idle limit, it printed nothing AND
//! its process tree (opencode and every descendant, those that left its group included) used
//! no CPU time or I/O worth counting ([`Activity`]). The wall-clock limit stays the hard stop
//! whatever the activity.
//!
//! A stop request ([`Interrupt`]: Ctrl-C, SIGTERM or a hang-up reaching kugetsu) ends a run the
//! same way, at once: the agent runs in its own process group, so the terminal's signals never
//! reach it, and nothing else would stop it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use kugetsu_core::interrupt::Interrupt;
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

use crate::tree::{Tree, Usage};

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It exited by itself.
    Exited(ExitStatus),
    /// Killed at the wall-clock limit after this long.
    TimedOut(Duration),
    /// Killed after printing nothing, its process tree using no CPU or I/O worth counting
    /// (where that can be measured: [`activity_is_watched`]), for this long.
    Hung(Duration),
    /// Killed because a stop was asked for.
    Interrupted,
}

/// Limits of one process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub timeout: Duration,
    pub idle: Option<Duration>,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// What [`run`] reports while the process runs.
pub(crate) enum Seen<'a> {
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

/// CPU time per minute that a run's processes may use and still count as idle: one sixth of a
/// core. opencode itself is not idle while it waits: measured on 1.18.33 (two cores shared
/// with builds; `measure_what_idle_opencode_uses` in `tests/real_opencode.rs`), an `opencode
/// run` waiting for a bash tool's `sleep`, or for a model that never answers, used 1.0 to 1.6 s
/// of CPU per minute (timers ticking every second), at most 1.7 s in any 60 s, 0.6 s in any
/// 15 s and 0.5 s in any 5 s (its bursts). A busy loop or a compiler uses a whole core, 60 s
/// per minute, and still 20 s with every core shared three ways. 10 s per minute sits between
/// them: 6 times what idle opencode used in its worst minute (4 times in the 15 s window of a
/// 1-minute limit), half of what a child gets from a third of a core.
const BUSY_CPU_PER_MINUTE: Duration = Duration::from_secs(10);
/// Bytes read and written per minute (`rchar + wchar`: files, pipes, sockets) above which a
/// run's processes count as busy: a download, a model streaming its answer, a tool writing
/// output into its pipe. Idle opencode moved 4 to 5 KB a minute in the same measurements (its
/// timers' event-loop reads and writes); 256 KiB is 50 times that, and less than 4.5 KB/s.
const BUSY_IO_PER_MINUTE: u64 = 256 * 1024;

/// Whether the processes' CPU time and I/O are measured here (they are wherever `/proc` can be
/// read); where not, a run is hung after its idle limit of silence alone.
pub(crate) fn activity_is_watched() -> bool {
    kugetsu_core::process::read_stat(std::process::id()).is_some()
}

/// The idle rule: when a run has been quiet for its whole idle limit.
///
/// Quiet is no output and no activity. Activity is judged over a trailing window (a quarter of
/// the limit, between 1 s and 60 s): at each sample, if what the tree used in the last window
/// exceeds [`BUSY_CPU_PER_MINUTE`] or [`BUSY_IO_PER_MINUTE`] scaled to the window, the run is
/// busy at that moment. A short window marks the end of work closely (the verdict comes the
/// limit after the last busy moment, which is at most one window after the work stopped); a
/// long one smooths opencode's own bursts and the 10 ms granularity of CPU time. A window not
/// yet full (the first seconds of a run) is held to the whole window's allowance.
#[derive(Debug)]
pub(crate) struct Activity {
    /// The idle limit.
    limit: Duration,
    window: Duration,
    /// Allowances per window: CPU in clock ticks, I/O in bytes.
    cpu_allowance: u64,
    io_allowance: u64,
    /// Samples in the trailing window, oldest first, and their sum.
    samples: VecDeque<(Instant, Usage)>,
    in_window: Usage,
    /// The last line of output, or the run's start.
    last_output: Instant,
    /// The last sample at which the window was busy.
    last_busy: Option<Instant>,
}

impl Activity {
    pub(crate) fn new(limit: Duration, start: Instant) -> Self {
        Self::with_ticks(limit, start, kugetsu_core::process::clock_ticks_per_second())
    }

    fn with_ticks(limit: Duration, start: Instant, ticks_per_second: u64) -> Self {
        let window = (limit / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let per_minute = |amount: u128| -> u64 {
            u64::try_from(amount * window.as_millis() / 60_000).unwrap_or(u64::MAX)
        };
        Activity {
            limit,
            window,
            cpu_allowance: per_minute(
                BUSY_CPU_PER_MINUTE.as_millis() * u128::from(ticks_per_second) / 1000,
            ),
            io_allowance: per_minute(u128::from(BUSY_IO_PER_MINUTE)),
            samples: VecDeque::new(),
            in_window: Usage::default(),
            last_output: start,
            last_busy: None,
        }
    }

    /// A line of output at `at`.
    pub(crate) fn output(&mut self, at: Instant) {
        self.last_output = self.last_output.max(at);
    }

    /// What the process tree used between the previous sample and `at`.
    pub(crate) fn used(&mut self, at: Instant, used: Usage) {
        self.samples.push_back((at, used));
        self.in_window = self.in_window.add(used);
        while let Some(&(t, u)) = self.samples.front() {
            if at.duration_since(t) < self.window {
                break;
            }
            self.samples.pop_front();
            self.in_window = Usage {
                cpu_ticks: self.in_window.cpu_ticks.saturating_sub(u.cpu_ticks),
                io_bytes: self.in_window.io_bytes.saturating_sub(u.io_bytes),
            };
        }
        if self.in_window.cpu_ticks > self.cpu_allowance
            || self.in_window.io_bytes > self.io_allowance
        {
            self.last_busy = Some(at);
        }
    }

    /// How long nothing was seen: no output, and no busy moment.
    pub(crate) fn quiet_for(&self, now: Instant) -> Duration {
        let since = self.last_busy.map_or(self.last_output, |b| b.max(self.last_output));
        now.saturating_duration_since(since)
    }

    /// Whether the run has been quiet for its whole idle limit.
    pub(crate) fn is_hung(&self, now: Instant) -> bool {
        self.quiet_for(now) >= self.limit
    }
}

/// Spawns `cmd` (built by [`crate::command::build_command`] in its own process group), writes
/// `stdin` to it and closes it, and reports its pid and every output line to `seen` until it
/// ends, or until `stop` is triggered.
pub(crate) fn run(
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
    // read, and close the pipe when done (opencode reads stdin to EOF before it starts).
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
            wait = wait.min(a.limit.saturating_sub(a.quiet_for(now)));
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

/// Runs a short helper command (`session list`, `export`, `db`, ...) to its end and returns
/// its status and whole stdout and stderr.
pub(crate) fn run_captured(
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

/// Waits for a child that shares this process's terminal and process group (the TUI), ending it
/// (TERM, then KILL after `grace`) if `stop` is triggered first.
pub(crate) fn wait_foreground(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `activity` one sample every half second from `from` to `to` (seconds after
    /// `t0`), each using `ticks` of CPU and `bytes` of I/O.
    fn feed(a: &mut Activity, t0: Instant, from: f64, to: f64, ticks: u64, bytes: u64) {
        let mut t = from;
        while t <= to {
            a.used(t0 + Duration::from_secs_f64(t), Usage { cpu_ticks: ticks, io_bytes: bytes });
            t += 0.5;
        }
    }

    fn at(t0: Instant, secs: f64) -> Instant {
        t0 + Duration::from_secs_f64(secs)
    }

    #[test]
    fn allowances_scale_with_the_window() {
        let t0 = Instant::now();
        // A 1-minute limit judges 15 s windows: 10 s of CPU a minute is 2.5 s, 250 ticks.
        let a = Activity::with_ticks(Duration::from_secs(60), t0, 100);
        assert_eq!(
            (a.window, a.cpu_allowance, a.io_allowance),
            (Duration::from_secs(15), 250, 65536)
        );
        // The default 15 minutes: 60 s windows.
        let a = Activity::with_ticks(Duration::from_secs(900), t0, 100);
        assert_eq!((a.window, a.cpu_allowance), (Duration::from_secs(60), 1000));
        // Tiny limits (tests): never under a second.
        let a = Activity::with_ticks(Duration::from_secs(1), t0, 100);
        assert_eq!((a.window, a.cpu_allowance), (Duration::from_secs(1), 16));
        let a = Activity::with_ticks(Duration::from_secs(60), t0, 1000);
        assert_eq!(a.cpu_allowance, 2500, "other clock rates");
    }

    #[test]
    fn idle_opencode_is_hung_after_the_limit() {
        let t0 = Instant::now();
        let mut a = Activity::with_ticks(Duration::from_secs(60), t0, 100);
        // Its own timers, as measured: a tick or two a second and ~50 bytes, and a burst of
        // 0.45 s now and then.
        feed(&mut a, t0, 0.5, 70.0, 1, 50);
        a.used(at(t0, 20.2), Usage { cpu_ticks: 45, io_bytes: 700 });
        assert!(!a.is_hung(at(t0, 59.9)));
        assert!(a.is_hung(at(t0, 60.0)));
        assert_eq!(a.quiet_for(at(t0, 61.0)), Duration::from_secs(61));
    }

    #[test]
    fn output_restarts_the_clock() {
        let t0 = Instant::now();
        let mut a = Activity::with_ticks(Duration::from_secs(60), t0, 100);
        a.output(at(t0, 30.0));
        assert!(!a.is_hung(at(t0, 89.0)));
        assert!(a.is_hung(at(t0, 90.0)));
        // An older line delivered late does not move it back.
        a.output(at(t0, 10.0));
        assert!(a.is_hung(at(t0, 90.0)));
    }

    #[test]
    fn a_silent_busy_tree_is_not_hung_until_it_stops() {
        let t0 = Instant::now();
        let mut a = Activity::with_ticks(Duration::from_secs(60), t0, 100);
        // Half a core for 90 s, printing nothing.
        feed(&mut a, t0, 0.5, 90.0, 25, 0);
        assert!(!a.is_hung(at(t0, 90.0)));
        // Then nothing: busy while the window still holds more than 2.5 s of it, so until
        // 80 s + 10 s; hung a limit later.
        feed(&mut a, t0, 90.5, 200.0, 0, 0);
        assert!(!a.is_hung(at(t0, 149.0)));
        assert!(a.is_hung(at(t0, 160.0)));
        assert_eq!(a.quiet_for(at(t0, 160.0)), Duration::from_secs_f64(160.0 - 99.5));
    }

    #[test]
    fn the_threshold_is_a_rate() {
        let t0 = Instant::now();
        // 20 ticks a second is 12 s of CPU a minute: busy.
        let mut a = Activity::with_ticks(Duration::from_secs(60), t0, 100);
        feed(&mut a, t0, 0.5, 120.0, 10, 0);
        assert!(!a.is_hung(at(t0, 120.0)));
        // 16 ticks a second, 9.6 s a minute: under the allowance, so idle.
        let mut a = Activity::with_ticks(Duration::from_secs(60), t0, 100);
        feed(&mut a, t0, 0.5, 120.0, 8, 0);
        assert!(a.is_hung(at(t0, 120.0)));
        // A short sharp burst (1 s of a whole core) is not 2.5 s in 15 s.
        let mut a = Activity::with_ticks(Duration::from_secs(60), t0, 100);
        feed(&mut a, t0, 0.5, 120.0, 0, 0);
        a.used(at(t0, 30.0), Usage { cpu_ticks: 100, io_bytes: 0 });
        assert!(a.is_hung(at(t0, 60.0)));
    }

    #[test]
    fn io_alone_counts() {
        let t0 = Instant::now();
        // A download at 10 KB/s using next to no CPU.
        let mut a = Activity::with_ticks(Duration::from_secs(60), t0, 100);
        feed(&mut a, t0, 0.5, 120.0, 0, 5_000);
        assert!(!a.is_hung(at(t0, 120.0)));
        // 2 KB/s is not worth counting.
        let mut a = Activity::with_ticks(Duration::from_secs(60), t0, 100);
        feed(&mut a, t0, 0.5, 120.0, 0, 1_000);
        assert!(a.is_hung(at(t0, 120.0)));
    }

    #[test]
    fn work_done_by_children_reaped_between_samples_counts() {
        // The tree reports a reaped child's time as growth of its parent's (see
        // `tree::usage_since`): a run whose work is many short-lived processes is busy.
        let t0 = Instant::now();
        let mut a = Activity::with_ticks(Duration::from_secs(2), t0, 100);
        for half_seconds in 1..=20u32 {
            // Each second a child that ran 0.3 s is reaped.
            let ticks = if half_seconds.is_multiple_of(2) { 30 } else { 0 };
            a.used(at(t0, f64::from(half_seconds) / 2.0), Usage { cpu_ticks: ticks, io_bytes: 0 });
        }
        assert!(!a.is_hung(at(t0, 10.0)));
        assert!(a.is_hung(at(t0, 12.0)));
    }
}
