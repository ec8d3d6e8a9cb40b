//! `kugetsu env list|show|set|get|rm`: the variables agents receive through their environment,
//! one file per subcommand. Sensitive values are masked in everything this prints; only
//! `get --reveal` shows one.

pub mod get;
pub mod list;
pub mod rm;
pub mod set;
pub mod show;

use kugetsu_core::env_file::EnvFiles;

use crate::context::Ctx;
use crate::error::CliError;
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
    List(list::EnvListArgs),
    /// Show one agent's variables (sensitive values masked).
    Show(show::EnvShowArgs),
    /// Set a variable (`-` as the value reads it from stdin, keeping it out of `ps`).
    Set(set::EnvSetArgs),
    /// Print a variable's value (sensitive values masked unless --reveal).
    Get(get::EnvGetArgs),
    /// Remove a variable.
    Rm(rm::EnvRmArgs),
}

/// Runs an `env` subcommand.
pub fn cmd_env(ui: &mut Ui, ctx: &Ctx, args: &EnvArgs) -> Result<(), CliError> {
    ctx.state.ensure()?;
    let files = EnvFiles::new(&ctx.state);
    match &args.action {
        EnvAction::List(a) => list::cmd_env_list(ui, ctx, &files, a),
        EnvAction::Show(a) => show::cmd_env_show(ui, ctx, &files, a),
        EnvAction::Set(a) => set::cmd_env_set(ui, ctx, &files, a),
        EnvAction::Get(a) => get::cmd_env_get(ui, ctx, &files, a),
        EnvAction::Rm(a) => rm::cmd_env_rm(ui, ctx, &files, a),
    }
}
