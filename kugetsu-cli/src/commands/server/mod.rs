//! `kugetsu server list|add|remove|default|get`: named git servers, used to build clone URLs,
//! one file per subcommand.

pub mod add;
pub mod default;
pub mod get;
pub mod list;
pub mod remove;

use kugetsu_core::servers::Servers;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ServerAction,
}

/// `server` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ServerAction {
    /// List the configured servers.
    List(list::ServerListArgs),
    /// Add (or change) a server.
    Add(add::ServerAddArgs),
    /// Remove a server.
    Remove(remove::ServerRemoveArgs),
    /// Make a server the default.
    Default(default::ServerDefaultArgs),
    /// Print a server's URL.
    Get(get::ServerGetArgs),
}

/// Runs a `server` subcommand.
pub fn cmd_server(ui: &mut Ui, ctx: &Ctx, args: &ServerArgs) -> Result<(), CliError> {
    ctx.state.ensure()?;
    let servers = Servers::new(&ctx.state);
    match &args.action {
        ServerAction::List(a) => list::cmd_server_list(ui, ctx, &servers, a),
        ServerAction::Add(a) => add::cmd_server_add(ui, ctx, &servers, a),
        ServerAction::Remove(a) => remove::cmd_server_remove(ui, ctx, &servers, a),
        ServerAction::Default(a) => default::cmd_server_default(ui, ctx, &servers, a),
        ServerAction::Get(a) => get::cmd_server_get(ui, ctx, &servers, a),
    }
}
