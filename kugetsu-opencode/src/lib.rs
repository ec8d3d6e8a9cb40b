//! kugetsu-opencode: drives the `opencode` CLI headlessly for kugetsu and parses its JSON
//! event stream.
//!
//! What the real CLI (1.18.33) does, and how the driver copes:
//! - there is no `--workdir`: a session runs in its stored directory, so every command runs
//!   with the session's directory as its cwd;
//! - positional message arguments with spaces get wrapped in quotes: the prompt goes on stdin,
//!   which is always closed (or `/dev/null`) because opencode reads it to EOF;
//! - a run can hang silently: wall-clock and idle limits kill its whole process group, and
//!   the commands its bash tool started detached (own session) along with it;
//! - a rejected permission exits 0: runs are classified from their events
//!   ([`kugetsu_core::agent::RunOutcome`]);
//! - `run --fork` keeps the base's directory (and hangs when run elsewhere) and drops the
//!   permission rules: forks are made by `export`, id rewriting and `import` from the target
//!   directory ([`fork`]);
//! - every opencode process costs a second or more of start-up and 190 to 330 MB: a fork is one
//!   `import` (the base's export is kept between forks), or no process at all when a warm
//!   `opencode serve` is registered ([`serve`]: the queue daemon keeps one), a run is the `run`
//!   alone, and nothing re-reads what an import or a run just did (see [`driver`] for why that
//!   is safe).
//!
//! Interactive creation (`CreateSessionRequest::interactive`) starts the TUI on the user's
//! terminal with `--prompt`, then finds the new session with `session list` and gives it the
//! title and the deny rules a later headless run needs.
//!
//! With the `fake` feature the package also has [`fake`] and builds `fake-opencode`, a scripted
//! stand-in that follows the same contract (see `CONFORMANCE.md`).

mod command;
pub mod driver;
pub mod events;
mod export_cache;
#[cfg(feature = "fake")]
pub mod fake;
pub mod fork;
pub mod outcome;
pub mod serve;

pub use driver::{OpencodeDriver, OpencodeOptions};
