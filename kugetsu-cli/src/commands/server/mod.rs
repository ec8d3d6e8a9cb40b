//! `kugetsu server list|add|remove|default|get`: named git servers, used to build clone URLs.

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
    List,
    /// Add (or change) a server.
    Add {
        /// Its name (`github`, `gitea`, ...).
        name: String,
        /// Its base URL, without credentials (`https://github.com`).
        url: String,
    },
    /// Remove a server.
    Remove {
        /// Its name.
        name: String,
    },
    /// Make a server the default.
    Default {
        /// Its name.
        name: String,
    },
    /// Print a server's URL.
    Get {
        /// Its name.
        name: String,
    },
}

/// Runs a `server` subcommand.
pub fn cmd_server(ui: &mut Ui, ctx: &Ctx, args: &ServerArgs) -> Result<(), CliError> {
    let out = ui.stdout();
    ctx.state.ensure()?;
    let servers = Servers::new(&ctx.state);
    match &args.action {
        ServerAction::List => {
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
                writeln!(
                    out,
                    "{}{:<12} {}",
                    if s.is_default { "* " } else { "  " },
                    s.name,
                    s.url
                )?;
            }
        }
        ServerAction::Add { name, url } => {
            let previous = servers.add(name, url)?;
            if ctx.json {
                return ctx
                    .print_json(out, &serde_json::json!({"name": name, "previous": previous}));
            }
            writeln!(
                out,
                "{} server {name}",
                if previous.is_some() { "updated" } else { "added" }
            )?;
        }
        ServerAction::Remove { name } => {
            servers.remove(name)?;
            if ctx.json {
                return ctx.print_json(out, &serde_json::json!({"removed": name}));
            }
            writeln!(out, "removed server {name}")?;
        }
        ServerAction::Default { name } => {
            servers.set_default(name)?;
            if ctx.json {
                return ctx.print_json(out, &serde_json::json!({"default": name}));
            }
            writeln!(out, "default server is now {name}")?;
        }
        ServerAction::Get { name } => {
            let url = servers.get(name)?;
            if ctx.json {
                return ctx.print_json(out, &serde_json::json!({"name": name, "url": url}));
            }
            writeln!(out, "{url}")?;
        }
    }
    Ok(())
}
