//! The command-line surface: every command and flag of the spec, parsed by clap and nothing
//! else. Each command's arguments live with its implementation in `commands/<verb>.rs`.

use clap::{Parser, Subcommand};

use crate::commands;

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
    /// Create the base and PM agent sessions (through the opencode TUI, or --headless).
    Init(commands::init::InitArgs),
    /// Start work on an issue: fresh worktree, forked session, first message.
    Start(commands::start::StartArgs),
    /// Send another message to an issue's session.
    Continue(commands::continue_::ContinueArgs),
    /// List all tracked sessions.
    List(commands::list::ListArgs),
    /// Find (and with --force remove) orphaned session files and worktrees.
    Prune(commands::prune::PruneArgs),
    /// Delete an issue's session and worktree, or the PM agent, or the base session.
    Destroy(commands::destroy::DestroyArgs),
    /// Queue a plain-language request for the PM agent (returns at once).
    Delegate(commands::delegate::DelegateArgs),
    /// Show recent run and delegation logs.
    Logs(commands::logs::LogsArgs),
    /// Say whether kugetsu is initialized: ok, kugetsu_not_initialized, base_session_missing,
    /// pm_agent_missing.
    Status(commands::status::StatusArgs),
    /// Diagnose problems and, with --fix, repair what can be repaired safely.
    Doctor(commands::doctor::DoctorArgs),
    /// Show or clear notifications.
    Notify(commands::notify::NotifyArgs),
    /// Serve a live web page and a JSON API to see and steer the agents (token-protected).
    Dashboard(commands::dashboard::DashboardArgs),
    /// Manage git servers.
    Server(commands::server::ServerArgs),
    /// Manage the task queue.
    Queue(commands::queue::QueueArgs),
    /// Manage the queue daemon.
    #[command(name = "queue-daemon")]
    QueueDaemon(commands::queue_daemon::QueueDaemonArgs),
    /// Manage the environment variables agents receive.
    Env(commands::env::EnvArgs),
    /// Print a shell completion script.
    Completions(commands::completions::CompletionsArgs),
    /// Run the whole flow in a scratch directory with a local repository and the bundled fake
    /// agent: no opencode and no API key needed.
    ///
    /// The demo is hermetic: it ignores every KUGETSU_* variable, config key, opencode and git
    /// setting of your shell, your config file and your state directory, and the only agent it
    /// ever starts is its own fake (it runs `git` to make its sample repository).
    Demo(commands::demo::DemoArgs),
    /// Keep the agent warm for forks until unused for KUGETSU_WARM_AGENT_IDLE_MINUTES (what a
    /// `start` leaves running in the background).
    #[command(name = "warm-agent", hide = true)]
    WarmAgent(commands::warm_agent::WarmAgentArgs),
}
