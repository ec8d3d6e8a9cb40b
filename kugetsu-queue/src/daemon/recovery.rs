//! Recovery: items whose claimer died go back to `pending`, or have their still-running agent
//! adopted.

use std::collections::HashMap;
use std::sync::Arc;

use kugetsu_core::queue::{QueueError, QueueItem, QueueStatus};

use super::events::QueueEventKind;
use super::setup::Daemon;
use super::workers::{Shared, Worker, spawn_adopter};

impl Daemon {
    /// Recovers items claimed by processes that are gone: adopt their live agents, requeue the
    /// rest.
    pub(super) fn recover(
        &self,
        shared: &Arc<Shared>,
        workers: &mut HashMap<String, Worker>,
    ) -> Result<(), QueueError> {
        for item in self.queue.claimed()? {
            if workers.contains_key(&item.id) {
                continue;
            }
            let Some(claim) = item.claim.clone() else {
                self.requeue_stale(shared, &item, "it was notified but had no owner recorded");
                continue;
            };
            if claim.owner_token != shared.token
                && shared.liveness.holder_alive(&claim, shared.now())
            {
                continue; // Someone alive still works on it.
            }
            let agent = claim.agent_pid.and_then(|pid| {
                let token = item.agent_token.clone()?;
                shared.liveness.agent_alive(&claim, &token).then_some((pid, token))
            });
            match agent {
                Some((pid, token)) => {
                    let mine = shared.new_claim();
                    let adopted = match shared.queue.update_claimed(&item.id, &claim, &mut |it| {
                        if let Some(c) = it.claim.as_mut() {
                            c.owner_pid = mine.owner_pid;
                            c.owner_token = mine.owner_token.clone();
                            c.host = mine.host.clone();
                            c.lease = mine.lease.clone();
                        }
                        it.adopted_by = Some(format!("pid {}", std::process::id()));
                    }) {
                        Ok(item) => item,
                        // Another daemon recovered it first.
                        Err(QueueError::LeaseLost { .. }) => continue,
                        Err(e) => return Err(e),
                    };
                    shared.event(
                        QueueEventKind::TaskStarted,
                        &adopted,
                        &format!(
                            "adopted agent pid {pid}: its daemon (pid {}) is gone",
                            claim.owner_pid
                        ),
                    );
                    // Take its slot now, before this round dispatches anything new, so the
                    // orphan and new agents together stay within the limit when they can.
                    let slot = if adopted.issue_ref.is_some() {
                        shared.slots.try_acquire((shared.limit)()).ok().flatten()
                    } else {
                        None
                    };
                    match spawn_adopter(shared.clone(), adopted.clone(), pid, token, slot) {
                        Ok(w) => {
                            workers.insert(adopted.id.clone(), w);
                        }
                        Err(e) => shared.log(&format!("cannot watch adopted {}: {e}", item.id)),
                    }
                }
                None => self.requeue_stale(
                    shared,
                    &item,
                    &format!("its daemon (pid {}) died while running it", claim.owner_pid),
                ),
            }
        }
        Ok(())
    }

    pub(super) fn requeue_stale(&self, shared: &Shared, item: &QueueItem, why: &str) {
        let max = self.options.max_attempts;
        let mut kind = QueueEventKind::TaskQueued;
        let mut change = |it: &mut QueueItem| {
            it.claim = None;
            it.agent_token = None;
            it.last_error = Some(why.to_string());
            if it.attempts >= max {
                it.status = QueueStatus::Error;
                kind = QueueEventKind::TaskError;
            } else {
                it.status = QueueStatus::Pending;
                kind = QueueEventKind::TaskQueued;
            }
        };
        // Fenced on the dead claim: of several daemons recovering it at once, one requeues it,
        // and none undoes a claim made since.
        let result = match &item.claim {
            Some(claim) => shared.queue.update_claimed(&item.id, claim, &mut change),
            None => shared.queue.update(&item.id, &mut change),
        };
        match result {
            Ok(updated) => shared.event(kind, &updated, &format!("recovered: {why}")),
            Err(QueueError::LeaseLost { .. }) => {}
            Err(e) => shared.log(&format!("cannot recover {}: {e}", item.id)),
        }
    }
}
