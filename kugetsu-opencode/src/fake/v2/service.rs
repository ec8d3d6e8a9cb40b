//! The background service a 2.x command starts when it is given neither `--server` nor
//! `--standalone`: `serve --service`, in its own session with PPID 1 and cwd `$HOME`,
//! registered in `<state>/service.json` `{id, version, url, pid, password}` (0600), left
//! running after the command exits. A driver's test looks for it to prove it never happens.
//!
//! Where the fake differs: the real service listens on 127.0.0.1:49374 and stays up for good;
//! the fake's takes a port the kernel picks and exits by itself after `LIFETIME` (removing
//! its registration), so a test that starts one never leaks it for long.

use std::net::TcpListener;

use super::*;

/// How long the fake's service lives.
const LIFETIME: Duration = Duration::from_secs(60);

fn state_file() -> Res<PathBuf> {
    let state = match (env("XDG_STATE_HOME"), env("HOME")) {
        (Some(x), _) => PathBuf::from(x),
        (None, Some(h)) => Path::new(&h).join(".local/state"),
        (None, None) => return fail("neither XDG_STATE_HOME nor HOME is set"),
    };
    Ok(state.join("opencode").join("service.json"))
}

fn registered() -> Option<(String, String)> {
    let path = state_file().ok()?;
    let doc: Value = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    let pid = doc["pid"].as_u64()?;
    // A service that is gone (killed, or timed out without cleaning up) does not count.
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return None;
    }
    Some((doc["url"].as_str()?.to_owned(), doc["password"].as_str()?.to_owned()))
}

/// The running service's URL and password, starting it first if there is none.
pub(super) fn ensure() -> Res<(String, String)> {
    if let Some(found) = registered() {
        return Ok(found);
    }
    // `__service` detaches (setsid) and starts the serve, then exits: the serve is orphaned,
    // as the real service is.
    let Some(me) = self_program() else { return fail("cannot find this program") };
    let home = env("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
    let status = std::process::Command::new(me)
        .arg("__service")
        .current_dir(&home)
        .env("PWD", &home)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .or_else(|e| fail(format!("cannot start the service: {e}")))?;
    if !status.success() {
        return fail("cannot start the service");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Some(found) = registered() {
            return Ok(found);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    fail("the service did not start")
}

/// `__service`: the step between a command and its service, which exits at once so the
/// service is orphaned (the service then calls `setsid`).
pub(super) fn detach() -> u8 {
    let Some(me) = self_program() else { return 1 };
    let spawned = std::process::Command::new(me)
        .args(["serve", "--service", "--port", "0", "--hostname", "127.0.0.1"])
        .env("OPENCODE_SERVER_PASSWORD", serve::random_password())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    u8::from(spawned.is_err())
}

/// Registers this process as the service, and schedules its end (see the module's doc).
pub(super) fn register(url: &str, password: &str, version: &str) -> Res<()> {
    let path = state_file()?;
    if let Some(dir) = path.parent() {
        kugetsu_core::storage::ensure_dir(dir).or_else(|e| fail(e.to_string()))?;
    }
    let pid = std::process::id();
    let doc = json!({"id": format!("svc_{pid}"), "version": version, "url": url, "pid": pid,
                     "password": password});
    kugetsu_core::storage::atomic_write(&path, doc.to_string().as_bytes())
        .or_else(|e| fail(e.to_string()))?;
    std::thread::spawn(move || {
        std::thread::sleep(LIFETIME);
        let _ = fs::remove_file(&path);
        std::process::exit(0);
    });
    Ok(())
}

/// `run --standalone`: a private serve in this process, gone with it.
pub(super) fn private_serve() -> Res<(String, String)> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .or_else(|e| fail(format!("cannot listen on 127.0.0.1: {e}")))?;
    let password = serve::random_password();
    let server = serve::server(&listener, &password)?;
    let url = server.url.clone();
    std::thread::spawn(move || serve::accept(&listener, &server));
    Ok((url, password))
}
