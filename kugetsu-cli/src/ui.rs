//! The streams a command talks through: stdin for a message or a value, stdout for its result
//! (text or `--json`), stderr for progress, warnings and questions. `main` opens them once and
//! hands them to the command, which never reaches for the process's own: what a command reads
//! and prints is then decided in one place, and a command runs the same against buffers.

use std::io::{BufRead, Write};

use crate::error::CliError;

/// A command's three streams.
pub struct Ui<'a> {
    stdin: &'a mut dyn BufRead,
    stdout: &'a mut dyn Write,
    stderr: &'a mut dyn Write,
}

impl<'a> Ui<'a> {
    /// A `Ui` over these streams.
    pub fn new(
        stdin: &'a mut dyn BufRead,
        stdout: &'a mut dyn Write,
        stderr: &'a mut dyn Write,
    ) -> Self {
        Ui { stdin, stdout, stderr }
    }

    /// Where the command's result goes.
    pub fn stdout(&mut self) -> &mut dyn Write {
        &mut *self.stdout
    }

    /// Where progress, warnings, hints and questions go.
    pub fn stderr(&mut self) -> &mut dyn Write {
        &mut *self.stderr
    }

    /// Both output streams at once, for a command that reports progress on stderr while it
    /// writes its result.
    pub fn streams(&mut self) -> (&mut dyn Write, &mut dyn Write) {
        (&mut *self.stdout, &mut *self.stderr)
    }

    /// Everything left on stdin.
    pub fn read_stdin(&mut self) -> Result<String, CliError> {
        let mut s = String::new();
        self.stdin.read_to_string(&mut s)?;
        Ok(s)
    }

    /// One line of stdin (an answer to a question).
    pub fn read_line(&mut self) -> Result<String, CliError> {
        let mut s = String::new();
        self.stdin.read_line(&mut s)?;
        Ok(s)
    }

    /// A message argument: `-` reads it from stdin (byte-exact, for long or multi-line
    /// prompts).
    pub fn read_message(&mut self, arg: &str) -> Result<String, CliError> {
        let message = if arg == "-" { self.read_stdin()? } else { arg.to_string() };
        if message.trim().is_empty() {
            return Err(CliError::usage("the message is empty"));
        }
        Ok(message)
    }
}
