//! The private `opencode serve` of a state directory, which every 2.x operation talks to.
//!
//! Without `--server`, every opencode 2 command starts (or reuses) a per-user background
//! service on a fixed port that stays up after it, keeps the environment and config of whoever
//! started it, and collides with another `HOME` on the same machine. So the driver runs its own
//! `serve --port 0 --hostname 127.0.0.1` per state directory, and gives every opencode process
//! it starts `--server URL`: no service is ever started.
//!
//! The serve gets a clean environment (only what opencode needs: [`SERVE_VARS`] and
//! `OPENCODE_*`) and a fresh random password (HTTP basic auth, user `opencode`; every `/api`
//! route answers 401 without it). Whoever started one stops it with its process group (it
//! exits on SIGTERM in milliseconds) when done with it. The queue daemon's serve
//! ([`AgentDriver::keep_warm`](kugetsu_core::agent::AgentDriver::keep_warm), stopped with its
//! guard) is registered in the private cache directory with its URL, pid and password
//! (`0600`), and every command of the same state directory uses it while it runs and answers.
//! A serve a command had to start for itself is registered nowhere (its password stays in
//! memory) and stopped when the command's driver is dropped: another command using it would
//! lose it mid-turn when its owner ends.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use kugetsu_core::agent::{AgentEnv, AgentError, Warm};
use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::storage;
use kugetsu_process::{CommandSpec, Io, build_command};
use rustix::process::Signal;
use serde::{Deserialize, Serialize};

use super::http::Client;

/// The registration file in the cache directory.
const FILE_NAME: &str = "opencode2-serve.json";
/// The serve's own output (its URL line, warnings).
const LOG_NAME: &str = "opencode2-serve.log";
/// How long the serve may take to print its URL (0.45 s measured; a busy machine is slower).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to exit after SIGTERM before it is killed (under 30 ms measured).
const STOP_GRACE: Duration = Duration::from_secs(3);
/// The variables of the base env the serve keeps, besides every `OPENCODE_*` (its config).
const SERVE_VARS: &[&str] = &["HOME", "PATH", "TMPDIR", "LANG", "LC_ALL", "USER", "LOGNAME"];

/// A serve to talk to: where it is and its password. Holds the password: kept `0600`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Registration {
    /// `http://127.0.0.1:PORT`, as the serve printed it.
    pub url: String,
    /// The serve's pid, also its process group.
    pub pid: u32,
    /// Its basic-auth password.
    pub password: String,
    /// The program it runs.
    pub program: PathBuf,
}

impl Registration {
    pub(crate) fn client(&self, timeout: Duration) -> Client {
        Client::new(&self.url, &self.password, timeout)
    }
}

/// A serve this process started; stopped with its process group (and unregistered) when
/// dropped.
#[derive(Debug)]
pub struct ServeHandle {
    child: Child,
    /// Where it is registered, if it is.
    cache: Option<PathBuf>,
    reg: Registration,
}

impl ServeHandle {
    /// The serve's pid (its process group too).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Its URL.
    pub fn url(&self) -> &str {
        &self.reg.url
    }
    pub(crate) fn registration(&self) -> &Registration {
        &self.reg
    }
    /// Whether it still runs.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Warm for ServeHandle {
    /// The registration's modification time, which every use renews; `None` once the serve
    /// has exited or another one is registered in its place.
    fn last_used(&self) -> Option<SystemTime> {
        let pid = self.child.id();
        let cache = self.cache.as_deref()?;
        if !kugetsu_process::procfs::is_running(pid) || load(cache).is_none_or(|r| r.pid != pid) {
            return None;
        }
        std::fs::metadata(cache.join(FILE_NAME)).and_then(|m| m.modified()).ok()
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        let pid = self.child.id();
        tracing::debug!(pid, "stopping the opencode serve");
        if let Some(cache) = &self.cache
            && load(cache).is_some_and(|r| r.pid == pid)
        {
            let _ = storage::remove_file(&cache.join(FILE_NAME));
        }
        crate::serve::stop_group(&mut self.child, Signal::TERM, STOP_GRACE);
        tracing::debug!(pid, "stopped the opencode serve");
    }
}

