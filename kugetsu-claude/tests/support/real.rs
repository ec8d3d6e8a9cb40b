//! The real Claude Code, pinned, installed from the npm registry into the target directory by
//! the first test that needs it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The Claude Code version the suite is checked against.
pub const VERSION: &str = "2.1.328";

/// The `claude` binary, installed once per target dir; `None` (after saying why) when it cannot
/// be had, unless `KUGETSU_REAL_CLAUDE=1` makes that a failure.
pub fn claude() -> Option<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(install) {
        Ok(bin) => Some(bin.clone()),
        Err(why) => {
            if std::env::var_os("KUGETSU_REAL_CLAUDE").is_some_and(|v| v == "1") {
                panic!("KUGETSU_REAL_CLAUDE=1 but the real Claude Code is unavailable: {why}");
            }
            // Straight to the stderr handle: the harness captures eprintln! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: real Claude Code {VERSION} unavailable: {why}"
            );
            None
        }
    }
}

fn version_of(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// npm `@anthropic-ai/claude-code@VERSION` into the target dir. The package's postinstall (which
/// npm may not run) only links the platform package's binary: the one npm put in
/// `@anthropic-ai/claude-code/bin` is used whichever way.
fn install() -> Result<PathBuf, String> {
    let prefix = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("claude-npm-{VERSION}"));
    let bin = prefix.join("node_modules/.bin/claude");
    let printed = format!("{VERSION} (Claude Code)");
    if version_of(&bin).as_deref() == Some(printed.as_str()) {
        return Ok(bin);
    }
    std::fs::create_dir_all(&prefix)
        .map_err(|e| format!("cannot create {}: {e}", prefix.display()))?;
    let out = Command::new("npm")
        // Bounded waits: an unreachable registry must end in a skip, not a stuck test.
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--fetch-timeout=60000",
            "--fetch-retries=1",
            "--prefix",
        ])
        .arg(&prefix)
        .arg(format!("@anthropic-ai/claude-code@{VERSION}"))
        .output()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if !out.status.success() {
        return Err(format!("npm install failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    match version_of(&bin) {
        Some(v) if v == printed => Ok(bin),
        other => Err(format!("{} --version said {other:?}", bin.display())),
    }
}
