//! Figures for `kugetsu dashboard` with 1,000 sessions and 10,000 queue items, through the
//! built binary: the server time of the page, its live fragment and each API read; the serving
//! process's memory idle and with 50 event-stream clients; and the delay from a change of a state
//! file to the `change` event reaching a client.
//!
//! Figures are printed, never asserted. Run: `cargo bench -p kugetsu-cli --bench dashboard`.
//! Scratch state lives under the target directory (a real disk).

#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kugetsu_core::IssueRef;
use kugetsu_core::agent::RunOutcome;
use kugetsu_core::queue::{NewTask, QueueItem, QueueStatus};
use kugetsu_core::session::{Index, LastRun, SessionFile, SessionKind, SessionState};
use time::OffsetDateTime;

const KUGETSU: &str = env!("CARGO_BIN_EXE_kugetsu");

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

struct Scratch {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    state: PathBuf,
}

impl Scratch {
    fn kugetsu(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(KUGETSU);
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUGETSU_HOME", &self.state)
            .env("NO_COLOR", "1")
            .current_dir(&self.home)
            .stdin(Stdio::null())
            .args(args);
        cmd
    }

    fn ok(&self, args: &[&str]) {
        let out = self.kugetsu(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// An initialized state with the fake agent, 1,000 issue sessions and 10,000 queue items.
fn scratch() -> Scratch {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = dir.path().to_path_buf();
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(KUGETSU, bin.join("opencode")).unwrap();
    let s = Scratch { _dir: dir, root: root.clone(), home, state: root.join("home/.kugetsu") };
    s.ok(&["queue", "stats"]);
    s.ok(&["env", "set", "OPENCODE_DB", root.join("db.json").to_str().unwrap()]);
    s.ok(&["env", "set", "GITHUB_TOKEN", "ghp_benchmarksecret"]);
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(s.state.join("config"))
        .unwrap();
    writeln!(config, "KUGETSU_OPENCODE_BIN={}", bin.join("opencode").display()).unwrap();
    s.ok(&["init", "--headless"]);
    let now = OffsetDateTime::now_utc();
    let sessions = s.state.join("sessions");
    let index_path = s.state.join("index.json");
    let mut index: Index = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
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
            state: if i % 7 == 0 { SessionState::Failed } else { SessionState::Idle },
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
        write_private(&sessions.join(&name), &serde_json::to_vec_pretty(&file).unwrap());
        index.issues.insert(issue.to_string(), name);
    }
    write_private(&index_path, &serde_json::to_vec_pretty(&index).unwrap());
    let items = s.state.join("queue/items");
    for i in 0..10_000u64 {
        let id = format!("q_{:020}", 1_700_000_000_000_000_000u64 + i);
        let task = NewTask {
            message: format!("work on issue #{i}"),
            issue_ref: Some(format!("github.com/bench/repo#{}", i % 1000 + 1)),
            options: Default::default(),
        };
        let item = QueueItem {
            status: match i % 10 {
                0 => QueueStatus::Pending,
                1 => QueueStatus::Error,
                _ => QueueStatus::Completed,
            },
            attempts: 1,
            last_error: (i % 10 == 1).then(|| "failed after 3 attempts".to_owned()),
            ..QueueItem::pending(id.clone(), &task, now)
        };
        write_private(
            &items.join(format!("{id}.json")),
            &serde_json::to_vec_pretty(&item).unwrap(),
        );
    }
    s
}

struct Server {
    child: Child,
    base: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(s: &Scratch) -> Server {
    let mut child = s
        .kugetsu(&["dashboard", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(u) = line.strip_prefix("open: ") {
            break u.to_owned();
        }
    };
    let (base, token) = url.split_once("/?token=").unwrap();
    Server { child, base: base.into(), token: token.into() }
}

fn rss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() {
    println!("# kugetsu dashboard: 1,000 sessions, 10,000 queue items");
    let s = scratch();
    let server = start(&s);
    let pid = server.child.id();
    let http =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let get = |path: &str| {
        let t = Instant::now();
        let r =
            http.get(format!("{}{path}", server.base)).bearer_auth(&server.token).send().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let body = r.bytes().unwrap();
        (t.elapsed(), body.len())
    };
    let _ = get("/api/status");
    let rss_start = rss_kib(pid);

    println!("\n## Server time per request (loopback, keep-alive; 15 rounds, interleaved)");
    println!("| request | min ms | median ms | max ms | body |");
    println!("|---|---|---|---|---|");
    let paths =
        ["/", "/fragment", "/api/sessions", "/api/queue", "/api/notifications", "/api/status"];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); paths.len()];
    let mut sizes = vec![0; paths.len()];
    for p in paths {
        let _ = get(p); // warm the page cache and the queue's cache
    }
    for _ in 0..15 {
        for (i, p) in paths.iter().enumerate() {
            let (d, n) = get(p);
            samples[i].push(d);
            sizes[i] = n;
        }
    }
    for (i, p) in paths.iter().enumerate() {
        let (lo, mid, hi) = median(samples[i].clone());
        println!(
            "| `GET {p}` | {:.1} | {:.1} | {:.1} | {} KiB |",
            ms(lo),
            ms(mid),
            ms(hi),
            sizes[i] / 1024
        );
    }
    let rss_used = rss_kib(pid);

    println!("\n## Change to event (a session file rewritten; 20 changes, 0.5 s apart)");
    let (tx, rx) = mpsc::channel::<Instant>();
    {
        let r = http
            .get(format!("{}/api/events", server.base))
            .bearer_auth(&server.token)
            .send()
            .unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                if line == "event: change" && tx.send(Instant::now()).is_err() {
                    return;
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    let target = s.state.join("sessions/github.com-bench-repo-1.json");
    let text = std::fs::read(&target).unwrap();
    let mut delays = Vec::new();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        while rx.try_recv().is_ok() {}
        let tmp = s.state.join("sessions/.bench.tmp");
        let t0 = Instant::now();
        write_private(&tmp, &text);
        std::fs::rename(&tmp, &target).unwrap();
        let at = rx.recv_timeout(Duration::from_secs(10)).expect("a change event");
        delays.push(at.saturating_duration_since(t0));
    }
    let (lo, mid, hi) = median(delays);
    println!("min {:.0} ms, median {:.0} ms, max {:.0} ms", ms(lo), ms(mid), ms(hi));

    println!("\n## Memory of the serving process (VmRSS)");
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_kib(pid);
    let mut clients = Vec::new();
    for _ in 0..50 {
        let c =
            reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
        let r =
            c.get(format!("{}/api/events", server.base)).bearer_auth(&server.token).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let mut lines = BufReader::new(r).lines();
        let first = lines.next().unwrap().unwrap();
        assert_eq!(first, "event: hello");
        clients.push((c, lines));
    }
    std::thread::sleep(Duration::from_secs(1));
    let with_50 = rss_kib(pid);
    println!("| when | RSS |");
    println!("|---|---|");
    println!("| started, one request served | {:.1} MiB |", rss_start as f64 / 1024.0);
    println!("| after the timed requests above | {:.1} MiB |", rss_used as f64 / 1024.0);
    println!("| idle | {:.1} MiB |", idle as f64 / 1024.0);
    println!("| with 50 event-stream clients | {:.1} MiB |", with_50 as f64 / 1024.0);
    drop(clients);
    let _ = &s.root;
}
