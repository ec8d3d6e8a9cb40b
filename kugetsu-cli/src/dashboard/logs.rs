//! The logs the dashboard serves: only those `Logs` lists, by a name that cannot step outside
//! `logs/`, and the newest run log of an issue for its row of the page.

use kugetsu_core::logs::{LogEntry, Logs};

use crate::context::Ctx;
use crate::error::{CliError, exit};

/// A log's name as the API takes it: a plain file name of `logs/` (what `Logs` lists), so no
/// name can step outside it.
pub fn valid_log_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// The listed log called `name`: 400 for a name that is no plain file name, 404 for one that
/// names no log.
pub fn find_log(ctx: &Ctx, name: &str) -> Result<LogEntry, CliError> {
    if !valid_log_name(name) {
        return Err(CliError::usage(format!("invalid log name {name:?}")));
    }
    let logs = Logs::new(&ctx.state).list()?;
    logs.into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| CliError::new(exit::FAILURE, format!("log {name} not found")))
}

/// The newest run log of an issue, by the name its runs give their logs.
pub fn newest_log_of(entries: &[LogEntry], file_name: &str) -> Option<String> {
    let suffix = format!("-{file_name}.log");
    entries.iter().rev().find(|e| e.name.ends_with(&suffix)).map(|e| e.name.clone())
}
