//! The heartbeat: the leases of the items this daemon runs are renewed, and an item whose lease
//! was lost is let go.

use std::collections::HashMap;

use kugetsu_core::queue::Claim;
use rustix::process::Signal;

use super::setup::Daemon;
use super::workers::{Shared, Worker, lock_state};
use kugetsu_process::identity as process;

impl Daemon {
    /// The heartbeat: renews the leases of the items this daemon runs. A lease that comes back
    /// lost (this daemon was paused or cut off past its expiry, and the item went to another)
    /// makes its worker write nothing more and its agent stop: the item is someone else's now.
    /// An unreachable queue renews nothing and ends nothing: the agents run on, and the leases
    /// are renewed when it answers again.
    pub(super) fn renew_leases(&self, shared: &Shared, workers: &HashMap<String, Worker>) {
        let held: Vec<(String, Claim)> = workers
            .iter()
            .filter(|(_, w)| !w.handle.is_finished())
            .filter_map(|(id, w)| Some((id.clone(), w.item.claim.clone()?)))
            .collect();
        if held.is_empty() {
            return;
        }
        let kept = match self.queue.renew(&held) {
            Ok(kept) => kept,
            Err(e) => {
                shared.log(&format!(
                    "cannot renew {} lease(s): {e}; agents keep running",
                    held.len()
                ));
                return;
            }
        };
        for (id, _) in held.iter().filter(|(id, _)| !kept.contains(id)) {
            let Some(worker) = workers.get(id) else { continue };
            let mut st = lock_state(&worker.state);
            if st.finalized {
                continue;
            }
            st.finalized = true;
            shared.log(&format!(
                "{id}: lease lost (another daemon holds the item now); stopping its agent, \
                 recording nothing"
            ));
            if let Some((pid, token)) = st.agent.clone() {
                process::signal_group_verified(pid, &token, Signal::TERM);
            }
        }
    }
}
