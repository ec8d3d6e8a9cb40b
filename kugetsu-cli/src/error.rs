//! The one error type at the edge: every library error is mapped to an exit code and printed
//! as `Error: ...`, its causes as `Caused by: ...`, and a `Hint: ...` where one helps.

use std::fmt::Write as _;

use kugetsu_core::config::ConfigError;
use kugetsu_core::env_file::EnvFileError;
use kugetsu_core::logs::LogsError;
use kugetsu_core::notify::NotifyError;
use kugetsu_core::orchestrator::OrchestratorError;
use kugetsu_core::queue::QueueError;
use kugetsu_core::repos::RepoError;
use kugetsu_core::servers::ServerError;
use kugetsu_core::worktree::is_ssh_url;
use kugetsu_core::{AgentError, IssueRefError, StorageError, WorktreeError};
use kugetsu_queue::DaemonError;

/// Documented exit codes (see the README).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any failure not listed below.
    pub const FAILURE: u8 = 1;
    /// Bad command line or bad input (a malformed ref, an unknown config key): wrong whatever
    /// the state. A well-formed name that names nothing (an issue with no session, a server or
    /// env key never added) is [`FAILURE`].
    pub const USAGE: u8 = 2;
    /// kugetsu is not initialized, or a state file is corrupt.
    pub const STATE: u8 = 3;
    /// Busy: the issue is already running, no agent slot, a daemon already running.
    pub const BUSY: u8 = 4;
    /// The agent ran but did not complete (failed, blocked, timed out, hung, over budget), or
    /// did not start because its budget is spent.
    pub const AGENT: u8 = 5;
    /// Interrupted by Ctrl-C (SIGINT). SIGTERM and SIGHUP end a command with 143 and 129:
    /// 128 + the signal's number, as a shell reports a process the signal ended.
    pub const INTERRUPTED: u8 = 130;
}

/// An error ready to be shown to the user.
#[derive(Debug)]
pub struct CliError {
    /// Exit code.
    pub code: u8,
    /// The top-level message.
    pub message: String,
    /// Underlying causes, outermost first.
    pub causes: Vec<String>,
    /// What to do about it.
    pub hint: Option<String>,
    /// The agent program could not be run: the configured driver's install hint belongs here,
    /// which only the caller that knows the configuration can add
    /// ([`crate::agents::add_install_hint`]).
    pub wants_install_hint: bool,
}

impl CliError {
    /// An error with a code and message.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            causes: Vec::new(),
            hint: None,
            wants_install_hint: false,
        }
    }
    /// An exit code with nothing more to print (the command already said it).
    pub fn silent(code: u8) -> Self {
        CliError::new(code, "")
    }
    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, message)
    }
    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn from_error(code: u8, err: &dyn std::error::Error) -> Self {
        let mut causes = Vec::new();
        let mut source = err.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !err.to_string().contains(&text) {
                causes.push(text);
            }
            source = s.source();
        }
        CliError { code, message: err.to_string(), causes, hint: None, wants_install_hint: false }
    }

    /// Renders the error for stderr.
    pub fn render(&self) -> String {
        let mut out = format!("Error: {}\n", self.message);
        for c in &self.causes {
            let _ = writeln!(out, "Caused by: {c}");
        }
        if let Some(h) = &self.hint {
            let _ = writeln!(out, "Hint: {h}");
        }
        out
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // `kugetsu list | head -1`: the reader has all it wanted. Stop quietly, as
            // ripgrep does, rather than print an error nobody asked for.
            return CliError::silent(exit::OK);
        }
        CliError::from_error(exit::FAILURE, &e)
    }
}

impl From<IssueRefError> for CliError {
    fn from(e: IssueRefError) -> Self {
        let hint = matches!(e, IssueRefError::NoDefaultRepo { .. })
            .then_some("write the full ref, e.g. github.com/owner/repo#14");
        let mut err = CliError::from_error(exit::USAGE, &e);
        err.hint = hint.map(Into::into);
        err
    }
}

impl From<StorageError> for CliError {
    fn from(e: StorageError) -> Self {
        let (code, hint) = match &e {
            StorageError::Corrupt { .. } => (
                exit::STATE,
                Some("the bad bytes were kept aside; `kugetsu doctor` explains what to do"),
            ),
            StorageError::WouldBlock { .. } => (exit::BUSY, None),
            StorageError::NotPrivate { .. } | StorageError::Symlink { .. } => {
                (exit::STATE, Some("kugetsu only uses a state directory that you alone can write"))
            }
            _ => (exit::FAILURE, None),
        };
        let mut err = CliError::from_error(code, &e);
        err.hint = hint.map(Into::into);
        err
    }
}

