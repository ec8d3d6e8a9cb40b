//! `kugetsu doctor [--fix] [--fix-permissions]`: cross-checks the state directory, the
//! worktrees, the agent's sessions and the daemon, and explains each problem in a sentence.

use std::io::Write;

use kugetsu_core::config::{Config, ConfigError};
use kugetsu_core::orchestrator::Finding;

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// Arguments of `doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Repair what can be repaired safely.
    #[arg(long)]
    pub fix: bool,
    /// Re-apply the permission rules that forked sessions lose (keeps headless runs from hanging).
    #[arg(long)]
    pub fix_permissions: bool,
}

/// Problems outside the state files: the config and the agent program.
fn environment_findings(ctx: &Ctx) -> Vec<Finding> {
    let (config, errors) = ctx.config_all();
    let mut out: Vec<Finding> = errors
        .into_iter()
        .map(|e| Finding {
            subject: "config".into(),
            problem: e.to_string(),
            remedy: "fix the line, variable or flag it names; until then every other command \
                     refuses to run"
                .into(),
            fixed: false,
        })
        .collect();
    for w in config.warnings() {
        out.push(Finding {
            subject: "config".into(),
            problem: w.clone(),
            remedy: "edit the config file".into(),
            fixed: false,
        });
    }
    match crate::agents::entry(&config) {
        Err(e) => out.push(Finding {
            subject: "config".into(),
            problem: e.message,
            remedy: e.hint.unwrap_or_default(),
            fixed: false,
        }),
        Ok(driver) => {
            if let Some(program) = driver.program(&config)
                && crate::launch::find_program(&program, &ctx.env).is_none()
            {
                out.push(Finding {
                    subject: program.display().to_string(),
                    problem: format!("the {} program was not found", driver.name),
                    remedy: driver.install_hint(),
                    fixed: false,
                });
            }
        }
    }
    out
}

/// The daemon and the queue: a daemon that should run, stale pid files, unreadable items.
fn queue_findings(ctx: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    let status = match kugetsu_queue::daemon::status(&ctx.state) {
        Ok(s) => s,
        Err(e) => {
            out.push(Finding {
                subject: "queue daemon".into(),
                problem: format!("cannot tell whether it runs: {e}"),
                remedy: "check the queue directory".into(),
                fixed: false,
            });
            return out;
        }
    };
    if let Some(pid) = status.stale_pid_file {
        out.push(Finding {
            subject: ctx.state.daemon_pid_path().display().to_string(),
            problem: format!("names pid {pid}, which is not the running daemon (it is ignored)"),
            remedy: "nothing needed; the next daemon start rewrites it".into(),
            fixed: false,
        });
    }
    let queue = match crate::queue_backend::queue(ctx, &ctx.config_all().0) {
        Ok(q) => q,
        Err(e) => {
            out.push(Finding {
                subject: "queue".into(),
                problem: e.message,
                remedy: "check KUGETSU_QUEUE_URL and that the server runs".into(),
                fixed: false,
            });
            return out;
        }
    };
    match queue.list() {
        Ok(listing) => {
            let waiting = listing.items.iter().filter(|i| !i.status.is_final()).count();
            if waiting > 0 && !status.running {
                out.push(Finding {
                    subject: "queue daemon".into(),
                    problem: format!(
                        "{waiting} task(s) wait in the queue but no daemon is running"
                    ),
                    remedy: "run `kugetsu queue-daemon start`".into(),
                    fixed: false,
                });
            }
            for p in listing.problems {
                out.push(Finding {
                    subject: "queue".into(),
                    problem: p,
                    remedy: "the bad file was kept aside; re-enqueue the task if it mattered"
                        .into(),
                    fixed: false,
                });
            }
        }
        Err(e) => out.push(Finding {
            subject: "queue".into(),
            problem: e.to_string(),
            remedy: match e {
                kugetsu_core::queue::QueueError::Unavailable { .. } => {
                    "check KUGETSU_QUEUE_URL and that the server runs and accepts this host"
                }
                _ => "check the queue directory",
            }
            .into(),
            fixed: false,
        }),
    }
    out.extend(crate::queue_backend::shared_findings(&ctx.config_all().0));
    out
}

/// Every setting, its value and where it came from, with each wrong setting under its key.
fn print_settings(
    out: &mut dyn Write,
    config: &Config,
    errors: &[ConfigError],
) -> Result<(), CliError> {
    writeln!(out, "settings (default < config file < environment < --config):")?;
    for entry in config.entries() {
        writeln!(out, "  {:<30} {:<12} ({})", entry.key, entry.value, entry.source)?;
        for e in errors.iter().filter(|e| e.key() == Some(entry.key)) {
            writeln!(out, "    ^ ignored, wrong: {e}")?;
        }
    }
    Ok(())
}

/// Prints the settings and each finding; exits 1 when a problem remains unfixed. A wrong
/// setting does not stop it: it is shown, and the rest is checked with the value below it.
pub fn cmd_doctor(ui: &mut Ui, ctx: &Ctx, args: &DoctorArgs) -> Result<(), CliError> {
    let out = ui.stdout();
    ctx.state.check()?;
    let (config, errors) = ctx.config_all();
    // An unknown driver is reported below; the sessions are still checked, with the default.
    let mut checked = config.clone();
    if crate::agents::entry(&checked).is_err() {
        checked.agent = crate::agents::DRIVERS[0].name.into();
    }
    let orch = ctx.orchestrator_with(&checked)?;
    let mut findings = orch.doctor(args.fix, args.fix_permissions)?;
    findings.extend(environment_findings(ctx));
    findings.extend(queue_findings(ctx));
    if ctx.json {
        return finish(ctx.print_json(out, &findings), &findings);
    }
    print_settings(out, &config, &errors)?;
    if let Ok(entry) = crate::agents::entry(&config) {
        let agent = (entry.describe)(ctx, &config);
        match agent.version {
            Ok(v) => {
                writeln!(out, "agent: {} {v}, driven by the {} driver", entry.name, agent.driver)?
            }
            Err(e) => writeln!(out, "agent: {}, version unknown ({e})", entry.name)?,
        }
        for limit in &agent.limits {
            writeln!(out, "  cannot: {limit}")?;
        }
    }
    for line in crate::queue_backend::shared_summary(ctx, &config) {
        writeln!(out, "{line}")?;
    }
    if findings.is_empty() {
        writeln!(out, "no problems found in {}", ctx.state.root().display())?;
    } else {
        for Finding { subject, problem, remedy, fixed } in &findings {
            let mark = if *fixed { "fixed" } else { "problem" };
            writeln!(out, "{mark}: {subject}: {problem}")?;
            writeln!(out, "  {}: {remedy}", if *fixed { "done" } else { "fix" })?;
        }
    }
    finish(Ok(()), &findings)
}

fn finish(printed: Result<(), CliError>, findings: &[Finding]) -> Result<(), CliError> {
    printed?;
    if findings.iter().any(|f| !f.fixed) {
        return Err(CliError::silent(crate::error::exit::FAILURE));
    }
    Ok(())
}
