//! The threads that run items: one per dispatched item (holding its slot for the agent's whole
//! run) and one per adopted agent, and the state they share with the main loop so exactly one
//! of them writes each item's final state.

use std::collections::HashMap;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kugetsu_core::clock::Clock;
use kugetsu_core::queue::{
    AgentSlots, Claim, Liveness, QueueError, QueueItem, QueueStatus, SlotGuard, TaskQueue,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::dispatch::{DispatchContext, DispatchError, DispatchOutcome, Dispatcher};
use super::events::{Notifier, QueueEvent, QueueEventKind};
use super::setup::{DaemonOptions, LimitFn};
use crate::log::DaemonLog;
use kugetsu_process::identity as process;

/// Lifecycle of one running item, shared by its worker thread and the main loop so that
/// exactly one of them writes the item's final state.
#[derive(Default)]
pub(super) struct WorkerState {
    /// The agent's pid and token, once reported.
    pub(super) agent: Option<(u32, String)>,
    /// The item's final state was written (by the worker, or by shutdown abandoning it).
    pub(super) finalized: bool,
}

pub(super) struct Worker {
    pub(super) item: QueueItem,
    pub(super) pm: bool,
    pub(super) state: Arc<Mutex<WorkerState>>,
    pub(super) handle: JoinHandle<()>,
}

pub(super) fn lock_state(m: &Mutex<WorkerState>) -> MutexGuard<'_, WorkerState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a worker keeps trying to record an outcome while the queue is unreachable.
const OUTCOME_RETRY_FOR: Duration = Duration::from_secs(15 * 60);

/// Shared by the main loop and the workers.
pub(super) struct Shared {
    pub(super) queue: Arc<dyn TaskQueue>,
    pub(super) slots: Arc<dyn AgentSlots>,
    pub(super) dispatcher: Arc<dyn Dispatcher>,
    pub(super) notifier: Arc<dyn Notifier>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) limit: LimitFn,
    pub(super) options: DaemonOptions,
    pub(super) log: DaemonLog,
    pub(super) stopping: AtomicBool,
    pub(super) wake: Sender<()>,
    pub(super) token: String,
    /// The host this daemon claims for, when the queue is shared.
    pub(super) host: Option<String>,
    /// Claims made so far: makes each claim's lease id unique.
    pub(super) leases: std::sync::atomic::AtomicU64,
    pub(super) liveness: Arc<dyn Liveness>,
    /// On a shared queue: hosts' leases, moves and issues' saved histories.
    pub(super) hosts: Option<Arc<dyn crate::backend::HostWatch>>,
    /// Why the last held item waits: a spent budget is notified once, not per item.
    pub(super) last_hold: Mutex<Option<String>>,
}

impl Shared {
    pub(super) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// A fresh claim by this daemon, with a lease id no other claim has.
    pub(super) fn new_claim(&self) -> Claim {
        let n = self.leases.fetch_add(1, Ordering::Relaxed);
        let mut claim = Claim::new(std::process::id(), self.token.clone(), self.now());
        claim.host = self.host.clone();
        claim.lease = Some(format!("{}/{n}", self.token));
        claim
    }

    pub(super) fn log(&self, message: &str) {
        tracing::info!("{message}");
        self.log.line(self.now(), message);
    }

    pub(super) fn event(&self, kind: QueueEventKind, item: &QueueItem, detail: &str) {
        self.log(&format!("{} {} {}", kind.as_str(), item.id, detail));
        let ends_a_turn = matches!(
            kind,
            QueueEventKind::TaskCompleted | QueueEventKind::TaskError | QueueEventKind::OverBudget
        );
        let event = QueueEvent {
            kind,
            item_id: item.id.clone(),
            issue_ref: item.issue_ref.clone(),
            message: item.message.clone(),
            detail: detail.to_string(),
            at: self.now(),
            cost_usd: item.usage.and_then(|u| u.cost_usd).filter(|_| ends_a_turn),
        };
        // A notifier bug must not take the daemon (or a worker's bookkeeping) down.
        let notifier = &self.notifier;
        if catch_unwind(AssertUnwindSafe(|| notifier.notify(&event))).is_err() {
            self.log.line(self.now(), "the notifier panicked; event dropped");
        }
    }

