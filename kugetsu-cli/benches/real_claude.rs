//! What `kugetsu start` and `kugetsu continue` cost with `KUGETSU_AGENT=claude` on top of one
//! bare headless Claude Code turn: the REAL Claude Code (`@anthropic-ai/claude-code@2.1.328`,
//! installed from npm into the target directory once) answering from an instant stand-in of the
//! Messages API on 127.0.0.1.
//!
//! The floor is one bare `claude -p --output-format stream-json --verbose --resume S` with the
//! driver's flags, prompt on stdin, from the issue's worktree, with the environment kugetsu's
//! runs get: the least a command that makes Claude Code take a turn of that session can cost.
//! Against it, in the same rounds (the order rotates each round, so drift in the machine's load
//! hits all alike): `kugetsu continue #1 …` (the same session) and `kugetsu start #N …` of a new
//! issue (a fork of the base, made by its first turn, in a new worktree; the repository's
//! mirror already present). Each is timed from spawn to exit. Every round is printed, then
//! medians and the median of the per-round ratios. Printed, never asserted. Run:
//! `cargo bench -p kugetsu-cli --bench real_claude` (`KUGETSU_BENCH_ROUNDS`, default 7). Without
//! npm or the registry it prints why and exits.

// A benchmark binary: panics on a broken setup and printed figures are its interface.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

#[path = "../tests/support.rs"]
#[allow(missing_docs)]
mod support;

#[path = "../../kugetsu-claude/tests/support/mock_api.rs"]
#[allow(dead_code, missing_docs)]
mod mock_api;
#[path = "../../kugetsu-claude/tests/support/real.rs"]
#[allow(dead_code, missing_docs)]
mod real;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kugetsu_claude::args::{QUIET_ENV, Start, turn_args};
use kugetsu_core::agent::SessionId;
use support::Env;

fn main() {
    let Some(bin) = real::claude() else { return };
    let rounds: usize =
        std::env::var("KUGETSU_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(7);
    let api = mock_api::MockApi::start();
    let env = Env::new();
    support::sample_repo(&env, &bin);
    std::fs::write(
        env.path("config"),
        format!(
            "KUGETSU_AGENT=claude\nKUGETSU_AGENT_BIN={}\nKUGETSU_DEFAULT_REPO=local.test/demo/app\n",
            bin.display()
        ),
    )
    .unwrap();
    for (k, v) in
        [("ANTHROPIC_BASE_URL", api.base_url.as_str()), ("ANTHROPIC_API_KEY", "sk-ant-bench")]
    {
        assert_eq!(env.run(&["env", "set", k, v]).code, 0);
    }
    assert_eq!(env.run(&["init", "--headless"]).code, 0);
    let out = env.run(&["start", "#1", "hello"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let list: serde_json::Value =
        serde_json::from_str(&env.run(&["list", "--json"]).stdout).unwrap();
    let session = SessionId::new(list[2]["session_id"].as_str().unwrap()).unwrap();
    let worktree = env.path("worktrees/local.test-demo-app-1");

    let bare = || {
        let mut cmd = Command::new(&bin);
        cmd.args(turn_args(Start::Resume(&session), None, None))
            .current_dir(&worktree)
            .env("PWD", &worktree)
            .env("HOME", &env.home)
            .env("ANTHROPIC_BASE_URL", &api.base_url)
            .env("ANTHROPIC_API_KEY", "sk-ant-bench")
            .env("TMPDIR", env.path("claude/tmp"))
            .envs(QUIET_ENV.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let start = Instant::now();
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(b"hello").unwrap();
        assert!(child.wait().unwrap().success());
        start.elapsed()
    };
    let kugetsu = |args: &[&str]| {
        let start = Instant::now();
        let out = env.command(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        start.elapsed()
    };
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for round in 0..rounds {
        let issue = format!("#{}", round + 2);
        let mut times = [Duration::ZERO; 3];
        for k in 0..3 {
            let which = (k + round) % 3;
            times[which] = match which {
                0 => bare(),
                1 => kugetsu(&["continue", "#1", "hello"]),
                _ => kugetsu(&["start", &issue, "hello"]),
            };
        }
        println!(
            "round {round}: bare {:.3}s  continue {:.3}s  start {:.3}s",
            times[0].as_secs_f64(),
            times[1].as_secs_f64(),
            times[2].as_secs_f64()
        );
        for (s, t) in samples.iter_mut().zip(times) {
            s.push(t);
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let secs: Vec<Vec<f64>> =
        samples.iter().map(|s| s.iter().map(Duration::as_secs_f64).collect()).collect();
    let ratio =
        |i: usize| median(&secs[i].iter().zip(&secs[0]).map(|(a, b)| a / b).collect::<Vec<_>>());
    println!(
        "median: bare {:.3}s  continue {:.3}s ({:.2}x)  start {:.3}s ({:.2}x)",
        median(&secs[0]),
        median(&secs[1]),
        ratio(1),
        median(&secs[2]),
        ratio(2)
    );
}
