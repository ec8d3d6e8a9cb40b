//! Why an orchestration step failed: one error type for every command, carrying the issue,
//! path or id it is about.

use super::*;
use crate::retry::Retry;
use crate::usage::budget::{BudgetKind, Exhausted};

/// Why an orchestration step failed.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// No index yet.
    #[error("kugetsu is not initialized in {root}")]
    NotInitialized {
        /// The state directory.
        root: PathBuf,
    },
    /// `init` without `--force` on an initialized state directory.
    #[error("kugetsu is already initialized in {root} (base session {base})")]
    AlreadyInitialized {
        /// The state directory.
        root: PathBuf,
        /// The existing base session.
        base: String,
    },
    /// The base session is missing.
    #[error("the base session is missing")]
    BaseMissing,
    /// The PM agent session is missing (start requires it).
    #[error("the PM agent session is missing")]
    PmMissing,
    /// No session for this issue.
    #[error("no session for {issue}")]
    UnknownIssue {
        /// The issue ref as given.
        issue: String,
    },
    /// Another process is working on this issue.
    #[error("{issue} is already running in another kugetsu process")]
    AlreadyRunning {
        /// The issue ref as given.
        issue: String,
    },
    /// Two refs map to the same file name (the name's owner is `existing`).
    #[error("{issue} would share its state file name {name} with {existing}")]
    NameCollision {
        /// The new issue.
        issue: String,
        /// The state file name both refs would use.
        name: String,
        /// The ref already using it.
        existing: String,
    },
    /// The ref differs from an existing session's only in letter case. Forges match owners and
    /// repositories case-insensitively, so both would be one issue worked twice (and, on a
    /// case-insensitive file system, one state file).
    #[error(
        "{issue} differs only in letter case from {existing}, which is the same issue; use {existing}"
    )]
    CaseVariant {
        /// The new issue, as given.
        issue: String,
        /// The ref of the existing session.
        existing: String,
    },
    /// A session file names a worktree outside the state directory's `worktrees/`.
    #[error("session file for {issue} points outside {root}: {path}")]
    UnsafePath {
        /// The issue whose session file it is.
        issue: String,
        /// The worktrees root.
        root: PathBuf,
        /// The offending path.
        path: PathBuf,
    },
    /// A stored session id is not valid.
    #[error("session file {path} holds an invalid session id {id:?}")]
    BadSessionId {
        /// The session file or index holding it.
        path: PathBuf,
        /// The stored text, as found.
        id: String,
    },
    /// A base or PM agent session file that does not say which directory its session lives in
    /// (written by an older kugetsu); running it elsewhere may hang the agent.
    #[error("{path} does not record the directory its session lives in")]
    NoDirectory {
        /// The session file.
        path: PathBuf,
    },
    /// The session was made by another agent driver than the one configured (`KUGETSU_AGENT`
    /// changed since); handing its id to this one would reach the wrong agent.
    #[error("{subject} was made by the agent driver {made_by}, but {configured} is configured")]
    OtherDriver {
        /// The issue ref, or `the base session` / `the PM agent session`.
        subject: String,
        /// Its session file.
        path: PathBuf,
        /// The driver that made it.
        made_by: String,
        /// The driver configured now.
        configured: String,
    },
    /// The session was last run by a newer major version of its agent than the configured
    /// program (the user went back to an older one): the older agent would not see the newer
    /// turns, or would make a new empty session under the same id.
    #[error(
        "{subject} was last run by {agent} {ran_with}.x, but the configured {agent} program is \
         {configured}.x, which cannot continue it; use {agent} {ran_with}.x or newer"
    )]
    NewerAgent {
        /// The issue ref, or `the base session` / `the PM agent session`.
        subject: String,
        /// Its session file.
        path: PathBuf,
        /// The driver.
        agent: String,
        /// The major version that last ran it.
        ran_with: u32,
        /// The major version of the configured program.
        configured: u32,
    },
    /// A stop was asked for an issue whose session runs no turn.
    #[error("{issue} is not running (its session is {state})")]
    NotRunning {
        /// The issue ref.
        issue: String,
        /// The session's state.
        state: String,
    },
    /// A stop was asked for (Ctrl-C, SIGTERM, a hang-up) before the agent's turn began
    /// (while waiting for a slot, for instance); nothing was left half-done.
    #[error("interrupted by {signal}")]
    Interrupted {
        /// The signal, as people read it.
        signal: String,
    },
    /// A budget is spent, so the turn was not started (see [`crate::usage::budget`]).
    #[error("{issue}: {spent}; no turn started{}", hint_for(.spent))]
    OverBudget {
        /// The issue ref (`pm-agent` for the PM agent).
        issue: String,
        /// Which budget, and what it allowed and got.
        spent: Exhausted,
    },
    /// A state file problem.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A worktree problem.
    #[error(transparent)]
    Worktree(#[from] WorktreeError),
    /// An agent problem.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A slot problem.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// An env file problem.
    #[error(transparent)]
    Env(#[from] EnvFileError),
    /// The model's provider is paused (it refused for a limit) and the wait for its end ran
    /// out, as a full slot's does.
    #[error("the agent's provider is {}", .pause.describe())]
    ProviderPaused {
        /// The pause that holds the turn back.
        pause: Box<crate::pause::Pause>,
    },
}

fn hint_for(spent: &Exhausted) -> &'static str {
    match spent.budget {
        BudgetKind::Issue => " (raise KUGETSU_ISSUE_BUDGET_USD to go on)",
        BudgetKind::Daily => {
            " (raise KUGETSU_DAILY_BUDGET_USD, or wait for the next day, which begins at 00:00 UTC)"
        }
    }
}

