//! `kugetsu env get <key> [agent] [--reveal]`: a variable's value, masked when sensitive.

use kugetsu_core::env_file::EnvFiles;

use crate::context::Ctx;
use crate::error::{CliError, exit};
use crate::ui::Ui;

/// Arguments of `env get`.
#[derive(Debug, clap::Args)]
pub struct EnvGetArgs {
    /// The variable name.
    pub key: String,
    /// Print a sensitive value in clear.
    #[arg(long)]
    pub reveal: bool,
    /// The agent; default: `default`.
    #[arg(default_value = "default")]
    pub agent: String,
}

/// Prints the value; a variable that is not set is a failure.
pub fn cmd_env_get(
    ui: &mut Ui,
    ctx: &Ctx,
    files: &EnvFiles,
    args: &EnvGetArgs,
) -> Result<(), CliError> {
    let out = ui.stdout();
    let (key, agent) = (&args.key, &args.agent);
    match files.get(key, agent)? {
        Some(v) if !args.reveal && kugetsu_core::env_file::is_sensitive(key) => {
            let masked = kugetsu_core::env_file::mask_value(key, &v);
            if ctx.json {
                ctx.print_json(
                    out,
                    &serde_json::json!({"key": key, "value": masked, "masked": true}),
                )?;
            } else {
                writeln!(out, "{masked}")?;
            }
        }
        Some(v) if ctx.json => ctx.print_json(out, &serde_json::json!({"key": key, "value": v}))?,
        Some(v) => writeln!(out, "{v}")?,
        None => {
            return Err(CliError::new(exit::FAILURE, format!("{key} is not set for {agent}")));
        }
    }
    Ok(())
}
