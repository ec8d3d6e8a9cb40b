//! The command tree, laid out as jj lays out its own: [`Cli`] is the whole command line, each
//! [`Command`] one file here (a group of subcommands a folder of its own), and
//! [`run_command`] the one dispatch. A command is `cmd_<verb>(ui, ctx, args)`: it reads its
//! input from and writes its result to the [`Ui`] it is handed, and calls a library function
//! for the work.

pub mod completions;
pub mod continue_;
pub mod dashboard;
pub mod delegate;
pub mod demo;
pub mod destroy;
pub mod doctor;
pub mod env;
pub mod init;
pub mod list;
pub mod logs;
pub mod notify;
pub mod prune;
pub mod queue;
pub mod queue_daemon;
pub mod server;
pub mod start;
pub mod status;
pub mod warm_agent;
pub mod watch;

use clap::{CommandFactory, Parser, Subcommand};

use crate::context::Ctx;
use crate::error::CliError;
use crate::ui::Ui;

/// kugetsu: an issue-driven session manager for the opencode AI coding agent.
///
/// One base session is primed once; every issue gets its own git worktree on branch
/// `fix/issue-<id>` and its own agent session forked from the base; a PM agent takes
/// plain-language requests from a durable queue that a background daemon drains, never running
/// more than MAX_CONCURRENT_AGENTS agents at once.
#[derive(Debug, Parser)]
#[command(name = "kugetsu", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Print machine-readable JSON instead of text (stable; see the README).
    #[arg(long, global = true)]
    pub json: bool,

    /// Log what kugetsu does (commands run, files written) to stderr. Secrets stay masked.
    #[arg(long, global = true)]
    pub debug: bool,

    /// The state directory (default: $KUGETSU_HOME, else ~/.kugetsu).
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,

    /// Set a config key for this command only (KEY=VALUE; highest precedence). Repeatable.
    #[arg(long = "config", short = 'C', global = true, value_name = "KEY=VALUE")]
    pub config: Vec<String>,

    /// What to do (one file per command under `commands/`).
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the base and PM agent sessions (interactively in the agent, or --headless).
    Init(init::InitArgs),
    /// Start work on an issue: fresh worktree, forked session, first message.
    Start(start::StartArgs),
    /// Send another message to an issue's session.
    Continue(continue_::ContinueArgs),
    /// List all tracked sessions, with what each one's turns cost.
    List(list::ListArgs),
    /// Find (and with --force remove) orphaned session files and worktrees.
    Prune(prune::PruneArgs),
    /// Delete an issue's session and worktree, or the PM agent, or the base session.
    Destroy(destroy::DestroyArgs),
    /// Queue a plain-language request for the PM agent (returns at once).
    Delegate(delegate::DelegateArgs),
    /// Show recent run and delegation logs.
    Logs(logs::LogsArgs),
    /// Say whether kugetsu is initialized: ok, kugetsu_not_initialized, base_session_missing,
    /// pm_agent_missing (the first line); then what today's and this month's turns cost.
    Status(status::StatusArgs),
    /// Diagnose problems and, with --fix, repair what can be repaired safely.
    Doctor(doctor::DoctorArgs),
    /// Show or clear notifications; test, show or flush their webhook deliveries.
    Notify(notify::NotifyArgs),
    /// Serve a live web page and a JSON API to see and steer the agents (token-protected).
    Dashboard(dashboard::DashboardArgs),
    /// Manage git servers.
    Server(server::ServerArgs),
    /// Manage the task queue.
    Queue(queue::QueueArgs),
    /// Watch issue trackers: the queue daemon starts work on each new open issue with a label.
    Watch(watch::WatchArgs),
    /// Manage the queue daemon.
    #[command(name = "queue-daemon")]
    QueueDaemon(queue_daemon::QueueDaemonArgs),
    /// Manage the environment variables agents receive.
    Env(env::EnvArgs),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Run the whole flow in a scratch directory with a local repository and the bundled fake
    /// agent: no opencode and no API key needed.
    ///
    /// The demo is hermetic: it ignores every KUGETSU_* variable, config key, opencode and git
    /// setting of your shell, your config file and your state directory, and the only agent it
    /// ever starts is its own fake (it runs `git` to make its sample repository).
    Demo(demo::DemoArgs),
    /// Keep the agent warm for forks until unused for KUGETSU_WARM_AGENT_IDLE_MINUTES (what a
    /// `start` leaves running in the background).
    #[command(name = "warm-agent", hide = true)]
    WarmAgent(warm_agent::WarmAgentArgs),
}

/// Runs one parsed command.
pub fn run_command(ui: &mut Ui, ctx: &Ctx, command: &Command) -> Result<(), CliError> {
    match command {
        Command::Init(a) => init::cmd_init(ui, ctx, a),
        Command::Start(a) => start::cmd_start(ui, ctx, a),
        Command::Continue(a) => continue_::cmd_continue(ui, ctx, a),
        Command::List(a) => list::cmd_list(ui, ctx, a),
        Command::Prune(a) => prune::cmd_prune(ui, ctx, a),
        Command::Destroy(a) => destroy::cmd_destroy(ui, ctx, a),
        Command::Delegate(a) => delegate::cmd_delegate(ui, ctx, a),
        Command::Logs(a) => logs::cmd_logs(ui, ctx, a),
        Command::Status(a) => status::cmd_status(ui, ctx, a),
        Command::Doctor(a) => doctor::cmd_doctor(ui, ctx, a),
        Command::Notify(a) => notify::cmd_notify(ui, ctx, a),
        Command::Dashboard(a) => dashboard::cmd_dashboard(ui, ctx, a),
        Command::Server(a) => server::cmd_server(ui, ctx, a),
        Command::Queue(a) => queue::cmd_queue(ui, ctx, a),
        Command::Watch(a) => watch::cmd_watch(ui, ctx, a),
        Command::QueueDaemon(a) => queue_daemon::cmd_queue_daemon(ui, ctx, a),
        Command::WarmAgent(a) => warm_agent::cmd_warm_agent(ui, ctx, a),
        Command::Env(a) => env::cmd_env(ui, ctx, a),
        Command::Completions(a) => completions::cmd_completions(ui, a, Cli::command()),
        Command::Demo(a) => demo::cmd_demo(ui, ctx, a),
    }
}
