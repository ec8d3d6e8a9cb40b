//! `kugetsu watch add <repo> --label <label>`: a repository watched.

use kugetsu_core::RepoRef;
use kugetsu_core::servers::{Servers, api_for};
use kugetsu_core::watch::Watches;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `watch add`.
#[derive(Debug, clap::Args)]
pub struct WatchAddArgs {
    /// The repository, `instance/owner/repo` (`github.com/owner/repo`, a GitLab project with
    /// its groups, or a repository on a server added with `server add --api`).
    pub repo: String,
    /// The label that hands an issue to kugetsu.
    #[arg(long, default_value = "kugetsu")]
    pub label: String,
}

/// Adds the watch, once its tracker's API is known.
pub fn cmd_watch_add(
    ui: &mut Ui,
    ctx: &Ctx,
    watches: &Watches,
    args: &WatchAddArgs,
) -> Result<(), CliError> {
    let repo = RepoRef::parse(&args.repo)?;
    let servers = Servers::new(&ctx.state).load()?;
    let api = api_for(&repo, &servers).map_err(|e| CliError::usage(e.to_string()))?;
    let repo = watches.add(&args.repo, &args.label)?;
    let out = ui.stdout();
    if ctx.json {
        return ctx.print_json(
            out,
            &serde_json::json!({"repo": repo, "label": args.label, "api": api.url, "forge": api.forge}),
        );
    }
    let every = ctx.config()?.watch_interval_seconds;
    writeln!(
        out,
        "watching {repo} for open issues labelled {:?} ({} API at {}); the queue daemon polls every {every}s",
        args.label,
        api.forge.as_str(),
        api.url
    )?;
    Ok(())
}
