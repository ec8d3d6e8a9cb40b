//! The idle judgement of a supervised run: when a run that prints nothing is stuck rather than
//! at work.
//!
//! Idle means stuck, not quiet: an agent may print a tool's event only when the tool has
//! finished (opencode does), so an agent running a long silent build prints nothing for as long
//! as the build runs. A run is hung only when, for the whole idle limit, it printed nothing AND
//! its process tree (the agent and every descendant, those that left its group included) used
//! no CPU time or I/O worth counting and did not wait for a CPU most of the time. The thresholds were measured on opencode 1.18.33, the
//! agent whose idle cost is known; an agent whose idle process burns more would need its own.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::procfs;
use crate::tree::Usage;

/// CPU time per minute that a run's processes may use and still count as idle: one sixth of a
/// core. opencode itself is not idle while it waits: measured on 1.18.33 (two cores shared
/// with builds; `measure_what_idle_opencode_uses` in `kugetsu-opencode/tests/real_opencode.rs`),
/// an `opencode run` waiting for a bash tool's `sleep`, or for a model that never answers, used
/// 1.0 to 1.6 s of CPU per minute (timers ticking every second), at most 1.7 s in any 60 s,
/// 0.6 s in any 15 s and 0.5 s in any 5 s (its bursts). A busy loop or a compiler uses a whole core, 60 s
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
pub fn activity_is_watched() -> bool {
    procfs::read_stat(std::process::id()).is_some()
}

/// The idle rule: when a run has been quiet for its whole idle limit.
///
/// Quiet is no output and no activity. Activity is judged over a trailing window (a quarter of
/// the limit, between 1 s and 60 s): at each sample, if what the tree used in the last window
/// exceeds [`BUSY_CPU_PER_MINUTE`] or [`BUSY_IO_PER_MINUTE`] scaled to the window, or the tree
/// was runnable at most of the window's samples (see [`Window::mostly_runnable`]), the run is
/// busy at that moment. A short window marks the end of work closely (the verdict comes the
/// limit after the last busy moment, which is at most one window after the work stopped); a
/// long one smooths opencode's own bursts and the 10 ms granularity of CPU time. A window not
/// yet full (the first seconds of a run) is held to the whole window's allowance.
///
/// The agent's tools and what they start are judged so. The agent's own housekeeping (the
/// agent process itself and its own helpers: see [`crate::tree::Scan`]) is judged by the same
/// thresholds in a window of its own, but it can postpone the verdict by one window at most:
/// opencode installing its plugin packages (~90 MB of I/O in a fresh HOME) or snapshotting a
/// large worktree while its provider never answers is not work that gets anywhere. The cost: a
/// model streaming one answer for longer than the limit and a window with nothing printed
/// (opencode 1.x prints a text only once it is whole) is judged hung.
#[derive(Debug)]
pub(crate) struct Activity {
    /// The idle limit.
    limit: Duration,
    window: Duration,
    /// Allowances per window: CPU in clock ticks, I/O in bytes.
    cpu_allowance: u64,
    io_allowance: u64,
    /// The tools' samples and the agent's own.
    work: Window,
    own: Window,
    /// The last line of output, or the run's start.
    last_output: Instant,
    /// The last sample at which the tools' window was busy.
    last_busy: Option<Instant>,
    /// The last sample at which the agent's own window was busy.
    last_own_busy: Option<Instant>,
}

/// The samples of one trailing window, oldest first, and their sum.
#[derive(Debug, Default)]
struct Window {
    samples: VecDeque<(Instant, Usage)>,
    sum: Usage,
}

impl Window {
    /// Adds the sample at `at`, drops those older than `span`, and says whether the window is
    /// busy by `cpu` ticks, `io` bytes or the runnable majority.
    fn push(&mut self, at: Instant, used: Usage, span: Duration, cpu: u64, io: u64) -> bool {
        self.samples.push_back((at, used));
        self.sum = self.sum.add(used);
        while let Some(&(t, u)) = self.samples.front() {
            if at.duration_since(t) < span {
                break;
            }
            self.samples.pop_front();
            self.sum = Usage {
                cpu_ticks: self.sum.cpu_ticks.saturating_sub(u.cpu_ticks),
                io_bytes: self.sum.io_bytes.saturating_sub(u.io_bytes),
                runnable: false,
            };
        }
        self.sum.cpu_ticks > cpu || self.sum.io_bytes > io || self.mostly_runnable()
    }

    /// Whether the processes wanted a CPU at most of the window's samples (at least two):
    /// work that the machine's load starves. A busy loop on cores shared fifteen ways gets
    /// less CPU than [`BUSY_CPU_PER_MINUTE`] yet is runnable whenever it is looked at; idle
    /// opencode is runnable at about one sample in forty (its share of a core), a sleeping tool
    /// at none.
    fn mostly_runnable(&self) -> bool {
        let runnable = self.samples.iter().filter(|(_, u)| u.runnable).count();
        self.samples.len() >= 2 && runnable * 2 > self.samples.len()
    }
}

