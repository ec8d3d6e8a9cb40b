//! A queue backend as the daemon and the CLI use it: the queue, the agent slots, the rule that
//! tells a live claimer from a dead one, and the wake-up, chosen together because they must
//! agree (a database queue with lock-file slots would put no limit across hosts).

use std::sync::Arc;

use kugetsu_core::StateDir;
use kugetsu_core::queue::{AgentSlots, Claim, Liveness, QueueError, TaskQueue, WakeUp};
use kugetsu_process::identity;
use time::OffsetDateTime;

use crate::{FileQueue, FileSlots};

/// The parts of one queue backend.
#[derive(Clone)]
pub struct Backend {
    /// The queue.
    pub queue: Arc<dyn TaskQueue>,
    /// The agent slots (`MAX_CONCURRENT_AGENTS` on this host, and any shared limit).
    pub slots: Arc<dyn AgentSlots>,
    /// How a claim's holder is known to be alive.
    pub liveness: Arc<dyn Liveness>,
    /// A wake-up beyond the state directory's own FIFO (which every daemon listens on, for
    /// local enqueues and signals): `None` for the file queue.
    pub wake: Option<Arc<dyn WakeUp>>,
    /// The host this process claims for, when several hosts share the queue.
    pub host: Option<String>,
    /// The one-daemon-per-host rule beyond the state directory's lock, for a shared queue.
    pub seat: Option<Arc<dyn DaemonSeat>>,
    /// This host's own lease and the moving of lost hosts' issues, for a shared queue.
    pub hosts: Option<Arc<dyn HostWatch>>,
    /// Where provider pauses are kept when not in the state directory (a shared queue's
    /// server: every host must see them).
    pub pauses: Option<Arc<dyn kugetsu_core::pause::Pauses>>,
}

/// On a shared queue: a daemon keeps its host known to be alive, moves the issues waiting for
/// hosts that are lost (silent for `KUGETSU_HOST_LOST_SECONDS`), and learns which of its own
/// issues moved while it was lost.
pub trait HostWatch: Send + Sync {
    /// Renews this host's lease.
    fn beat(&self) -> Result<(), QueueError>;
    /// Moves the issues of lost hosts that have work waiting: their affinity is released and
    /// their items run on whichever host claims them first. Of several daemons calling at
    /// once, one makes each move; it gets the moves back (to report them).
    fn move_lost(&self) -> Result<Vec<HostMove>, QueueError>;
    /// The moves away from this host it has not been told of yet (each is told once).
    fn moved_away(&self) -> Result<Vec<HostMove>, QueueError>;
    /// Keeps `doc`, what another host needs to carry `issue` on, in place of what was kept;
    /// only while this host keeps the issue (a host that lost it writes nothing). Returns
    /// whether it was kept.
    fn save_history(&self, issue: &str, doc: &str) -> Result<bool, QueueError>;
    /// What `issue`'s last host kept for another to carry it on, and that host, when it was
    /// another host than this one.
    fn history(&self, issue: &str) -> Result<Option<(String, String)>, QueueError>;
}

/// An issue moved away from a lost (or released) host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostMove {
    /// The issue.
    pub issue_ref: String,
    /// The host it left.
    pub from_host: String,
    /// The host that took it since, once one has.
    pub to_host: Option<String>,
    /// When.
    pub at: OffsetDateTime,
    /// Why, and what stayed behind, in words.
    pub why: String,
    /// Its waiting items as the move left them (empty when read back later).
    pub items: Vec<kugetsu_core::queue::QueueItem>,
}

/// Where a daemon takes its host's seat on a shared queue, held while it runs.
pub trait DaemonSeat: Send + Sync {
    /// Takes the seat: `Ok(None)` when another daemon holds it; what is returned holds it
    /// until dropped.
    fn take(&self) -> Result<Option<Box<dyn std::any::Any + Send>>, QueueError>;
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("host", &self.host).finish_non_exhaustive()
    }
}

impl Backend {
    /// The embedded default: files and locks in `state`, process identity for liveness.
    pub fn files(state: &StateDir) -> Self {
        Backend {
            queue: Arc::new(FileQueue::new(state)),
            slots: Arc::new(FileSlots::new(state)),
            liveness: Arc::new(ProcessLiveness),
            wake: None,
            host: None,
            seat: None,
            hosts: None,
            pauses: None,
        }
    }
}

/// [`Liveness`] on one machine: a claim's holder, and its agent, live as long as the very
/// processes named by their identity tokens do ([`kugetsu_process::identity`]). The file
/// queue's rule: the state directory is on this machine, so every claimer is a process here.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessLiveness;

impl Liveness for ProcessLiveness {
    fn own_token(&self) -> String {
        identity::own_token()
    }

    fn holder_alive(&self, claim: &Claim, _now: OffsetDateTime) -> bool {
        identity::is_alive(claim.owner_pid, &claim.owner_token)
    }

    fn agent_alive(&self, claim: &Claim, agent_token: &str) -> bool {
        claim.agent_pid.is_some_and(|pid| identity::is_alive(pid, agent_token))
    }
}
