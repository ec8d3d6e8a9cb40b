//! One dispatch round: take a slot, claim the oldest due item its lane allows, hand it to a
//! worker; and the pause after rounds that could not reach the queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kugetsu_core::interrupt::Interrupt;
use kugetsu_core::queue::{ClaimLane, QueueError};

use super::dispatch::DispatchError;
use super::events::QueueEventKind;
use super::setup::Daemon;
use super::workers::{Shared, Worker, spawn_worker};

impl Daemon {
    /// Claims and starts items while slots (and the PM lane) allow. Returns how many started.
    pub(super) fn dispatch_round(
        &self,
        shared: &Arc<Shared>,
        workers: &mut HashMap<String, Worker>,
        stop: &Interrupt,
    ) -> Result<usize, QueueError> {
        let mut started = 0;
        while !stop.is_triggered() {
            if self.held_back(shared) {
                break;
            }
            let limit = (self.limit)();
            let slot = shared.slots.try_acquire(limit)?;
            let pm_busy = workers.values().any(|w| w.pm && !w.handle.is_finished());
            let claim = shared.new_claim();
            let now = shared.now();
            let lane = match (slot.is_some(), pm_busy) {
                (true, false) => Some(ClaimLane::Any),
                (true, true) => Some(ClaimLane::Issues),
                (false, false) => Some(ClaimLane::Pm),
                (false, true) => None,
            };
            let claimed = match lane {
                Some(lane) => self.queue.claim_next_in(&claim, now, lane)?,
                None => None,
            };
            let Some(item) = claimed else { break };
            let pm = item.issue_ref.is_none();
            // The PM agent takes no slot.
            let slot = if pm { None } else { slot };
            shared.event(
                QueueEventKind::TaskDequeued,
                &item,
                &format!(
                    "attempt {}/{}{}",
                    item.attempts,
                    self.options.max_attempts,
                    slot.as_ref().map(|s| format!(", slot {}", s.index())).unwrap_or_default()
                ),
            );
            let worker = spawn_worker(shared.clone(), item.clone(), slot);
            match worker {
                Ok(w) => {
                    workers.insert(item.id.clone(), w);
                    started += 1;
                }
                Err(e) => {
                    shared.log(&format!("cannot start a worker thread for {}: {e}", item.id));
                    shared
                        .finish(&item, Err(DispatchError::Retry(format!("no worker thread: {e}"))));
                    break;
                }
            }
        }
        Ok(started)
    }
}

impl Daemon {
    /// Whether the gate holds dispatch back now; says so in the log when that changes.
    fn held_back(&self, shared: &Shared) -> bool {
        let now = self.gate.as_ref().and_then(|gate| gate());
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let before = held.as_ref().map(|h| h.reason.clone());
        match (&before, &now) {
            (None, Some(h)) => shared.log(&format!("dispatch held: {}", h.reason)),
            (Some(_), None) => shared.log("dispatch resumed"),
            (Some(b), Some(h)) if *b != h.reason => {
                shared.log(&format!("dispatch held: {}", h.reason));
            }
            _ => {}
        }
        let is_held = now.is_some();
        *held = now;
        is_held
    }
}

/// Consecutive failed rounds (an unreachable queue server), and the pause they call for.
#[derive(Default)]
pub(super) struct Failing {
    pub(super) streak: u32,
}

impl Failing {
    /// `None` while rounds succeed; then 1 s doubling up to 1 min.
    pub(super) fn backoff(&self) -> Option<Duration> {
        (self.streak > 0).then(|| {
            Duration::from_secs(1u64 << self.streak.saturating_sub(1).min(6)).min(MAX_RETRY_PAUSE)
        })
    }
}

/// Longest pause between attempts to reach an unreachable queue.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(60);
