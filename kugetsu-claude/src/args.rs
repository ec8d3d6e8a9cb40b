//! The dialect: what the driver passes Claude Code, and nothing more.
//!
//! Every turn is `claude -p --output-format stream-json --verbose` with the prompt on stdin
//! (with no prompt in the argv, stdin is the prompt; a secret a prompt may hold never reaches
//! the argv) and one of three session starts:
//! - a new session: `--session-id NEW` (Claude Code takes the id from the caller);
//! - a fork's first turn: `--resume BASE --fork-session --session-id NEW`, run from the fork's
//!   directory (the history is copied with its `cwd` rewritten to the current directory, where
//!   the fork is stored and its tools run: Claude Code uses the real cwd, never `PWD`);
//! - any later turn: `--resume ID`, from the session's directory.
//!
//! The permission flags say kugetsu's headless rules in Claude Code's terms. In `-p` mode
//! nothing waits for an answer: a call that would ask is refused at once and reported, which
//! the driver turns into `blocked`. So the rules only choose what runs unasked: file edits in
//! the working directory (`acceptEdits`) and every Bash command (as opencode's default allows),
//! while writes outside the directory are refused; the tools that ask the user or enter plan
//! mode are removed, as opencode's `question` and plan tools are denied. Never
//! `bypassPermissions`: it is refused as root, and it would let a run write anywhere.

use std::ffi::OsString;

use kugetsu_core::agent::SessionId;
use kugetsu_core::usage::Usd;

/// How a turn starts its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    /// A new session with this id.
    New(&'a SessionId),
    /// The first turn of a fork of `base`, made with id `new`.
    Fork {
        /// The session forked.
        base: &'a SessionId,
        /// The fork's id.
        new: &'a SessionId,
    },
    /// A later turn of an existing session.
    Resume(&'a SessionId),
}

/// The tools a headless run may not have: they ask the user, or switch to plan mode, which
/// waits for an approval.
pub const REMOVED_TOOLS: &str = "AskUserQuestion,EnterPlanMode,ExitPlanMode";

/// The permission flags of every run (headless or the TUI's priming).
pub fn permission_args() -> Vec<OsString> {
    // `--allowedTools` and `--disallowedTools` take several values: each list is one argument
    // and the next argument is an option, so no word is taken for a tool.
    [
        "--permission-mode",
        "acceptEdits",
        "--allowedTools",
        "Bash",
        "--disallowedTools",
        REMOVED_TOOLS,
    ]
    .map(OsString::from)
    .to_vec()
}

/// The session flags of `start`.
pub fn session_args(start: Start<'_>) -> Vec<OsString> {
    let v: Vec<String> = match start {
        Start::New(id) => vec!["--session-id".into(), id.to_string()],
        Start::Fork { base, new } => vec![
            "--resume".into(),
            base.to_string(),
            "--fork-session".into(),
            "--session-id".into(),
            new.to_string(),
        ],
        Start::Resume(id) => vec!["--resume".into(), id.to_string()],
    };
    v.into_iter().map(OsString::from).collect()
}

/// The whole argv of one headless turn (the prompt goes on stdin): `spend_cap`, when set, is
/// what the turn may spend (Claude Code prices its requests itself and stops at the cap after
/// the request that reached it).
pub fn turn_args(start: Start<'_>, model: Option<&str>, spend_cap: Option<Usd>) -> Vec<OsString> {
    let mut args: Vec<OsString> =
        ["-p", "--output-format", "stream-json", "--verbose"].map(OsString::from).to_vec();
    args.extend(session_args(start));
    args.extend(permission_args());
    if let Some(model) = model {
        args.push("--model".into());
        args.push(model.into());
    }
    if let Some(cap) = spend_cap {
        args.push("--max-budget-usd".into());
        args.push(usd_arg(cap).into());
    }
    args
}

/// A spending cap as Claude Code reads it: whole micro-dollars (what is left of a budget is a
/// difference of floats, `0.010000000000000002`), never zero (a turn runs only with something
/// left).
fn usd_arg(cap: Usd) -> String {
    let text = format!("{:.6}", cap.get().max(0.000_001));
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Variables every Claude Code process gets: no traffic but the API's (no update check, no
/// telemetry, no error reports, no lookups of Anthropic's hosts).
pub const QUIET_ENV: &[(&str, &str)] = &[
    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
    ("DISABLE_AUTOUPDATER", "1"),
    ("DISABLE_TELEMETRY", "1"),
    ("DISABLE_ERROR_REPORTING", "1"),
];

/// Variables of the caller's environment a Claude Code process must not inherit: those a
/// Claude Code tool process has (kugetsu run by the PM agent's Bash tool), naming the caller's
/// session and process.
pub const DROP_VARS: &[&str] =
    &["CLAUDECODE", "CLAUDE_CODE_SESSION_ID", "CLAUDE_PID", "CLAUDE_CODE_ENTRYPOINT"];

/// A new session id: a random (version 4) UUID, the only form `--session-id` takes.
pub fn new_session_id() -> Result<SessionId, getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let id = format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]);
    Ok(SessionId::new(id).expect("a UUID is a valid session id"))
}

/// Whether `id` has the shape of a Claude Code session id (a UUID).
pub fn is_uuid(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spending_cap_is_given_in_whole_micro_dollars_and_never_as_zero() {
        let usd = |v| Usd::new(v).expect("usd");
        assert_eq!(usd_arg(usd(0.05 - 0.04)), "0.01");
        assert_eq!(usd_arg(usd(2.0)), "2");
        assert_eq!(usd_arg(usd(0.1234567)), "0.123457");
        assert_eq!(usd_arg(usd(0.0)), "0.000001");
    }
}
