//! Tracks every process a run started, including the ones that left its process group, and
//! how much CPU time and I/O they use.
//!
//! An agent's tools may start commands detached (their own session and process group:
//! opencode's bash tool does), so killing the agent's group misses them, and once the agent
//! exits they are orphans nobody links back to the run. The tracker scans `/proc` (through
//! [`crate::procfs`]) while the run goes, remembers every descendant with its start time (so a reused pid is never
//! signalled), and at the end signals all of them that are still the same processes. Each scan
//! also says how much CPU time and I/O the whole tree used since the previous one, which is
//! how a silent agent at work is told from a stuck one (see [`crate::activity`]). Where there
//! is no `/proc` it does nothing: the process-group kill is all there is, and no activity is
//! ever seen.

use std::collections::{HashMap, HashSet};

use crate::procfs::{self as proc, Stat};
use rustix::process::{Pid, Signal};

/// What a set of processes used over some time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// CPU time, clock ticks.
    pub cpu_ticks: u64,
    /// Bytes read and written (`rchar + wchar`).
    pub io_bytes: u64,
    /// Whether a process of the tree was running or waiting for a CPU (`R`) when it was
    /// scanned: a process that wants to work, whatever share of the cores it gets.
    pub runnable: bool,
}

impl Usage {
    /// Both usages together.
    pub(crate) fn add(self, other: Usage) -> Usage {
        Usage {
            cpu_ticks: self.cpu_ticks.saturating_add(other.cpu_ticks),
            io_bytes: self.io_bytes.saturating_add(other.io_bytes),
            runnable: self.runnable || other.runnable,
        }
    }
}

/// What a scan saw used, split by whose work it was: the agent's tools and what they started
/// (`work`), and the agent's own housekeeping (`own`): the agent process itself (its model
/// calls, timers, the plugin packages opencode installs in-process, ~90 MB in a fresh HOME)
/// and the helpers it starts directly for itself: another copy of its own program, and `git`
/// (opencode snapshots the worktree with it at every step). A tool's process is started through
/// a shell or a tool binary (`rg`), so it never looks like either.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    pub work: Usage,
    pub own: Usage,
}

impl Scan {
    /// Both together.
    #[cfg(test)]
    pub(crate) fn total(self) -> Usage {
        self.work.add(self.own)
    }

    /// Both scans together.
    pub(crate) fn add(self, other: Scan) -> Scan {
        Scan { work: self.work.add(other.work), own: self.own.add(other.own) }
    }
}

/// A process identity that survives pid reuse: pid and start time.
type Key = (u32, u64);

/// One process's counters at one scan. `io` is `None` where `/proc/<pid>/io` cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counters {
    /// CPU of the process and of the children it reaped, clock ticks: it only grows.
    pub cpu: u64,
    pub io: Option<u64>,
}

/// What the processes in `now` used since `before` was taken, and `now` becomes `before`.
///
/// The rule, kept simple and on the side of "busy": a process seen before counts what its
/// counters grew by; a process not seen before counts everything it has used (it started
/// since, or has just joined the tree); a process that is gone counts nothing more. A child
/// that lived and died between two scans is not lost: its time moves into its parent's
/// `cutime`/`cstime` when the parent reaps it, and the parent is in the tree. That same move
/// counts a seen child's time a second time when it is reaped, which can only make a tree that
/// was just busy look busy a moment longer.
pub(crate) fn usage_since(before: &mut HashMap<Key, Counters>, now: &[(Key, Counters)]) -> Usage {
    let mut used = Usage::default();
    let mut next = HashMap::with_capacity(now.len());
    for (key, c) in now {
        let prev = before.get(key);
        used.cpu_ticks =
            used.cpu_ticks.saturating_add(c.cpu.saturating_sub(prev.map_or(0, |p| p.cpu)));
        // Unreadable I/O counters count as unchanged; once readable, the previous readable
        // value (or zero for a new process) is the base.
        let io = c.io.or(prev.and_then(|p| p.io));
        if let Some(now_io) = c.io {
            used.io_bytes = used
                .io_bytes
                .saturating_add(now_io.saturating_sub(prev.and_then(|p| p.io).unwrap_or(0)));
        }
        next.insert(*key, Counters { cpu: c.cpu, io });
    }
    *before = next;
    used
}

/// The processes seen descending from one root.
#[derive(Debug)]
pub(crate) struct Tree {
    root: u32,
    /// Whether the root's own use counts (not for a server whose descendants are watched).
    count_root: bool,
    /// pid -> start time (the root not included).
    seen: HashMap<u32, u64>,
    /// Every measured process's counters at the last scan (the root included), the agent's
    /// tools' and its own (see [`Scan`]).
    counters: HashMap<Key, Counters>,
    own_counters: HashMap<Key, Counters>,
    /// Which processes are the agent's own, decided once per process.
    own: HashMap<Key, bool>,
    /// The root's program.
    root_exe: Option<std::path::PathBuf>,
}

