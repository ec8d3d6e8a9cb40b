//! The fork server: a warm `opencode serve` that makes a fork without an opencode process.
//!
//! A fork by `import` costs a whole opencode process (1.4 to 2.2 s and 330 MB with 1.18.33) on
//! every `start`. A running `opencode serve` accepts the same session as sync events on `POST
//! /sync/replay` and stores it in 0.04 to 0.3 s (measured against 1.18.33: the whole history,
//! the session's directory taken from the body, the permission rules kept; see
//! [`crate::fork::replay_body`]). Starting a serve costs as much as an import, so one only pays
//! when it is already running: its owner (the queue daemon, through
//! [`kugetsu_core::agent::AgentDriver::keep_warm`]) starts it and registers it in the cache
//! directory; any kugetsu process of the same state directory then forks through it while it
//! answers, and by `import` otherwise.
//!
//! The route is not documented by opencode. So the registration is only a hint: a fork uses it
//! when the registered process runs, was started with the same program and session store as
//! this fork would use (the key of the `export_cache` module without a base), and answers in
//! time with the session id the rewrite made; anything else falls back to `import`.
//!
//! Any local user can connect to a loopback port, and the serve can read and write every
//! session (and run turns with the user's keys). opencode 1.18.33 checks HTTP basic auth when
//! `OPENCODE_SERVER_PASSWORD` is set (user `opencode`, else 401 on every route, checked against
//! the binary), so every serve gets a fresh random password, kept only in the registration
//! (`0600`, in the private state directory).
//!
//! The serve ignores SIGTERM; it is stopped with SIGINT to its process group and, after a
//! grace, SIGKILL. It is started with the parent-death signal, so an owner killed outright does
//! not leave it behind.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use kugetsu_core::agent::{AgentEnv, AgentError, Warm};
use kugetsu_core::storage;
use rustix::process::{Pid, Signal, kill_process_group};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::export_cache::Key;
use kugetsu_process::{CommandSpec, Io, build_command};

/// The registration file in the cache directory.
pub(crate) const FILE_NAME: &str = "opencode-serve.json";
/// The serve's own output (its URL line, warnings), private like every state file.
const LOG_NAME: &str = "opencode-serve.log";
/// The basic-auth user opencode expects when `OPENCODE_SERVER_USERNAME` is not set.
const USER: &str = "opencode";
/// How long a fork waits for the replay's answer before it imports instead: a replay took
/// 0.04 to 0.32 s under load, an import takes seconds.
pub(crate) const REPLAY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the serve may take to exit after SIGINT before it is killed (it took 1.6 s once,
/// and once ignored it for 5 s).
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What a fork needs to use a running serve. Holds its password: kept `0600`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Registration {
    /// `http://127.0.0.1:PORT`, as the serve printed it.
    pub url: String,
    /// The serve's pid, also its process group.
    pub pid: u32,
    /// Its basic-auth password.
    pub password: String,
    /// The program and session store it was started with.
    pub key: Key,
}

/// A serve this process started; stopped (and unregistered) when dropped.
#[derive(Debug)]
pub struct ServeHandle {
    child: Child,
    cache: PathBuf,
    url: String,
}

impl ServeHandle {
    /// The serve's pid (its process group too).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Warm for ServeHandle {
    /// The registration's modification time, which every fork through the serve renews; `None`
    /// when the serve has exited or another one has been registered in its place (forks use
    /// that one: this one is of no more use).
    fn last_used(&self) -> Option<std::time::SystemTime> {
        let pid = self.child.id();
        if !kugetsu_process::procfs::is_running(pid)
            || load(&self.cache).is_none_or(|r| r.pid != pid)
        {
            return None;
        }
        std::fs::metadata(self.cache.join(FILE_NAME)).and_then(|m| m.modified()).ok()
    }
}

/// Notes that a fork just used the registered serve (see [`Warm::last_used`]).
pub(crate) fn touch(cache: &Path) {
    let touched = OpenOptions::new()
        .write(true)
        .open(cache.join(FILE_NAME))
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    if let Err(e) = touched {
        tracing::debug!(error = %e, "cannot note the use of the opencode serve");
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        let pid = self.child.id();
        // Unregistered first, so no fork starts a replay against a serve on its way out.
        if load(&self.cache).is_some_and(|r| r.pid == pid) {
            let _ = storage::remove_file(&self.cache.join(FILE_NAME));
        }
        stop_group(&mut self.child, Signal::INT, STOP_GRACE);
        tracing::debug!(pid, "stopped the opencode serve");
    }
}

/// Everything [`start`] needs from the driver.
pub(crate) struct StartSpec<'a> {
    pub program: &'a Path,
    pub base_env: &'a [(OsString, OsString)],
    pub agent_env: &'a AgentEnv,
    pub dir: Option<&'a Path>,
    pub cache: &'a Path,
    pub key: Key,
    /// Stops the wait for the serve's URL (and the serve) when triggered.
    pub stop: &'a kugetsu_core::interrupt::Interrupt,
    /// How long the serve may take to print its URL (1.4 to 3 s measured on a busy 2-core VM).
    pub ready_timeout: Duration,
}

