//! The real agent CLIs, pinned, installed from the npm registry into a test target's scratch
//! directory once and reused while their `--version` says what it should.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What to install and how to know it is there.
pub struct Package<'a> {
    /// The npm package (`opencode-ai`, `@anthropic-ai/claude-code`).
    pub name: &'a str,
    /// Its pinned version.
    pub version: &'a str,
    /// The program it puts under `node_modules/.bin/`.
    pub bin: &'a str,
    /// What that program's `--version` prints when it is the pinned one.
    pub printed: &'a str,
}

/// Installs `package` under `prefix` (unless it is already there) and returns its program.
/// An unreachable registry fails within about two minutes, so that a test can skip or fail
/// rather than hang.
pub fn install(prefix: &Path, package: &Package<'_>) -> Result<PathBuf, String> {
    let bin = prefix.join("node_modules/.bin").join(package.bin);
    if version_of(&bin).as_deref() == Some(package.printed) {
        return Ok(bin);
    }
    std::fs::create_dir_all(prefix)
        .map_err(|e| format!("cannot create {}: {e}", prefix.display()))?;
    let out = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--fetch-timeout=60000",
            "--fetch-retries=1",
            "--prefix",
        ])
        .arg(prefix)
        .arg(format!("{}@{}", package.name, package.version))
        .output()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if !out.status.success() {
        return Err(format!("npm install failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    match version_of(&bin) {
        Some(v) if v == package.printed => Ok(bin),
        other => Err(format!("{} --version said {other:?}", bin.display())),
    }
}

/// What `bin --version` prints, trimmed; `None` if it cannot run.
pub fn version_of(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
