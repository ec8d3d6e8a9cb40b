//! `kugetsu completions <shell>`: a completion script generated from the real command tree.

use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    pub shell: clap_complete::Shell,
}

/// Writes the script for `app`, the whole command tree, to stdout.
pub fn cmd_completions(
    ui: &mut Ui,
    args: &CompletionsArgs,
    mut app: clap::Command,
) -> Result<(), CliError> {
    // clap_complete panics when its writer fails (`kugetsu completions bash | head`): generate
    // into memory, then write, so a closed pipe is an ordinary write error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut app, "kugetsu", &mut script);
    ui.stdout().write_all(&script)?;
    Ok(())
}