/// Starts `opencode serve` on a random loopback port with a fresh password, waits for its URL
/// and registers it in `spec.cache`.
pub(crate) fn start(spec: &StartSpec<'_>) -> Result<ServeHandle, AgentError> {
    let fail = |message: String| AgentError::CommandFailed { command: "serve".into(), message };
    storage::ensure_dir(spec.cache).map_err(|e| fail(e.to_string()))?;
    let password = random_password().map_err(|source| AgentError::Io {
        action: "read random bytes for the serve's password from",
        path: "/dev/urandom".into(),
        source,
    })?;
    let mut env = spec.agent_env.clone();
    env.0.insert("OPENCODE_SERVER_USERNAME".into(), USER.into());
    env.0.insert("OPENCODE_SERVER_PASSWORD".into(), password.clone());
    let args: Vec<OsString> =
        ["serve", "--port", "0", "--hostname", "127.0.0.1"].iter().map(OsString::from).collect();
    let mut cmd = build_command(&CommandSpec {
        program: spec.program,
        args: &args,
        cwd: spec.dir,
        base_env: spec.base_env,
        agent_env: Some(&env),
        drop_vars: crate::command::SHELL_DIR_VARS,
        io: Io::NullStdin,
        // The owner's thread lives as long as the owner: a daemon killed outright takes its
        // serve along.
        die_with_parent: true,
    });
    // A file, not pipes: nobody has to drain the output of a process that runs for hours.
    let log_path = spec.cache.join(LOG_NAME);
    let log = storage::open_private(&log_path, storage::PrivateOpen::Truncate).map_err(|e| {
        AgentError::Io {
            action: "open the serve's log",
            path: log_path.clone(),
            source: std::io::Error::other(e),
        }
    })?;
    let log2 = log.try_clone().map_err(|source| AgentError::Io {
        action: "open the serve's log",
        path: log_path.clone(),
        source,
    })?;
    cmd.stdout(Stdio::from(log)).stderr(Stdio::from(log2));
    let mut child = cmd
        .spawn()
        .map_err(|source| AgentError::Spawn { program: spec.program.to_owned(), source })?;
    let url = match wait_for_url(&mut child, &log_path, spec.stop, spec.ready_timeout) {
        Ok(url) => url,
        Err(message) => {
            stop_group(&mut child, Signal::INT, STOP_GRACE);
            if spec.stop.is_triggered() {
                return Err(AgentError::Interrupted { signal: spec.stop.describe() });
            }
            return Err(fail(message));
        }
    };
    let reg = Registration { url: url.clone(), pid: child.id(), password, key: spec.key.clone() };
    let handle = ServeHandle { child, cache: spec.cache.to_owned(), url };
    let bytes = serde_json::to_vec(&reg).map_err(|e| fail(e.to_string()))?;
    // On failure the handle is dropped, which stops the serve.
    storage::atomic_write(&spec.cache.join(FILE_NAME), &bytes).map_err(|e| fail(e.to_string()))?;
    tracing::debug!(pid = reg.pid, url = %reg.url, "opencode serve started and registered");
    Ok(handle)
}

