//! Creating an issue worktree of a large repository (9,400 files, about 207 MB): kugetsu's
//! `create` (fetch, branch, checkout) against `git worktree add -b` on the same mirror.
//!
//! Prints both medians and their ratio; the target is a ratio of at most 0.7. Run with
//! `cargo bench -p kugetsu-git --bench worktree_add`. The repository is generated (once per run)
//! under `KUGETSU_BENCH_DIR` if set, else the system temp directory; set it to a directory on
//! the disk you care about, since tmpfs and disks differ a lot.

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
const ROUNDS: usize = 5;

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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
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
        let t = Instant::now();
        backend.create(&req, &mut NoProgress, &no).unwrap();
        ours.push(t.elapsed());
        let t = Instant::now();
        backend.remove(&req.path, RemoveOptions { force: false, delete_branch: true }).unwrap();
        removes.push(t.elapsed());

        let path = state.join("worktrees").join(format!("git-{i}"));
        let t = Instant::now();
        run(git(
            &home,
            &mirror,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                &format!("git/issue-{i}"),
                &path.to_string_lossy(),
                "refs/remotes/origin/main",
            ],
        ));
        theirs.push(t.elapsed());
        run(git(&home, &mirror, &["worktree", "remove", "--force", &path.to_string_lossy()]));
        run(git(&home, &mirror, &["branch", "-q", "-D", &format!("git/issue-{i}")]));
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!("kugetsu create (fetch + branch + checkout), median of {ROUNDS}: {ours:.2?}");
    println!("git worktree add -b, median of {ROUNDS}:                       {theirs:.2?}");
    println!(
        "kugetsu remove (with unsaved-work check), median of {ROUNDS}:  {:.2?}",
        median(removes)
    );
    println!(
        "ratio kugetsu/git: {:.2} (target <= 0.70)",
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
}
