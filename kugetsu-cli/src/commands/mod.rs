//! One module per command: `<Verb>Args` and `cmd_<verb>`.

pub mod completions;
pub mod continue_;
pub mod daemon_service;
pub mod dashboard;
pub mod delegate;
pub mod demo;
pub mod destroy;
pub mod doctor;
pub mod env;
pub mod init;
pub mod list;
pub mod logs;
pub mod notify;
pub mod prune;
pub mod queue;
pub mod queue_daemon;
pub mod server;
pub mod start;
pub mod status;
pub mod warm_agent;

use std::io::Read;

use crate::error::CliError;

/// A message argument: `-` reads it from stdin (byte-exact, for long or multi-line prompts).
pub fn read_message(arg: &str) -> Result<String, CliError> {
    let message = if arg == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        arg.to_string()
    };
    if message.trim().is_empty() {
        return Err(CliError::usage("the message is empty"));
    }
    Ok(message)
}