impl Tree {
    /// Tracks the processes descending from `root` (which leads their process group).
    pub(crate) fn new(root: u32) -> Self {
        Tree {
            root,
            count_root: true,
            seen: HashMap::new(),
            counters: HashMap::new(),
            own_counters: HashMap::new(),
            own: HashMap::new(),
            root_exe: proc::exe(root),
        }
    }

    /// Tracks the processes descending from `root` without measuring `root` itself.
    pub(crate) fn descendants_of(root: u32) -> Self {
        Tree { count_root: false, ..Tree::new(root) }
    }

    /// Records the current descendants of the root (and members of its process group), and
    /// returns what the root and every process seen in its tree used since the previous scan
    /// (for the first scan: since they started).
    pub(crate) fn scan(&mut self) -> Scan {
        let stats = proc::all_stats();
        let mut children: HashMap<u32, Vec<&Stat>> = HashMap::new();
        for s in &stats {
            children.entry(s.ppid).or_default().push(s);
        }
        let mut stack: Vec<u32> = vec![self.root];
        stack.extend(self.seen.keys().copied());
        stack.extend(stats.iter().filter(|s| s.pgrp == self.root).map(|s| s.pid));
        let mut visited = HashSet::new();
        while let Some(pid) = stack.pop() {
            if !visited.insert(pid) {
                continue;
            }
            for c in children.get(&pid).into_iter().flatten() {
                if c.pid != self.root && !c.has_exited() {
                    self.seen.entry(c.pid).or_insert(c.start);
                    stack.push(c.pid);
                }
            }
        }
        for s in
            stats.iter().filter(|s| s.pgrp == self.root && s.pid != self.root && !s.has_exited())
        {
            self.seen.entry(s.pid).or_insert(s.start);
        }
        // Exited but unreaped members are still measured: their final counts may have grown
        // since the last scan.
        let in_tree = |s: &&Stat| {
            (s.pid == self.root && self.count_root) || self.seen.get(&s.pid) == Some(&s.start)
        };
        let mut work = (Vec::new(), false);
        let mut own = (Vec::new(), false);
        for s in stats.iter().filter(in_tree) {
            let key = (s.pid, s.start);
            let is_own = match self.own.get(&key) {
                Some(&o) => o,
                None => {
                    let o = self.is_own(s);
                    self.own.insert(key, o);
                    o
                }
            };
            let io = proc::read_io(s.pid).map(|io| io.chars());
            if s.pid == self.root {
                // What the agent reaped is its children's work (tools, mostly): on that side,
                // so a tool's short-lived processes never pass for housekeeping.
                own.0.push((key, Counters { cpu: s.utime + s.stime, io }));
                own.1 |= s.state == 'R';
                work.0.push((key, Counters { cpu: s.cutime + s.cstime, io: None }));
                continue;
            }
            let side = if is_own { &mut own } else { &mut work };
            side.0.push((key, Counters { cpu: s.cpu_with_reaped_children(), io }));
            side.1 |= s.state == 'R';
        }
        self.own.retain(|k, _| self.seen.get(&k.0) == Some(&k.1) || k.0 == self.root);
        Scan {
            work: Usage { runnable: work.1, ..usage_since(&mut self.counters, &work.0) },
            own: Usage { runnable: own.1, ..usage_since(&mut self.own_counters, &own.0) },
        }
    }

    /// Whether `s` is the agent's own housekeeping (see [`Scan`]): the root, or a child of the
    /// root that runs the root's program or `git`.
    fn is_own(&self, s: &Stat) -> bool {
        if s.pid == self.root {
            return true;
        }
        s.ppid == self.root
            && (proc::comm(s.pid).is_some_and(|c| c == "git")
                || self.root_exe.is_some() && proc::exe(s.pid) == self.root_exe)
    }

    /// Sends `sig` to every seen process that is still the same process, and to the process
    /// groups they lead (which holds their own children, seen or not).
    pub(crate) fn signal(&self, sig: Signal) {
        for (&pid, &start) in &self.seen {
            let Some(now) = proc::read_stat(pid) else { continue };
            if now.start != start || now.has_exited() {
                continue;
            }
            let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else { continue };
            if now.pgrp == pid && pid != self.root {
                let _ = rustix::process::kill_process_group(p, sig);
            }
            let _ = rustix::process::kill_process(p, sig);
        }
    }

