//! What kugetsu costs on top of the REAL opencode (`opencode-ai@1.18.33` from the npm registry,
//! installed into the target directory once) answering from an instant mock model on 127.0.0.1.
//!
//! The floor is one bare `opencode run --format json --session S`, prompt on stdin, cwd and
//! `PWD` the issue's worktree, the environment kugetsu's own runs get: the least any command that
//! makes the agent take a turn can cost. Against it, in the same rounds (the order rotates each
//! round, so drift in the machine's load hits all alike):
//!
//! - `kugetsu continue #1 …` (same session, same worktree);
//! - `kugetsu start #N …` of a new issue, the repository's mirror already present, with the
//!   queue daemon running: the fork goes through the daemon's warm `opencode serve`;
//! - the same `start` with `KUGETSU_WARM_AGENT=off`: the fork is an `import` process, what a
//!   `start` costs with no daemon running;
//! - with the queue daemon running: `kugetsu queue enqueue #1 …` (a `continue`) and
//!   `queue enqueue #M …` (a `start`), from the enqueue being called to the model receiving the
//!   turn's request, against the bare run's spawn-to-request time.
//!
//! Each command is timed from spawn to exit, and to the moment the mock model received its
//! request; the two `start`s run with `--debug`, and their log gives kugetsu's own time before it
//! spawns `opencode run` (the fork included), which the run's variance does not blur; kugetsu's own peak memory (VmHWM of the `kugetsu` process, sampled while it runs) is
//! printed too. Every round is printed, then medians and the median of the per-round ratios.
//! Printed, never asserted. Run: `cargo bench -p kugetsu-cli --bench real_agent`
//! (`KUGETSU_BENCH_ROUNDS`, default 5; about a minute a round; `-- v1` or `-- v2`: only that
//! opencode's part, [`v2`] being the same measure against opencode 2). `KUGETSU_BENCH_BASELINE=<path
//! to another kugetsu binary>` (an older commit's build) times its `continue` and `start` in the
//! same rounds, so a change is compared under the same load. Without npm or the registry it
//! prints why and exits.

// A benchmark binary: panics on a broken setup and printed figures are its interface.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

#[path = "../tests/support.rs"]
#[allow(missing_docs)]
mod support;

#[path = "../../kugetsu-opencode/tests/support/mock_model.rs"]
#[allow(dead_code, missing_docs)]
mod mock_model;
#[path = "../../kugetsu-opencode/tests/support/real.rs"]
#[allow(dead_code, missing_docs)]
mod real;
#[path = "real_agent/v2.rs"]
mod v2;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Env;

/// What one timed command took.
#[derive(Clone, Copy)]
struct Sample {
    /// Spawn (or the enqueue being called) to the mock model receiving the turn's request.
    to_request: Duration,
    /// Spawn to exit (for a daemon dispatch: to the item being completed).
    total: Duration,
    /// Peak RSS of the `kugetsu` process itself, in KiB (0 for the bare run).
    kugetsu_hwm_kb: u64,
    /// For a `kugetsu --debug start`: seconds from its first log line to its log line that
    /// spawns `opencode run`, i.e. kugetsu's own time before the turn, fork included (free of
    /// the run's own variance, which is seconds on a busy machine).
    before_run: Option<f64>,
}

/// Seconds since midnight of a log line's RFC 3339 timestamp (`2026-…T20:52:30.159193Z …`).
fn log_time(line: &str) -> Option<f64> {
    let hms = line.split_whitespace().next()?.split('T').nth(1)?.trim_end_matches('Z');
    let mut it = hms.split(':').map(|p| p.parse::<f64>().ok());
    Some(it.next()?? * 3600.0 + it.next()?? * 60.0 + it.next()??)
}

/// [`Sample::before_run`] from a `--debug` stderr.
fn before_run(stderr: &str) -> Option<f64> {
    let first = stderr.lines().find_map(log_time)?;
    let run = stderr
        .lines()
        .filter(|l| l.contains("building agent command") && l.contains("\"run\""))
        .find_map(log_time)?;
    Some(run - first)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")?.split_whitespace().next()?.parse().ok())
}

/// The scratch world: a state directory initialized against the real opencode.
struct World {
    env: Env,
    model: mock_model::MockModel,
    bin: PathBuf,
}

