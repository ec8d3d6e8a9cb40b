//! Which major version of opencode a program is: `opencode --version` prints a bare `1.18.33`
//! for 1.x and `opencode v2.1.2` for 2.x (both binaries may be named `opencode`).
//!
//! The answer is kept in the state's cache directory with the binary's identity (canonical
//! path, size, modification time), so only the first command after an install or an upgrade
//! pays for a `--version` process (0.1 s with 2.x, about 1 s with 1.x).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::storage;
use kugetsu_process::supervise::{self, Ended, Limits};
use kugetsu_process::{CommandSpec, Io, build_command};
use serde::{Deserialize, Serialize};

/// The cache file in the cache directory.
const FILE_NAME: &str = "opencode-version.json";
/// How long `--version` may take (1.x took up to 2 s on a busy machine).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why the version of a program could not be told.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The program could not be run.
    #[error("cannot run {program} --version")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It ran but printed no version kugetsu knows.
    #[error("{program} --version printed {printed:?}, not an opencode version")]
    Unknown {
        /// The program.
        program: PathBuf,
        /// Its first line of output.
        printed: String,
    },
}

/// An opencode version as the program printed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The major version (1 or 2 today).
    pub major: u32,
    /// The whole version (`1.18.33`, `2.1.2`).
    pub text: String,
}

/// The cache entry: the binary it is true of, and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    path: PathBuf,
    size: u64,
    mtime_ns: u128,
    version: Version,
}

/// Reads the version from `opencode --version`'s output: `opencode vN.x.y` is major N, a bare
/// `N.x.y` is 1.x's way of saying it.
pub fn parse(output: &str) -> Option<Version> {
    let line = output.lines().map(str::trim).find(|l| !l.is_empty())?;
    let text = line.strip_prefix("opencode v").unwrap_or(line);
    let major: u32 = text.split('.').next()?.parse().ok()?;
    text.contains('.').then(|| Version { major, text: text.to_owned() })
}

/// The version of `program` (found on `base_env`'s `PATH` by the caller), from the cache in
/// `cache` when the binary is the one it was read from, else from `--version` (then cached).
pub fn detect(
    program: &Path,
    base_env: &[(OsString, OsString)],
    cache: Option<&Path>,
) -> Result<Version, VersionError> {
    let identity = identity(program);
    if let (Some(dir), Some(id)) = (cache, &identity)
        && let Some(entry) = load(dir)
        && (&entry.path, entry.size, entry.mtime_ns) == (&id.0, id.1, id.2)
    {
        return Ok(entry.version);
    }
    let version = ask(program, base_env)?;
    if let (Some(dir), Some((path, size, mtime_ns))) = (cache, identity) {
        let entry = Entry { path, size, mtime_ns, version: version.clone() };
        let stored = storage::ensure_dir(dir).map_err(|e| e.to_string()).and_then(|()| {
            let bytes = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
            storage::atomic_write(&dir.join(FILE_NAME), &bytes).map_err(|e| e.to_string())
        });
        if let Err(e) = stored {
            tracing::debug!(error = %e, "cannot keep opencode's version");
        }
    }
    Ok(version)
}

/// Canonical path, size and modification time of the program, if it is a file that exists.
fn identity(program: &Path) -> Option<(PathBuf, u64, u128)> {
    let path = program.canonicalize().ok()?;
    let meta = std::fs::metadata(&path).ok()?;
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    Some((path, meta.len(), mtime))
}

fn load(dir: &Path) -> Option<Entry> {
    let bytes = storage::read_bytes(&dir.join(FILE_NAME)).ok().flatten()?;
    serde_json::from_slice(&bytes).ok()
}

fn ask(program: &Path, base_env: &[(OsString, OsString)]) -> Result<Version, VersionError> {
    let args = [OsString::from("--version")];
    let cmd = build_command(&CommandSpec {
        program,
        args: &args,
        cwd: None,
        base_env,
        agent_env: None,
        drop_vars: crate::command::SHELL_DIR_VARS,
        io: Io::NullStdin,
        die_with_parent: true,
    });
    let limits = Limits { timeout: TIMEOUT, idle: None, grace: Duration::from_secs(1) };
    let (ended, out, _) = supervise::run_captured(cmd, None, limits, &Interrupt::new())
        .map_err(|e| VersionError::Spawn { program: program.to_owned(), source: e.into_io() })?;
    let printed = String::from_utf8_lossy(&out);
    if !matches!(ended, Ended::Exited(_)) {
        return Err(VersionError::Unknown {
            program: program.to_owned(),
            printed: "nothing in time".into(),
        });
    }
    parse(&printed).ok_or_else(|| VersionError::Unknown {
        program: program.to_owned(),
        printed: printed.lines().next().unwrap_or("").chars().take(80).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_majors_are_read() {
        assert_eq!(parse("1.18.33\n"), Some(Version { major: 1, text: "1.18.33".into() }));
        assert_eq!(parse("opencode v2.1.2\n"), Some(Version { major: 2, text: "2.1.2".into() }));
        assert_eq!(parse("\nopencode v3.0.0"), Some(Version { major: 3, text: "3.0.0".into() }));
        assert_eq!(parse("Usage: opencode"), None);
        assert_eq!(parse("12"), None);
        assert_eq!(parse(""), None);
    }
}