    pub(super) fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
        self.options.retry_backoff.saturating_mul(factor).min(self.options.max_backoff)
    }

    /// Writes the outcome of a dispatch (or of an adopted agent) to the item.
    pub(super) fn finish(
        &self,
        item: &QueueItem,
        result: Result<DispatchOutcome, DispatchError>,
    ) -> bool {
        self.finish_with(item, result, None)
    }

    /// [`Shared::finish`], with what the item's turn used (its result, kept on the item).
    pub(super) fn finish_with(
        &self,
        item: &QueueItem,
        result: Result<DispatchOutcome, DispatchError>,
        usage: Option<kugetsu_core::usage::TurnUsage>,
    ) -> bool {
        let now = self.now();
        let mut newly_held = None;
        let stopping = self.stopping.load(Ordering::Relaxed);
        let max = self.options.max_attempts;
        let mut event = (QueueEventKind::TaskCompleted, String::new());
        let mut requeued = false;
        let Some(claim) = item.claim.clone() else {
            self.log(&format!("cannot record the outcome of {}: it has no claim", item.id));
            return false;
        };
        // Fenced: if the lease was lost (this daemon was paused or cut off and the item went
        // to another), nothing is written over the new owner's state.
        let mut write = |it: &mut QueueItem| {
            it.claim = None;
            it.agent_token = None;
            it.held = None;
            if usage.is_some() {
                it.usage = usage;
            }
            match &result {
                Ok(outcome) => {
                    it.status = QueueStatus::Completed;
                    it.last_error = None;
                    it.not_before = None;
                    event = (QueueEventKind::TaskCompleted, outcome.summary.clone());
                }
                Err(e) if stopping || matches!(e, DispatchError::Interrupted(_)) => {
                    it.status = QueueStatus::Pending;
                    it.attempts = it.attempts.saturating_sub(1);
                    it.last_error = Some(format!("interrupted: the daemon stopped ({e})"));
                    it.not_before = None;
                    requeued = true;
                    event = (QueueEventKind::TaskQueued, "requeued: the daemon stopped".into());
                }
                Err(DispatchError::Held { reason, frees_at }) => {
                    // Not an attempt: it did not run. Looked at again soon, so a raised limit
                    // frees it without a restart.
                    let soon = now + self.options.hold_recheck;
                    it.status = QueueStatus::Pending;
                    it.attempts = it.attempts.saturating_sub(1);
                    it.held = Some(reason.clone());
                    it.not_before = Some(frees_at.map_or(soon, |at| at.min(soon)));
                    requeued = true;
                    newly_held = Some(reason.clone());
                    event = (QueueEventKind::TaskQueued, reason.clone());
                }
                Err(DispatchError::Paused(reason)) => {
                    it.status = QueueStatus::Pending;
                    it.attempts = it.attempts.saturating_sub(1);
                    it.last_error = Some(format!("paused: {reason}"));
                    it.not_before = None;
                    requeued = true;
                    event =
                        (QueueEventKind::TaskQueued, format!("requeued, not counted: {reason}"));
                }
                Err(DispatchError::Fatal(reason)) => {
                    it.status = QueueStatus::Error;
                    it.last_error = Some(reason.clone());
                    event = (QueueEventKind::TaskError, reason.clone());
                }
                Err(DispatchError::OverBudget(reason)) => {
                    it.status = QueueStatus::Error;
                    it.last_error = Some(reason.clone());
                    event = (QueueEventKind::OverBudget, reason.clone());
                }
                Err(e) if it.attempts >= max => {
                    it.status = QueueStatus::Error;
                    let reason = format!("failed after {} attempts: {e}", it.attempts);
                    it.last_error = Some(reason.clone());
                    event = (QueueEventKind::TaskError, reason);
                }
                Err(e) => {
                    let at = now + self.backoff(it.attempts);
                    it.status = QueueStatus::Pending;
                    it.last_error = Some(e.to_string());
                    it.not_before = Some(at);
                    event = (
                        QueueEventKind::TaskQueued,
                        format!(
                            "attempt {}/{max} failed ({e}); retrying at {}",
                            it.attempts,
                            at.format(&Rfc3339).unwrap_or_default()
                        ),
                    );
                }
            }
        };
        // An unreachable queue server must not lose the outcome: keep trying (the worker, and
        // so its lease renewal, lives on meanwhile) until it answers or the lease is gone.
        let mut pause = Duration::from_millis(250);
        let started = Instant::now();
        let update = loop {
            match self.queue.update_claimed(&item.id, &claim, &mut write) {
                Err(e @ QueueError::Unavailable { .. })
                    if started.elapsed() < OUTCOME_RETRY_FOR =>
                {
                    self.log(&format!("cannot record the outcome of {} yet: {e}", item.id));
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                other => break other,
            }
        };
        match update {
            Ok(updated) => {
                self.event(event.0, &updated, &event.1);
                // One notification per spent budget, not one per item it holds nor one per
                // amount spent past it (`held: daily budget $5.00 spent ($5.02)`); told again
                // once an item has run since (a raised limit, the next day).
                let mut last = self.last_hold.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(reason) = newly_held {
                    let budget = reason.rsplit_once(" (").map_or(reason.as_str(), |(b, _)| b);
                    if last.as_deref() != Some(budget) {
                        self.event(QueueEventKind::OverBudget, &updated, &reason);
                        *last = Some(budget.to_owned());
                    }
                } else if result.is_ok() {
                    *last = None;
                }
            }
            Err(e @ QueueError::LeaseLost { .. }) => {
                self.log(&format!("outcome of {} not recorded: {e}", item.id));
                return false;
            }
            Err(e) => self.log(&format!("cannot record the outcome of {}: {e}", item.id)),
        }
        requeued
    }

    pub(super) fn record_agent(&self, item: &QueueItem, state: &Mutex<WorkerState>, pid: u32) {
        let id = &item.id;
        let token = process::process_token(pid);
        lock_state(state).agent = token.clone().map(|t| (pid, t));
        let Some(claim) = item.claim.clone() else { return };
        let result = self.queue.update_claimed(id, &claim, &mut |it| {
            if let Some(claim) = it.claim.as_mut() {
                claim.agent_pid = Some(pid);
            }
            it.agent_token = token.clone();
        });
        match result {
            Ok(_) => self.log(&format!("agent of {id} started: pid {pid}")),
            Err(e) => self.log(&format!("cannot record agent pid {pid} of {id}: {e}")),
        }
    }
}

