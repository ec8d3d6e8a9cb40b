//! The same measure against the real opencode 2 (`@opencode/cli@2.1.2`), whose every turn is
//! `opencode run --server URL -s ID` on the state directory's private serve.
//!
//! Two state directories, in the same rotating rounds:
//! - warm: the queue daemon runs and keeps its serve registered. `kugetsu continue #1` and
//!   `kugetsu start #N` against a bare `opencode run --server URL -s S` turn on that serve (its
//!   password in `OPENCODE_PASSWORD`, as kugetsu's runs get it), the floor of a warm turn;
//! - cold: no daemon, no serve: `kugetsu start #N` (and `continue #1`) start a serve of their
//!   own, against a bare `opencode run --standalone -s S`, which starts a private server too.
//!
//! The bare runs take the prompt on stdin, cwd and `PWD` the worktree, like the 1.x
//! bare run.
//!
//! A third floor, for `start`: a bare `run --server` of the first turn of a fork of the base
//! that the bench itself moved into a new worktree (`opencode api session.fork` and
//! `session.move`, untimed). opencode's first turn in a directory costs more than a turn on a
//! session already running there, whoever made the session; this floor has that cost too, so
//! `start` against it is what kugetsu adds to a new issue's first turn.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Daemon, Sample, World, like, median, secs};

const KINDS: [&str; 11] = [
    "bare run --server",
    "kugetsu continue",
    "kugetsu start",
    "bare run --standalone",
    "cold start",
    "cold continue",
    "baseline continue",
    "baseline start",
    "baseline cold start",
    "baseline cold cont.",
    "bare first turn, new dir",
];

/// Kinds timed without a baseline build: all but the four baseline ones.
const OWN: [usize; 7] = [0, 1, 2, 3, 4, 5, 10];

impl World {
    /// A bare `opencode run` of `session` with `flags` before its `-s`, timed like
    /// [`World::bare_run`].
    fn bare_run2(
        &self,
        flags: &[&str],
        password: Option<&str>,
        session: &str,
        worktree: &Path,
        prompt: &str,
    ) -> Sample {
        let before = self.requests();
        let mut cmd = like(&self.env.command(&[]), &self.bin);
        cmd.env("PWD", worktree)
            .current_dir(worktree)
            .arg("run")
            .args(flags)
            .args(["-s", session, "--format", "json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = password {
            cmd.env("OPENCODE_PASSWORD", p);
        }
        let t0 = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(prompt.as_bytes()).unwrap();
        drop(stdin);
        let mut s = self.watch(child, t0, before, &format!("bare opencode run {flags:?}"));
        s.kugetsu_hwm_kb = 0;
        s
    }

    /// A fork of the base session, moved over `url` into a new worktree of the sample
    /// repository, as `start` makes one (untimed): the fork and its worktree.
    fn fork_into_new_worktree(&self, url: &str, password: &str, name: &str) -> (String, PathBuf) {
        let base: Value = serde_json::from_str(
            &std::fs::read_to_string(self.env.path("sessions/base.json")).unwrap(),
        )
        .unwrap();
        let base = base["opencode_session_id"].as_str().unwrap();
        let worktree = self.env.tmp.path().join(name);
        let repo = self.env.tmp.path().join("repo");
        let out = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["worktree", "add", "-q", "--detach"])
            .arg(&worktree)
            .output()
            .unwrap();
        assert!(out.status.success(), "git worktree add: {out:?}");
        let api = |args: &[&str]| -> String {
            let mut cmd = like(&self.env.command(&[]), &self.bin);
            let out = cmd
                .env("OPENCODE_PASSWORD", password)
                .current_dir(&worktree)
                .env("PWD", &worktree)
                .args(["api", "--server", url])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "opencode api {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let fork: Value = serde_json::from_str(&api(&[
            "session.fork",
            "--param",
            &format!("sessionID={base}"),
            "-d",
            "{}",
        ]))
        .unwrap();
        let fork = fork["data"]["id"].as_str().or(fork["id"].as_str()).unwrap().to_owned();
        let to = serde_json::json!({"directory": worktree}).to_string();
        api(&["session.move", "--param", &format!("sessionID={fork}"), "-d", &to]);
        (fork, worktree)
    }

    /// `init --headless` and a first `start #1`; #1's session and worktree.
    fn prepare(&self, what: &str) -> (String, std::path::PathBuf) {
        let t = Instant::now();
        self.ok(&["init", "--headless"]);
        self.ok(&["start", "#1", "hi"]);
        println!("{what}: init --headless and a first start: {:.2} s", secs(t.elapsed()));
        let worktree = self.env.path("worktrees/local.test-demo-app-1");
        assert!(worktree.is_dir());
        (self.session_of("1"), worktree)
    }
}

