//! Figures for the command line's speed claims, measured through the built `kugetsu` binary with
//! the bundled fake agent (the binary linked as `opencode`), so they cover everything a user's
//! command does except the model:
//!
//! 1. `list` and `status` with 1,000 sessions, against reading and parsing the same files;
//! 2. `queue stats` with 10,000 items;
//! 3. the overhead of `start` (and `continue`) over the agent's own run, and the number of agent
//!    processes each spends;
//! 4. the latency from `queue enqueue` / `delegate` returning to the agent's turn starting, with
//!    the daemon running and a slot free, and the agent processes per dispatch;
//! 5. the daemon's idle memory and CPU.
//!
//! 3 and 4 run twice: with agent processes that start at once, and with each first sleeping
//! 1000 ms (`FAKE_OPENCODE_STARTUP_MS`), about what a real opencode spends starting up, which
//! shows what a command's number of agent processes costs a user.
//!
//! Figures are printed, never asserted (machines are shared and noisy). Run:
//! `cargo bench -p kugetsu-cli --bench cli` (about a minute and a half); with
//! `KUGETSU_BENCH_BIN=<another kugetsu binary>` the commands are that build's. Scratch state
//! lives under the target directory, a real disk rather than a tmpfs where fsync is free.

// A benchmark binary: panics on a broken setup and printed figures are its interface.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::fmt;
use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kugetsu_core::IssueRef;
use kugetsu_core::agent::RunOutcome;
use kugetsu_core::queue::{NewTask, QueueItem, QueueStatus, TaskQueue};
use kugetsu_core::session::{Index, LastRun, SessionFile, SessionKind, SessionState};
use serde_json::Value;
use time::OffsetDateTime;

const KUGETSU: &str = env!("CARGO_BIN_EXE_kugetsu");

/// The `kugetsu` that runs the commands: the one cargo built, or `KUGETSU_BENCH_BIN` (another
/// build, such as an older commit's, to compare with). The fake agent is always the built one.
fn kugetsu_under_test() -> PathBuf {
    std::env::var_os("KUGETSU_BENCH_BIN").map_or_else(|| PathBuf::from(KUGETSU), PathBuf::from)
}

// ------------------------------------------------------------------------------ figures

/// Median, min and max of a set of samples.
struct Summary {
    median: Duration,
    min: Duration,
    max: Duration,
    n: usize,
}

fn summary(samples: &[Duration]) -> Summary {
    assert!(!samples.is_empty());
    let mut v = samples.to_vec();
    v.sort();
    Summary { median: v[v.len() / 2], min: v[0], max: v[v.len() - 1], n: v.len() }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "median {:8.2} ms  (min {:.2}, max {:.2}, n={})",
            ms(self.median),
            ms(self.min),
            ms(self.max),
            self.n
        )
    }
}

fn ratio(a: &Summary, b: &Summary) -> f64 {
    a.median.as_secs_f64() / b.median.as_secs_f64()
}

fn unix_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

// ------------------------------------------------------------------------------ scratch home

/// A scratch HOME and state directory, with the fake agent linked as `opencode`.
struct Scratch {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    state: PathBuf,
    opencode: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let root = dir.path().to_path_buf();
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let opencode = bin.join("opencode");
        std::os::unix::fs::symlink(KUGETSU, &opencode).unwrap();
        let state = home.join(".kugetsu");
        Scratch { _dir: dir, root, home, state, opencode }
    }

    /// The hermetic environment every process of the scratch home gets.
    fn env(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUGETSU_HOME", &self.state)
            .env("NO_COLOR", "1")
            .current_dir(&self.home)
            .stdin(Stdio::null());
    }

    fn kugetsu(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kugetsu_under_test());
        self.env(&mut cmd);
        cmd.args(args);
        cmd
    }

    /// Runs `kugetsu args` to the end, panicking with its output unless it exits 0.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.kugetsu(args).output().unwrap();
        assert!(
            out.status.success(),
            "kugetsu {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Times `kugetsu args` from spawn to exit, output discarded.
    fn time(&self, args: &[&str]) -> Duration {
        let mut cmd = self.kugetsu(args);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        time_command(cmd)
    }

    /// Points kugetsu at the fake agent, with its session store in the scratch directory.
    fn use_fake_agent(&self) {
        let db = self.root.join("opencode-db.json");
        self.ok(&["env", "set", "OPENCODE_DB", db.to_str().unwrap()]);
        append(
            &self.state.join("config"),
            &format!("KUGETSU_OPENCODE_BIN={}\n", self.opencode.display()),
        );
    }

    /// A one-commit repository, known to kugetsu as `local.test/bench/app` (short refs `#N`).
    fn use_local_repo(&self) {
        let repo = self.root.join("repo");
        std::fs::create_dir_all(repo.join("src")).unwrap();
        std::fs::write(repo.join("README.md"), "# bench\n").unwrap();
        std::fs::write(repo.join("src/main.rs"), "fn main() {}\n").unwrap();
        for args in
            [&["init", "-q", "-b", "main"][..], &["add", "."], &["commit", "-q", "-m", "init"]]
        {
            let status = Command::new("git")
                .args(["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"])
                .args(args)
                .current_dir(&repo)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("HOME", &self.home)
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "git {args:?}");
        }
        append(&self.state.join("config"), "KUGETSU_DEFAULT_REPO=local.test/bench/app\n");
        std::fs::write(
            self.state.join("repos.json"),
            serde_json::to_vec(&serde_json::json!({ "local.test/bench/app": repo })).unwrap(),
        )
        .unwrap();
    }
}