/// The URL from the serve's `listening on http://…` line (1.x says `opencode server
/// listening on`, 2.x `server listening on`), read from its log while it starts.
pub(crate) fn wait_for_url(
    child: &mut Child,
    log: &Path,
    stop: &kugetsu_core::interrupt::Interrupt,
    timeout: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if stop.is_triggered() {
            return Err("stopped while starting".into());
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(url) = parse_url(&text) {
            return Ok(url);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            return Err(format!("exited with {status} before listening: {last}"));
        }
        if Instant::now() > deadline {
            return Err(format!("printed no URL in {}s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn parse_url(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let at = l.find("listening on http://")? + "listening on ".len();
        let url = l[at..].split_whitespace().next()?.trim_end_matches('/');
        // Only a loopback serve is ever used.
        url.starts_with("http://127.0.0.1:").then(|| url.to_owned())
    })
}

/// `first` to the group, then SIGKILL after `grace`; reaped. The 1.x serve ignores SIGTERM
/// (it gets SIGINT); the 2.x one ends on SIGTERM.
pub(crate) fn stop_group(child: &mut Child, first: Signal, grace: Duration) {
    let Some(group) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) else { return };
    let _ = kill_process_group(group, first);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill_process_group(group, Signal::KILL);
    let _ = child.wait();
}

pub(crate) fn random_password() -> std::io::Result<String> {
    let mut bytes = [0u8; 24];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The registration kept in `cache`, if any and readable.
pub(crate) fn load(cache: &Path) -> Option<Registration> {
    let bytes = storage::read_bytes(&cache.join(FILE_NAME)).ok().flatten()?;
    serde_json::from_slice(&bytes).ok()
}

/// Why a registered serve was not used (the fork then imports).
pub(crate) fn usable(cache: &Path, key: &Key) -> Result<Registration, String> {
    let reg = load(cache).ok_or("no opencode serve is registered")?;
    if !kugetsu_process::procfs::is_running(reg.pid) {
        return Err(format!("the registered opencode serve (pid {}) is gone", reg.pid));
    }
    if reg.key != *key {
        return Err("the registered opencode serve uses another program or session store".into());
    }
    Ok(reg)
}

/// Posts `body` to the serve's `/sync/replay`; the session id it answers.
pub(crate) fn replay(
    reg: &Registration,
    body: &Value,
    timeout: Duration,
) -> Result<String, String> {
    let agent = ureq::Agent::config_builder()
        // Loopback only: a proxy from the user's environment must not see the password.
        .proxy(None)
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{}", reg.password));
    let mut response = agent
        .post(format!("{}/sync/replay", reg.url))
        .header("authorization", format!("Basic {auth}"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .map_err(|e| format!("POST /sync/replay: {e}"))?;
    let status = response.status().as_u16();
    let text =
        response.body_mut().read_to_string().map_err(|e| format!("reading the answer: {e}"))?;
    if status != 200 {
        let first: String = text.chars().take(200).collect();
        return Err(format!("POST /sync/replay answered {status}: {first}"));
    }
    let answer: Value =
        serde_json::from_str(&text).map_err(|e| format!("the answer is not JSON: {e}"))?;
    answer
        .get("sessionID")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("the answer has no sessionID: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_from_the_listening_line() {
        let out = "Warning: OPENCODE_SERVER_PASSWORD is not set; server is unsecured.\n\
                   opencode server listening on http://127.0.0.1:42057\n";
        assert_eq!(parse_url(out).as_deref(), Some("http://127.0.0.1:42057"));
        assert_eq!(parse_url("opencode server listening on http://0.0.0.0:4096\n"), None);
        assert_eq!(parse_url("starting\n"), None);
    }

    #[test]
    fn passwords_are_fresh() {
        let (a, b) = (random_password().expect("a"), random_password().expect("b"));
        assert_eq!(a.len(), 48);
        assert_ne!(a, b);
    }
}