/// Notes that the registered serve was just used (see [`Warm::last_used`]).
pub(crate) fn touch(cache: &Path) {
    let touched = OpenOptions::new()
        .write(true)
        .open(cache.join(FILE_NAME))
        .and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(e) = touched {
        tracing::debug!(error = %e, "cannot note the use of the opencode serve");
    }
}

/// The registered serve of `cache`, if it runs `program`, its process lives and it answers.
pub(crate) fn registered(cache: &Path, program: &Path, timeout: Duration) -> Option<Registration> {
    let reg = load(cache)?;
    if reg.program != program || !kugetsu_process::procfs::is_running(reg.pid) {
        return None;
    }
    match reg.client(timeout).get("/api/info") {
        Ok(_) => Some(reg),
        Err(e) => {
            tracing::debug!(error = %e, "the registered opencode serve does not answer");
            None
        }
    }
}

fn load(cache: &Path) -> Option<Registration> {
    let bytes = storage::read_bytes(&cache.join(FILE_NAME)).ok().flatten()?;
    serde_json::from_slice(&bytes).ok()
}

/// Everything [`start`] needs from the driver.
pub(crate) struct StartSpec<'a> {
    pub program: &'a Path,
    pub base_env: &'a [(OsString, OsString)],
    /// Its working directory (the state directory: it lasts).
    pub dir: Option<&'a Path>,
    pub cache: &'a Path,
    /// Stops the wait for the serve's URL (and the serve) when triggered.
    pub stop: &'a Interrupt,
    /// Whether the serve dies with the thread that starts it.
    pub die_with_parent: bool,
    /// Whether other commands may use it (registered in `cache`).
    pub register: bool,
}

/// Starts `opencode serve` on a free loopback port with a fresh password and a clean
/// environment, waits for its URL and, if asked, registers it in `spec.cache`.
pub(crate) fn start(spec: &StartSpec<'_>) -> Result<ServeHandle, AgentError> {
    let fail = |message: String| AgentError::CommandFailed { command: "serve".into(), message };
    storage::ensure_dir(spec.cache).map_err(|e| fail(e.to_string()))?;
    let password = crate::serve::random_password().map_err(|source| AgentError::Io {
        action: "read random bytes for the serve's password from",
        path: "/dev/urandom".into(),
        source,
    })?;
    let base_env: Vec<(OsString, OsString)> =
        spec.base_env.iter().filter(|(k, _)| serve_keeps(k)).cloned().collect();
    let mut env = AgentEnv::default();
    env.0.insert("OPENCODE_SERVER_PASSWORD".into(), password.clone());
    let args: Vec<OsString> =
        ["serve", "--port", "0", "--hostname", "127.0.0.1"].iter().map(OsString::from).collect();
    let mut cmd = build_command(&CommandSpec {
        program: spec.program,
        args: &args,
        cwd: spec.dir,
        base_env: &base_env,
        agent_env: Some(&env),
        drop_vars: crate::command::SHELL_DIR_VARS,
        io: Io::NullStdin,
        die_with_parent: spec.die_with_parent,
    });
    // A file, not pipes: nobody has to drain the output of a process that runs for hours.
    let log_path = spec.cache.join(LOG_NAME);
    let io_err = |source: std::io::Error| AgentError::Io {
        action: "open the serve's log",
        path: log_path.clone(),
        source,
    };
    let log = storage::open_private(&log_path, storage::PrivateOpen::Truncate)
        .map_err(|e| io_err(std::io::Error::other(e)))?;
    let log2 = log.try_clone().map_err(io_err)?;
    cmd.stdout(Stdio::from(log)).stderr(Stdio::from(log2));
    let mut child = cmd
        .spawn()
        .map_err(|source| AgentError::Spawn { program: spec.program.to_owned(), source })?;
    let url = match crate::serve::wait_for_url(&mut child, &log_path, spec.stop, READY_TIMEOUT) {
        Ok(url) => url,
        Err(message) => {
            crate::serve::stop_group(&mut child, Signal::TERM, STOP_GRACE);
            if spec.stop.is_triggered() {
                return Err(AgentError::Interrupted { signal: spec.stop.describe() });
            }
            return Err(fail(message));
        }
    };
    let reg = Registration { url, pid: child.id(), password, program: spec.program.to_owned() };
    wait_for_migration(&reg, spec.stop);
    let cache = spec.register.then(|| spec.cache.to_owned());
    let handle = ServeHandle { child, cache, reg: reg.clone() };
    if !spec.register {
        tracing::debug!(pid = reg.pid, url = %reg.url, "opencode serve started");
        return Ok(handle);
    }
    let bytes = serde_json::to_vec(&reg).map_err(|e| fail(e.to_string()))?;
    // On failure the handle is dropped, which stops the serve.
    storage::atomic_write(&spec.cache.join(FILE_NAME), &bytes).map_err(|e| fail(e.to_string()))?;
    tracing::debug!(pid = reg.pid, url = %reg.url, "opencode serve started and registered");
    Ok(handle)
}

