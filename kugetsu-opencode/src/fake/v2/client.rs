//! `run` in 2.x: a client of a serve. `--server URL` (with `OPENCODE_PASSWORD`) names it;
//! without a flag it is the background service (started if need be, and left running);
//! `--standalone` runs a private serve in this process. The turn runs in the serve; this
//! process prints its events. SIGINT interrupts the turn on the serve and exits 130; SIGTERM
//! exits 130 and leaves the turn running there, as the real one does.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::sync::mpsc;

use base64::Engine;

use super::*;

/// SIGINT and SIGTERM, as flags.
struct Signals {
    int: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
}

impl Signals {
    fn watch() -> Self {
        let int = Arc::new(AtomicBool::new(false));
        let term = Arc::new(AtomicBool::new(false));
        let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&int));
        let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&term));
        Signals { int, term }
    }
}

/// The TUI (`opencode [directory] [--server URL] [-s ID] [--prompt P]`): the fake runs the
/// prompt as a turn of the session and exits, as if the user quit once it was answered;
/// without a prompt it only connects (starting the service without `--server`).
pub(super) fn cmd_tui(p: &Parsed) -> Result<u8, Stop> {
    let signals = Signals::watch();
    let dir = match p.positionals.first() {
        Some(d) => PathBuf::from(d)
            .canonicalize()
            .or_else(|e| fail(format!("Failed to change directory to {d}: {e}")))?,
        None => cwd()?,
    };
    match p.value("prompt").filter(|m| !m.is_empty()) {
        Some(prompt) => drive(p, prompt, &dir, false, &signals),
        None => {
            server(p)?;
            Ok(0)
        }
    }
}

pub(super) fn cmd_run(p: &Parsed) -> Result<u8, Stop> {
    // First of all: a signal that comes while the turn is being set up counts too.
    let signals = Signals::watch();
    let stdin = if std::io::stdin().is_terminal() {
        String::new()
    } else {
        let mut buf = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    };
    let mut message = p
        .positionals
        .iter()
        .map(|a| if a.contains(' ') { format!("\"{a}\"") } else { a.clone() })
        .collect::<Vec<_>>()
        .join(" ");
    if !stdin.is_empty() {
        message = if message.is_empty() { stdin.clone() } else { format!("{message}\n{stdin}") };
    }
    let argv: Vec<String> = ARGV.get().cloned().unwrap_or_default();
    record(&argv, Some(&stdin), Some(&message));
    let json_format = match p.value("format") {
        None | Some("default") => false,
        Some("json") => true,
        Some(other) => {
            return Err(super::usage(&format!(
                "Invalid value for --format: {other} (choices: default, json)"
            )));
        }
    };
    // Refusals before any server is reached: one JSON `error` line on stdout, exit 1.
    let refuse = |message: &str| {
        let line = json!({"type": "error", "timestamp": now_ms(), "sessionID": "",
                          "error": {"type": "unknown", "message": message}});
        println!("{line}");
        Ok(1)
    };
    if let Some(id) = p.value("session")
        && !id.starts_with("ses")
    {
        return refuse("Expected a string starting with \"ses\"\n  at [\"sessionID\"]");
    }
    if p.has("fork") && !(p.has("continue") || p.has("session")) {
        return refuse("--fork requires --continue or --session");
    }
    if message.is_empty() {
        return refuse("You must provide a message");
    }
    drive(p, &message, &cwd()?, json_format, &signals)
}

/// The serve to use: `--server` (with the password of the environment), a private one with
/// `--standalone`, else the background service.
fn server(p: &Parsed) -> Result<(String, String), Stop> {
    Ok(match p.value("server") {
        Some(url) => {
            let Some(pw) = env("OPENCODE_PASSWORD").or_else(|| env("OPENCODE_SERVER_PASSWORD"))
            else {
                return Err(Fail(format!(
                    "Server at {url} requires a password; set OPENCODE_PASSWORD"
                ))
                .into());
            };
            (url.trim_end_matches('/').to_owned(), pw)
        }
        None if p.has("standalone") => service::private_serve()?,
        None => service::ensure()?,
    })
}

/// Runs `message` as a turn in the serve and prints its events; the exit code.
fn drive(
    p: &Parsed,
    message: &str,
    dir: &Path,
    json_format: bool,
    signals: &Signals,
) -> Result<u8, Stop> {
    let (url, password) = server(p)?;
    let Signals { int, term } = signals;
    let env_map: BTreeMap<String, String> = std::env::vars().collect();
    let request = json!({
        "session": p.value("session"),
        "continue": p.has("continue"),
        "fork": p.has("fork"),
        "title": p.value("title"),
        "text": message,
        "directory": path_str(dir),
        "auto": p.has("auto"),
        "env": env_map,
    });
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("opencode:{password}"))
    );
    let mut stream = post(&url, "/fake/run", &auth, &request.to_string())?;
    let status = read_status(&mut stream)?;
    if status == 401 {
        let msg = format!("Server at {url} requires a password; set OPENCODE_PASSWORD");
        return Err(Fail(msg).into());
    }
    if status != 200 {
        return Err(Fail(format!("Server at {url} answered {status}")).into());
    }
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    // The session it drives: `-s`'s, until the serve names it (a new one, or a fork).
    let mut session = p.value("session").filter(|_| !p.has("fork")).unwrap_or_default().to_owned();
    loop {
        if int.load(Ordering::SeqCst) {
            // The serve names the session first thing: wait for that line if it is still due.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while session.is_empty() && std::time::Instant::now() < deadline {
                match rx.recv_timeout(Duration::from_millis(20)) {
                    Ok(v) if v["fake"] == "session" => {
                        session = v["id"].as_str().unwrap_or_default().to_owned();
                    }
                    Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            // Ctrl-C stops the turn on the server too.
            if !session.is_empty() {
                let path = format!("/api/session/{session}/interrupt");
                if let Ok(mut s) = post(&url, &path, &auth, "{}") {
                    let _ = read_status(&mut s);
                }
            }
            return Ok(130);
        }
        if term.load(Ordering::SeqCst) {
            // The real client ends; the turn goes on in the server until interrupted.
            return Ok(130);
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(v) => match v["fake"].as_str() {
                Some("exit") => return Ok(v["code"].as_u64().map_or(1, |c| c as u8)),
                Some("stderr") => eprintln!("{}", v["line"].as_str().unwrap_or_default()),
                Some("session") => session = v["id"].as_str().unwrap_or_default().to_owned(),
                _ => {
                    if json_format {
                        println!("{v}");
                    } else if v["type"] == "text" {
                        println!("{}", v["part"]["text"].as_str().unwrap_or_default());
                    }
                    let _ = std::io::stdout().flush();
                }
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(1),
        }
    }
}

/// Sends a POST with a JSON body to the serve at `url`; the connection, to read the answer.
fn post(url: &str, path: &str, auth: &str, body: &str) -> Res<TcpStream> {
    let host = url.strip_prefix("http://").unwrap_or(url);
    let mut s =
        TcpStream::connect(host).or_else(|e| fail(format!("Unable to connect to {url}: {e}")))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: {auth}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .or_else(|e| fail(format!("cannot send to {url}: {e}")))?;
    Ok(s)
}

/// Reads the status line and headers of an answer; its status.
fn read_status(s: &mut TcpStream) -> Res<u16> {
    // Byte by byte up to the blank line: what follows is the body, read by the caller.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return fail("the server closed the connection"),
        }
    }
    let text = String::from_utf8_lossy(&head);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .map_or_else(|| fail("a malformed answer"), Ok)
}