impl From<WorktreeError> for CliError {
    fn from(e: WorktreeError) -> Self {
        let mut err = CliError::from_error(exit::FAILURE, &e);
        match &e {
            WorktreeError::WouldLoseWork { unsaved, .. } => {
                for f in unsaved.changed_files.iter().take(20) {
                    err.causes.push(format!("changed: {f}"));
                }
                for c in unsaved.unpushed_commits.iter().take(20) {
                    err.causes.push(format!("unpushed: {c}"));
                }
                err.hint = Some("commit and push the work, or pass --force to discard it".into());
            }
            WorktreeError::AuthFailed { url } | WorktreeError::SshFailed { url }
                if is_ssh_url(url) =>
            {
                err.hint = Some(ssh_hint(url));
            }
            WorktreeError::AuthFailed { url } => err.hint = Some(token_hint(url)),
            WorktreeError::Interrupted => err.code = exit::INTERRUPTED,
            _ => {}
        }
        err
    }
}

/// How to give the server of `url` a token; see [`kugetsu_core::repos::token_var_for`] for
/// which token goes where.
fn token_hint(url: &str) -> String {
    let host = kugetsu_core::servers::check_url(url).map(|u| u.host).unwrap_or_default();
    match host.as_str() {
        "github.com" => "set a token: `kugetsu env set GITHUB_TOKEN <token>`".into(),
        "gitlab.com" => "set a token: `kugetsu env set GITLAB_TOKEN <token>`".into(),
        _ => format!(
            "tokens go only to github.com, gitlab.com and added servers: `kugetsu server add \
             <name> https://{host}` (a name containing gitlab or github picks that token, any \
             other GITEA_TOKEN), then `kugetsu env set GITEA_TOKEN <token>`"
        ),
    }
}

/// What to try when `ssh` (run without prompts) fails for `url`.
fn ssh_hint(url: &str) -> String {
    let target = match url.split_once("://") {
        // ssh://[user@]host[:port]/path
        Some((_, rest)) => {
            let authority = rest.split('/').next().unwrap_or(rest);
            match authority.rsplit_once(':') {
                Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
                    format!("-p {port} {host}")
                }
                _ => authority.to_string(),
            }
        }
        // [user@]host:path
        None => url.split(':').next().unwrap_or(url).to_string(),
    };
    format!(
        "kugetsu runs ssh without prompts; `ssh -o BatchMode=yes -T {target}` shows why it fails \
         (add an unknown host key with a first interactive `ssh`, load a passphrase-protected key \
         with `ssh-add`)"
    )
}

impl From<AgentError> for CliError {
    fn from(e: AgentError) -> Self {
        let mut err = CliError::from_error(exit::FAILURE, &e);
        match &e {
            AgentError::Spawn { .. } => err.wants_install_hint = true,
            AgentError::Interrupted { .. } => err.code = exit::INTERRUPTED,
            AgentError::NeedsTerminal => {
                err.code = exit::USAGE;
                err.hint = Some("run it in a terminal, or use `kugetsu init --headless`".into());
            }
            _ => {}
        }
        err
    }
}

impl From<QueueError> for CliError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Storage(s) => s.into(),
            QueueError::NoSlot { .. } => CliError::from_error(exit::BUSY, &e).with_hint(
                "all agent slots are busy; `kugetsu queue enqueue` queues the work for the daemon instead",
            ),
            QueueError::InvalidTask { .. } => CliError::from_error(exit::USAGE, &e),
            _ => CliError::from_error(exit::FAILURE, &e),
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::Storage(s) => s.into(),
            // The wrong line, variable or flag is named in the message.
            other => CliError::from_error(exit::USAGE, &other)
                .with_hint("`kugetsu doctor` lists every setting and where it comes from"),
        }
    }
}

impl From<EnvFileError> for CliError {
    fn from(e: EnvFileError) -> Self {
        match e {
            EnvFileError::Storage(s) => s.into(),
            EnvFileError::BadAgentName { .. }
            | EnvFileError::BadKey { .. }
            | EnvFileError::BadValue { .. } => CliError::from_error(exit::USAGE, &e),
            // An env file kugetsu cannot read is a broken state file.
            other => CliError::from_error(exit::STATE, &other),
        }
    }
}

impl From<RepoError> for CliError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Storage(s) => s.into(),
            RepoError::NotFound { .. } => CliError::from_error(exit::FAILURE, &e),
            // A wrong entry in repos.json is a broken state file.
            other => CliError::from_error(exit::STATE, &other),
        }
    }
}

impl From<NotifyError> for CliError {
    fn from(e: NotifyError) -> Self {
        match e {
            NotifyError::Storage(s) => s.into(),
            other => CliError::from_error(exit::STATE, &other),
        }
    }
}

impl From<kugetsu_core::outbox::OutboxError> for CliError {
    fn from(e: kugetsu_core::outbox::OutboxError) -> Self {
        match e {
            kugetsu_core::outbox::OutboxError::Storage(s) => s.into(),
        }
    }
}

impl From<LogsError> for CliError {
    fn from(e: LogsError) -> Self {
        match e {
            LogsError::Storage(s) => s.into(),
            other => CliError::from_error(exit::USAGE, &other),
        }
    }
}

impl From<DaemonError> for CliError {
    fn from(e: DaemonError) -> Self {
        match e {
            DaemonError::AlreadyRunning { .. } | DaemonError::HostTaken { .. } => {
                CliError::from_error(exit::BUSY, &e)
            }
            DaemonError::Storage(s) => s.into(),
            DaemonError::Queue(q) => q.into(),
            other => CliError::from_error(exit::FAILURE, &other),
        }
    }
}