impl Activity {
    pub(crate) fn new(limit: Duration, start: Instant) -> Self {
        Self::with_ticks(limit, start, procfs::clock_ticks_per_second())
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
            work: Window::default(),
            own: Window::default(),
            last_output: start,
            last_busy: None,
            last_own_busy: None,
        }
    }

    /// The idle limit.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// A line of output at `at`.
    pub(crate) fn output(&mut self, at: Instant) {
        self.last_output = self.last_output.max(at);
    }

    /// What the agent's tools (`work`) and the agent itself (`own`, see
    /// [`crate::tree::Scan`]) used between the previous sample and `at`.
    pub(crate) fn used(&mut self, at: Instant, work: Usage, own: Usage) {
        let (span, cpu, io) = (self.window, self.cpu_allowance, self.io_allowance);
        if self.work.push(at, work, span, cpu, io) {
            self.last_busy = Some(at);
        }
        if self.own.push(at, own, span, cpu, io) {
            self.last_own_busy = Some(at);
        }
    }

    /// How long nothing was seen: no output, and no busy moment.
    pub(crate) fn quiet_for(&self, now: Instant) -> Duration {
        let since = self.last_busy.map_or(self.last_output, |b| b.max(self.last_output));
        // The agent's own work moves the start of the quiet by one window at most.
        let since = match self.last_own_busy {
            Some(own) if own > since => own.min(since + self.window),
            _ => since,
        };
        now.saturating_duration_since(since)
    }

    /// Whether the run has been quiet for its whole idle limit.
    pub(crate) fn is_hung(&self, now: Instant) -> bool {
        self.quiet_for(now) >= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Activity {
        /// A sample of the tools' use alone.
        fn work(&mut self, at: Instant, used: Usage) {
            self.used(at, used, Usage::default());
        }
    }

    /// Feeds `activity` one sample every half second from `from` to `to` (seconds after
    /// `t0`), each using `ticks` of CPU and `bytes` of I/O.
    fn feed(a: &mut Activity, t0: Instant, from: f64, to: f64, ticks: u64, bytes: u64) {
        let mut t = from;
        while t <= to {
            a.work(
                t0 + Duration::from_secs_f64(t),
                Usage { cpu_ticks: ticks, io_bytes: bytes, ..Usage::default() },
            );
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
        a.work(at(t0, 20.2), Usage { cpu_ticks: 45, io_bytes: 700, ..Usage::default() });
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
        a.work(at(t0, 30.0), Usage { cpu_ticks: 100, io_bytes: 0, ..Usage::default() });
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
            a.work(
                at(t0, f64::from(half_seconds) / 2.0),
                Usage { cpu_ticks: ticks, io_bytes: 0, ..Usage::default() },
            );
        }
        assert!(!a.is_hung(at(t0, 10.0)));
        assert!(a.is_hung(at(t0, 12.0)));
    }

    #[test]
    fn a_tree_starved_of_cpu_but_runnable_is_busy() {
        let t0 = Instant::now();
        let runnable = |ticks| Usage { cpu_ticks: ticks, io_bytes: 0, runnable: true };
        // A busy loop on cores shared many ways: 2 ticks a sample (2.4 s a minute, under the
        // allowance), runnable whenever looked at.
        let mut a = Activity::with_ticks(Duration::from_secs(60), t0, 100);
        let mut t = 0.5;
        while t <= 120.0 {
            a.work(at(t0, t), runnable(2));
            t += 0.5;
        }
        assert!(!a.is_hung(at(t0, 120.0)));
        // The same CPU, runnable at one sample in forty (idle opencode's share): idle.
        let mut a = Activity::with_ticks(Duration::from_secs(60), t0, 100);
        for i in 1..=240u32 {
            let u =
                if i % 40 == 0 { runnable(2) } else { Usage { cpu_ticks: 2, ..Usage::default() } };
            a.work(at(t0, f64::from(i) / 2.0), u);
        }
        assert!(a.is_hung(at(t0, 120.0)));
        // A single runnable sample is not a majority of one.
        let mut a = Activity::with_ticks(Duration::from_secs(2), t0, 100);
        a.work(at(t0, 0.5), runnable(0));
        assert!(a.is_hung(at(t0, 2.0)));
    }

    #[test]
    fn the_agents_own_work_postpones_the_verdict_by_one_window_at_most() {
        let t0 = Instant::now();
        let io = |bytes| Usage { io_bytes: bytes, ..Usage::default() };
        // A 60 s limit (15 s windows). The agent itself installs its plugins (1 MB every half
        // second, far over the allowance) for the whole run while its tools do nothing.
        let mut a = Activity::with_ticks(Duration::from_secs(60), t0, 100);
        let mut t = 0.5;
        while t <= 120.0 {
            a.used(at(t0, t), Usage::default(), io(1 << 20));
            t += 0.5;
        }
        assert!(!a.is_hung(at(t0, 74.0)));
        assert!(a.is_hung(at(t0, 75.0)), "the limit and one window, not the whole install");
        // The same use by a tool keeps the run alive.
        let mut a = Activity::with_ticks(Duration::from_secs(60), t0, 100);
        feed(&mut a, t0, 0.5, 120.0, 0, 1 << 20);
        assert!(!a.is_hung(at(t0, 120.0)));
        // The agent's own work after output counts from the output, a window at most.
        let mut a = Activity::with_ticks(Duration::from_secs(60), t0, 100);
        a.output(at(t0, 30.0));
        let mut t = 0.5;
        while t <= 200.0 {
            a.used(at(t0, t), Usage::default(), io(1 << 20));
            t += 0.5;
        }
        assert!(!a.is_hung(at(t0, 104.0)));
        assert!(a.is_hung(at(t0, 105.0)));
        // A short burst of its own (a snapshot) moves the verdict by that much only.
        let mut a = Activity::with_ticks(Duration::from_secs(60), t0, 100);
        a.used(at(t0, 5.0), Usage::default(), io(1 << 20));
        assert!(!a.is_hung(at(t0, 64.0)));
        assert!(a.is_hung(at(t0, 65.0)));
    }
}
