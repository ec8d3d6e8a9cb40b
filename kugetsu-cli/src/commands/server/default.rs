//! `kugetsu server default <name>`: a server made the default.

use kugetsu_core::servers::Servers;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `server default`.
#[derive(Debug, clap::Args)]
pub struct ServerDefaultArgs {
    /// Its name.
    pub name: String,
}

/// Makes the server the default.
pub fn cmd_server_default(
    ui: &mut Ui,
    ctx: &Ctx,
    servers: &Servers,
    args: &ServerDefaultArgs,
) -> Result<(), CliError> {
    let out = ui.stdout();
    let name = &args.name;
    servers.set_default(name)?;
    if ctx.json {
        return ctx.print_json(out, &serde_json::json!({"default": name}));
    }
    writeln!(out, "default server is now {name}")?;
    Ok(())
}