fn append(path: &Path, text: &str) {
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Writes a state file the way kugetsu's files are: private from creation.
fn write_private(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn time_command(mut cmd: Command) -> Duration {
    let t = Instant::now();
    let status = cmd.status().unwrap();
    let took = t.elapsed();
    assert!(status.success(), "{cmd:?} failed: {status}");
    took
}

// ------------------------------------------------------------------------------ 1. list, status

fn list_and_status() {
    println!("\n## 1. `list` and `status` with 1,000 sessions");
    let s = Scratch::new();
    s.ok(&["queue", "stats"]); // creates the state directory
    s.use_fake_agent();
    s.ok(&["init", "--headless"]);

    // 1,000 issue sessions in the spec's shapes, as `start` leaves them.
    let sessions = s.state.join("sessions");
    let index_path = s.state.join("index.json");
    let mut index: Index = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let now = OffsetDateTime::now_utc();
    let mut files =
        vec![index_path.clone(), sessions.join("base.json"), sessions.join("pm-agent.json")];
    for i in 1..=1000u64 {
        let issue = IssueRef::parse(&format!("github.com/bench/repo#{i}")).unwrap();
        let name = format!("{}.json", issue.file_name());
        let file = SessionFile {
            kind: SessionKind::Forked,
            issue_ref: Some(issue.to_string()),
            agent_session_id: format!("ses_{:012x}{:0>14}", 0xdf59_f9d3_0000 + i, i).into(),
            agent: None,
            agent_major: None,
            worktree_path: Some(s.state.join("worktrees").join(issue.file_name())),
            created_at: now,
            state: SessionState::Idle,
            directory: None,
            branch: Some(issue.branch()),
            agent_pid: None,
            last_run: Some(LastRun {
                outcome: RunOutcome::Completed,
                started_at: now,
                finished_at: now,
                exit_code: Some(0),
                usage: None,
            }),
            usage: None,
            extra: Default::default(),
        };
        let path = sessions.join(&name);
        write_private(&path, &serde_json::to_vec_pretty(&file).unwrap());
        files.push(path);
        index.issues.insert(issue.to_string(), name);
    }
    write_private(&index_path, &serde_json::to_vec_pretty(&index).unwrap());
    let listed: Vec<Value> = serde_json::from_str(&s.ok(&["list", "--json"])).unwrap();
    assert_eq!(listed.len(), 1002);
    assert!(listed.iter().all(|e| e["state"] == "idle"), "every session file was read");
    assert_eq!(s.ok(&["status"]), "ok\n");

    // The floor: reading and parsing the same 1,003 files in this process, and `cat` of them.
    let parse_in_process = || {
        let t = Instant::now();
        let index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
        let mut n = 0;
        for name in ["base.json", "pm-agent.json"]
            .into_iter()
            .chain(index["issues"].as_object().unwrap().values().map(|v| v.as_str().unwrap()))
        {
            let v: Value =
                serde_json::from_slice(&std::fs::read(sessions.join(name)).unwrap()).unwrap();
            n += usize::from(v["state"].is_string());
        }
        assert_eq!(black_box(n), 1002);
        t.elapsed()
    };
    let cat = || {
        let mut cmd = Command::new("cat");
        cmd.args(&files).stdout(Stdio::null());
        time_command(cmd)
    };

    let rounds = 30;
    let (mut version, mut status, mut list, mut list_json, mut cats, mut parse) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    // Interleaved, so drift in the machine's load hits every variant alike.
    for _ in 0..rounds {
        version.push(s.time(&["--version"]));
        status.push(s.time(&["status"]));
        list.push(s.time(&["list"]));
        list_json.push(s.time(&["list", "--json"]));
        cats.push(cat());
        parse.push(parse_in_process());
    }
    let (version, status, list, list_json, cats, parse) = (
        summary(&version),
        summary(&status),
        summary(&list),
        summary(&list_json),
        summary(&cats),
        summary(&parse),
    );
    println!("kugetsu --version (process start, the floor)   {version}");
    println!("kugetsu status                                  {status}");
    println!("kugetsu list (1,002 rows)                       {list}");
    println!("kugetsu list --json                             {list_json}");
    println!("cat of the 1,003 files                          {cats}");
    println!("read + serde_json parse of them, in process     {parse}");
    println!("ratio list / in-process read+parse:   {:.2}", ratio(&list, &parse));
    println!("ratio list / cat:                     {:.2}", ratio(&list, &cats));
    println!("ratio list / (cat + --version):       {:.2}", {
        list.median.as_secs_f64() / (cats.median + version.median).as_secs_f64()
    });
    println!("ratio status / --version:             {:.2}", ratio(&status, &version));
}

// ------------------------------------------------------------------------------ 2. queue stats

fn queue_stats() {
    println!("\n## 2. `queue stats` with 10,000 items");
    let s = Scratch::new();
    s.ok(&["queue", "stats"]); // creates the state and queue directories
    let state = kugetsu_core::StateDir::new(s.state.clone());
    let items = state.queue_items_dir();
    std::fs::create_dir_all(&items).unwrap();
    // Written directly (enqueue makes the same files, one fsync pair each; see the queue bench).
    let now = OffsetDateTime::now_utc();
    for i in 0..10_000u64 {
        let id = format!("q_{:020}", 1_700_000_000_000_000_000u64 + i);
        let task = NewTask {
            message: format!("work on issue #{i}"),
            issue_ref: Some(format!("github.com/o/r#{i}")),
            options: Default::default(),
        };
        let item = QueueItem {
            status: match i % 10 {
                0 => QueueStatus::Pending,
                1 => QueueStatus::Error,
                _ => QueueStatus::Completed,
            },
            attempts: 1,
            ..QueueItem::pending(id.clone(), &task, now)
        };
        write_private(
            &items.join(format!("{id}.json")),
            &serde_json::to_vec_pretty(&item).unwrap(),
        );
    }
    let cache = state.queue_dir().join("items.cache");
    let _ = std::fs::remove_file(&cache);
    let stats: Value = serde_json::from_str(&s.ok(&["queue", "stats", "--json"])).unwrap();
    assert_eq!(stats["total"], 10_000, "{stats}");

    let first: Vec<Duration> = (0..3)
        .map(|_| {
            let _ = std::fs::remove_file(&cache);
            s.time(&["queue", "stats"])
        })
        .collect();
    let changed: Vec<Duration> = (0..10)
        .map(|_| {
            // One item rewritten just now: the directory is not settled.
            kugetsu_queue::FileQueue::new(&state)
                .update("q_01700000000000000000", &mut |i| i.attempts += 1)
                .unwrap();
            s.time(&["queue", "stats"])
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1100));
    let settled: Vec<Duration> = (0..20).map(|_| s.time(&["queue", "stats"])).collect();
    println!("queue stats, first ever (no cache)              {}", summary(&first));
    println!("queue stats, an item changed just now           {}", summary(&changed));
    println!("queue stats, directory settled (>1 s)           {}", summary(&settled));
}

// ------------------------------------------------------------------------------ 3. start overhead

/// One recorded invocation of the fake agent.
struct Invocation {
    argv: Vec<String>,
    cwd: PathBuf,
    stdin: Option<String>,
}

fn read_record(path: &Path) -> Vec<Invocation> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out: Vec<Invocation> = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let argv: Vec<String> = serde_json::from_value(v["argv"].clone()).unwrap();
        let inv = Invocation {
            argv,
            cwd: PathBuf::from(v["cwd"].as_str().unwrap()),
            stdin: v["stdin"].as_str().map(str::to_owned),
        };
        // `run` is recorded twice (on entry, then with its stdin): keep the second.
        match out.last_mut() {
            Some(last) if last.argv == inv.argv && last.stdin.is_none() && inv.stdin.is_some() => {
                *last = inv;
            }
            _ => out.push(inv),
        }
    }
    out
}

