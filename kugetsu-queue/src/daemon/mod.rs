//! The queue daemon: drains the queue, never running more dev agents than allowed, losing
//! nothing when anything dies; plus what `queue-daemon status|stop|logs` need.
//!
//! # One daemon per state directory
//! The daemon holds `queue/daemon.lock` (an `flock`, released by the kernel when it dies) for
//! its whole life. A second daemon fails to take it and exits with
//! [`DaemonError::AlreadyRunning`]. `queue/daemon.pid` (pid, identity token, start time) is
//! informational only: a stale one, even naming a live unrelated process, never blocks a start,
//! and [`stop`] signals a pid only if the lock is held *and* the pid's identity token matches.
//!
//! # Dispatching
//! The main loop wakes every `interval`, at once when an item is enqueued (a FIFO poke, see
//! [`crate::wake`]), when a worker finishes, and when a retry falls due. Each round it takes a
//! dev slot *first* and only then claims the oldest due item, so it never claims work it cannot
//! start; the worker thread keeps the slot for the agent's whole run. Items without an issue ref
//! go to the PM agent, which takes no slot; at most one PM item runs at a time (the PM agent is
//! one session), and a PM item may be claimed while every dev slot is busy. The limit is
//! re-read every round, so a config change applies without a restart.
//!
//! # Failures and retries
//! A retryable failure puts the item back to `pending` with `not_before` = now + backoff
//! (doubling from [`DaemonOptions::retry_backoff`]); after [`DaemonOptions::max_attempts`]
//! attempts, or on a fatal failure, it becomes `error` with the reason in `last_error`. The
//! dispatcher says which failure is which ([`DispatchError`]); over the orchestration, the
//! error itself does ([`OrchestratorError::retry`](kugetsu_core::orchestrator::OrchestratorError::retry)).
//!
//! # Leases and adoption
//! A claimed item records the daemon's pid and identity token, and the agent's pid and token
//! once it starts (`extra.agent_token`). Every round, items claimed by a process that is no
//! longer alive (a crashed or killed daemon, a killed claimer) are recovered:
//! - if their agent is still alive, it is *adopted*: watched (holding a slot when one is free,
//!   since it still uses resources) until it exits; then [`Dispatcher::adopted_exited`] settles
//!   the turn (the old daemon that could have read its outcome is gone) and says how the item
//!   ends;
//! - otherwise the item goes back to `pending` (the attempt stays counted, so an item that
//!   crashes its daemon cannot loop forever) or to `error` when attempts are used up.
//!
//! # Lost hosts
//! On a shared queue the daemon also renews a lease of its own host with its heartbeat, and
//! looks for hosts whose lease has been expired for `KUGETSU_HOST_LOST_SECONDS`: their issues
//! with work waiting move to the live hosts (see [`HostWatch`](crate::backend::HostWatch)),
//! each move reported as a `task_queued` notification of the items it moved. A host that comes
//! back is told which of its issues moved meanwhile (logged) and never claims them again. After
//! each turn of an issue, [`OrchestratorDispatcher`] saves its history (session export and
//! worktree's unsaved work) for another host, and starts an issue that moved here from it.
//!
//! # Stopping
//! The daemon runs until the [`Interrupt`](kugetsu_core::interrupt::Interrupt) it was handed
//! is triggered; it installs no signal handler (the CLI triggers it on SIGTERM and SIGINT, and
//! ignores SIGHUP, since closing an SSH session must not stop a daemon). It then stops claiming
//! at once, asks running dispatches to stop (the stop flag in [`DispatchContext`]), then
//! terminates the agents still running: `SIGTERM` to each agent's process group, `SIGKILL`
//! after [`DaemonOptions::shutdown_grace`]. Their items go back to `pending` with the attempt
//! refunded (stopping was not their fault), so the next daemon starts them again (as a
//! `continue` when the session exists). Agents are killed rather than left running because
//! their output pipes end with the daemon, so they could not report anyway. The daemon exits
//! within about `shutdown_grace + 2s` (under 5 s by default), with every item in a consistent
//! state.
//!
//! # Wiring it up
//! [`OrchestratorDispatcher`] runs items through the orchestration, deciding `start`,
//! `continue` or the PM agent and which failures are retried; the embedder hands it a
//! [`DispatchWiring`] that builds an orchestrator from its configuration (taking its slot from
//! the one the worker already holds, [`DispatchContext::lent_slot`], so that `start` and
//! `continue` do not take a second) and says where an issue's repository comes from:
//!
//! ```no_run
//! use std::sync::Arc;
//! use kugetsu_core::interrupt::Interrupt;
//! use kugetsu_core::orchestrator::Orchestrator;
//! use kugetsu_core::queue::AgentSlots;
//! use kugetsu_core::worktree::RepoSource;
//! use kugetsu_core::{IssueRef, StateDir};
//! use kugetsu_queue::daemon::{
//!     Daemon, DaemonOptions, DispatchWiring, OrchestratorDispatcher, QueueEvent, WiringError,
//!     request_stop,
//! };
//!
//! struct MyWiring;
//! impl DispatchWiring for MyWiring {
//!     fn orchestrator(
//!         &self,
//!         slots: Arc<dyn AgentSlots>,
//!         interrupt: Interrupt,
//!     ) -> Result<Orchestrator, WiringError> {
//!         // Read the configuration afresh; build the orchestrator with `slots` as its slots
//!         // and `interrupt` in its settings.
//!         # let _ = (slots, interrupt);
//!         Err(WiringError::new("not in this example"))
//!     }
//!     fn repo_source(&self, issue: &IssueRef) -> Result<RepoSource, WiringError> {
//!         Err(WiringError::new(format!("no repository known for {issue}")))
//!     }
//! }
//!
//! let state = StateDir::new("/home/me/.kugetsu");
//! let notify = |e: &QueueEvent| { let _ = (e.kind.as_str(), &e.detail); };
//! let daemon = Daemon::new(
//!     state.clone(),
//!     Arc::new(OrchestratorDispatcher::new(MyWiring)),
//!     Arc::new(|| 3 /* re-read the config */),
//! )
//! .with_notifier(Arc::new(notify))
//! .with_options(DaemonOptions::default());
//! // Whatever should stop the daemon (a signal handler, a button, a test) calls
//! // `request_stop(&state, &stop, signal)`.
//! let stop = Interrupt::new();
//! # request_stop(&state, &stop, 0);
//! daemon.run(&stop)?;
//! # Ok::<(), kugetsu_queue::DaemonError>(())
//! ```
//!
//! A [`Dispatcher`] of one's own (a test's fake agent, another kind of work) plugs in the same
//! way.

mod control;
mod dispatch;
mod error;
mod events;
mod hosts;
mod leases;
mod orchestrated;
mod recovery;
mod round;
mod run;
mod setup;
mod shutdown;
mod workers;

pub use control::{DaemonStatus, PidFile, StopOutcome, spawn_detached, status, stop, tail_log};
pub use dispatch::{DispatchContext, DispatchError, DispatchOutcome, Dispatcher};
pub use error::DaemonError;
pub use events::{NoNotifier, Notifier, QueueEvent, QueueEventKind};
pub use orchestrated::{DispatchWiring, OrchestratorDispatcher, WiringError};
pub use run::{DaemonExit, request_stop};
pub use setup::{Companion, Daemon, DaemonOptions, GateFn, Held, LimitFn};
