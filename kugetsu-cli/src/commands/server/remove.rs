//! `kugetsu server remove <name>`: a server removed.

use kugetsu_core::servers::Servers;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `server remove`.
#[derive(Debug, clap::Args)]
pub struct ServerRemoveArgs {
    /// Its name.
    pub name: String,
}

/// Removes the server.
pub fn cmd_server_remove(
    ui: &mut Ui,
    ctx: &Ctx,
    servers: &Servers,
    args: &ServerRemoveArgs,
) -> Result<(), CliError> {
    let out = ui.stdout();
    let name = &args.name;
    servers.remove(name)?;
    if ctx.json {
        return ctx.print_json(out, &serde_json::json!({"removed": name}));
    }
    writeln!(out, "removed server {name}")?;
    Ok(())
}