impl Scratch {
    /// Times the fake agent replaying `inv` directly, with the environment kugetsu gives it and
    /// a start-up cost of `startup_ms`.
    fn time_agent(&self, inv: &Invocation, startup_ms: u64) -> Duration {
        let mut cmd = Command::new(&self.opencode);
        self.env(&mut cmd);
        cmd.env("OPENCODE_DB", self.root.join("opencode-db.json"))
            .env("FAKE_OPENCODE_STARTUP_MS", startup_ms.to_string())
            .args(&inv.argv)
            .current_dir(&inv.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let t = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(inv.stdin.as_deref().unwrap_or("").as_bytes()).unwrap();
        drop(stdin);
        let status = child.wait().unwrap();
        let took = t.elapsed();
        assert!(status.success(), "opencode {:?}", inv.argv);
        took
    }
}

/// The subcommands of the agent processes recorded in `record`, one per process.
fn commands(record: &Path) -> Vec<String> {
    read_record(record).into_iter().map(|c| c.argv[0].clone()).collect()
}

fn start_overhead(s: &Scratch) {
    println!("\n## 3. `start` and `continue` overhead over the agent's own run (fake agent)");
    let record = s.root.join("record.jsonl");
    s.ok(&["env", "set", "FAKE_OPENCODE_RECORD", record.to_str().unwrap()]);
    let t = Instant::now();
    s.ok(&["start", "#1", "go"]);
    println!("first start (clones the mirror)                 {:8.2} ms", ms(t.elapsed()));
    let _ = std::fs::remove_file(&record);
    s.ok(&["start", "#2", "go"]);
    let calls = read_record(&record);
    let names = commands(&record);
    println!("agent processes per start: {} ({})", names.len(), names.join(", "));
    let _ = std::fs::remove_file(&record);
    s.ok(&["continue", "#2", "go"]);
    let names = commands(&record);
    println!("agent processes per continue: {} ({})", names.len(), names.join(", "));
    s.ok(&["env", "rm", "FAKE_OPENCODE_RECORD"]);

    let run = calls.iter().find(|c| c.argv[0] == "run").unwrap();
    let version = Invocation { argv: vec!["--version".into()], cwd: s.home.clone(), stdin: None };
    // Instant agent processes, then each costing what a real opencode's start-up costs.
    for (startup_ms, n, first) in [(0u64, 10, 3), (1000, 5, 13)] {
        if startup_ms > 0 {
            println!(
                "\nevery agent process first sleeps {startup_ms} ms (FAKE_OPENCODE_STARTUP_MS)"
            );
            s.ok(&["env", "set", "FAKE_OPENCODE_STARTUP_MS", &startup_ms.to_string()]);
        }
        let issues: Vec<String> = (first..first + n).map(|i| format!("#{i}")).collect();
        let starts: Vec<Duration> = issues.iter().map(|i| s.time(&["start", i, "go"])).collect();
        let continues: Vec<Duration> =
            issues.iter().map(|i| s.time(&["continue", i, "go"])).collect();
        let runs: Vec<Duration> = (0..n).map(|_| s.time_agent(run, startup_ms)).collect();
        let versions: Vec<Duration> = (0..n).map(|_| s.time_agent(&version, startup_ms)).collect();
        let (starts, continues, runs, versions) =
            (summary(&starts), summary(&continues), summary(&runs), summary(&versions));
        println!("kugetsu start (worktree + fork + run)           {starts}");
        println!("kugetsu continue (run)                          {continues}");
        println!("fake `opencode run` alone (same argv/stdin)     {runs}");
        println!("fake `opencode --version` alone (one process)   {versions}");
        println!("ratio start / agent run:     {:.2}", ratio(&starts, &runs));
        println!("ratio continue / agent run:  {:.2}", ratio(&continues, &runs));
        println!(
            "start overhead (start - run): {:.2} ms; continue overhead: {:.2} ms",
            ms(starts.median.saturating_sub(runs.median)),
            ms(continues.median.saturating_sub(runs.median))
        );
    }
    s.ok(&["env", "rm", "FAKE_OPENCODE_STARTUP_MS"]);
}

// ------------------------------------------------------------------------------ 4, 5. the daemon

/// A daemon started for the bench; stopped (or killed) when dropped, even on a panic.
struct Daemon<'a> {
    scratch: &'a Scratch,
    pid: u32,
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = self.scratch.kugetsu(&["queue-daemon", "stop"]).output();
        if Path::new(&format!("/proc/{}", self.pid)).exists() {
            let _ = Command::new("kill").args(["-9", &self.pid.to_string()]).status();
        }
    }
}

