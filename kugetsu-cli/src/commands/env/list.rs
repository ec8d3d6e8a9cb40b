//! `kugetsu env list`: the env files and the keys each holds.

use kugetsu_core::env_file::EnvFiles;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `env list`.
#[derive(Debug, clap::Args)]
pub struct EnvListArgs {}

/// Prints each file with its keys, or what is wrong with it.
pub fn cmd_env_list(
    ui: &mut Ui,
    ctx: &Ctx,
    files: &EnvFiles,
    _args: &EnvListArgs,
) -> Result<(), CliError> {
    let out = ui.stdout();
    let list = files.list()?;
    if ctx.json {
        let v: Vec<_> = list
            .iter()
            .map(|s| serde_json::json!({"agent": s.agent, "path": s.path, "keys": s.keys, "problem": s.problem}))
            .collect();
        return ctx.print_json(out, &v);
    }
    if list.is_empty() {
        writeln!(out, "no env files (kugetsu init creates default.env and pm-agent.env)")?;
    }
    for s in list {
        match s.problem {
            Some(p) => writeln!(out, "{:<12} {} ({p})", s.agent, s.path.display())?,
            None => writeln!(out, "{:<12} {} [{}]", s.agent, s.path.display(), s.keys.join(", "))?,
        }
    }
    Ok(())
}
