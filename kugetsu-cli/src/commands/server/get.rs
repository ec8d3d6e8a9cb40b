//! `kugetsu server get <name>`: a server's URL.

use kugetsu_core::servers::Servers;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `server get`.
#[derive(Debug, clap::Args)]
pub struct ServerGetArgs {
    /// Its name.
    pub name: String,
}

/// Prints the URL.
pub fn cmd_server_get(
    ui: &mut Ui,
    ctx: &Ctx,
    servers: &Servers,
    args: &ServerGetArgs,
) -> Result<(), CliError> {
    let out = ui.stdout();
    let name = &args.name;
    let url = servers.get(name)?;
    if ctx.json {
        return ctx.print_json(out, &serde_json::json!({"name": name, "url": url}));
    }
    writeln!(out, "{url}")?;
    Ok(())
}
