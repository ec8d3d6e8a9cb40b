//! `kugetsu server list`: the configured servers, the default marked.

use kugetsu_core::servers::Servers;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `server list`.
#[derive(Debug, clap::Args)]
pub struct ServerListArgs {}

/// Prints the servers.
pub fn cmd_server_list(
    ui: &mut Ui,
    ctx: &Ctx,
    servers: &Servers,
    _args: &ServerListArgs,
) -> Result<(), CliError> {
    let out = ui.stdout();
    let list = servers.load()?.list();
    if ctx.json {
        let v: Vec<_> = list
            .iter()
            .map(|s| serde_json::json!({"name": s.name, "url": s.url, "default": s.is_default}))
            .collect();
        return ctx.print_json(out, &v);
    }
    if list.is_empty() {
        writeln!(out, "no servers configured")?;
    }
    for s in list {
        writeln!(out, "{}{:<12} {}", if s.is_default { "* " } else { "  " }, s.name, s.url)?;
    }
    Ok(())
}