impl OrchestratorError {
    /// Whether the same step may succeed when tried again later (the queue daemon retries an
    /// item with backoff on [`Retry::Later`], gives up at once on [`Retry::Never`], and puts it
    /// back untouched on [`Retry::Stopped`]).
    pub fn retry(&self) -> Retry {
        match self {
            OrchestratorError::Worktree(e) => e.retry(),
            // A missing `init`, base or PM session, or a ref that clashes with another's state
            // file, stays so until the user acts; so does a worktree path outside the state
            // directory, and an init or stop that makes no sense in the state as it is.
            OrchestratorError::NotInitialized { .. }
            | OrchestratorError::AlreadyInitialized { .. }
            | OrchestratorError::BaseMissing
            | OrchestratorError::PmMissing
            | OrchestratorError::NameCollision { .. }
            | OrchestratorError::CaseVariant { .. }
            | OrchestratorError::UnsafePath { .. }
            | OrchestratorError::NotRunning { .. }
            // A session another driver made waits for a change of configuration.
            | OrchestratorError::OtherDriver { .. }
            | OrchestratorError::NewerAgent { .. } => Retry::Never,
            OrchestratorError::Interrupted { .. } => Retry::Stopped,
            // Another process's turn ends, a full slot frees, a session destroyed meanwhile is
            // started afresh; storage, agent and env failures, and a session file that is not
            // as expected, may be repaired while the step waits.
            OrchestratorError::AlreadyRunning { .. }
            | OrchestratorError::UnknownIssue { .. }
            | OrchestratorError::BadSessionId { .. }
            | OrchestratorError::NoDirectory { .. }
            | OrchestratorError::Storage(_)
            | OrchestratorError::Agent(_)
            | OrchestratorError::Queue(_)
            | OrchestratorError::Env(_)
            // The queue daemon does not count it (it claims nothing while a pause holds).
            | OrchestratorError::ProviderPaused { .. } => Retry::Later,
            // A raised limit or the next UTC day frees it; the queue holds the item meanwhile.
            OrchestratorError::OverBudget { .. } => Retry::Later,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> PathBuf {
        PathBuf::from("/state/worktrees/x")
    }

    /// The queue daemon's retry rules: a busy issue, a full slot store or a crashed agent is
    /// retried, a refusal to lose work or a missing setup is not, and a step stopped by a stop
    /// request is neither.
    #[test]
    fn each_error_says_whether_a_retry_can_help() {
        let later = [
            OrchestratorError::AlreadyRunning { issue: "o/r#1".into() },
            OrchestratorError::Queue(QueueError::NoSlot { limit: 1, waited: Duration::ZERO }),
            OrchestratorError::Worktree(WorktreeError::Locked { path: path(), reason: None }),
            OrchestratorError::Worktree(WorktreeError::SshFailed { url: "u".into() }),
            OrchestratorError::Agent(AgentError::CommandFailed {
                command: "run".into(),
                message: "crashed".into(),
            }),
        ];
        for e in &later {
            assert_eq!(e.retry(), Retry::Later, "{e:?}");
            assert!(e.retry().is_worthwhile());
        }
        let never = [
            OrchestratorError::NotInitialized { root: path() },
            OrchestratorError::BaseMissing,
            OrchestratorError::PmMissing,
            OrchestratorError::OtherDriver {
                subject: "o/r#1".into(),
                path: path(),
                made_by: "other".into(),
                configured: "opencode".into(),
            },
            OrchestratorError::NewerAgent {
                subject: "o/r#1".into(),
                path: path(),
                agent: "opencode".into(),
                ran_with: 2,
                configured: 1,
            },
            OrchestratorError::CaseVariant { issue: "o/R#1".into(), existing: "o/r#1".into() },
            OrchestratorError::Worktree(WorktreeError::WouldLoseWork {
                path: path(),
                unsaved: Default::default(),
            }),
            OrchestratorError::Worktree(WorktreeError::AuthFailed { url: "u".into() }),
            OrchestratorError::Worktree(WorktreeError::BaseRefNotFound {
                base_ref: "topic".into(),
                url: "u".into(),
            }),
        ];
        for e in &never {
            assert_eq!(e.retry(), Retry::Never, "{e:?}");
            assert!(!e.retry().is_worthwhile());
        }
        assert_eq!(OrchestratorError::Worktree(WorktreeError::Interrupted).retry(), Retry::Stopped);
        assert_eq!(
            OrchestratorError::Interrupted { signal: "SIGTERM".into() }.retry(),
            Retry::Stopped
        );
    }
}
