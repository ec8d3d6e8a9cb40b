//! `kugetsu server add <name> <url>`: a server added, or its URL changed.

use kugetsu_core::servers::Servers;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `server add`.
#[derive(Debug, clap::Args)]
pub struct ServerAddArgs {
    /// Its name (`github`, `gitea`, ...).
    pub name: String,
    /// Its base URL, without credentials (`https://github.com`).
    pub url: String,
}

/// Adds the server and says whether it was new.
pub fn cmd_server_add(
    ui: &mut Ui,
    ctx: &Ctx,
    servers: &Servers,
    args: &ServerAddArgs,
) -> Result<(), CliError> {
    let out = ui.stdout();
    let name = &args.name;
    let previous = servers.add(name, &args.url)?;
    if ctx.json {
        return ctx.print_json(out, &serde_json::json!({"name": name, "previous": previous}));
    }
    writeln!(out, "{} server {name}", if previous.is_some() { "updated" } else { "added" })?;
    Ok(())
}
