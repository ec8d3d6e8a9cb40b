//! `kugetsu env set <key> <value|-> [agent]`: a variable set, from stdin with `-` so that it
//! stays out of `ps`.

use kugetsu_core::env_file::EnvFiles;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `env set`.
#[derive(Debug, clap::Args)]
pub struct EnvSetArgs {
    /// The variable name.
    pub key: String,
    /// The value, or `-` to read it from stdin.
    pub value: String,
    /// The agent; default: `default` (all agents).
    #[arg(default_value = "default")]
    pub agent: String,
}

/// Sets the variable and says whether it was new.
pub fn cmd_env_set(
    ui: &mut Ui,
    ctx: &Ctx,
    files: &EnvFiles,
    args: &EnvSetArgs,
) -> Result<(), CliError> {
    let (key, agent) = (&args.key, &args.agent);
    let value = if args.value == "-" {
        let s = ui.read_stdin()?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else {
        args.value.clone()
    };
    let out = ui.stdout();
    let previous = files.set(key, &value, agent)?;
    let verb = if previous.is_some() { "updated" } else { "set" };
    if ctx.json {
        return ctx
            .print_json(out, &serde_json::json!({"key": key, "agent": agent, "action": verb}));
    }
    writeln!(out, "{verb} {key} for {agent}")?;
    Ok(())
}
