//! kugetsu-cli: parses the command line, resolves the config layers, wires the crates together
//! and maps errors to exit codes. The command tree and its dispatch are in `commands/`; each
//! command builds options, calls a library function, and writes to the [`ui::Ui`] it is handed.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

pub mod agents;
pub mod commands;
pub mod context;
pub mod dashboard;
pub mod delivery;
pub mod dispatcher;
pub mod error;
pub mod launch;
pub mod leftovers;
pub mod notifications;
pub mod pauses;
pub mod progress;
pub mod queue_backend;
pub mod reads;
pub mod reporting;
pub mod run;
pub mod signals;
pub mod ui;
pub mod watcher;
pub mod wiring;

use commands::Cli;
use context::Ctx;
use error::{CliError, exit};

/// Runs kugetsu with the process's arguments and environment.
pub fn main() -> ExitCode {
    // Busybox-style: the demo links the agent's program name to this binary to get the
    // bundled fake agent.
    if let Some(code) = agents::run_as_fake_agent() {
        return ExitCode::from(code);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    if cli.debug {
        init_tracing();
    }
    let ctx = match Ctx::from_process(cli.json, cli.debug, cli.state_dir.as_deref(), &cli.config) {
        Ok(ctx) => ctx,
        Err(e) => return ExitCode::from(report(&e)),
    };
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    let result = {
        let mut ui = ui::Ui::new(&mut stdin, &mut stdout, &mut stderr);
        commands::run_command(&mut ui, &ctx, &cli.command)
    };
    let _ = stdout.flush();
    notifications::after_command(&ctx);
    let code = match result {
        Ok(()) => exit::OK,
        Err(mut e) => {
            agents::add_install_hint(&ctx, &mut e);
            report(&e)
        }
    };
    // A command stopped by a signal exits as a shell expects of a process that signal ended
    // (130 for Ctrl-C, 143 for SIGTERM, 129 for a hang-up), whatever step it was in.
    match ctx.interrupt.signal().filter(|_| code != exit::OK && ctx.interrupt.is_triggered()) {
        Some(signal) => ExitCode::from(signal.exit_code()),
        None => ExitCode::from(code),
    }
}

/// Prints `e` (unless the command already said everything) and returns its exit code. A closed
/// or hung-up stderr is not an error of its own.
fn report(e: &CliError) -> u8 {
    if !e.message.is_empty() {
        let _ = std::io::stderr().write_all(e.render().as_bytes());
    }
    e.code
}

fn init_tracing() {
    let filter = std::env::var(context::vars::KUGETSU_LOG).unwrap_or_else(|_| {
        let drivers = agents::DRIVERS.iter().map(|d| d.log_target);
        ["kugetsu", "kugetsu_core", "kugetsu_git", "kugetsu_process", "kugetsu_queue"]
            .into_iter()
            .chain(drivers)
            .map(|target| format!("{target}=debug"))
            .collect::<Vec<_>>()
            .join(",")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
