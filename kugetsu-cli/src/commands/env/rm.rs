//! `kugetsu env rm <key> [agent]`: a variable removed.

use kugetsu_core::env_file::EnvFiles;

use crate::context::Ctx;
use crate::error::{CliError, exit};
use crate::ui::Ui;

/// Arguments of `env rm`.
#[derive(Debug, clap::Args)]
pub struct EnvRmArgs {
    /// The variable name.
    pub key: String,
    /// The agent; default: `default`.
    #[arg(default_value = "default")]
    pub agent: String,
}

/// Removes the variable; one that was not set is a failure.
pub fn cmd_env_rm(
    ui: &mut Ui,
    ctx: &Ctx,
    files: &EnvFiles,
    args: &EnvRmArgs,
) -> Result<(), CliError> {
    let out = ui.stdout();
    let (key, agent) = (&args.key, &args.agent);
    let removed = files.remove(key, agent)?;
    if ctx.json {
        return ctx
            .print_json(out, &serde_json::json!({"key": key, "agent": agent, "removed": removed}));
    }
    if removed {
        writeln!(out, "removed {key} from {agent}")?;
    } else {
        return Err(CliError::new(exit::FAILURE, format!("{key} is not set for {agent}")));
    }
    Ok(())
}
