//! `kugetsu server add <name> <url> [--api API_URL [--forge KIND]]`: a server added, or its URL
//! changed; with `--api`, where its issue tracker's API is (for `kugetsu watch`).

use kugetsu_core::forge::ForgeKind;
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
    /// Its issue tracker's API base URL (`https://ghe.example.org/api/v3`,
    /// `https://gitlab.example.org/api/v4`, `https://gitea.example.org/api/v1`): https, or
    /// plain http on loopback only.
    #[arg(long, value_name = "API_URL")]
    pub api: Option<String>,
    /// The API's dialect: github, gitlab or gitea (default: guessed from the API's path,
    /// `/api/v4` GitLab, `/api/v1` Gitea, else GitHub).
    #[arg(long, value_name = "KIND", requires = "api", value_parser = parse_forge)]
    pub forge: Option<ForgeKind>,
}

fn parse_forge(s: &str) -> Result<ForgeKind, String> {
    ForgeKind::parse(s).ok_or_else(|| format!("{s:?} is not github, gitlab or gitea"))
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
    let previous = match &args.api {
        Some(api) => servers.add_with_api(name, &args.url, api, args.forge)?,
        None => servers.add(name, &args.url)?,
    };
    if ctx.json {
        return ctx.print_json(out, &serde_json::json!({"name": name, "previous": previous}));
    }
    writeln!(out, "{} server {name}", if previous.is_some() { "updated" } else { "added" })?;
    Ok(())
}
