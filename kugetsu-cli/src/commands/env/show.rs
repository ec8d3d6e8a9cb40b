//! `kugetsu env show [agent]`: one agent's variables, sensitive values masked.

use kugetsu_core::env_file::EnvFiles;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `env show`.
#[derive(Debug, clap::Args)]
pub struct EnvShowArgs {
    /// The agent (`default`, `pm-agent`); default: `default`.
    #[arg(default_value = "default")]
    pub agent: String,
}

/// Prints `KEY=value` lines.
pub fn cmd_env_show(
    ui: &mut Ui,
    ctx: &Ctx,
    files: &EnvFiles,
    args: &EnvShowArgs,
) -> Result<(), CliError> {
    let out = ui.stdout();
    let vars = files.show(&args.agent)?;
    if ctx.json {
        let map: serde_json::Map<String, serde_json::Value> =
            vars.into_iter().map(|(k, v)| (k, v.into())).collect();
        return ctx.print_json(out, &map);
    }
    for (k, v) in vars {
        writeln!(out, "{k}={v}")?;
    }
    Ok(())
}
