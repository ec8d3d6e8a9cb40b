//! The real opencode 2 (`@opencode/cli`), pinned, installed from the npm registry into the
//! target directory by the first test that needs it (as `real.rs` does for 1.x).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The opencode 2 version the suite is checked against.
pub const VERSION: &str = "2.1.2";

/// The opencode 2 binary, installed once per target dir; None (after saying why) when it
/// cannot be had. `KUGETSU_REAL_OPENCODE=1` makes that a failure.
pub fn opencode2() -> Option<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(install) {
        Ok(bin) => Some(bin.clone()),
        Err(why) => {
            if std::env::var_os("KUGETSU_REAL_OPENCODE").is_some_and(|v| v == "1") {
                panic!(
                    "KUGETSU_REAL_OPENCODE=1 but the real opencode {VERSION} is unavailable: {why}"
                );
            }
            let _ =
                writeln!(std::io::stderr(), "SKIPPED: real opencode {VERSION} unavailable: {why}");
            None
        }
    }
}

fn version_of(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn install() -> Result<PathBuf, String> {
    let want = format!("opencode v{VERSION}");
    let prefix = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("opencode-npm-{VERSION}"));
    let bin = prefix.join("node_modules/.bin/opencode");
    if version_of(&bin).as_deref() == Some(want.as_str()) {
        return Ok(bin);
    }
    std::fs::create_dir_all(&prefix)
        .map_err(|e| format!("cannot create {}: {e}", prefix.display()))?;
    // npm warns that the package's postinstall is not allowed to run; the binary works anyway.
    let out = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--fetch-timeout=60000",
            "--fetch-retries=1",
            "--prefix",
        ])
        .arg(&prefix)
        .arg(format!("@opencode/cli@{VERSION}"))
        .output()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if !out.status.success() {
        return Err(format!("npm install failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    match version_of(&bin) {
        Some(v) if v == want => Ok(bin),
        other => Err(format!("{} --version said {other:?}", bin.display())),
    }
}
