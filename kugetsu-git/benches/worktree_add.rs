//! Creating an issue worktree of a large repository (9,400 files, about 207 MB): kugetsu's
//! `create` (fetch, branch, checkout) against `git worktree add -b` on the same mirror.
//!
//! Prints both medians, the median of the per-round ratios and the ratio of the fastest rounds;
//! the target is a ratio of at most 0.7. Run with
//! `cargo bench -p kugetsu-git --bench worktree_add`. The repository is generated (once per run)
//! under `KUGETSU_BENCH_DIR` if set, else the system temp directory; set it to a directory on
//! the disk you care about, since tmpfs and disks differ a lot.
//!
//! Each round times both tools back to back, in alternating order, and every timed operation
//! starts after `sync`: otherwise the previous round's 200 MB of dirty pages are written back
//! during (and charged to) whichever operation happens to run next, which on a slow shared disk
//! swings single figures by a factor of two.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // A benchmark binary: panics and prints are its interface.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use kugetsu_core::worktree::{NoProgress, RemoveOptions, RepoSource, WorktreeRequest, Worktrees};
use kugetsu_git::{Committer, GitConfig, GitWorktrees};

const DIRS: usize = 94;
const FILES_PER_DIR: usize = 100;
const FILE_BYTES: usize = 22_000;
const ROUNDS: usize = 9;

fn git(home: &Path, cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid");
    cmd
}

fn run(mut cmd: Command) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Text-like pseudo-random content: compresses about as well as source code does.
fn content(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "fn", "let", "match", "struct", "impl", "return", "self", "value", "error", "path",
        "index", "commit", "tree", "branch", "worktree", "mirror",
    ];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(WORDS[(state & 15) as usize].as_bytes());
        out.extend_from_slice(format!("{:x}", state >> 40).as_bytes());
        out.push(if state & 0x300 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out.push(b'\n');
    out
}

fn generate(home: &Path, repo: &Path) {
    std::fs::create_dir_all(repo).unwrap();
    run(git(home, repo, &["init", "-q", "-b", "main"]));
    let mut child =
        git(home, repo, &["fast-import", "--quiet"]).stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = std::io::BufWriter::new(child.stdin.take().unwrap());
    let mut mark = 0;
    for _ in 0..DIRS {
        for f in 0..FILES_PER_DIR {
            mark += 1;
            let data = content(mark as u64, FILE_BYTES + (f * 37) % 2000);
            write!(stdin, "blob\nmark :{mark}\ndata {}\n", data.len()).unwrap();
            stdin.write_all(&data).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
    }
    write!(stdin, "commit refs/heads/main\ncommitter bench <bench@example.invalid> 1700000000 +0000\ndata 8\ngenerate\n")
        .unwrap();
    let mut m = 0;
    for d in 0..DIRS {
        for f in 0..FILES_PER_DIR {
            m += 1;
            writeln!(stdin, "M 100644 :{m} module{d:03}/part{f:03}.rs").unwrap();
        }
    }
    stdin.write_all(b"\n").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

fn median<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Flushes dirty pages so that the next timed operation does not pay for the previous one's
/// writeback. `sync` is part of every Unix userland; without it the figures are only noisier.
fn settle() {
    let _ = Command::new("sync").status();
}

/// Times `f` after settling the page cache.
fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    settle();
    let t = Instant::now();
    f();
    t.elapsed()
}

fn main() {
    let base =
        std::env::var_os("KUGETSU_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let root = dir.path();
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let upstream = root.join("upstream");
    let started = Instant::now();
    generate(&home, &upstream);
    println!(
        "generated {} files of about {} MB in {:.1?}",
        DIRS * FILES_PER_DIR,
        DIRS * FILES_PER_DIR * (FILE_BYTES + 1000) / 1_000_000,
        started.elapsed()
    );

    let state = root.join("state");
    let backend = GitWorktrees::new(
        state.join("mirrors"),
        state.join("locks"),
        Committer::new("bench", "bench@x"),
    )
    .with_git_config(GitConfig::Isolated);
    let source = RepoSource {
        url: upstream.to_string_lossy().into_owned(),
        mirror_key: "big".into(),
        token: None,
    };
    let request = |i: usize| WorktreeRequest {
        source: source.clone(),
        path: state.join("worktrees").join(format!("kugetsu-{i}")),
        branch: format!("fix/issue-{i}"),
        base_ref: None,
        force: false,
    };
    let no = AtomicBool::new(false);
    let started = Instant::now();
    backend.create(&request(0), &mut NoProgress, &no).unwrap();
    println!("first create (bare clone + checkout): {:.2?}", started.elapsed());
    backend.remove(&request(0).path, RemoveOptions { force: true, delete_branch: true }).unwrap();
    let mirror = state.join("mirrors/big.git");

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut removes = Vec::new();
    for i in 1..=ROUNDS {
        let req = request(i);
        let path = state.join("worktrees").join(format!("git-{i}"));
        let path = path.to_string_lossy();
        let branch = format!("git/issue-{i}");
        // Each tool's worktree is removed right after it is timed, so that every timed
        // creation follows a removal and a `sync`, whichever tool goes first; who goes first
        // alternates, so neither always inherits a warmer (or busier) machine.
        let mut kugetsu = || {
            ours.push(timed(|| backend.create(&req, &mut NoProgress, &no).unwrap()));
            removes.push(timed(|| {
                backend
                    .remove(&req.path, RemoveOptions { force: false, delete_branch: true })
                    .unwrap()
            }));
        };
        let mut git_add = || {
            let args = ["worktree", "add", "-q", "-b", &branch, &path, "refs/remotes/origin/main"];
            theirs.push(timed(|| run(git(&home, &mirror, &args))));
            run(git(&home, &mirror, &["worktree", "remove", "--force", &path]));
            run(git(&home, &mirror, &["branch", "-q", "-D", &branch]));
        };
        if i % 2 == 1 {
            kugetsu();
            git_add();
        } else {
            git_add();
            kugetsu();
        }
    }
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        println!("round {}: kugetsu {o:.2?}, git {t:.2?}", i + 1);
    }
    let ratios: Vec<f64> =
        ours.iter().zip(&theirs).map(|(o, t)| o.as_secs_f64() / t.as_secs_f64()).collect();
    let fastest_ratio =
        ours.iter().min().unwrap().as_secs_f64() / theirs.iter().min().unwrap().as_secs_f64();
    let (ours, theirs) = (median(ours), median(theirs));
    println!("kugetsu create (fetch + branch + checkout), median of {ROUNDS}: {ours:.2?}");
    println!("git worktree add -b, median of {ROUNDS}:                       {theirs:.2?}");
    println!(
        "kugetsu remove (with unsaved-work check), median of {ROUNDS}:  {:.2?}",
        median(removes)
    );
    println!(
        "ratio kugetsu/git, median of the {ROUNDS} rounds' ratios: {:.2} (target <= 0.70)",
        median(ratios)
    );
    println!("ratio kugetsu/git, fastest round of each:         {fastest_ratio:.2}");
}
