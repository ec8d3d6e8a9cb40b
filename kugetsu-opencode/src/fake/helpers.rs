//! The processes a scripted tool leaves behind or runs: sleepers, busy workers, detached ones.

use super::*;

pub(super) fn ignore_term() {
    let _ =
        signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::new(AtomicBool::new(false)));
}

pub(super) fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A helper process a scripted turn starts:
/// `__sleep [ignore-term] [detach] [busy] [ms=N] [tag]` (`detach`: own session and process
/// group, like opencode's bash tool; `busy`: spins on the CPU instead of sleeping; `ms=N`:
/// exits after N milliseconds instead of running forever; the tag, the session directory,
/// lets tests find it).
pub(super) fn helper_sleep(args: &[String]) -> ! {
    if args.iter().any(|a| a == "detach") {
        let _ = rustix::process::setsid();
    }
    if args.iter().any(|a| a == "ignore-term") {
        ignore_term();
    }
    let until = args
        .iter()
        .find_map(|a| a.strip_prefix("ms=")?.parse::<u64>().ok())
        .map(|ms| std::time::Instant::now() + Duration::from_millis(ms));
    if args.iter().any(|a| a == "busy") {
        let mut x: u64 = 1;
        while until.is_none_or(|t| std::time::Instant::now() < t) {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
        }
        std::process::exit(0);
    }
    match until {
        Some(t) => {
            std::thread::sleep(t.saturating_duration_since(std::time::Instant::now()));
            std::process::exit(0)
        }
        None => sleep_forever(),
    }
}

/// What a helper does (see [`helper_sleep`]).
#[derive(Clone, Copy, Default)]
pub(super) struct Work {
    /// Spin on the CPU rather than sleep.
    pub(super) busy: bool,
    /// Exit after this many milliseconds; `None`: run until killed.
    pub(super) ms: Option<u64>,
    /// In its own session and process group.
    pub(super) detach: bool,
}

/// This program, to re-run it: under the name it was started with, since when it is `kugetsu`
/// linked as `opencode`, that name is what selects the fake.
pub(super) fn self_program() -> Option<PathBuf> {
    let started_as = std::env::args_os().next().map(PathBuf::from);
    match started_as.filter(|p| p.components().count() > 1) {
        Some(p) => Some(p),
        None => std::env::current_exe().ok(),
    }
}

/// Starts one helper (see [`helper_sleep`]).
pub(super) fn spawn_helper(
    ignore_term: bool,
    work: Work,
    tag: &str,
) -> Option<std::process::Child> {
    let mut argv = vec![self_program()?.to_string_lossy().into_owned(), "__sleep".to_owned()];
    if ignore_term {
        argv.push("ignore-term".into());
    }
    if work.detach {
        argv.push("detach".into());
    }
    if work.busy {
        argv.push("busy".into());
    }
    if let Some(ms) = work.ms {
        argv.push(format!("ms={ms}"));
    }
    argv.push(tag.to_owned());
    // Through a shell, as opencode's bash tool runs a command: a tool's process is never the
    // agent's own program started by the agent itself (kugetsu-process's `tree::Scan`). The
    // command reaches the shell in its environment, so only the helper's command line names
    // the helper (tests find helpers by it).
    let quoted: Vec<String> =
        argv.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
    let mut c = std::process::Command::new("sh");
    c.args(["-c", "eval \"$FAKE_OPENCODE_TOOL\"; exit $?"])
        .env("FAKE_OPENCODE_TOOL", quoted.join(" "));
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()
}

/// Starts `n` helpers that sleep until killed (see [`helper_sleep`]).
pub(super) fn spawn_helpers(n: u64, ignore_term: bool, detach: bool, tag: &str) {
    for _ in 0..n {
        let _ = spawn_helper(ignore_term, Work { detach, ..Work::default() }, tag);
    }
}
