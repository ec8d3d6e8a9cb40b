//! The opencode 2 contract the 2.x driver is built on, as one suite with two subjects: the fake
//! in its 2.x dialect (`FAKE_OPENCODE_VERSION=2.1.2`, in the `runner` target) and the real
//! `@opencode/cli` 2.1.2 with the mock model (in the `real_opencode` target). Each target
//! instantiates every check with `contract_tests!`, so the fake cannot drift from the real one.
//!
//! Where the fake deliberately differs, it is said here and nowhere else, and the checks do
//! not look at it:
//! - the final `step_finish` of a turn: the real one usually leaves it out, at random; the fake
//!   leaves it out unless its script asks for it. The checks accept either.
//! - list cursors: opaque strings (or null when the list is empty) in both, not compared.
//! - the background service a command without `--server` starts: the real one takes the fixed
//!   port 49374 of the machine and never exits, so only the fake's is checked (by the runner's
//!   `v2_fake`), which takes a free port and exits after a minute.
//! - SIGINT of a `run --server` client: the real one usually interrupts the turn in the serve,
//!   but not always (2 of 8 tries by hand left it running, whatever the delay before the
//!   signal); the fake always does (checked by `v2_fake`). The contract check ends the turn
//!   with `/interrupt` either way.
//! - `/interrupt` of a turn whose `run` client is attached: the client prints an `aborted` error
//!   and exits 1; the real one, interrupted right as the turn starts, sometimes ends silently
//!   with 0 instead (1 of 2 tries in the suite, none of 9 by hand a little later). The fake
//!   always exits 1; the check accepts the silent 0 from the real one only.
//! - 1.x and 2.x on one data directory: the real 2.x migrates the 1.x sessions once, on its
//!   first start, and a 1.x session made later is invisible to it (`-s` then makes an empty one);
//!   the fake's 2.x shows every 1.x session whenever it was made, and its 1.x sees the sessions
//!   2.x made. Histories diverge in both. Only a migration before the first 2.x start is checked.
//! - the turn's transport between `run --server` and the serve: the fake's is a private route;
//!   only what a client and the serve's routes show is checked.

#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::support::Sandbox;
use crate::support::mock_model::MockModel;

pub const PASSWORD: &str = "contract-pw";

