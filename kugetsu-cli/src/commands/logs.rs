//! `kugetsu logs [n]`: the newest run and delegation logs, with logs older than seven days
//! deleted on the way.

use kugetsu_core::logs::Logs;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// How many logs to show.
    #[arg(default_value_t = 10)]
    pub n: usize,
    /// Bytes of each log's end to print.
    #[arg(long, default_value_t = 2000)]
    pub bytes: u64,
}

/// Shows the newest logs.
pub fn cmd_logs(ui: &mut Ui, ctx: &Ctx, args: &LogsArgs) -> Result<(), CliError> {
    let out = ui.stdout();
    ctx.state.check()?;
    let logs = Logs::new(&ctx.state);
    logs.prune(time::OffsetDateTime::now_utc(), kugetsu_core::logs::LOG_RETENTION)?;
    let entries = logs.last(args.n)?;
    let secrets = crate::notifications::secrets(&ctx.state, ctx.config().ok().as_ref());
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    if ctx.json {
        let v: Vec<_> = entries
            .iter()
            .map(|e| serde_json::json!({"name": e.name, "path": e.path, "time": kugetsu_core::logs::timestamp(e.time), "size": e.size}))
            .collect();
        return ctx.print_json(out, &v);
    }
    if entries.is_empty() {
        writeln!(out, "no logs in {}", logs.dir().display())?;
    }
    for e in &entries {
        writeln!(out, "==> {} ({} bytes) <==", e.path.display(), e.size)?;
        let text = logs.tail(e, args.bytes)?;
        write!(out, "{}", kugetsu_core::notify::redact(&text, &refs))?;
        if !text.ends_with('\n') {
            writeln!(out)?;
        }
    }
    Ok(())
}