    /// How many seen processes are still alive (for tests).
    #[cfg(test)]
    pub(crate) fn alive(&self) -> usize {
        self.seen
            .iter()
            .filter(|(pid, start)| {
                proc::read_stat(**pid).is_some_and(|s| s.start == **start && !s.has_exited())
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(cpu: u64, io: Option<u64>) -> Counters {
        Counters { cpu, io }
    }

    #[test]
    fn usage_counts_growth_new_processes_and_nothing_for_the_gone() {
        let mut before = HashMap::new();
        // First scan: everything the processes used so far.
        let u = usage_since(&mut before, &[((10, 1), c(130, Some(4000))), ((11, 5), c(2, None))]);
        assert_eq!(u, Usage { cpu_ticks: 132, io_bytes: 4000, ..Usage::default() });
        // Nothing moved.
        let u = usage_since(&mut before, &[((10, 1), c(130, Some(4000))), ((11, 5), c(2, None))]);
        assert_eq!(u, Usage::default());
        // 11 burns CPU; its I/O becomes readable (counted from zero); a new process 12 appears.
        let u = usage_since(
            &mut before,
            &[((10, 1), c(131, Some(4100))), ((11, 5), c(52, Some(10))), ((12, 9), c(3, Some(7)))],
        );
        assert_eq!(u, Usage { cpu_ticks: 1 + 50 + 3, io_bytes: 100 + 10 + 7, ..Usage::default() });
        // 11 exits and 10 reaps it: its 52 ticks move into 10's cutime. 12's I/O turns
        // unreadable: unchanged, not a drop.
        let u = usage_since(&mut before, &[((10, 1), c(183, Some(4100))), ((12, 9), c(3, None))]);
        assert_eq!(u, Usage { cpu_ticks: 52, io_bytes: 0, ..Usage::default() });
        let u =
            usage_since(&mut before, &[((10, 1), c(183, Some(4100))), ((12, 9), c(3, Some(9)))]);
        assert_eq!(u, Usage { cpu_ticks: 0, io_bytes: 2, ..Usage::default() });
        // A reused pid with another start time is another process.
        let u = usage_since(&mut before, &[((12, 20), c(4, Some(1)))]);
        assert_eq!(u, Usage { cpu_ticks: 4, io_bytes: 1, ..Usage::default() });
        // Counters never go back; if one does (not the same process after all), no underflow.
        let u = usage_since(&mut before, &[((12, 20), c(1, Some(0)))]);
        assert_eq!(u, Usage::default());
    }

    /// Scans until the tree has a live descendant (at most 10 s: the test then says what it
    /// did not see).
    fn scan_until_a_descendant(tree: &mut Tree) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tree.alive() == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tree.scan();
        }
    }

    /// What `sh -c script`'s tree used in the second after its first descendant came up; the
    /// tree is killed afterwards.
    fn second_of(script: &str) -> Scan {
        let mut child = std::process::Command::new("sh")
            .args(["-c", script])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("sh");
        let mut tree = Tree::new(child.id());
        scan_until_a_descendant(&mut tree);
        std::thread::sleep(std::time::Duration::from_millis(1000));
        let used = tree.scan();
        tree.signal(Signal::KILL);
        let _ = child.kill();
        let _ = child.wait();
        used
    }

    #[test]
    fn finds_and_kills_a_detached_grandchild() {
        if proc::read_stat(std::process::id()).is_none() {
            return; // No /proc here.
        }
        // sh starts a `sleep` in the background in its own session, then waits.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "setsid sleep 300 & wait"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("sh");
        let mut tree = Tree::new(child.id());
        scan_until_a_descendant(&mut tree);
        assert!(tree.alive() >= 1, "the background sleep was seen");
        tree.signal(Signal::KILL);
        let _ = child.kill();
        let _ = child.wait();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tree.alive() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(tree.alive(), 0);
    }

    #[test]
    fn a_busy_detached_grandchild_is_measured_and_a_sleeping_one_is_not() {
        if proc::read_stat(std::process::id()).is_none() {
            return; // No /proc here.
        }
        let run = |script: &str| -> Usage { second_of(script).total() };
        let busy = run("setsid sh -c 'while :; do :; done' & wait");
        let ticks = proc::clock_ticks_per_second();
        // A whole core for a second; on a loaded machine a good part of it.
        assert!(busy.cpu_ticks >= ticks / 10, "{busy:?}");
        // Running or waiting for a core, whatever the load.
        assert!(busy.runnable, "{busy:?}");
        let idle = run("setsid sleep 300 & wait");
        assert!(idle.cpu_ticks <= ticks / 50, "{idle:?}");
        assert!(!idle.runnable, "{idle:?}");
    }

    #[test]
    fn the_agents_own_helpers_are_told_from_its_tools() {
        if proc::read_stat(std::process::id()).is_none() {
            return; // No /proc here.
        }
        let run = second_of;
        let ticks = proc::clock_ticks_per_second();
        // A child running the agent's own program (here `sh`, as opencode runs itself): its own.
        let own = run("sh -c 'while :; do :; done' & wait");
        assert!(own.own.cpu_ticks >= ticks / 10 && own.work.cpu_ticks <= ticks / 50, "{own:?}");
        // Another program started by it: a tool's work.
        let work = run("dd if=/dev/zero of=/dev/null bs=64k & wait");
        assert!(work.work.io_bytes > 1 << 20 && work.own.io_bytes < 1 << 20, "{work:?}");
    }
}
