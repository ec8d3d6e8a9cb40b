//! kugetsu-cli: parses the command line, resolves the config layers, wires the crates together
//! and maps errors to exit codes. Each command is one file in `commands/` that builds options,
//! calls a library function, and writes to the writer it is handed.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

pub mod agents;
pub mod cli;
pub mod commands;
pub mod context;
pub mod dashboard;
pub mod dispatcher;
pub mod error;
pub mod notifications;
pub mod progress;
pub mod queue_backend;
pub mod run;
pub mod signals;
pub mod wiring;

use cli::{Cli, Command};
use context::Ctx;
use error::{CliError, exit};

/// Runs kugetsu with the process's arguments and environment.
pub fn main() -> ExitCode {
    // Busybox-style: the demo links `opencode` to this binary to get the bundled fake agent.
    if let Some(code) = wiring::run_as_fake_agent() {
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
    let mut stdout = std::io::stdout().lock();
    let result = dispatch(&ctx, &cli.command, &mut stdout);
    let _ = stdout.flush();
    let code = match result {
        Ok(()) => exit::OK,
        Err(e) => report(&e),
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
    let filter = std::env::var(context::vars::KUGETSU_LOG)
        .unwrap_or_else(|_| "kugetsu=debug,kugetsu_core=debug,kugetsu_git=debug,kugetsu_opencode=debug,kugetsu_process=debug,kugetsu_queue=debug".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Runs one parsed command.
pub fn dispatch(ctx: &Ctx, command: &Command, out: &mut dyn Write) -> Result<(), CliError> {
    use commands::*;
    match command {
        Command::Init(a) => init::cmd_init(ctx, a, out),
        Command::Start(a) => start::cmd_start(ctx, a, out),
        Command::Continue(a) => continue_::cmd_continue(ctx, a, out),
        Command::List(a) => list::cmd_list(ctx, a, out),
        Command::Prune(a) => prune::cmd_prune(ctx, a, out),
        Command::Destroy(a) => destroy::cmd_destroy(ctx, a, out),
        Command::Delegate(a) => delegate::cmd_delegate(ctx, a, out),
        Command::Logs(a) => logs::cmd_logs(ctx, a, out),
        Command::Status(a) => status::cmd_status(ctx, a, out),
        Command::Doctor(a) => doctor::cmd_doctor(ctx, a, out),
        Command::Notify(a) => notify::cmd_notify(ctx, a, out),
        Command::Dashboard(a) => dashboard::cmd_dashboard(ctx, a, out),
        Command::Server(a) => server::cmd_server(ctx, a, out),
        Command::Queue(a) => queue::cmd_queue(ctx, a, out),
        Command::QueueDaemon(a) => queue_daemon::cmd_queue_daemon(ctx, a, out),
        Command::WarmAgent(a) => warm_agent::cmd_warm_agent(ctx, a, out),
        Command::Env(a) => env::cmd_env(ctx, a, out),
        Command::Completions(a) => completions::cmd_completions(ctx, a, out),
        Command::Demo(a) => demo::cmd_demo(ctx, a, out),
    }
}