impl World {
    fn new(bin: PathBuf) -> Self {
        let model = mock_model::MockModel::start();
        let mut env = Env::new();
        // opencode's own directories inside the scratch home, and the mock as its model.
        let vars = model.isolated_env(env.tmp.path());
        for (k, v) in &vars {
            env.set(k, v);
        }
        support::sample_repo(&env, &bin);
        std::fs::write(
            env.path("config"),
            format!(
                "KUGETSU_OPENCODE_BIN={}\nKUGETSU_DEFAULT_REPO=local.test/demo/app\n\
                 KUGETSU_AGENT_TIMEOUT_MINUTES=5\nKUGETSU_AGENT_IDLE_MINUTES=2\n",
                bin.display()
            ),
        )
        .unwrap();
        World { env, model, bin }
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.env.run(args);
        assert_eq!(out.code, 0, "kugetsu {args:?}: {}{}", out.stdout, out.stderr);
        out.stdout
    }

    fn requests(&self) -> usize {
        self.model.requests.lock().unwrap().len()
    }

    /// Waits for `child` to exit, noting when the model got a request beyond `before` and the
    /// child's peak RSS; panics if it fails.
    fn watch(&self, mut child: Child, t0: Instant, before: usize, what: &str) -> Sample {
        let pid = child.id();
        let mut to_request = None;
        let mut hwm = 0;
        let mut last_sample = Instant::now() - Duration::from_secs(1);
        loop {
            if to_request.is_none() && self.requests() > before {
                to_request = Some(t0.elapsed());
            }
            if let Some(status) = child.try_wait().unwrap() {
                let total = t0.elapsed();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                assert!(status.success(), "{what} failed ({status}): {err}");
                let to_request = to_request.unwrap_or_else(|| panic!("{what}: no model request"));
                return Sample {
                    to_request,
                    total,
                    kugetsu_hwm_kb: hwm,
                    before_run: before_run(&err),
                };
            }
            if last_sample.elapsed() >= Duration::from_millis(10) {
                hwm = hwm.max(hwm_kb(pid).unwrap_or(0));
                last_sample = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// `kugetsu args` (or `program args`: another build of kugetsu), as a shell would start
    /// it.
    fn kugetsu(&self, program: Option<&Path>, args: &[&str]) -> Sample {
        self.kugetsu_with(program, args, &[])
    }

    /// [`World::kugetsu`] with variables `vars` set for it.
    fn kugetsu_with(&self, program: Option<&Path>, args: &[&str], vars: &[(&str, &str)]) -> Sample {
        let before = self.requests();
        let template = self.env.command(args);
        let mut cmd = match program {
            Some(p) => like(&template, p),
            None => template,
        };
        cmd.envs(vars.iter().copied());
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let t0 = Instant::now();
        let child = cmd.spawn().unwrap();
        self.watch(child, t0, before, &format!("kugetsu {args:?}"))
    }

    /// The floor: the bare run kugetsu's `continue` makes, started directly.
    fn bare_run(&self, session: &str, worktree: &Path, prompt: &str) -> Sample {
        let before = self.requests();
        // The environment of a `kugetsu` started from the user's shell, then what kugetsu does
        // to it: PWD and the cwd are the worktree.
        let mut cmd = like(&self.env.command(&[]), &self.bin);
        cmd.env("PWD", worktree)
            .current_dir(worktree)
            .args(["run", "--format", "json", &format!("--session={session}")])
            .stdin(Stdio::piped())
            // Read as kugetsu reads it (a pipe, not /dev/null): the events are what a caller
            // of `--format json` runs it for.
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let t0 = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(prompt.as_bytes()).unwrap();
        drop(stdin);
        let mut s = self.watch(child, t0, before, "bare opencode run");
        s.kugetsu_hwm_kb = 0;
        s
    }

    /// `queue enqueue args --json`, then waits for the model's request and for the item to
    /// complete. `to_request` counts from the enqueue being called.
    fn dispatch(&self, args: &[&str]) -> Sample {
        let before = self.requests();
        let t0 = Instant::now();
        let mut argv = vec!["queue", "enqueue"];
        argv.extend_from_slice(args);
        argv.push("--json");
        let out: Value = serde_json::from_str(&self.ok(&argv)).unwrap();
        let id = out["id"].as_str().unwrap().to_owned();
        let item = self.env.path("queue/items").join(format!("{id}.json"));
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut to_request = None;
        let mut last_read = Instant::now();
        loop {
            if to_request.is_none() && self.requests() > before {
                to_request = Some(t0.elapsed());
            }
            // The item file only every 20 ms: reading and parsing it every millisecond took a
            // share of the 2 cores the agent needed, and only the request time needs precision.
            if last_read.elapsed() >= Duration::from_millis(20)
                && let Ok(bytes) = std::fs::read(&item)
                && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
            {
                last_read = Instant::now();
                match v["status"].as_str() {
                    Some("completed") => break,
                    Some("error") => panic!("{id} failed: {v}"),
                    _ => {}
                }
            }
            assert!(Instant::now() < deadline, "{id} not completed in 300 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        let total = t0.elapsed();
        Sample {
            to_request: to_request.unwrap_or_else(|| panic!("{id}: no model request")),
            total,
            kugetsu_hwm_kb: 0,
            before_run: None,
        }
    }

    fn session_of(&self, issue: &str) -> String {
        let list: Value = serde_json::from_str(&self.ok(&["list", "--json"])).unwrap();
        let row = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["issue_ref"] == format!("local.test/demo/app#{issue}"))
            .unwrap_or_else(|| panic!("no session for #{issue}: {list}"));
        row["session_id"].as_str().unwrap().to_owned()
    }
}

/// `program` with the arguments, environment and directory of `template`.
fn like(template: &Command, program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(template.get_args());
    cmd.env_clear();
    for (k, v) in std::env::vars_os() {
        cmd.env(k, v);
    }
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    if let Some(dir) = template.get_current_dir() {
        cmd.current_dir(dir);
    }
    cmd
}

/// Stops the daemon when dropped, even on a panic.
struct Daemon<'a>(&'a World);

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = self.0.env.run(&["queue-daemon", "stop"]);
    }
}

const KINDS: [&str; 8] = [
    "bare run",
    "kugetsu continue",
    "kugetsu start",
    "daemon: continue",
    "daemon: start",
    "start, no serve",
    "baseline continue",
    "baseline start",
];

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: keep that instant.
    if !std::env::args().any(|a| a == "--bench") {
        println!("real_agent bench: run with `cargo bench -p kugetsu-cli --bench real_agent`");
        return;
    }
    let rounds: usize =
        std::env::var("KUGETSU_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    // `-- v1` or `-- v2`: only that opencode's part.
    let only = |v: &str| std::env::args().skip(1).any(|a| a == v);
    let (v1, v2) = (only("v1"), only("v2"));
    // Another build of kugetsu (an older commit's) to time in the same rounds.
    let baseline = std::env::var_os("KUGETSU_BENCH_BASELINE").map(PathBuf::from);
    if v1 || !v2 {
        v1_rounds(rounds, baseline.as_deref());
    }
    if v2 || !v1 {
        v2::run(rounds, baseline.as_deref());
    }
}

/// The 1.x part.
fn v1_rounds(rounds: usize, baseline: Option<&Path>) {
    let Some(bin) = real::opencode() else {
        println!("real opencode unavailable: nothing measured");
        return;
    };
    let kinds = if baseline.is_some() { KINDS.len() } else { 6 };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("opencode {} at {}", real::VERSION, bin.display());
    println!("load average before: {}", load.trim());
    let w = World::new(bin);
    let t = Instant::now();
    w.ok(&["init", "--headless"]);
    println!("init --headless: {:.2} s", secs(t.elapsed()));
    let t = Instant::now();
    w.ok(&["start", "#1", "hi"]);
    println!("first start (clones the mirror, first fork): {:.2} s", secs(t.elapsed()));
    let session = w.session_of("1");
    let worktree = w.env.path("worktrees/local.test-demo-app-1");
    assert!(worktree.is_dir());
    let out: Value = serde_json::from_str(&w.ok(&["queue-daemon", "start", "--json"])).unwrap();
    let daemon_pid = u32::try_from(out["pid"].as_u64().unwrap()).unwrap();
    let _daemon = Daemon(&w);
    // The daemon's warm serve (KUGETSU_WARM_AGENT=daemon, the default).
    let registration = w.env.path("cache/opencode-serve.json");
    let t = Instant::now();
    while !registration.is_file() {
        assert!(t.elapsed() < Duration::from_secs(60), "the daemon registered no serve");
        std::thread::sleep(Duration::from_millis(20));
    }
    let reg: Value =
        serde_json::from_str(&std::fs::read_to_string(&registration).unwrap()).unwrap();
    let serve_pid = u32::try_from(reg["pid"].as_u64().unwrap()).unwrap();
    println!(
        "the daemon's opencode serve registered {:.2} s after the daemon started",
        secs(t.elapsed())
    );

    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); kinds];
    println!(
        "\nper round, seconds: spawn (or enqueue) -> model request / -> exit (or item completed)"
    );
    for round in 0..rounds {
        let mut line = format!("round {round}:");
        for k in 0..kinds {
            // Rotate the order: each kind goes first in some round.
            let kind = (k + round) % kinds;
            let prompt = format!("hi, round {round}");
            let base = baseline;
            let s = match kind {
                0 => w.bare_run(&session, &worktree, &prompt),
                1 => w.kugetsu(None, &["continue", "#1", &prompt]),
                2 => w.kugetsu(None, &["--debug", "start", &format!("#{}", 10 + round), &prompt]),
                3 => w.dispatch(&["#1", &prompt]),
                4 => w.dispatch(&[&format!("#{}", 100 + round), &prompt]),
                5 => w.kugetsu_with(
                    None,
                    &["--debug", "start", &format!("#{}", 300 + round), &prompt],
                    &[("KUGETSU_WARM_AGENT", "off")],
                ),
                6 => w.kugetsu(base, &["continue", "#1", &prompt]),
                _ => w.kugetsu(base, &["start", &format!("#{}", 200 + round), &prompt]),
            };
            samples[kind].push(s);
            // Let the daemon settle (slot release, notifications) before the next command.
            std::thread::sleep(Duration::from_millis(200));
        }
        for (k, name) in KINDS.iter().enumerate().take(kinds) {
            let s = samples[k][round];
            line.push_str(&format!("  {name} {:.2}/{:.2}", secs(s.to_request), secs(s.total)));
        }
        println!("{line}");
    }

    println!("\nmedians over {rounds} rounds (seconds)");
    let med = |k: usize, f: &dyn Fn(&Sample) -> f64| median(samples[k].iter().map(f).collect());
    for (k, name) in KINDS.iter().enumerate().take(kinds) {
        println!(
            "{name:18} to request {:6.2}   total {:6.2}",
            med(k, &|s| secs(s.to_request)),
            med(k, &|s| secs(s.total))
        );
    }
    let per_round = |a: usize, b: usize, f: &dyn Fn(&Sample) -> f64| {
        median(samples[a].iter().zip(&samples[b]).map(|(x, y)| f(x) / f(y)).collect())
    };
    let total = |s: &Sample| secs(s.total);
    let req = |s: &Sample| secs(s.to_request);
    println!("\nratios to the bare run (median of per-round ratios; ratio of medians)");
    let mut totals = vec![
        (1, "continue / bare, total"),
        (2, "start (warm serve) / bare, total"),
        (5, "start (import) / bare, total"),
    ];
    if kinds > 6 {
        totals
            .extend([(6, "baseline continue / bare, total"), (7, "baseline start / bare, total")]);
    }
    for (k, what) in totals {
        println!(
            "{what:34} {:.2}   ({:.2})",
            per_round(k, 0, &total),
            med(k, &total) / med(0, &total)
        );
    }
    for (k, what) in
        [(3, "daemon continue / bare, to request"), (4, "daemon start / bare, to request")]
    {
        println!("{what:34} {:.2}   ({:.2})", per_round(k, 0, &req), med(k, &req) / med(0, &req));
    }
    println!(
        "daemon continue to request - bare to request: {:+.2} s (median of per-round differences)",
        median(samples[3].iter().zip(&samples[0]).map(|(d, b)| req(d) - req(b)).collect())
    );
    println!(
        "start (warm serve) / bare, to request {:.2}; start (import) / bare, to request {:.2}",
        per_round(2, 0, &req),
        per_round(5, 0, &req)
    );
    for k in [2, 5] {
        let gaps: Vec<f64> = samples[k].iter().filter_map(|s| s.before_run).collect();
        if !gaps.is_empty() {
            println!(
                "{}: kugetsu's own time before spawning `opencode run` (fork included), median {:.2} s, range {:.2}-{:.2}",
                KINDS[k],
                median(gaps.clone()),
                gaps.iter().copied().fold(f64::INFINITY, f64::min),
                gaps.iter().copied().fold(0.0, f64::max)
            );
        }
    }
    for k in [1, 2, 5, 6, 7].into_iter().filter(|k| *k < kinds) {
        let peak = samples[k].iter().map(|s| s.kugetsu_hwm_kb).max().unwrap_or(0);
        println!("{} peak RSS of kugetsu itself: {:.1} MiB", KINDS[k], peak as f64 / 1024.0);
    }
    if let Some(kb) = hwm_kb(daemon_pid) {
        println!("daemon peak RSS: {:.1} MiB", kb as f64 / 1024.0);
    }
    let serve_status =
        std::fs::read_to_string(format!("/proc/{serve_pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        serve_status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or("?")
            .to_owned()
    };
    println!("the serve: RSS {}, peak {}", field("VmRSS:"), field("VmHWM:"));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());
}
