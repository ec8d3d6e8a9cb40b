//! kugetsu-queue: the durable file queue, the concurrency slots and the queue daemon.
//!
//! Users hand kugetsu work and walk away, so this crate is built around one promise: whatever
//! dies (the CLI, the daemon, an agent, the machine), no queued task is lost and no more than
//! `MAX_CONCURRENT_AGENTS` dev agents ever run at once. Everything rests on atomic file writes
//! and kernel-released `flock` locks from `kugetsu_core::storage`, so the guarantees hold
//! across processes, not just threads. Past one machine, the `postgres` feature keeps the same
//! promises across hosts with transactions, leases and advisory locks.
//!
//! - [`FileQueue`]: the [`TaskQueue`](kugetsu_core::queue::TaskQueue) over `queue/items/`.
//! - [`FileSlots`]: the [`AgentSlots`](kugetsu_core::queue::AgentSlots) over `locks/slot-<n>.lock`.
//! - [`Backend`]: a queue, its slots, its liveness rule and its wake-up, chosen together.
//! - `postgres` (feature `postgres`): all of them on PostgreSQL, shared by several hosts.
//! - [`daemon`]: the daemon that drains the queue, its dispatch policy over the orchestration
//!   ([`OrchestratorDispatcher`]), and `queue-daemon status|stop|logs`.
//! - [`service`]: the daemon as a systemd user service (`queue-daemon install|uninstall`).

pub mod backend;
pub mod daemon;
pub mod log;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod queue;
pub mod service;
pub mod slots;
pub mod wake;

pub use backend::{Backend, HostMove, HostWatch, ProcessLiveness};
pub use daemon::{
    Daemon, DaemonError, DaemonOptions, DispatchContext, DispatchError, DispatchOutcome,
    DispatchWiring, Dispatcher, GateFn, Held, Notifier, OrchestratorDispatcher, QueueEvent,
    QueueEventKind, WiringError,
};
pub use queue::FileQueue;
pub use slots::{FileSlotGuard, FileSlots, LentSlot, NoSlots};
