//! The fake opencode (`fake-opencode`): a scripted stand-in for the opencode 1.18.33 CLI, and a conformance kit.
//! With `FAKE_OPENCODE_VERSION=2.*` it is the opencode 2 CLI instead (the `v2` module).
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
//!   `import`, `db` (the queries the kugetsu driver issues), `--version` (1.18.33);
//! - `serve` with its `POST /sync/replay` behind basic auth (see the `serve` module for what it
//!   has of the real serve and where it differs; `FAKE_OPENCODE_SERVE=hang|error` breaks it).
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
//!   - `spend` (`steps`, `interval_ms`): `steps` model calls (1000 by default), each a `bash`
//!     step, `interval_ms` (20) apart, then a text answer: a long turn that spends;
//!   - `limited` (`provider`, `message`, `retry_ms`): the provider refuses (a 429 or a used-up
//!     quota, told by `message`): as 1.18.33 does, nothing on stdout, and with `--print-logs`
//!     one `stream error` line on stderr per attempt, every `retry_ms` (30 s), forever. The
//!     real one waits the provider's `Retry-After` between attempts (and backs off on a quota
//!     error); the fake's pace is fixed;
//!   - `install`: prints nothing and writes 2.5 MB a second in its own process, forever: the
//!     plugin install opencode does in a fresh HOME while its provider never answers;
//!   - `exit` (`code`, `stderr`): prints `stderr` and exits with `code`.
//!
//!   Every TURN also takes `delay_ms` (sleep before answering), `leave_running` (that many
//!   detached helper processes left running when the turn ends) and `cost` (the dollars each
//!   `step_finish` reports, 0 by default, as the real one for a model without a price).
//! - `FAKE_OPENCODE_FAIL=<cmd>[,<cmd>...]`: those subcommands (`db`, `import`, ...) fail with
//!   `Error: injected failure`, exit 1. `serve-import`: the 2.x serve's session import answers
//!   500.
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

mod commands;
mod db;
mod flags;
mod helpers;
mod run;
mod script;
mod serve;
mod store;
mod v2;

use commands::*;
use db::*;
use flags::*;
use helpers::*;
use run::*;
use script::*;
use serve::*;
use store::*;

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
  opencode serve               starts a headless opencode server

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
    if let Some(version) = v2::version() {
        return v2::main(&argv, &version);
    }
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
        "serve" => cmd_serve(&parse(&rest, &[GLOBAL_FLAGS, SERVE_FLAGS], HELP_MAIN)?),
        _ => {
            // The TUI (`opencode [project]`): the project positional is the command word.
            let p = parse(argv, &[GLOBAL_FLAGS, TUI_FLAGS], HELP_MAIN)?;
            cmd_tui(&p)
        }
    }
}
