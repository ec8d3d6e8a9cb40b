//! kugetsu-core: the issue-driven orchestration of kugetsu, with no process spawning, no git
//! library and no terminal. It is handed a state directory, a config, a clock and three
//! backends (worktrees, agent driver, queue and slots) and does the rest; the CLI and embedders
//! wire real or fake backends in.

pub mod agent;
pub mod ansi;
pub mod cleanup;
pub mod clock;
pub mod config;
pub mod control;
pub mod env_file;
pub mod feedback;
pub mod forge;
pub mod interrupt;
pub mod issue_ref;
pub mod logs;
pub mod notify;
pub mod orchestrator;
pub mod outbox;
pub mod pause;
pub mod process;
pub mod queue;
pub mod report;
pub mod repos;
pub mod retry;
pub mod run_log;
pub mod secrets;
pub mod servers;
pub mod session;
mod shell;
pub mod state;
pub mod storage;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod usage;
pub mod watch;
pub mod worktree;

pub use agent::{AgentDriver, AgentError, AgentEvent, RunOutcome, SessionId};
pub use issue_ref::{IssueRef, IssueRefError, RepoRef};
pub use queue::{AgentSlots, QueueItem, QueueStatus, TaskQueue};
pub use session::{Index, RecordedSessionId, SessionFile, SessionKind, SessionState};
pub use state::StateDir;
pub use storage::StorageError;
pub use worktree::{WorktreeError, Worktrees};
