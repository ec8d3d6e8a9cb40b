//! The real Claude Code, pinned, installed from the npm registry into the target directory by
//! the first test that needs it.

use std::io::Write;
use std::path::{Path, PathBuf};
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

/// npm `@anthropic-ai/claude-code@VERSION` into the target dir.
fn install() -> Result<PathBuf, String> {
    let prefix = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("claude-npm-{VERSION}"));
    let printed = format!("{VERSION} (Claude Code)");
    let package = kugetsu_test_support::npm::Package {
        name: "@anthropic-ai/claude-code",
        version: VERSION,
        bin: "claude",
        printed: &printed,
    };
    kugetsu_test_support::npm::install(&prefix, &package)
}