/// What /proc says about a process and its threads.
struct ProcSnapshot {
    at: Instant,
    rss_kb: u64,
    hwm_kb: u64,
    threads: u64,
    /// utime + stime, in clock ticks.
    ticks: u64,
    /// Time on a CPU summed over threads (schedstat), in nanoseconds.
    on_cpu_ns: u64,
    /// Context switches summed over threads: how often it woke up.
    switches: u64,
}

fn status_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn snapshot(pid: u32) -> ProcSnapshot {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let status = std::fs::read_to_string(proc.join("status")).unwrap();
    let stat = std::fs::read_to_string(proc.join("stat")).unwrap();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest: Vec<u64> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let (mut on_cpu_ns, mut switches) = (0, 0);
    for task in std::fs::read_dir(proc.join("task")).unwrap().flatten() {
        if let Ok(sched) = std::fs::read_to_string(task.path().join("schedstat")) {
            on_cpu_ns += sched.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        }
        if let Ok(st) = std::fs::read_to_string(task.path().join("status")) {
            switches += status_field(&st, "voluntary_ctxt_switches:")
                + status_field(&st, "nonvoluntary_ctxt_switches:");
        }
    }
    ProcSnapshot {
        at: Instant::now(),
        rss_kb: status_field(&status, "VmRSS:"),
        hwm_kb: status_field(&status, "VmHWM:"),
        threads: status_field(&status, "Threads:"),
        ticks: rest[11] + rest[12],
        on_cpu_ns,
        switches,
    }
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

fn idle(pid: u32, what: &str, secs: u64) {
    let before = snapshot(pid);
    std::thread::sleep(Duration::from_secs(secs));
    let after = snapshot(pid);
    let minutes = after.at.duration_since(before.at).as_secs_f64() / 60.0;
    let tick_secs = (after.ticks - before.ticks) as f64 / clock_ticks_per_second();
    let cpu_secs = (after.on_cpu_ns - before.on_cpu_ns) as f64 / 1e9;
    println!(
        "daemon idle {secs} s, {what}: RSS {:.1} MiB (peak {:.1} MiB), {} threads; CPU {:.4} s/min \
         (schedstat; utime+stime {:.2} s/min), {:.1} wake-ups/min",
        after.rss_kb as f64 / 1024.0,
        after.hwm_kb as f64 / 1024.0,
        after.threads,
        cpu_secs / minutes,
        tick_secs / minutes,
        (after.switches - before.switches) as f64 / minutes,
    );
}

/// The unix-ns time of the `n`th (0-based) `start` line of the fake agent's trace, once written.
fn wait_trace_start(trace: &Path, n: usize) -> u128 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(trace).unwrap_or_default();
        if let Some(line) = text.lines().filter(|l| l.starts_with("start ")).nth(n) {
            return line.rsplit(' ').next().unwrap().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no agent turn started within 60 s");
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn wait_item_done(state: &Path, id: &str) {
    let path = state.join("queue/items").join(format!("{id}.json"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
        {
            match v["status"].as_str() {
                Some("completed") => return,
                Some("error") => panic!("{id} failed: {v}"),
                _ => {}
            }
        }
        assert!(Instant::now() < deadline, "{id} not completed within 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Enqueues with `args` (printing a JSON object with the id under `id_key`) and returns the
/// latencies from the command being called and from it returning to the agent's turn starting.
fn dispatch_latency(
    s: &Scratch,
    trace: &Path,
    turns: &mut usize,
    args: &[&str],
    id_key: &str,
) -> (Duration, Duration) {
    let called = unix_ns();
    let out: Value = serde_json::from_str(&s.ok(args)).unwrap();
    let returned = unix_ns();
    let started = wait_trace_start(trace, *turns);
    *turns += 1;
    wait_item_done(&s.state, out[id_key].as_str().unwrap());
    // Let the daemon finish its bookkeeping (slot release, notifications) before the next.
    std::thread::sleep(Duration::from_millis(50));
    let d = |from: u128| Duration::from_nanos(started.saturating_sub(from) as u64);
    (d(called), d(returned))
}

fn daemon(s: &Scratch) {
    println!("\n## 4, 5. the queue daemon: enqueue-to-agent latency, idle memory and CPU");
    let trace = s.root.join("trace.txt");
    s.ok(&["env", "set", "FAKE_OPENCODE_TRACE", trace.to_str().unwrap()]);
    let out: Value = serde_json::from_str(&s.ok(&["queue-daemon", "start", "--json"])).unwrap();
    let pid = u32::try_from(out["pid"].as_u64().unwrap()).unwrap();
    let _daemon = Daemon { scratch: s, pid };
    std::thread::sleep(Duration::from_millis(500));
    idle(pid, "fresh", 10);

    let mut turns = 0;
    let measure = |turns: &mut usize,
                   label: &str,
                   n: usize,
                   args: &dyn Fn(usize) -> Vec<String>,
                   key: &str| {
        let (mut from_call, mut from_return) = (vec![], vec![]);
        for i in 0..n {
            let argv = args(i);
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let (c, r) = dispatch_latency(s, &trace, turns, &argv, key);
            from_call.push(c);
            from_return.push(r);
        }
        println!("{label}, from it returning   {}", summary(&from_return));
        println!("{label}, from it being called {}", summary(&from_call));
    };
    let enqueue = |issue: &str, message: &str| -> Vec<String> {
        ["queue", "enqueue", issue, message, "--json"].map(String::from).to_vec()
    };
    measure(
        &mut turns,
        "queue enqueue -> agent turn (continue)",
        20,
        &|i| enqueue("#3", &format!("more {i}")),
        "id",
    );
    measure(
        &mut turns,
        "delegate -> PM agent turn             ",
        10,
        &|i| ["delegate", &format!("plan {i}"), "--json"].map(String::from).to_vec(),
        "queued",
    );
    measure(
        &mut turns,
        "queue enqueue -> agent turn (start)   ",
        5,
        &|i| enqueue(&format!("#{}", 100 + i), "go"),
        "id",
    );
    println!("(target: under 100 ms from enqueue returning, with a free slot)");
    idle(pid, "after 35 dispatches", 10);

    // What one dispatch spends in agent processes (the daemon reads the env files anew for
    // each item), then the latencies when each process costs what a real opencode's start-up
    // costs.
    let record = s.root.join("record-daemon.jsonl");
    s.ok(&["env", "set", "FAKE_OPENCODE_RECORD", record.to_str().unwrap()]);
    for (what, issue) in [("continue", "#3"), ("start", "#200")] {
        let _ = std::fs::remove_file(&record);
        let args = enqueue(issue, "count");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dispatch_latency(s, &trace, &mut turns, &args, "id");
        let names = commands(&record);
        println!(
            "agent processes per daemon dispatch ({what}): {} ({})",
            names.len(),
            names.join(", ")
        );
    }
    s.ok(&["env", "rm", "FAKE_OPENCODE_RECORD"]);
    println!("\nevery agent process first sleeps 1000 ms (FAKE_OPENCODE_STARTUP_MS)");
    s.ok(&["env", "set", "FAKE_OPENCODE_STARTUP_MS", "1000"]);
    measure(
        &mut turns,
        "queue enqueue -> agent turn (continue)",
        5,
        &|i| enqueue("#3", &format!("slow {i}")),
        "id",
    );
    measure(
        &mut turns,
        "queue enqueue -> agent turn (start)   ",
        5,
        &|i| enqueue(&format!("#{}", 300 + i), "go"),
        "id",
    );
    s.ok(&["env", "rm", "FAKE_OPENCODE_STARTUP_MS"]);
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: keep that instant.
    if !std::env::args().any(|a| a == "--bench") {
        println!("cli bench: run with `cargo bench -p kugetsu-cli --bench cli`");
        return;
    }
    println!("kugetsu binary: {}", kugetsu_under_test().display());
    let started = Instant::now();
    list_and_status();
    queue_stats();
    let s = Scratch::new();
    s.ok(&["queue", "stats"]); // creates the state directory
    s.use_fake_agent();
    s.use_local_repo();
    s.ok(&["init", "--headless"]);
    start_overhead(&s);
    daemon(&s);
    println!("\nall benchmarks took {:.1} s", started.elapsed().as_secs_f64());
}
