//! The 2.x dialect of the fake (`FAKE_OPENCODE_VERSION=2.*`): the `@opencode/cli` 2.1.2 CLI
//! where the 2.x driver depends on it.
//!
//! - `--version`/`-v` prints `opencode v<version>`; help goes to stdout; an unknown flag or
//!   positional prints the help, then `ERROR` and the reason on stderr, exit 1. `db`, the
//!   top-level `export`/`import` and `run --dir` are gone, as in the real one.
//! - `serve` is the HTTP server of the `/api` routes (`serve` module); a turn runs IN the serve
//!   (`turn` module), which writes files in the session's directory and records the session's
//!   outcome, cost and tokens.
//! - `run --server URL` is a client of that serve (`client` module); without `--server` or
//!   `--standalone`, `run` and the other commands that need a server start the background
//!   service and leave it running (`service` module), as the real one does.
//! - turns driven over HTTP (`prompt`, `wait`) and their permission asks, which wait for a
//!   reply (`prompt` module).
//!
//! Where it differs from the real 2.1.2 (the contract suite, `tests/v2_contract.rs`, lists
//! what it does not check because of that):
//! - the client gets its events from the serve through a private route (`POST /fake/run`,
//!   NDJSON), not the real client's transport;
//! - the background service listens on a port the kernel picks (not 49374, so it never
//!   collides with a real one) and exits by itself after a minute (`service::LIFETIME`);
//! - the final `step_finish` of a turn is left out unless the turn says `"step_finish": true`
//!   (the real one leaves it out at random, usually);
//! - the TUI runs its `--prompt` as a turn and exits; `api`, `models`, `stats`, `service`,
//!   `debug` and `session export|import` are not faked (exit 1 after starting the service, as
//!   each needs a server), nor is the `/api/event` stream.

use super::*;

mod client;
mod prompt;
mod serve;
mod service;
mod session;
mod turn;

pub(super) use session::V2Session;

/// `Some(version)` when `FAKE_OPENCODE_VERSION` asks for a 2.x opencode.
pub(super) fn version() -> Option<String> {
    env("FAKE_OPENCODE_VERSION").filter(|v| v.starts_with("2."))
}

const HELP: &str = "DESCRIPTION
  OpenCode command line interface

USAGE
  opencode <subcommand> [flags] [<directory>]

ARGUMENTS
  directory string    Directory to start OpenCode in (optional)

FLAGS
  --standalone            Run with a private server instead of the background service
  --server string         Connect to a server URL instead of the background service
  --auto                  Auto-approve permissions that are not explicitly denied
  --continue, -c          Continue the last session
  --session, -s string    Session ID to continue, or to create if it does not exist
  --prompt string         Prompt to use

GLOBAL FLAGS
  --help, -h              Show help information
  --version, -v           Show version information

SUBCOMMANDS
  run        Run OpenCode with a message
  session    Manage sessions
  service    Manage the background service
  serve      Start a headless OpenCode server
";

const HELP_RUN: &str = "DESCRIPTION
  Run OpenCode with a message

USAGE
  opencode run [flags] [<message...>]

ARGUMENTS
  message... string    Message to send (optional)

FLAGS
  --standalone            Run with a private server instead of the background service
  --server string         Connect to a server URL instead of the background service
  --continue, -c          Continue the last session
  --session, -s string    Session ID to continue, or to create if it does not exist
  --fork                  Fork the session before continuing
  --model, -m string      Model to use in the format provider/model#variant
  --agent string          Agent to use
  --format choice         Output format (choices: default, json)
  --file, -f string       File to attach to the message
  --title string          Session title
  --thinking              Show thinking blocks
  --auto                  Auto-approve permissions that are not explicitly denied
";

const GLOBAL: &[FlagSpec] = &[("log-level", None, true), ("print-logs", None, false)];
const RUN: &[FlagSpec] = &[
    ("standalone", None, false),
    ("server", None, true),
    ("continue", Some('c'), false),
    ("session", Some('s'), true),
    ("fork", None, false),
    ("model", Some('m'), true),
    ("agent", None, true),
    ("format", None, true),
    ("file", Some('f'), true),
    ("title", None, true),
    ("thinking", None, false),
    ("auto", None, false),
];
const SERVE: &[FlagSpec] = &[
    ("port", None, true),
    ("hostname", None, true),
    ("cors", None, true),
    ("service", None, false),
    ("stdio", None, false),
];
const SESSION: &[FlagSpec] = &[("server", None, true), ("standalone", None, false)];
const TUI: &[FlagSpec] = &[
    ("standalone", None, false),
    ("server", None, true),
    ("auto", None, false),
    ("continue", Some('c'), false),
    ("session", Some('s'), true),
    ("prompt", None, true),
];

