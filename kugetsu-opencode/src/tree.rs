//! Tracks every process a run started, including the ones that left its process group.
//!
//! opencode's bash tool starts commands detached (their own session and process group), so
//! killing opencode's group misses them, and once opencode exits they are orphans nobody
//! links back to the run. The tracker scans `/proc` while the run goes, remembers every
//! descendant with its start time (so a reused pid is never signalled), and at the end
//! signals all of them that are still the same processes. Where there is no `/proc` it does
//! nothing and the process-group kill is all there is.

use std::collections::{HashMap, HashSet};

use rustix::process::{Pid, Signal};

/// One line of `/proc/<pid>/stat`, the fields used here.
#[derive(Debug, Clone, Copy)]
struct Stat {
    pid: u32,
    ppid: u32,
    pgrp: u32,
    start: u64,
    zombie: bool,
}

fn parse_stat(text: &str) -> Option<Stat> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_whitespace().next()?.parse().ok()?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After `(comm)`: state(0) ppid(1) pgrp(2) ... starttime(19).
    Some(Stat {
        pid,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
        zombie: matches!(*f.first()?, "Z" | "X"),
    })
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn all_stats() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_stat)
        .collect()
}

/// The processes seen descending from one root.
#[derive(Debug)]
pub(crate) struct Tree {
    root: u32,
    /// pid -> start time.
    seen: HashMap<u32, u64>,
}

impl Tree {
    pub(crate) fn new(root: u32) -> Self {
        Tree { root, seen: HashMap::new() }
    }

    /// Records the current descendants of the root (and members of its process group).
    pub(crate) fn scan(&mut self) {
        let stats = all_stats();
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
                if c.pid != self.root && !c.zombie {
                    self.seen.entry(c.pid).or_insert(c.start);
                    stack.push(c.pid);
                }
            }
        }
        for s in stats.iter().filter(|s| s.pgrp == self.root && s.pid != self.root && !s.zombie) {
            self.seen.entry(s.pid).or_insert(s.start);
        }
    }

    /// Sends `sig` to every seen process that is still the same process, and to the process
    /// groups they lead (which holds their own children, seen or not).
    pub(crate) fn signal(&self, sig: Signal) {
        for (&pid, &start) in &self.seen {
            let Some(now) = read_stat(pid) else { continue };
            if now.start != start || now.zombie {
                continue;
            }
            let Some(p) = Pid::from_raw(pid as i32) else { continue };
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
                read_stat(**pid).is_some_and(|s| s.start == **start && !s.zombie)
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10 18446744073709551615";
        let s = parse_stat(line).expect("parses");
        assert_eq!((s.pid, s.ppid, s.pgrp, s.start, s.zombie), (1234, 1, 1234, 98765, false));
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn finds_and_kills_a_detached_grandchild() {
        if read_stat(std::process::id()).is_none() {
            return; // No /proc here.
        }
        // sh starts a `sleep` in the background in its own session, then waits.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "setsid sleep 300 & wait"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("sh");
        let mut tree = Tree::new(child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tree.alive() == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tree.scan();
        }
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
}
