//! The seam between the daemon and whoever runs an item (the CLI, over the orchestration):
//! what a dispatch gets (its slot, the stop flag, where to report the agent's pid) and returns.

use std::sync::atomic::{AtomicBool, Ordering};

use kugetsu_core::queue::QueueItem;

use crate::slots::LentSlot;

/// What a dispatch achieved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DispatchOutcome {
    /// One line for the notification and the log ("PR opened", "session idle", ...).
    pub summary: String,
}

/// Why a dispatch failed, which decides what happens to the item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// Worth trying again later (agent crashed, network down): retried with backoff.
    #[error("{0}")]
    Retry(String),
    /// Retrying cannot help (bad issue ref, unknown repo): the item becomes `error` at once.
    #[error("{0}")]
    Fatal(String),
    /// The dispatch stopped because the daemon is stopping: back to `pending`, attempt refunded.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// A budget the item would spend from is spent, so it did not run: back to `pending`,
    /// attempt refunded, `reason` shown as why it waits, looked at again soon (a raised limit
    /// frees it) and at `frees_at` at the latest (the next UTC day, for the daily budget).
    #[error("{reason}")]
    Held {
        /// `held: daily budget $5.00 spent ($5.02)`.
        reason: String,
        /// When the budget frees by itself, if it does.
        frees_at: Option<time::OffsetDateTime>,
    },
    /// The item's turn was stopped at its budget: it ends in `error` (it did not finish), and
    /// the `over_budget` notification tells of it.
    #[error("{0}")]
    OverBudget(String),
    /// The model's provider refused for a limit (or is paused): back to `pending`, attempt
    /// refunded; the daemon's gate holds it until the provider's pause ends.
    #[error("paused: {0}")]
    Paused(String),
}

/// What a dispatch gets besides the item.
pub struct DispatchContext<'a> {
    slot: Option<usize>,
    stop: &'a AtomicBool,
    on_agent_started: &'a mut dyn FnMut(u32),
    hosts: Option<std::sync::Arc<dyn crate::backend::HostWatch>>,
    history_cap: usize,
    usage: Option<kugetsu_core::usage::TurnUsage>,
}

impl<'a> DispatchContext<'a> {
    /// A context (the daemon builds these; public so dispatchers can be tested alone).
    pub fn new(
        slot: Option<usize>,
        stop: &'a AtomicBool,
        on_agent_started: &'a mut dyn FnMut(u32),
    ) -> Self {
        DispatchContext { slot, stop, on_agent_started, hosts: None, history_cap: 0, usage: None }
    }

    /// On a shared queue: where an issue's history is kept for another host after each turn
    /// (at most `cap` bytes of each part), and found when the issue moved here.
    pub fn with_hosts(
        mut self,
        hosts: Option<std::sync::Arc<dyn crate::backend::HostWatch>>,
        cap: usize,
    ) -> Self {
        self.hosts = hosts;
        self.history_cap = cap;
        self
    }

    /// Where issues' histories are kept for other hosts, with the cap of each part.
    pub fn hosts(&self) -> Option<(&dyn crate::backend::HostWatch, usize)> {
        self.hosts.as_deref().map(|h| (h, self.history_cap))
    }

    /// The dev slot held for this item (`None` for PM agent items, which take none).
    pub fn slot_index(&self) -> Option<usize> {
        self.slot
    }

    /// The held slot as an `AgentSlots` to build the orchestrator with, so that its own slot
    /// acquire returns this slot instead of taking a second one. `None` for PM items.
    pub fn lent_slot(&self) -> Option<LentSlot> {
        self.slot.map(LentSlot::new)
    }

    /// Set when the daemon is stopping; pass it as the orchestration's interrupt flag.
    pub fn stop_flag(&self) -> &'a AtomicBool {
        self.stop
    }

    /// Whether the daemon is stopping.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Reports what the item's turn used (the agent's report), kept on the item as its result.
    pub fn record_usage(&mut self, usage: Option<kugetsu_core::usage::TurnUsage>) {
        self.usage = usage;
    }

    /// What [`DispatchContext::record_usage`] was told.
    pub fn usage(&self) -> Option<kugetsu_core::usage::TurnUsage> {
        self.usage
    }

    /// Reports the agent's pid (and process group) as soon as it is spawned, so that the lease
    /// records it: a later daemon can then adopt or kill it, and this one can stop it.
    pub fn agent_started(&mut self, pid: u32) {
        (self.on_agent_started)(pid);
    }
}

/// Runs one queue item. The CLI implements it over the orchestration: an item with an issue ref
/// goes to `start` (no session yet) or `continue`, one without goes to the PM agent.
pub trait Dispatcher: Send + Sync {
    /// Runs `item` to the end of its agent turn. Called on a worker thread; may block for
    /// hours. Should return [`DispatchError::Interrupted`] soon after
    /// [`DispatchContext::stop_requested`] turns true (or when its agent is killed).
    fn dispatch(
        &self,
        item: &QueueItem,
        ctx: &mut DispatchContext<'_>,
    ) -> Result<DispatchOutcome, DispatchError>;

    /// Called when the agent of `item` that this daemon adopted (its own daemon died while the
    /// agent ran on) has exited, with its pid. The dispatch that would have read the agent's
    /// outcome died with the old daemon, so this is where a dispatcher settles what the turn
    /// left behind and says how the item ends. The default reports the item completed.
    fn adopted_exited(&self, item: &QueueItem, pid: u32) -> Result<DispatchOutcome, DispatchError> {
        let _ = item;
        Ok(DispatchOutcome { summary: format!("adopted agent pid {pid} exited") })
    }
}