pub(super) fn run(rounds: usize, baseline: Option<&Path>) {
    // With a baseline build, its four kugetsu kinds are timed in the same rounds.
    let kinds: Vec<usize> =
        if baseline.is_some() { (0..KINDS.len()).collect() } else { OWN.to_vec() };
    let Some(bin) = super::real::opencode2() else {
        println!("real opencode 2 unavailable: nothing measured");
        return;
    };
    println!("\n== opencode {} at {}", super::real::VERSION2, bin.display());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.trim());
    let warm = World::new(bin.clone());
    let cold = World::new(bin);
    let (session, worktree) = warm.prepare("warm state dir");
    let (cold_session, cold_worktree) = cold.prepare("cold state dir");

    let t = Instant::now();
    warm.ok(&["queue-daemon", "start", "--json"]);
    let _daemon = Daemon(&warm);
    let registration = warm.env.path("cache/opencode2-serve.json");
    while !registration.is_file() {
        assert!(t.elapsed() < Duration::from_secs(60), "the daemon registered no serve");
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("the daemon's serve registered {:.2} s after the daemon started", secs(t.elapsed()));
    let reg: Value =
        serde_json::from_str(&std::fs::read_to_string(&registration).unwrap()).unwrap();
    let url = reg["url"].as_str().unwrap().to_owned();
    let password = reg["password"].as_str().unwrap().to_owned();
    let serve_pid = reg["pid"].as_u64().unwrap();
    // The first turn on a new serve is slow (0.9-1.5 s against 0.2 s after): one untimed
    // turn, so that whichever kind comes first in round 0 is not charged with it.
    warm.ok(&["continue", "#1", "warm-up"]);
    assert!(
        !cold.env.path("cache/opencode2-serve.json").exists(),
        "the cold state dir has a registered serve"
    );

    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); KINDS.len()];
    println!("\nper round, seconds: spawn -> model request / -> exit");
    for round in 0..rounds {
        for k in 0..kinds.len() {
            let kind = kinds[(k + round) % kinds.len()];
            let prompt = format!("hi, round {round}");
            let s = match kind {
                0 => warm.bare_run2(
                    &["--server", &url],
                    Some(&password),
                    &session,
                    &worktree,
                    &prompt,
                ),
                1 => warm.kugetsu(None, &["continue", "#1", &prompt]),
                2 => {
                    warm.kugetsu(None, &["--debug", "start", &format!("#{}", 10 + round), &prompt])
                }
                3 => {
                    cold.bare_run2(&["--standalone"], None, &cold_session, &cold_worktree, &prompt)
                }
                4 => {
                    cold.kugetsu(None, &["--debug", "start", &format!("#{}", 10 + round), &prompt])
                }
                5 => cold.kugetsu(None, &["continue", "#1", &prompt]),
                6 => warm.kugetsu(baseline, &["continue", "#1", &prompt]),
                7 => warm.kugetsu(baseline, &["start", &format!("#{}", 1000 + round), &prompt]),
                8 => cold.kugetsu(baseline, &["start", &format!("#{}", 1000 + round), &prompt]),
                9 => cold.kugetsu(baseline, &["continue", "#1", &prompt]),
                _ => {
                    let (fork, dir) =
                        warm.fork_into_new_worktree(&url, &password, &format!("bare-{round}"));
                    warm.bare_run2(&["--server", &url], Some(&password), &fork, &dir, &prompt)
                }
            };
            samples[kind].push(s);
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut line = format!("round {round}:");
        for &k in &kinds {
            let name = KINDS[k];
            let s = samples[k][round];
            line.push_str(&format!("  {name} {:.2}/{:.2}", secs(s.to_request), secs(s.total)));
        }
        println!("{line}");
    }

    println!("\nmedians over {rounds} rounds (seconds)");
    let med = |k: usize, f: &dyn Fn(&Sample) -> f64| median(samples[k].iter().map(f).collect());
    let total = |s: &Sample| secs(s.total);
    let req = |s: &Sample| secs(s.to_request);
    for &k in &kinds {
        let name = KINDS[k];
        println!("{name:24} to request {:6.2}   total {:6.2}", med(k, &req), med(k, &total));
    }
    let per_round = |a: usize, b: usize, f: &dyn Fn(&Sample) -> f64| {
        median(samples[a].iter().zip(&samples[b]).map(|(x, y)| f(x) / f(y)).collect())
    };
    println!("\nratios, total (median of per-round ratios; ratio of medians)");
    let against_baseline: &[(usize, usize, &str, &str)] = if baseline.is_some() {
        &[
            (1, 6, "continue / baseline continue", "the change"),
            (2, 7, "start / baseline start", "the change"),
            (4, 8, "cold start / baseline cold start", "the change"),
            (5, 9, "cold continue / baseline cold cont.", "the change"),
            (6, 0, "baseline continue / bare --server", ""),
            (7, 0, "baseline start / bare --server", ""),
            (8, 3, "baseline cold start / bare --standalone", ""),
        ]
    } else {
        &[]
    };
    for &(a, b, what, target) in [
        (1, 0, "warm continue / bare --server", "target <= 1.1"),
        (2, 0, "warm start / bare --server", "target <= 1.1"),
        (2, 10, "warm start / bare first turn, new dir", "what kugetsu adds to it"),
        (10, 0, "bare first turn, new dir / bare --server", "opencode's own"),
        (1, 3, "warm continue / bare --standalone", "target well under 1"),
        (2, 3, "warm start / bare --standalone", "target well under 1"),
        (4, 3, "cold start / bare --standalone", "target <= 1.2"),
        (5, 3, "cold continue / bare --standalone", "no target"),
        (0, 3, "bare --server / bare --standalone", "the floors"),
    ]
    .iter()
    .chain(against_baseline)
    {
        println!(
            "{what:42} {:.2}   ({:.2})   {target}",
            per_round(a, b, &total),
            med(a, &total) / med(b, &total)
        );
    }
    for k in [2, 4] {
        let gaps: Vec<f64> = samples[k].iter().filter_map(|s| s.before_run).collect();
        if !gaps.is_empty() {
            println!(
                "{}: kugetsu's own time before spawning `opencode run`, median {:.2} s, range {:.2}-{:.2}",
                KINDS[k],
                median(gaps.clone()),
                gaps.iter().copied().fold(f64::INFINITY, f64::min),
                gaps.iter().copied().fold(0.0, f64::max)
            );
        }
    }
    for k in [1, 2, 4, 5] {
        let peak = samples[k].iter().map(|s| s.kugetsu_hwm_kb).max().unwrap_or(0);
        println!("{} peak RSS of kugetsu itself: {:.1} MiB", KINDS[k], peak as f64 / 1024.0);
    }
    let status = std::fs::read_to_string(format!("/proc/{serve_pid}/status")).unwrap_or_default();
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap_or("?").trim();
    println!("the daemon's serve: RSS {rss}");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());
}
