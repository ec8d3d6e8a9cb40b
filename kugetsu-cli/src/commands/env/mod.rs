//! `kugetsu env list|show|set|get|rm`: the variables agents receive through their environment.
//! Sensitive values are masked in everything this prints; only `get --reveal` shows one.

use kugetsu_core::env_file::EnvFiles;

use crate::context::Ctx;
use crate::error::{CliError, exit};
use crate::ui::Ui;

/// Arguments of `env`.
#[derive(Debug, clap::Args)]
pub struct EnvArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: EnvAction,
}

/// `env` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum EnvAction {
    /// List the env files and their keys.
    List,
    /// Show one agent's variables (sensitive values masked).
    Show {
        /// The agent (`default`, `pm-agent`); default: `default`.
        #[arg(default_value = "default")]
        agent: String,
    },
    /// Set a variable (`-` as the value reads it from stdin, keeping it out of `ps`).
    Set {
        /// The variable name.
        key: String,
        /// The value, or `-` to read it from stdin.
        value: String,
        /// The agent; default: `default` (all agents).
        #[arg(default_value = "default")]
        agent: String,
    },
    /// Print a variable's value (sensitive values masked unless --reveal).
    Get {
        /// The variable name.
        key: String,
        /// Print a sensitive value in clear.
        #[arg(long)]
        reveal: bool,
        /// The agent; default: `default`.
        #[arg(default_value = "default")]
        agent: String,
    },
    /// Remove a variable.
    Rm {
        /// The variable name.
        key: String,
        /// The agent; default: `default`.
        #[arg(default_value = "default")]
        agent: String,
    },
}

/// Runs an `env` subcommand.
pub fn cmd_env(ui: &mut Ui, ctx: &Ctx, args: &EnvArgs) -> Result<(), CliError> {
    ctx.state.ensure()?;
    let files = EnvFiles::new(&ctx.state);
    match &args.action {
        EnvAction::List => {
            let list = files.list()?;
            if ctx.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|s| serde_json::json!({"agent": s.agent, "path": s.path, "keys": s.keys, "problem": s.problem}))
                    .collect();
                return ctx.print_json(ui.stdout(), &v);
            }
            if list.is_empty() {
                writeln!(
                    ui.stdout(),
                    "no env files (kugetsu init creates default.env and pm-agent.env)"
                )?;
            }
            for s in list {
                match s.problem {
                    Some(p) => writeln!(ui.stdout(), "{:<12} {} ({p})", s.agent, s.path.display())?,
                    None => writeln!(
                        ui.stdout(),
                        "{:<12} {} [{}]",
                        s.agent,
                        s.path.display(),
                        s.keys.join(", ")
                    )?,
                }
            }
        }
        EnvAction::Show { agent } => {
            let vars = files.show(agent)?;
            if ctx.json {
                let map: serde_json::Map<String, serde_json::Value> =
                    vars.into_iter().map(|(k, v)| (k, v.into())).collect();
                return ctx.print_json(ui.stdout(), &map);
            }
            for (k, v) in vars {
                writeln!(ui.stdout(), "{k}={v}")?;
            }
        }
        EnvAction::Set { key, value, agent } => {
            let value = if value == "-" {
                let s = ui.read_stdin()?;
                s.trim_end_matches(['\n', '\r']).to_string()
            } else {
                value.clone()
            };
            let previous = files.set(key, &value, agent)?;
            let verb = if previous.is_some() { "updated" } else { "set" };
            if ctx.json {
                return ctx.print_json(
                    ui.stdout(),
                    &serde_json::json!({"key": key, "agent": agent, "action": verb}),
                );
            }
            writeln!(ui.stdout(), "{verb} {key} for {agent}")?;
        }
        EnvAction::Get { key, agent, reveal } => match files.get(key, agent)? {
            Some(v) if !reveal && kugetsu_core::env_file::is_sensitive(key) => {
                let masked = kugetsu_core::env_file::mask_value(key, &v);
                if ctx.json {
                    ctx.print_json(
                        ui.stdout(),
                        &serde_json::json!({"key": key, "value": masked, "masked": true}),
                    )?;
                } else {
                    writeln!(ui.stdout(), "{masked}")?;
                }
            }
            Some(v) if ctx.json => {
                ctx.print_json(ui.stdout(), &serde_json::json!({"key": key, "value": v}))?
            }
            Some(v) => writeln!(ui.stdout(), "{v}")?,
            None => {
                return Err(CliError::new(exit::FAILURE, format!("{key} is not set for {agent}")));
            }
        },
        EnvAction::Rm { key, agent } => {
            let removed = files.remove(key, agent)?;
            if ctx.json {
                return ctx.print_json(
                    ui.stdout(),
                    &serde_json::json!({"key": key, "agent": agent, "removed": removed}),
                );
            }
            if removed {
                writeln!(ui.stdout(), "removed {key} from {agent}")?;
            } else {
                return Err(CliError::new(exit::FAILURE, format!("{key} is not set for {agent}")));
            }
        }
    }
    Ok(())
}
