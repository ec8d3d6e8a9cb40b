//! The fake opencode (`fake-opencode`): a scripted stand-in for the opencode 1.18.33 CLI, and a conformance kit.
//!
//! It reproduces the parts of the real CLI's contract that kugetsu relies on or must survive,
//! so kugetsu and its tests can run without a model (see `CONFORMANCE.md` in this package):
//!
//! - strict flags: an unknown flag (`--workdir` included) prints the help to stderr, exit 1;
//! - `run` reads stdin to EOF when it is not a terminal and appends it to the message
//!   (`message + "\n" + stdin`, or stdin alone); positional arguments containing a space are
//!   wrapped in literal double quotes (the real CLI's quirk);
//! - a session store with `ses_` ids of the real shape (newer sort first), `(fork #N)` titles,
//!   forks that keep the parent's directory and lose the permission rules, new `run` sessions
//!   with the `question`/`plan_enter`/`plan_exit` deny rules;
//! - the directory trap: `run -s X` from a directory (cwd or `--dir`) other than X's stored
//!   directory prints nothing and never exits;
//! - `PWD` counts: like the real binary, every command takes the directory it works in from
//!   `PWD` when it is set, else from the cwd, so a program that starts it with the cwd right
//!   but a `PWD` inherited from a shell elsewhere falls into the directory trap as it would
//!   with the real opencode;
//! - `--format json` lines shaped like the real ones; `session list|delete`, `export`,
//!   `import`, `db` (the queries the kugetsu driver issues), `--version` (1.18.33).
//!
//! Scripting (environment variables):
//! - `FAKE_OPENCODE_SCRIPT=<file>`: JSON `{"turns": [TURN, ...], "default": TURN}`; each `run`
//!   consumes (removes from the file) the first TURN; with none left, `default`, else
//!   `{"mode": "ok"}`. A TURN is an object with
//!   `mode` and options:
//!   - `ok` (`text`): a text answer;
//!   - `tool` (`path`, `content`, `text`): a `write` tool call that really writes `path`
//!     (relative to the session's directory), then a text answer;
//!   - `error` (`name`, `message`): a JSON `error` line, `Error:` on stderr, exit 1;
//!   - `permission` (`permission`, `tool`): an auto-rejected ask (stderr line and a tool part
//!     in error), exit 0 (with `--auto`: the tool completes);
//!   - `question`: the `question` tool; hangs when the session has no deny rule for it;
//!   - `hang` (`children`, `detached_children`, `ignore_term`, `after_output`): prints
//!     nothing (or one step_start) and sleeps forever, with `children` helper processes in its
//!     process group and `detached_children` in their own sessions (as opencode's bash tool
//!     starts commands); `ignore_term` makes all of them ignore SIGTERM;
//!   - `bash` (`command`, `work`, `ms`, `pieces`, `detached`, `first`): opencode's bash tool
//!     running a command silently: `step_start`, then a helper process that works for `ms`
//!     milliseconds (forever without `ms`) printing nothing, then the `tool_use` event (titled
//!     `command`, as the real tool titles a call by its command) and a text answer. `work` is
//!     `sleep` (no CPU: a stuck command) or `busy` (a CPU-bound loop: a silent build);
//!     `pieces` splits the work into that many helpers run one after the other (short-lived
//!     processes, reaped by the fake); `detached` starts them in their own session, as the
//!     real bash tool does; `first` is the command of a quick bash call that finishes before;
//!   - `slow` (`interval_ms`): keeps printing text events forever;
//!   - `exit` (`code`, `stderr`): prints `stderr` and exits with `code`.
//!
//!   Every TURN also takes `delay_ms` (sleep before answering) and `leave_running` (that many
//!   detached helper processes left running when the turn ends).
//! - `FAKE_OPENCODE_FAIL=<cmd>[,<cmd>...]`: those subcommands (`db`, `import`, ...) fail with
//!   `Error: injected failure`, exit 1.
//! - `FAKE_OPENCODE_TRACE=<file>`: appends `start|end <session> <unix ns>` around each turn.
//! - `FAKE_OPENCODE_RECORD=<file>`: appends one JSON line per invocation:
//!   `{"argv", "cwd", "env_names", "stdin", "message"}` (`stdin`/`message` only for `run`).
//! - `FAKE_OPENCODE_STARTUP_MS=<ms>`: every invocation (every subcommand, `--version` too)
//!   first sleeps that long (0 when unset), as every real opencode process spends a second or
//!   more before it has done anything. It costs wall time, not CPU. Benchmarks set it to show
//!   what a command's number of opencode processes costs.
//! - The store is the file `$OPENCODE_DB` if set, else
//!   `$XDG_DATA_HOME/opencode/opencode-fake.json` (`$HOME/.local/share/...` without
//!   `XDG_DATA_HOME`).

#![allow(clippy::print_stdout, clippy::print_stderr)] // A CLI stand-in: printing is its job.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const VERSION: &str = "1.18.33";
const REJECTED: &str = "The user rejected permission to use this specific tool call.";

const HELP_MAIN: &str = "opencode

Commands:
  opencode [project]           start opencode tui                                          [default]
  opencode run [message..]     run opencode with a message
  opencode export [sessionID]  export session data as JSON
  opencode import <file>       import session data from JSON file or URL
  opencode session             manage sessions
  opencode db                  database tools

Options:
  -h, --help          show help                                                            [boolean]
  -v, --version       show version number                                                  [boolean]
";

const HELP_RUN: &str = "opencode run [message..]

run opencode with a message

Positionals:
  message  message to send                                                     [array] [default: []]