/// Whether the serve keeps variable `key` of the base env. `FAKE_OPENCODE_*` is this crate's
/// fake's script and dialect: its turns run in its serve as the real one's do, so its serve
/// needs them (the real opencode reads none of them).
fn serve_keeps(key: &OsString) -> bool {
    let key = key.to_string_lossy();
    SERVE_VARS.contains(&key.as_ref())
        || key.starts_with("XDG_")
        || (key.starts_with("OPENCODE_") && key != "OPENCODE_PASSWORD")
        || key.starts_with("FAKE_OPENCODE_")
}

/// How long a serve may take to bring a 1.x data directory over before kugetsu uses it anyway.
const MIGRATION_WAIT: Duration = Duration::from_secs(120);

/// Waits until the serve has brought the 1.x sessions of its data directory over
/// (`GET /api/experimental/migration/v1` says `completed`). opencode 2 does that once, on its
/// first start on a 1.x store, and answers requests meanwhile: a 1.x session asked for too early
/// is "not found" (seen 1 time in 4 under load, 50 ms after the serve listened). A serve without
/// that route, or one that cannot say, is used at once; one still busy after
/// [`MIGRATION_WAIT`] is used anyway, with a warning.
fn wait_for_migration(reg: &Registration, stop: &Interrupt) {
    let client = reg.client(Duration::from_secs(10));
    let deadline = Instant::now() + MIGRATION_WAIT;
    loop {
        match client.get("/api/experimental/migration/v1") {
            Ok(v) if v["status"] == "completed" => return,
            Ok(v) if v["status"] == "running" || v["status"] == "required" => {
                tracing::debug!(status = %v["status"], "opencode brings its 1.x sessions over");
            }
            Ok(v) => {
                tracing::debug!(answer = %v, "opencode's migration status is not one kugetsu knows");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "opencode does not say how its migration goes");
                return;
            }
        }
        if stop.is_triggered() {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!("opencode is still bringing its 1.x sessions over; going on");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_from_the_listening_line() {
        assert_eq!(
            crate::serve::parse_url("server listening on http://127.0.0.1:40347\n").as_deref(),
            Some("http://127.0.0.1:40347")
        );
        assert_eq!(crate::serve::parse_url("server listening on http://0.0.0.0:4096\n"), None);
    }

    #[test]
    fn the_serve_keeps_only_what_opencode_needs() {
        for k in ["HOME", "PATH", "XDG_DATA_HOME", "OPENCODE_CONFIG_CONTENT"] {
            assert!(serve_keeps(&k.into()), "{k}");
        }
        for k in ["GITHUB_TOKEN", "FOO", "OPENCODE_PASSWORD", "PWD"] {
            assert!(!serve_keeps(&k.into()), "{k}");
        }
    }
}