impl From<ServerError> for CliError {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::Storage(s) => s.into(),
            // A well-formed name that names nothing: like an issue with no session, a failure
            // of the command, not bad input (see the README's exit codes).
            ServerError::NotFound { .. } => CliError::from_error(exit::FAILURE, &e),
            other => CliError::from_error(exit::USAGE, &other),
        }
    }
}

impl From<kugetsu_core::watch::WatchError> for CliError {
    fn from(e: kugetsu_core::watch::WatchError) -> Self {
        use kugetsu_core::watch::WatchError as W;
        match e {
            W::Storage(s) => s.into(),
            W::Queue { source, .. } => source.into(),
            W::NotFound { .. } | W::Forge { .. } => CliError::from_error(exit::FAILURE, &e),
            other => CliError::from_error(exit::USAGE, &other),
        }
    }
}

impl From<OrchestratorError> for CliError {
    fn from(e: OrchestratorError) -> Self {
        match e {
            OrchestratorError::Storage(s) => s.into(),
            OrchestratorError::Worktree(w) => w.into(),
            OrchestratorError::Agent(a) => a.into(),
            OrchestratorError::Queue(q) => q.into(),
            OrchestratorError::NotInitialized { .. } => {
                CliError::from_error(exit::STATE, &e).with_hint("run `kugetsu init` first")
            }
            OrchestratorError::AlreadyInitialized { .. } => CliError::from_error(exit::FAILURE, &e)
                .with_hint("pass --force to create new base and PM agent sessions"),
            OrchestratorError::BaseMissing
            | OrchestratorError::PmMissing
            | OrchestratorError::NoDirectory { .. } => {
                CliError::from_error(exit::STATE, &e).with_hint("run `kugetsu init --force`")
            }
            OrchestratorError::UnknownIssue { .. } => CliError::from_error(exit::FAILURE, &e)
                .with_hint("`kugetsu list` shows the tracked issues; `kugetsu start` creates one"),
            OrchestratorError::AlreadyRunning { .. } => CliError::from_error(exit::BUSY, &e)
                .with_hint(
                    "wait for it to finish, or queue the message with `kugetsu queue enqueue`",
                ),
            OrchestratorError::Interrupted { .. } => CliError::from_error(exit::INTERRUPTED, &e),
            // The agent's turn ends as it would have at the budget: exit 5, its hint already
            // in the one line.
            OrchestratorError::OverBudget { .. } => CliError::from_error(exit::AGENT, &e),
            OrchestratorError::ProviderPaused { .. } => CliError::from_error(exit::BUSY, &e)
                .with_hint(
                    "`--wait` waits for the pause to end, `--no-wait` queues the work for the daemon; `kugetsu queue resume` ends a pause now",
                ),
            // Not bad input (the same command works with the other setting): a failure.
            OrchestratorError::OtherDriver { ref made_by, .. } => {
                let hint = format!(
                    "set {}={made_by} to work on it (`--config {0}={made_by}` for one command)",
                    kugetsu_core::config::KUGETSU_AGENT
                );
                CliError::from_error(exit::FAILURE, &e).with_hint(hint)
            }
            OrchestratorError::NewerAgent { ref agent, ran_with, .. } => {
                let hint = format!(
                    "install {agent} {ran_with}.x or newer, or point {} at it",
                    kugetsu_core::config::KUGETSU_AGENT_BIN
                );
                CliError::from_error(exit::FAILURE, &e).with_hint(hint)
            }
            other => CliError::from_error(exit::FAILURE, &other),
        }
    }
}

impl From<kugetsu_queue::service::ServiceError> for CliError {
    fn from(e: kugetsu_queue::service::ServiceError) -> Self {
        match e {
            kugetsu_queue::service::ServiceError::Storage(s) => s.into(),
            other => CliError::from_error(exit::FAILURE, &other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(e: WorktreeError) -> Option<String> {
        CliError::from(e).hint
    }

    #[test]
    fn ssh_failures_hint_at_the_ssh_command_to_try() {
        let h = hint(WorktreeError::SshFailed { url: "git@github.com:o/r.git".into() }).unwrap();
        assert!(h.contains("`ssh -o BatchMode=yes -T git@github.com`"), "{h}");
        let h = hint(WorktreeError::AuthFailed { url: "ssh://git@host:2222/o/r".into() }).unwrap();
        assert!(h.contains("`ssh -o BatchMode=yes -T -p 2222 git@host`"), "{h}");
        let h = hint(WorktreeError::AuthFailed { url: "https://github.com/o/r".into() }).unwrap();
        assert!(h.contains("GITHUB_TOKEN"), "{h}");
        let h =
            hint(WorktreeError::AuthFailed { url: "https://git.corp.example/o/r".into() }).unwrap();
        assert!(h.contains("`kugetsu server add <name> https://git.corp.example`"), "{h}");
    }
}