Options:
  -h, --help         show help                                                             [boolean]
  -v, --version      show version number                                                   [boolean]
      --command      the command to run, use message for args                               [string]
  -c, --continue     continue the last session                                             [boolean]
  -s, --session      session id to continue                                                 [string]
      --fork         fork the session before continuing (requires --continue or --session) [boolean]
  -m, --model        model to use in the format of provider/model                           [string]
      --agent        agent to use                                                           [string]
      --format       format: default (formatted) or json (raw JSON events)
  -f, --file         file(s) to attach to message                                            [array]
      --title        title for the session (uses truncated prompt if no value provided)     [string]
      --dir          directory to run in, path on remote server if attaching                [string]
      --auto         auto-approve permissions that are not explicitly denied (dangerous!)
";

/// Exit with a message, the real CLI's way: coloured `Error:` on stderr, exit 1.
struct Fail(String);

type Res<T> = Result<T, Fail>;

fn fail<T>(msg: impl Into<String>) -> Res<T> {
    Err(Fail(msg.into()))
}

/// An unknown flag: help on stderr, exit 1 (no `Error:` line).
struct Usage(&'static str);

enum Stop {
    Fail(Fail),
    Usage(Usage),
    Code(u8),
}

impl From<Fail> for Stop {
    fn from(f: Fail) -> Self {
        Stop::Fail(f)
    }
}

/// The arguments of this invocation (after the program name), for the recorder.
static ARGV: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Runs the fake opencode with `argv` (without the program name); returns the exit code.
/// The `fake-opencode` binary calls it, and so does `kugetsu` when started under the name
/// `opencode` (how `kugetsu demo` runs without a real opencode).
pub fn main(argv: Vec<String>) -> u8 {
    let argv = ARGV.get_or_init(|| argv).clone();
    if argv.first().map(String::as_str) == Some("__sleep") {
        helper_sleep(&argv[1..]);
    }
    record(&argv, None, None);
    startup_cost();
    match dispatch(&argv) {
        Ok(code) => code,
        Err(Stop::Code(code)) => code,
        Err(Stop::Usage(Usage(help))) => {
            eprint!("{help}");
            1
        }
        Err(Stop::Fail(Fail(msg))) => {
            eprintln!("\u{1b}[91m\u{1b}[1mError: \u{1b}[0m{msg}");
            1
        }
    }
}

/// The start-up every real opencode process pays, if `FAKE_OPENCODE_STARTUP_MS` asks for it.
fn startup_cost() {
    let ms = std::env::var("FAKE_OPENCODE_STARTUP_MS").ok().and_then(|v| v.trim().parse().ok());
    if let Some(ms) = ms {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

// ---------------------------------------------------------------- flags

#[derive(Default)]
struct Parsed {
    flags: BTreeMap<&'static str, Vec<String>>,
    positionals: Vec<String>,
}

impl Parsed {
    fn has(&self, name: &str) -> bool {
        self.flags.contains_key(name)
    }
    fn value(&self, name: &str) -> Option<&str> {
        self.flags.get(name).and_then(|v| v.last()).map(String::as_str)
    }
}

/// (long name, short, takes a value)
type FlagSpec = (&'static str, Option<char>, bool);

const GLOBAL_FLAGS: &[FlagSpec] = &[
    ("help", Some('h'), false),
    ("version", Some('v'), false),
    ("print-logs", None, false),
    ("log-level", None, true),
    ("pure", None, false),
];

const RUN_FLAGS: &[FlagSpec] = &[
    ("command", None, true),
    ("continue", Some('c'), false),
    ("session", Some('s'), true),
    ("fork", None, false),
    ("share", None, false),
    ("model", Some('m'), true),
    ("agent", None, true),
    ("format", None, true),
    ("file", Some('f'), true),
    ("title", None, true),
    ("attach", None, true),
    ("password", Some('p'), true),
    ("username", Some('u'), true),
    ("dir", None, true),
    ("port", None, true),
    ("variant", None, true),
    ("thinking", None, false),
    ("interactive", Some('i'), false),
    ("auto", None, false),
    ("yolo", None, false),
    ("dangerously-skip-permissions", None, false),
];

const TUI_FLAGS: &[FlagSpec] = &[
    ("port", None, true),
    ("hostname", None, true),
    ("model", Some('m'), true),
    ("continue", Some('c'), false),
    ("session", Some('s'), true),
    ("fork", None, false),
    ("prompt", None, true),
    ("agent", None, true),
    ("auto", None, false),
];

const LIST_FLAGS: &[FlagSpec] = &[("max-count", Some('n'), true), ("format", None, true)];
const DB_FLAGS: &[FlagSpec] = &[("format", None, true)];
const EXPORT_FLAGS: &[FlagSpec] = &[("sanitize", None, false)];

fn parse(args: &[String], specs: &[&[FlagSpec]], help: &'static str) -> Result<Parsed, Stop> {
    let find_long = |name: &str| specs.iter().flat_map(|s| s.iter()).find(|f| f.0 == name);
    let find_short = |c: char| specs.iter().flat_map(|s| s.iter()).find(|f| f.1 == Some(c));
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            out.positionals.extend(args[i..].iter().cloned());
            break;
        }
        let (spec, inline) = if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            match find_long(name) {
                Some(s) => (s, inline),
                None => return Err(Stop::Usage(Usage(help))),
            }
        } else if a.len() >= 2
            && a.starts_with('-')
            && !a[1..].starts_with(|c: char| c.is_ascii_digit())
        {
            let mut chars = a[1..].chars();
            let c = chars.next().unwrap_or('-');
            let rest: String = chars.collect();
            match find_short(c) {
                Some(s) => (s, if rest.is_empty() { None } else { Some(rest) }),
                None => return Err(Stop::Usage(Usage(help))),
            }
        } else {
            out.positionals.push(a.clone());
            continue;
        };
        let value = if spec.2 {
            match inline {
                Some(v) => v,
                None if i < args.len() => {
                    i += 1;
                    args[i - 1].clone()
                }
                None => String::new(),
            }
        } else {
            String::new()
        };
        out.flags.entry(spec.0).or_default().push(value);
    }
    if out.has("help") {
        eprint!("{help}");
        return Err(Stop::Code(0));
    }
    if out.has("version") {
        println!("{VERSION}");
        return Err(Stop::Code(0));
    }
    Ok(out)
}

fn dispatch(argv: &[String]) -> Result<u8, Stop> {
    let sub = argv.iter().position(|a| !a.starts_with('-'));
    let (cmd, rest) = match sub {
        Some(i) => (argv[i].as_str(), [&argv[..i], &argv[i + 1..]].concat()),
        None => ("", argv.to_vec()),
    };
    if env("FAKE_OPENCODE_FAIL").is_some_and(|f| f.split(',').any(|c| c == cmd)) {
        return Err(Fail(format!("injected failure of `{cmd}`")).into());
    }
    match cmd {
        "run" => cmd_run(&parse(&rest, &[GLOBAL_FLAGS, RUN_FLAGS], HELP_RUN)?),
        "session" => {
            let p = parse(&rest, &[GLOBAL_FLAGS, LIST_FLAGS], HELP_MAIN)?;
            match p.positionals.first().map(String::as_str) {
                Some("list") => cmd_session_list(&p),
                Some("delete") => cmd_session_delete(p.positionals.get(1)),
                _ => Err(Stop::Usage(Usage(HELP_MAIN))),
            }
        }
        "export" => cmd_export(&parse(&rest, &[GLOBAL_FLAGS, EXPORT_FLAGS], HELP_MAIN)?),
        "import" => cmd_import(&parse(&rest, &[GLOBAL_FLAGS], HELP_MAIN)?),
        "db" => cmd_db(&parse(&rest, &[GLOBAL_FLAGS, DB_FLAGS], HELP_MAIN)?),
        _ => {
            // The TUI (`opencode [project]`): the project positional is the command word.
            let p = parse(argv, &[GLOBAL_FLAGS, TUI_FLAGS], HELP_MAIN)?;
            cmd_tui(&p)
        }
    }
}

// ---------------------------------------------------------------- store

#[derive(Serialize, Deserialize, Default)]
struct Store {
    #[serde(default)]
    counter: u64,
    #[serde(default)]
    sessions: Vec<Session>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Session {
    id: String,
    slug: String,
    project_id: String,
    parent_id: Option<String>,
    directory: String,
    title: String,
    permission: Option<Value>,
    created: u64,
    updated: u64,
    messages: Vec<Value>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn store_path() -> Res<PathBuf> {
    if let Some(db) = env("OPENCODE_DB") {
        return Ok(PathBuf::from(db));
    }
    let data = match (env("XDG_DATA_HOME"), env("HOME")) {
        (Some(x), _) => PathBuf::from(x),
        (None, Some(h)) => Path::new(&h).join(".local/share"),
        (None, None) => return fail("neither XDG_DATA_HOME nor HOME is set"),
    };
    Ok(data.join("opencode").join("opencode-fake.json"))
}

/// Runs `f` on the store under an exclusive lock, saving it afterwards.
fn with_store<T>(f: impl FnOnce(&mut Store) -> Res<T>) -> Res<T> {
    let path = store_path()?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .or_else(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    }
    let lock_path = path.with_extension("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .or_else(|e| fail(format!("cannot open {}: {e}", lock_path.display())))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .or_else(|e| fail(format!("cannot lock {}: {e}", lock_path.display())))?;
    let mut store: Store = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .or_else(|e| fail(format!("corrupt store {}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Store::default(),
        Err(e) => return fail(format!("cannot read {}: {e}", path.display())),
    };
    let out = f(&mut store)?;
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(&store).or_else(|e| fail(e.to_string()))?;
    fs::write(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, &path))
        .or_else(|e| fail(format!("cannot save store: {e}")))?;
    Ok(out)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// An id of opencode's shape: prefix, 12 hex of (ms * 4096 + counter) (inverted for sessions),
/// 14 base62 characters.
fn new_id(store: &mut Store, prefix: &str) -> String {
    store.counter += 1;
    let mut v = now_ms().wrapping_mul(0x1000).wrapping_add(store.counter % 0x1000);
    if prefix == "ses" {
        v = !v;
    }
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    // Not random, but unique enough for a fake: a mix of time, pid and counter.
    let mut x = now_ms()
        ^ (u64::from(std::process::id()) << 32)
        ^ store.counter.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut id = format!("{prefix}_{:012x}", v & 0xffff_ffff_ffff);
    for _ in 0..14 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        id.push(ALPHABET[(x % 62) as usize] as char);
    }
    id
}

fn deny_rules() -> Value {
    json!([
        {"permission": "question", "pattern": "*", "action": "deny"},
        {"permission": "plan_enter", "pattern": "*", "action": "deny"},
        {"permission": "plan_exit", "pattern": "*", "action": "deny"}
    ])
}

/// The project of a directory: its git repository (all worktrees of one repository share it),
/// else `global`, like the real CLI.
fn project_of(dir: &Path) -> String {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        let git = d.join(".git");
        if git.is_dir() {
            return project_key(&git);
        }
        if git.is_file() {
            let text = fs::read_to_string(&git).unwrap_or_default();
            if let Some(gitdir) = text.trim().strip_prefix("gitdir:") {
                let gitdir = d.join(gitdir.trim());
                let common = fs::read_to_string(gitdir.join("commondir"))
                    .map(|c| gitdir.join(c.trim()))
                    .unwrap_or(gitdir);
                return project_key(&common);
            }
        }
        cur = d.parent();
    }
    "global".to_owned()
}

fn project_key(git_common_dir: &Path) -> String {
    let p = git_common_dir.canonicalize().unwrap_or_else(|_| git_common_dir.to_owned());
    // FNV-1a of the path: stable, and the same for every worktree of the repository.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in p.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The directory this process works in, decided as opencode 1.18.33 decides it: `PWD` when it
/// is set (whatever the real cwd is), else the cwd.
fn cwd() -> Res<PathBuf> {
    if let Some(pwd) = env("PWD") {
        let p = PathBuf::from(pwd);
        return Ok(p.canonicalize().unwrap_or(p));
    }
    let d = std::env::current_dir().or_else(|e| fail(format!("no current directory: {e}")))?;
    Ok(d.canonicalize().unwrap_or(d))
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------- recording and script

fn record(argv: &[String], stdin: Option<&str>, message: Option<&str>) {
    let Some(path) = env("FAKE_OPENCODE_RECORD") else { return };
    let mut names: Vec<String> =
        std::env::vars_os().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
    names.sort();
    let line = json!({
        "argv": argv,
        "cwd": std::env::current_dir().map(|d| path_str(&d)).unwrap_or_default(),
        "pwd": env("PWD"),
        "env_names": names,
        "stdin": stdin,
        "message": message,
    });
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Script {
    #[serde(default)]
    turns: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<Value>,
}

/// The next scripted turn. Turns are consumed: the first one is removed from the script file
/// (under the store lock, so parallel runs each get their own).
fn next_turn() -> Res<Value> {
    let Some(path) = env("FAKE_OPENCODE_SCRIPT") else { return Ok(json!({"mode": "ok"})) };
    let text =
        fs::read_to_string(&path).or_else(|e| fail(format!("cannot read script {path}: {e}")))?;
    let mut script: Script =
        serde_json::from_str(&text).or_else(|e| fail(format!("bad script {path}: {e}")))?;
    if script.turns.is_empty() {
        return Ok(script.default.unwrap_or_else(|| json!({"mode": "ok"})));
    }
    let turn = script.turns.remove(0);
    let bytes = serde_json::to_vec(&script).or_else(|e| fail(e.to_string()))?;
    fs::write(&path, bytes).or_else(|e| fail(format!("cannot update script {path}: {e}")))?;
    Ok(turn)
}

// ---------------------------------------------------------------- run

struct Out {
    json: bool,
    session: String,
    message_id: String,
}

impl Out {
    fn event(&self, kind: &str, extra: Value) {
        if !self.json {
            return;
        }
        let mut line = json!({"type": kind, "timestamp": now_ms(), "sessionID": self.session});
        if let (Value::Object(l), Value::Object(e)) = (&mut line, extra) {
            l.extend(e);
        }
        println!("{line}");
        let _ = std::io::stdout().flush();
    }
    fn part(&self, id: &str, part: Value) -> Value {
        let mut p = json!({"id": id, "messageID": self.message_id, "sessionID": self.session});
        if let (Value::Object(l), Value::Object(e)) = (&mut p, part) {
            l.extend(e);
        }
        json!({ "part": p })
    }
    fn text(&self, id: &str, text: &str) {
        if self.json {
            self.event("text", self.part(id, json!({"type": "text", "text": text})));
        } else {
            println!("{text}");
        }
    }
}

fn cmd_run(p: &Parsed) -> Result<u8, Stop> {
    let stdin = if std::io::stdin().is_terminal() {
        String::new()
    } else {
        let mut buf = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    };
    // The real CLI's quirk: arguments with a space get literal quotes.
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
    if message.is_empty() && !p.has("command") {
        return Err(Fail("You must provide a message or a command".into()).into());
    }
    if p.has("fork") && !(p.has("continue") || p.has("session")) {
        return Err(Fail("--fork requires --continue or --session".into()).into());
    }
    let dir = match p.value("dir") {
        Some(d) => {
            let path = PathBuf::from(d);
            match path.canonicalize() {
                Ok(c) if c.is_dir() => c,
                _ => return Err(Fail(format!("Failed to change directory to {d}")).into()),
            }
        }
        None => cwd()?,
    };
    let json_format = match p.value("format") {
        None | Some("default") => false,
        Some("json") => true,
        Some(_) => return Err(Stop::Usage(Usage(HELP_RUN))),
    };
    let auto = p.has("auto") || p.has("yolo") || p.has("dangerously-skip-permissions");

    // Resolve or create the session, consume the turn, and record the user message.
    let (session, turn, message_id) = with_store(|store| {
        let mut session = if let Some(id) = p.value("session") {
            match store.sessions.iter().find(|s| s.id == id) {
                Some(s) => s.clone(),
                None => return fail("Session not found"),
            }
        } else if p.has("continue") {
            let project = project_of(&dir);
            let mut roots: Vec<&Session> = store
                .sessions
                .iter()
                .filter(|s| s.parent_id.is_none() && s.project_id == project)
                .collect();
            roots.sort_by(|a, b| a.id.cmp(&b.id));
            match roots.first() {
                Some(s) => (*s).clone(),
                None => return fail("Session not found"),
            }
        } else {
            let title = p
                .value("title")
                .map(str::to_owned)
                .unwrap_or_else(|| message.chars().take(50).collect());
            let id = new_id(store, "ses");
            let s = Session {
                id,
                slug: "fake-session".into(),
                project_id: project_of(&dir),
                parent_id: None,
                directory: path_str(&dir),
                title,
                permission: Some(deny_rules()),
                created: now_ms(),
                updated: now_ms(),
                messages: Vec::new(),
            };
            store.sessions.push(s.clone());
            s
        };
        if p.has("fork") {
            let base_title = session.title.clone();
            let n = store
                .sessions
                .iter()
                .filter(|s| s.title.starts_with(&format!("{base_title} (fork #")))
                .count()
                + 1;
            let id = new_id(store, "ses");
            let mut messages = Vec::new();
            for m in &session.messages {
                let mut m = m.clone();
                let mid = new_id(store, "msg");
                m["info"]["id"] = json!(mid);
                m["info"]["sessionID"] = json!(id);
                if let Some(parts) = m["parts"].as_array_mut() {
                    for part in parts {
                        part["id"] = json!(new_id(store, "prt"));
                        part["messageID"] = json!(mid);
                        part["sessionID"] = json!(id);
                    }
                }
                messages.push(m);
            }
            // Like upstream: the fork keeps the parent's directory and loses its rules.
            session = Session {
                id,
                title: format!("{base_title} (fork #{n})"),
                parent_id: None,
                permission: None,
                created: now_ms(),
                updated: now_ms(),
                messages,
                ..session
            };
            store.sessions.push(session.clone());
        }
        let turn = if Path::new(&session.directory) == dir { Some(next_turn()?) } else { None };
        let mid = new_id(store, "msg");
        let pid = new_id(store, "prt");
        if let Some(s) = store.sessions.iter_mut().find(|s| s.id == session.id) {
            s.messages.push(json!({
                "info": {"id": mid, "sessionID": s.id, "role": "user"},
                "parts": [{"id": pid, "messageID": mid, "sessionID": s.id, "type": "text", "text": message}]
            }));
            s.updated = now_ms();
        }
        Ok((session, turn, new_id(store, "msg")))
    })?;
    let Some(turn) = turn else {
        // The directory trap: the session runs elsewhere, nothing is printed, nothing ends.
        sleep_forever();
    };
    // A tool that started a background server and returned: it outlives the turn.
    let leave = turn.get("leave_running").and_then(Value::as_u64).unwrap_or(0);
    spawn_helpers(leave, false, true, &session.directory);
    trace("start", &session.id);
    if let Some(ms) = turn.get("delay_ms").and_then(Value::as_u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let out =
        Out { json: json_format, session: session.id.clone(), message_id: message_id.clone() };
    let code = play(&turn, &out, &session, auto);
    trace("end", &session.id);
    let code = code?;
    // Keep the assistant's side of the history so export/fork carry it.
    with_store(|store| {
        let prt = new_id(store, "prt");
        if let Some(s) = store.sessions.iter_mut().find(|s| s.id == session.id) {
            s.messages.push(json!({
                "info": {"id": message_id, "sessionID": s.id, "role": "assistant"},
                "parts": [{"id": prt, "messageID": message_id, "sessionID": s.id, "type": "text",
                           "text": turn.get("text").and_then(Value::as_str).unwrap_or("hello")}]
            }));
        }
        Ok(())
    })?;
    Ok(code)
}

/// With `FAKE_OPENCODE_TRACE=<file>`, appends `<start|end> <session> <unix nanoseconds>` around
/// each turn, so tests can measure how many turns ran at once across processes.
fn trace(what: &str, session: &str) {
    let Some(path) = env("FAKE_OPENCODE_TRACE") else { return };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        // One write per line: appends of a few bytes from many processes do not interleave.
        let _ = f.write_all(format!("{what} {session} {nanos}\n").as_bytes());
    }
}

static PART_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A part id for output lines, without touching the store (runs print while it is unlocked).
fn fresh_part_id() -> String {
    let n = PART_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = Store { counter: (u64::from(std::process::id()) << 12) + n, ..Store::default() };
    new_id(&mut tmp, "prt")
}

fn step_finish(out: &Out, reason: &str) {
    out.event(
        "step_finish",
        out.part(
            &fresh_part_id(),
            json!({"type": "step-finish", "reason": reason,
                   "tokens": {"total": 12, "input": 10, "output": 2, "reasoning": 0, "cache": {"write": 0, "read": 0}},
                   "cost": 0}),
        ),
    );
}

fn step_start(out: &Out) {
    out.event("step_start", out.part(&fresh_part_id(), json!({"type": "step-start"})));
}

fn tool(out: &Out, name: &str, input: Value, status: &str, output_or_error: &str) {
    tool_titled(out, name, name, input, status, output_or_error);
}

fn tool_titled(
    out: &Out,
    name: &str,
    title: &str,
    input: Value,
    status: &str,
    output_or_error: &str,
) {
    let mut state = json!({"status": status, "input": input, "title": title, "time": {"start": now_ms(), "end": now_ms()}});
    state[if status == "error" { "error" } else { "output" }] = json!(output_or_error);
    out.event(
        "tool_use",
        out.part(
            &fresh_part_id(),
            json!({"type": "tool", "tool": name, "callID": "call_1", "state": state}),
        ),
    );
}

fn play(turn: &Value, out: &Out, session: &Session, auto: bool) -> Result<u8, Stop> {
    let s = |k: &str| turn.get(k).and_then(Value::as_str);
    let text = s("text").unwrap_or("hello");
    match s("mode").unwrap_or("ok") {
        "ok" => {
            step_start(out);
            out.text(&fresh_part_id(), text);
            step_finish(out, "stop");
            Ok(0)
        }
        "tool" => {
            let rel = s("path").unwrap_or("fake-output.txt");
            let content = s("content").unwrap_or("written by fake-opencode\n");
            let target = Path::new(&session.directory).join(rel);
            if let Some(parent) = target.parent() {
                let _ = fs::create_dir_all(parent);
            }
            step_start(out);
            let input = json!({"filePath": path_str(&target), "content": content});
            match fs::write(&target, content) {
                Ok(()) => tool(out, "write", input, "completed", "Wrote file successfully."),
                Err(e) => tool(out, "write", input, "error", &e.to_string()),
            }
            step_finish(out, "tool-calls");
            step_start(out);
            out.text(&fresh_part_id(), text);
            step_finish(out, "stop");
            Ok(0)
        }
        "error" => {
            step_start(out);
            let msg = s("message").unwrap_or("fake failure");
            out.event("error", json!({"error": {"name": s("name").unwrap_or("APIError"), "data": {"message": msg}}}));
            Err(Fail(msg.to_owned()).into())
        }
        "permission" => {
            let what = s("permission").unwrap_or("external_directory (/etc/*)");
            let tool_name = s("tool").unwrap_or("read");
            step_start(out);
            if auto {
                tool(out, tool_name, json!({}), "completed", "ok");
                step_finish(out, "tool-calls");
                step_start(out);
                out.text(&fresh_part_id(), text);
                step_finish(out, "stop");
            } else {
                eprintln!(
                    "\u{1b}[93m\u{1b}[1m! \u{1b}[0mpermission requested: {what}; auto-rejecting"
                );
                tool(out, tool_name, json!({}), "error", REJECTED);
                step_finish(out, "tool-calls");
            }
            Ok(0)
        }
        "question" => {
            let denied =
                session.permission.as_ref().and_then(Value::as_array).is_some_and(|rules| {
                    rules.iter().any(|r| r["permission"] == "question" && r["action"] == "deny")
                });
            step_start(out);
            if !denied {
                // Upstream #11899: the question waits for an answer nobody can give.
                sleep_forever();
            }
            tool(
                out,
                "question",
                json!({}),
                "error",
                "The user has specified a rule which prevents you from using this specific tool call.",
            );
            step_finish(out, "tool-calls");
            step_start(out);
            out.text(&fresh_part_id(), text);
            step_finish(out, "stop");
            Ok(0)
        }
        "hang" => {
            let ignore = turn.get("ignore_term").and_then(Value::as_bool).unwrap_or(false);
            let children = turn.get("children").and_then(Value::as_u64).unwrap_or(0);
            if turn.get("after_output").and_then(Value::as_bool).unwrap_or(false) {
                step_start(out);
            }
            let detached = turn.get("detached_children").and_then(Value::as_u64).unwrap_or(0);
            spawn_helpers(children, ignore, false, &session.directory);
            spawn_helpers(detached, ignore, true, &session.directory);
            if ignore {
                ignore_term();
            }
            sleep_forever();
        }
        "bash" => {
            let command = s("command").unwrap_or("sleep 600");
            let busy = match s("work").unwrap_or("sleep") {
                "busy" => true,
                "sleep" => false,
                other => return Err(Fail(format!("fake-opencode: unknown work {other:?}")).into()),
            };
            let ms = turn.get("ms").and_then(Value::as_u64);
            let pieces = turn.get("pieces").and_then(Value::as_u64).unwrap_or(1).max(1);
            let detached = turn.get("detached").and_then(Value::as_bool).unwrap_or(false);
            step_start(out);
            if let Some(first) = s("first") {
                let input = json!({"command": first, "description": "First"});
                tool_titled(out, "bash", first, input, "completed", "");
                step_finish(out, "tool-calls");
                step_start(out);
            }
            // Like the real tool: nothing is printed until the command has ended.
            for _ in 0..pieces {
                let work = Work { busy, ms: ms.map(|m| m / pieces), detach: detached };
                let Some(mut child) = spawn_helper(false, work, &session.directory) else {
                    return Err(Fail("fake-opencode: cannot start the bash helper".into()).into());
                };
                let _ = child.wait();
            }
            let input = json!({"command": command, "description": "Run"});
            tool_titled(out, "bash", command, input, "completed", "");
            step_finish(out, "tool-calls");
            step_start(out);
            out.text(&fresh_part_id(), text);
            step_finish(out, "stop");
            Ok(0)
        }
        "slow" => {
            let every = Duration::from_millis(
                turn.get("interval_ms").and_then(Value::as_u64).unwrap_or(200),
            );
            step_start(out);
            loop {
                out.text(&fresh_part_id(), text);
                std::thread::sleep(every);
            }
        }
        "exit" => {
            if let Some(e) = s("stderr") {
                eprintln!("{e}");
            }
            let code = turn.get("code").and_then(Value::as_u64).unwrap_or(1);
            Err(Stop::Code(u8::try_from(code).unwrap_or(1)))
        }
        other => Err(Fail(format!("fake-opencode: unknown script mode {other:?}")).into()),
    }
}

fn ignore_term() {
    let _ =
        signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::new(AtomicBool::new(false)));
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A helper process a scripted turn starts:
/// `__sleep [ignore-term] [detach] [busy] [ms=N] [tag]` (`detach`: own session and process
/// group, like opencode's bash tool; `busy`: spins on the CPU instead of sleeping; `ms=N`:
/// exits after N milliseconds instead of running forever; the tag, the session directory,
/// lets tests find it).
fn helper_sleep(args: &[String]) -> ! {
    if args.iter().any(|a| a == "detach") {
        let _ = rustix::process::setsid();
    }
    if args.iter().any(|a| a == "ignore-term") {
        ignore_term();
    }
    let until = args
        .iter()
        .find_map(|a| a.strip_prefix("ms=")?.parse::<u64>().ok())
        .map(|ms| std::time::Instant::now() + Duration::from_millis(ms));
    if args.iter().any(|a| a == "busy") {
        let mut x: u64 = 1;
        while until.is_none_or(|t| std::time::Instant::now() < t) {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
        }
        std::process::exit(0);
    }
    match until {
        Some(t) => {
            std::thread::sleep(t.saturating_duration_since(std::time::Instant::now()));
            std::process::exit(0)
        }
        None => sleep_forever(),
    }
}

/// What a helper does (see [`helper_sleep`]).
#[derive(Clone, Copy, Default)]
struct Work {
    /// Spin on the CPU rather than sleep.
    busy: bool,
    /// Exit after this many milliseconds; `None`: run until killed.
    ms: Option<u64>,
    /// In its own session and process group.
    detach: bool,
}

/// Starts one helper (see [`helper_sleep`]).
fn spawn_helper(ignore_term: bool, work: Work, tag: &str) -> Option<std::process::Child> {
    // Re-run this program under the name it was started with: when it is `kugetsu` linked as
    // `opencode`, that name is what selects the fake.
    let started_as = std::env::args_os().next().map(std::path::PathBuf::from);
    let me = match started_as.filter(|p| p.components().count() > 1) {
        Some(p) => p,
        None => std::env::current_exe().ok()?,
    };
    let mut c = std::process::Command::new(&me);
    c.arg("__sleep");
    if ignore_term {
        c.arg("ignore-term");
    }
    if work.detach {
        c.arg("detach");
    }
    if work.busy {
        c.arg("busy");
    }
    if let Some(ms) = work.ms {
        c.arg(format!("ms={ms}"));
    }
    c.arg(tag);
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()
}

/// Starts `n` helpers that sleep until killed (see [`helper_sleep`]).
fn spawn_helpers(n: u64, ignore_term: bool, detach: bool, tag: &str) {
    for _ in 0..n {
        let _ = spawn_helper(ignore_term, Work { detach, ..Work::default() }, tag);
    }
}

// ---------------------------------------------------------------- other commands

fn cmd_tui(p: &Parsed) -> Result<u8, Stop> {
    let dir = match p.positionals.first() {
        Some(d) => PathBuf::from(d)
            .canonicalize()
            .or_else(|e| fail(format!("Failed to change directory to {d}: {e}")))?,
        None => cwd()?,
    };
    let prompt = p.value("prompt").unwrap_or_default().to_owned();
    with_store(|store| {
        let id = new_id(store, "ses");
        let mid = new_id(store, "msg");
        let pid = new_id(store, "prt");
        store.sessions.push(Session {
            id: id.clone(),
            slug: "fake-tui".into(),
            project_id: project_of(&dir),
            parent_id: None,
            directory: path_str(&dir),
            title: "New session".into(),
            // TUI sessions get no deny rules (only `run` adds them).
            permission: None,
            created: now_ms(),
            updated: now_ms(),
            messages: vec![json!({
                "info": {"id": mid, "sessionID": id, "role": "user"},
                "parts": [{"id": pid, "messageID": mid, "sessionID": id, "type": "text", "text": prompt}]
            })],
        });
        Ok(())
    })?;
    Ok(0)
}

fn cmd_session_list(p: &Parsed) -> Result<u8, Stop> {
    let project = project_of(&cwd()?);
    let max = p.value("max-count").and_then(|n| n.parse::<usize>().ok()).unwrap_or(usize::MAX);
    let rows: Vec<Value> = with_store(|store| {
        let mut roots: Vec<&Session> = store
            .sessions
            .iter()
            .filter(|s| s.parent_id.is_none() && s.project_id == project)
            .collect();
        roots.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(roots
            .into_iter()
            .take(max)
            .map(|s| {
                json!({"id": s.id, "title": s.title, "updated": s.updated, "created": s.created,
                       "projectId": s.project_id, "directory": s.directory})
            })
            .collect())
    })?;
    if rows.is_empty() {
        return Ok(0);
    }
    if p.value("format") == Some("json") {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
    } else {
        for r in rows {
            println!(
                "{}  {}",
                r["id"].as_str().unwrap_or_default(),
                r["title"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(0)
}

fn cmd_session_delete(id: Option<&String>) -> Result<u8, Stop> {
    let Some(id) = id else { return Err(Stop::Usage(Usage(HELP_MAIN))) };
    with_store(|store| {
        let before = store.sessions.len();
        store.sessions.retain(|s| &s.id != id);
        if store.sessions.len() == before {
            return fail(format!("Session not found: {id}"));
        }
        Ok(())
    })?;
    eprintln!("Session {id} deleted");
    Ok(0)
}

fn export_doc(s: &Session) -> Value {
    let mut info = json!({
        "id": s.id, "slug": s.slug, "projectID": s.project_id, "directory": s.directory,
        "title": s.title, "version": VERSION, "time": {"created": s.created, "updated": s.updated}
    });
    if let Some(parent) = &s.parent_id {
        info["parentID"] = json!(parent);
    }
    if let Some(perm) = &s.permission {
        info["permission"] = perm.clone();
    }
    json!({"info": info, "messages": s.messages})
}

fn cmd_export(p: &Parsed) -> Result<u8, Stop> {
    let Some(id) = p.positionals.first() else {
        return Err(Fail("fake-opencode needs a session id for export".into()).into());
    };
    eprintln!("Exporting session: {id}");
    let doc = with_store(|store| match store.sessions.iter().find(|s| &s.id == id) {
        Some(s) => Ok(export_doc(s)),
        None => fail(format!("Session not found: {id}")),
    })?;
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    Ok(0)
}

fn cmd_import(p: &Parsed) -> Result<u8, Stop> {
    let Some(file) = p.positionals.first() else { return Err(Stop::Usage(Usage(HELP_MAIN))) };
    let text = fs::read_to_string(file).or_else(|e| fail(format!("cannot read {file}: {e}")))?;
    let doc: Value =
        serde_json::from_str(&text).or_else(|e| fail(format!("invalid session file: {e}")))?;
    let info = &doc["info"];
    let Some(id) = info["id"].as_str().filter(|i| i.starts_with("ses_")) else {
        return Err(Fail("invalid session file: no info.id".into()).into());
    };
    let messages = doc["messages"].as_array().cloned().unwrap_or_default();
    // A conformance check on the importer's side: every message and part must belong to the
    // imported session (a rewrite that missed an id would attach history to another session).
    for m in &messages {
        let ok = m["info"]["sessionID"] == id
            && m["parts"].as_array().is_some_and(|ps| {
                ps.iter().all(|p| p["sessionID"] == id && p["messageID"] == m["info"]["id"])
            });
        if !ok {
            return Err(
                Fail(format!("invalid session file: a message does not belong to {id}")).into()
            );
        }
    }
    let dir = cwd()?;
    with_store(|store| {
        // Ids are global: an import must not hijack another session's messages.
        let taken: Vec<&str> = store
            .sessions
            .iter()
            .filter(|s| s.id != id)
            .flat_map(|s| s.messages.iter().filter_map(|m| m["info"]["id"].as_str()))
            .collect();
        if messages.iter().any(|m| m["info"]["id"].as_str().is_some_and(|mid| taken.contains(&mid)))
        {
            return fail("UNIQUE constraint failed: message.id");
        }
        store.sessions.retain(|s| s.id != id);
        store.sessions.push(Session {
            id: id.to_owned(),
            slug: info["slug"].as_str().unwrap_or("imported").to_owned(),
            project_id: project_of(&dir),
            parent_id: info["parentID"].as_str().map(str::to_owned),
            directory: path_str(&dir),
            title: info["title"].as_str().unwrap_or("imported").to_owned(),
            permission: info.get("permission").filter(|v| !v.is_null()).cloned(),
            created: now_ms(),
            updated: now_ms(),
            messages: messages.clone(),
        });
        Ok(())
    })?;
    println!("Imported session: {id}");
    Ok(0)
}

/// Reads a single-quoted SQL string literal at the start of `s`; returns it and the rest.
fn sql_string(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start().strip_prefix('\'')?;
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if s[i + 1..].starts_with('\'') {
                out.push('\'');
                chars.next();
            } else {
                return Some((out, &s[i + 1..]));
            }
        } else {
            out.push(c);
        }
    }
    None
}

const DB_COLUMNS: &[&str] = &["id", "directory", "permission", "title", "project_id", "parent_id"];

fn column(s: &Session, col: &str) -> Value {
    match col {
        "id" => json!(s.id),
        "directory" => json!(s.directory),
        "permission" => s.permission.as_ref().map(|p| json!(p.to_string())).unwrap_or(Value::Null),
        "title" => json!(s.title),
        "project_id" => json!(s.project_id),
        _ => s.parent_id.as_ref().map(|p| json!(p)).unwrap_or(Value::Null),
    }
}

/// `opencode db`: only the statements the kugetsu driver issues (see CONFORMANCE.md):
/// `SELECT <columns> FROM session WHERE id = '<id>'` and
/// `UPDATE session SET <column> = '<text>' WHERE id = '<id>'`.
fn cmd_db(p: &Parsed) -> Result<u8, Stop> {
    let Some(sql) = p.positionals.first() else {
        return Err(Fail("fake-opencode has no interactive sqlite shell".into()).into());
    };
    if sql == "path" {
        println!("{}", path_str(&store_path()?));
        return Ok(0);
    }
    let unsupported = || {
        Stop::Fail(Fail(format!(
            "Unexpected error\n\nfake-opencode does not support this SQL: {sql}"
        )))
    };
    let words: Vec<&str> = sql.split_whitespace().collect();
    let rows: Vec<Value> = if words.first().is_some_and(|w| w.eq_ignore_ascii_case("select")) {
        let upper = sql.to_ascii_uppercase();
        let from = upper.find(" FROM SESSION WHERE ID = ").ok_or_else(unsupported)?;
        let cols: Vec<String> = sql[6..from].split(',').map(|c| c.trim().to_owned()).collect();
        if cols.iter().any(|c| !DB_COLUMNS.contains(&c.as_str())) {
            return Err(unsupported());
        }
        let (id, rest) =
            sql_string(&sql[from + " FROM SESSION WHERE ID = ".len()..]).ok_or_else(unsupported)?;
        if !rest.trim().trim_end_matches(';').is_empty() {
            return Err(unsupported());
        }
        with_store(|store| {
            Ok(store
                .sessions
                .iter()
                .filter(|s| s.id == id)
                .map(|s| {
                    let mut row = serde_json::Map::new();
                    for c in &cols {
                        row.insert(c.clone(), column(s, c));
                    }
                    Value::Object(row)
                })
                .collect())
        })?
    } else if words.len() > 3
        && words[0].eq_ignore_ascii_case("update")
        && words[1] == "session"
        && words[2].eq_ignore_ascii_case("set")
    {
        let after_set =
            sql.splitn(4, char::is_whitespace).nth(3).ok_or_else(unsupported)?.trim_start();
        let (col, rest) = after_set.split_once('=').ok_or_else(unsupported)?;
        let col = col.trim();
        if !["directory", "permission", "title"].contains(&col) {
            return Err(unsupported());
        }
        let (value, rest) = sql_string(rest).ok_or_else(unsupported)?;
        let rest = rest.trim_start();
        let upper = rest.to_ascii_uppercase();
        let rest = if upper.starts_with("WHERE ID = ") {
            &rest["WHERE ID = ".len()..]
        } else {
            return Err(unsupported());
        };
        let (id, tail) = sql_string(rest).ok_or_else(unsupported)?;
        if !tail.trim().trim_end_matches(';').is_empty() {
            return Err(unsupported());
        }
        let col = col.to_owned();
        with_store(|store| {
            if let Some(s) = store.sessions.iter_mut().find(|s| s.id == id) {
                match col.as_str() {
                    "directory" => s.directory = value.clone(),
                    "title" => s.title = value.clone(),
                    _ => {
                        let v: Value = serde_json::from_str(&value)
                            .or_else(|e| fail(format!("permission is not JSON: {e}")))?;
                        s.permission = Some(v);
                    }
                }
            }
            Ok(())
        })?;
        Vec::new()
    } else {
        return Err(unsupported());
    };
    if p.value("format") == Some("json") {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
    } else {
        for r in rows {
            if let Value::Object(o) = r {
                let cells: Vec<String> = o
                    .values()
                    .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                    .collect();
                println!("{}", cells.join("\t"));
            }
        }
    }
    Ok(0)
}