/// The 2.x CLI: `argv` without the program name; the exit code.
pub(super) fn main(argv: &[String], version: &str) -> u8 {
    // Flags before the subcommand word are global ones, as in the real parser.
    let sub = argv.iter().position(|a| !a.starts_with('-'));
    let (cmd, rest) = match sub {
        Some(i) => (argv[i].as_str(), [&argv[..i], &argv[i + 1..]].concat()),
        None => ("", argv.to_vec()),
    };
    if cmd == "__service" {
        return service::detach();
    }
    if env("FAKE_OPENCODE_FAIL").is_some_and(|f| f.split(',').any(|c| c == cmd)) {
        eprintln!("Error: injected failure of `{cmd}`");
        return 1;
    }
    let help = if cmd == "run" { HELP_RUN } else { HELP };
    if rest.iter().any(|a| a == "--version" || a == "-v") {
        println!("opencode v{version}");
        return 0;
    }
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        print!("{help}");
        return 0;
    }
    let result = match cmd {
        "run" => parsed(&rest, RUN, "opencode run", help).and_then(|p| client::cmd_run(&p)),
        "serve" => parsed(&rest, SERVE, "opencode serve", help).and_then(|p| serve::cmd_serve(&p)),
        "session" => parsed(&rest, SESSION, "opencode session", help).and_then(|p| cmd_session(&p)),
        // Gone in 2.x: read as the TUI's directory, so a second word is one too many.
        "db" | "export" | "import" if !rest.is_empty() => {
            let extra = rest.iter().find(|a| !a.starts_with('-')).unwrap_or(&rest[0]);
            Err(usage(&format!("Unexpected positional argument: \"{extra}\"")))
        }
        "api" | "models" | "stats" | "service" | "debug" => service::ensure()
            .and_then(|_| fail(format!("fake-opencode does not fake `{cmd}` in 2.x")))
            .map_err(Stop::from),
        _ => parsed(argv, TUI, "opencode", help).and_then(|p| client::cmd_tui(&p)),
    };
    match result {
        Ok(code) | Err(Stop::Code(code)) => code,
        Err(Stop::Usage(Usage(text))) => {
            print!("{help}");
            eprint!("{text}");
            1
        }
        Err(Stop::Fail(Fail(msg))) => {
            eprintln!("Error: {msg}");
            1
        }
    }
}

/// The real parser's complaint: the help on stdout, `ERROR` and the reason on stderr, exit 1.
fn usage(reason: &str) -> Stop {
    // `Usage` holds a static text: the reason is leaked once, as the process ends right after.
    Stop::Usage(Usage(Box::leak(format!("\nERROR\n  {reason}\n").into_boxed_str())))
}

/// `args` parsed against `specs`; an unknown flag is the real parser's `Unrecognized flag`.
fn parsed(
    args: &[String],
    specs: &'static [FlagSpec],
    command: &str,
    help: &'static str,
) -> Result<Parsed, Stop> {
    let known = |name: &str| {
        specs.iter().chain(GLOBAL).any(|f| {
            name.strip_prefix("--").is_some_and(|n| f.0 == n.split('=').next().unwrap_or(n))
                || (name.len() == 2 && f.1.is_some_and(|c| name.ends_with(c)))
        })
    };
    let mut takes_value = false;
    for a in args {
        if std::mem::take(&mut takes_value) {
            continue;
        }
        if a == "--" {
            break;
        }
        if a.starts_with('-') && a.len() > 1 {
            if !known(a) {
                return Err(usage(&format!("Unrecognized flag: {a} in command {command}")));
            }
            takes_value = !a.contains('=')
                && specs.iter().chain(GLOBAL).any(|f| {
                    f.2 && (a.strip_prefix("--") == Some(f.0)
                        || (a.len() == 2 && f.1.is_some_and(|c| a.ends_with(c))))
                });
        }
    }
    parse(args, &[specs, GLOBAL], help)
}

/// `session list|delete`: through the background service unless `--server` names one.
fn cmd_session(p: &Parsed) -> Result<u8, Stop> {
    if p.value("server").is_none() && !p.has("standalone") {
        service::ensure()?;
    }
    match (p.positionals.first().map(String::as_str), p.positionals.get(1)) {
        (Some("list"), None) => {
            let dir = cwd()?;
            let rows = with_store(|store| Ok(session::list(store, Some(&path_str(&dir)))))?;
            for s in rows {
                println!("{}  {}", s["id"].as_str().unwrap_or_default(), s["title"]);
            }
            Ok(0)
        }
        (Some("delete"), Some(id)) => {
            with_store(|store| session::delete(store, id))?;
            Ok(0)
        }
        _ => Err(Fail(
            "fake-opencode fakes only `session list` and `session delete ID` in 2.x".into(),
        )
        .into()),
    }
}