pub(super) fn reap(workers: &mut HashMap<String, Worker>) {
    let done: Vec<String> =
        workers.iter().filter(|(_, w)| w.handle.is_finished()).map(|(k, _)| k.clone()).collect();
    for id in done {
        if let Some(w) = workers.remove(&id) {
            let _ = w.handle.join();
        }
    }
}

pub(super) fn spawn_worker(
    shared: Arc<Shared>,
    item: QueueItem,
    slot: Option<Box<dyn SlotGuard>>,
) -> io::Result<Worker> {
    let state = Arc::new(Mutex::new(WorkerState::default()));
    let pm = item.issue_ref.is_none();
    let handle = {
        let state = state.clone();
        let item = item.clone();
        std::thread::Builder::new().name(format!("queue-{}", item.id)).spawn(move || {
            // Held until this thread ends: for the agent's whole run.
            let slot = slot;
            let index = slot.as_ref().map(|s| s.index());
            shared.event(
                QueueEventKind::TaskStarted,
                &item,
                if pm { "PM agent" } else { "dev agent" },
            );
            let mut on_agent = |pid: u32| shared.record_agent(&item, &state, pid);
            let (result, usage) = {
                let mut ctx = DispatchContext::new(index, &shared.stopping, &mut on_agent)
                    .with_hosts(shared.hosts.clone(), shared.options.history_cap);
                let dispatcher = &shared.dispatcher;
                let result =
                    catch_unwind(AssertUnwindSafe(|| dispatcher.dispatch(&item, &mut ctx)))
                        .unwrap_or_else(|panic| {
                            let what = panic
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| panic.downcast_ref::<String>().cloned())
                                .unwrap_or_default();
                            Err(DispatchError::Retry(format!("the dispatcher panicked: {what}")))
                        });
                (result, ctx.usage())
            };
            // The run is over: free the slot before writing the outcome, so that a daemon the
            // write wakes (another host's, on a shared queue) finds the slot free.
            drop(slot);
            {
                let mut st = lock_state(&state);
                if !st.finalized {
                    st.finalized = true;
                    shared.finish_with(&item, result, usage);
                }
            }
            let _ = shared.wake.send(());
        })?
    };
    Ok(Worker { item, pm, state, handle })
}

/// Watches an adopted agent (not our child: polled by identity token) until it exits.
pub(super) fn spawn_adopter(
    shared: Arc<Shared>,
    item: QueueItem,
    pid: u32,
    token: String,
    slot: Option<Box<dyn SlotGuard>>,
) -> io::Result<Worker> {
    let state =
        Arc::new(Mutex::new(WorkerState { agent: Some((pid, token.clone())), finalized: false }));
    let pm = item.issue_ref.is_none();
    let handle = {
        let state = state.clone();
        let item = item.clone();
        std::thread::Builder::new().name(format!("adopt-{}", item.id)).spawn(move || {
            let mut slot = slot;
            // On shutdown the main loop kills it like any running agent; this loop then sees
            // it gone and requeues the item.
            while process::is_alive(pid, &token) {
                if slot.is_none() && !pm {
                    // It still runs, so it counts against the limit once a slot frees.
                    slot = shared.slots.try_acquire((shared.limit)()).ok().flatten();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let mut st = lock_state(&state);
            if !st.finalized {
                st.finalized = true;
                let result = if shared.stopping.load(Ordering::Relaxed) {
                    Err(DispatchError::Interrupted(format!("adopted agent pid {pid} stopped")))
                } else {
                    shared.dispatcher.adopted_exited(&item, pid)
                };
                shared.finish(&item, result);
            }
            drop(st);
            drop(slot);
            let _ = shared.wake.send(());
        })?
    };
    Ok(Worker { item, pm, state, handle })
}
