//! `kugetsu completions <shell>`: a completion script generated from the real command tree.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::context::Ctx;
use crate::error::CliError;

/// Arguments of `completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    pub shell: clap_complete::Shell,
}

/// Writes the script to `out`.
pub fn cmd_completions(
    _ctx: &Ctx,
    args: &CompletionsArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    // clap_complete panics when its writer fails (`kugetsu completions bash | head`): generate
    // into memory, then write, so a closed pipe is an ordinary write error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "kugetsu", &mut script);
    out.write_all(&script)?;
    Ok(())
}