/// What a turn does, scripted for the fake and prompted to the mock model for the real one.
#[derive(Clone, Copy)]
pub enum Turn<'a> {
    /// A text answer.
    Plain,
    /// The `write` tool creates this file (relative to the session's directory).
    Write(&'a str),
    /// The `shell` tool echoes this environment variable and `XDG_STATE_HOME`.
    Echo(&'a str),
    /// The `shell` tool runs `echo ran`, which asks for a permission.
    Ask,
    /// The provider never answers.
    Stall,
    /// The provider answers 400 `mock bad request`.
    Fail,
}

/// One subject: a 2.x opencode (binary and env) with a running `serve`.
pub struct Subject {
    pub sb: Sandbox,
    pub bin: PathBuf,
    pub env: Vec<(OsString, OsString)>,
    pub fake: bool,
    pub url: String,
    _serve: Serve,
    _model: Option<MockModel>,
}

/// A started `serve`, killed when dropped (a failed check included).
pub struct Serve(pub Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Subject {
    /// The fake at `bin` in its 2.x dialect.
    pub fn fake(bin: &str) -> Self {
        let sb = Sandbox::new();
        let mut env = sb.base_env();
        env.push(("FAKE_OPENCODE_VERSION".into(), "2.1.2".into()));
        env.push(("FAKE_OPENCODE_SCRIPT".into(), sb.path("script.json").into()));
        std::fs::write(sb.path("script.json"), "{}").expect("script");
        Self::start(sb, PathBuf::from(bin), env, true, None)
    }

    /// The real opencode 2 at `bin`, against a mock model.
    pub fn real(bin: PathBuf) -> Self {
        let sb = Sandbox::new();
        let model = MockModel::start();
        let mut env = sb.base_env();
        for (k, v) in [
            ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
            ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
            ("OPENCODE_DISABLE_SHARE", "1"),
            ("npm_config_offline", "true"),
        ] {
            env.push((k.into(), v.into()));
        }
        env.push(("OPENCODE_CONFIG_CONTENT".into(), model.opencode_config().into()));
        Self::start(sb, bin, env, false, Some(model))
    }

    fn start(
        sb: Sandbox,
        bin: PathBuf,
        env: Vec<(OsString, OsString)>,
        fake: bool,
        model: Option<MockModel>,
    ) -> Self {
        let (serve, first) = spawn_serve(&bin, &env, &sb.path("base"), Some(PASSWORD));
        let url = first.strip_prefix("server listening on ").unwrap_or_else(|| {
            panic!("serve's first line: {first:?}");
        });
        let url = url.to_owned();
        Subject { sb, bin, env, fake, url, _serve: serve, _model: model }
    }

    /// The 1.x opencode that goes with this subject: the fake in its 1.x dialect, or the real
    /// 1.18.33 (None, after saying why, when it cannot be had).
    pub fn v1(&self) -> Option<PathBuf> {
        if self.fake { Some(self.bin.clone()) } else { crate::support::real::opencode() }
    }

    /// The prompt of `turn`; for the fake, the script of its next turn too.
    pub fn prompt(&self, turn: Turn) -> String {
        let (script, prompt) = match turn {
            Turn::Plain => (json!({"mode": "ok"}), "say hello".to_owned()),
            Turn::Write(name) => {
                (json!({"mode": "tool", "path": name}), format!("WRITEFILE:{name}"))
            }
            Turn::Echo(var) => {
                let command = format!("echo {var}=${var} XDG_STATE_HOME=$XDG_STATE_HOME");
                (json!({"mode": "shell", "command": command}), format!("BASH:{command}"))
            }
            Turn::Ask => (
                json!({"mode": "permission", "tool": "shell", "permission": "shell (echo ran)"}),
                "BASH:echo ran".to_owned(),
            ),
            Turn::Stall => (json!({"mode": "hang"}), "HANG".to_owned()),
            Turn::Fail => {
                (json!({"mode": "error", "message": "mock bad request"}), "APIERROR".to_owned())
            }
        };
        if self.fake {
            let doc = json!({ "turns": [script] }).to_string();
            std::fs::write(self.sb.path("script.json"), doc).expect("script");
        }
        prompt
    }

    /// A command of the subject's binary started from `dir` as a shell would (cwd and `PWD`).
    pub fn command(&self, dir: &str, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .current_dir(self.sb.path(dir))
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("PWD", self.sb.path(dir))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// `run --server URL -s ID --format json` from `dir`, the prompt on stdin, started.
    pub fn spawn_run(&self, dir: &str, session: &str, prompt: &str, env: &[(&str, &str)]) -> Child {
        self.spawn_client(dir, &["-s", session], prompt, env)
    }

    /// `run --server URL --format json ARGS` from `dir`, the prompt on stdin, started.
    pub fn spawn_client(
        &self,
        dir: &str,
        args: &[&str],
        prompt: &str,
        env: &[(&str, &str)],
    ) -> Child {
        let mut c = self.command(dir, &["run", "--server", &self.url, "--format", "json"]);
        c.args(args)
            .env("OPENCODE_PASSWORD", PASSWORD)
            .envs(env.iter().copied())
            .stdin(Stdio::piped());
        let mut child = c.spawn().expect("spawn run");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(prompt.as_bytes()).expect("prompt");
        drop(stdin);
        child
    }

    /// A whole turn of `turn` on `session` from `dir`.
    pub fn run(&self, dir: &str, session: &str, turn: Turn, env: &[(&str, &str)]) -> Output {
        let prompt = self.prompt(turn);
        self.spawn_run(dir, session, &prompt, env).wait_with_output().expect("run")
    }

    /// An authenticated request to the serve.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("opencode:{PASSWORD}"));
        http(&self.url, method, path, Some(&format!("Basic {auth}")), body)
    }

    /// A session made with `POST /api/session` in `dir`; its JSON (`data`).
    pub fn create(&self, title: &str, dir: &str, permissions: Value) -> Value {
        let body = json!({"title": title, "location": {"directory": self.sb.path(dir)},
                          "permissions": permissions});
        let r = self.api("POST", "/api/session", Some(body));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["data"].clone()
    }

    pub fn get(&self, id: &str) -> Value {
        let r = self.api("GET", &format!("/api/session/{id}"), None);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["data"].clone()
    }

    pub fn active(&self) -> Value {
        self.api("GET", "/api/session/active", None).json()["data"].clone()
    }

    /// Waits (bounded: a turn starts in well under a second) until `pred` holds.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pred(self) {
            assert!(Instant::now() < deadline, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts `serve --port 0 --hostname 127.0.0.1` in `cwd`; it and its first stdout line.
pub fn spawn_serve(
    bin: &Path,
    env: &[(OsString, OsString)],
    cwd: &Path,
    password: Option<&str>,
) -> (Serve, String) {
    let mut c = Command::new(bin);
    c.args(["serve", "--port", "0", "--hostname", "127.0.0.1"])
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PWD", cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(pw) = password {
        c.env("OPENCODE_SERVER_PASSWORD", pw);
    }
    let mut serve = Serve(c.spawn().expect("spawn serve"));
    let line = read_line(&mut serve.0);
    (serve, line)
}

/// The next stdout line of `child` (unbuffered: the rest stays in the pipe).
pub fn read_line(child: &mut Child) -> String {
    let out = child.stdout.as_mut().expect("stdout");
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while out.read(&mut b).map(|n| n == 1).unwrap_or(false) && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// One HTTP/1.1 request (`connection: close`), the answer read to its end.
pub fn http(url: &str, method: &str, path: &str, auth: Option<&str>, body: Option<Value>) -> Reply {
    let host = url.strip_prefix("http://").expect("http url");
    let mut s = TcpStream::connect(host).expect("connect");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = auth.map(|a| format!("authorization: {a}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\n{auth}content-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut r = BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line).expect("status");
    let status = status_line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("code");
    let mut headers = String::new();
    let mut chunked = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).expect("header") == 0 || h.trim().is_empty() {
            break;
        }
        chunked |= h.to_ascii_lowercase().starts_with("transfer-encoding: chunked");
        headers.push_str(&h.to_ascii_lowercase());
    }
    let mut raw = Vec::new();
    let _ = r.read_to_end(&mut raw);
    let body = if chunked { dechunk(&raw) } else { raw };
    Reply { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || raw.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[(eol + 4 + size).min(raw.len())..];
    }
    out
}

/// The NDJSON events of a run's stdout.
pub fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Generates one `#[test]` per check of [`crate::v2_contract::checks`] for the subject made by
/// `$subject` (an expression of type `Option<Subject>`: `None` skips).
macro_rules! contract_tests {
    ($subject:expr) => {
        $crate::v2_contract::contract_tests!(@each $subject;
            version_line, serve_startup_and_auth, session_routes, turn_fork_move,
            tool_environment, sigterm_leaves_the_turn_until_interrupt,
            interrupt_ends_an_attached_client,
            permission_ask_is_rejected, http_turn_and_permission_reply, provider_error, run_fork_stays_in_the_base_directory,
            client_refusals, new_session_directory_is_pwd, gone_commands,
            v1_sessions_continue_under_2x, standalone_run_starts_no_service,
            export_import_on_another_data_dir, import_is_a_fork_on_the_same_serve);
    };
    (@each $subject:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                let subject: Option<$crate::v2_contract::Subject> = $subject;
                if let Some(s) = subject {
                    $crate::v2_contract::checks::$check(&s);
                }
            }
        )*
    };
}
pub(crate) use contract_tests;

#[path = "v2_checks.rs"]
pub mod checks;
