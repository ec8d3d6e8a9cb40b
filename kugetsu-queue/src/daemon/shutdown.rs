//! Stopping: no more claims, running dispatches asked to stop, agents still running ended
//! (SIGTERM, then SIGKILL after the grace period), and their items handed back.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::dispatch::DispatchError;
use super::setup::Daemon;
use super::workers::{Shared, Worker, lock_state};
use kugetsu_process::identity as process;

impl Daemon {
    /// Stops workers and agents; returns how many items went back to `pending`.
    pub(super) fn shutdown(&self, shared: &Shared, mut workers: HashMap<String, Worker>) -> usize {
        shared.stopping.store(true, Ordering::Relaxed);
        let wait_all = |workers: &mut HashMap<String, Worker>, d: Duration| {
            let deadline = Instant::now() + d;
            while workers.values().any(|w| !w.handle.is_finished()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        // Dispatchers that honour the stop flag return on their own.
        wait_all(&mut workers, Duration::from_millis(500));
        let agents = |workers: &HashMap<String, Worker>| -> Vec<(u32, String)> {
            workers
                .values()
                .filter(|w| !w.handle.is_finished())
                .filter_map(|w| lock_state(&w.state).agent.clone())
                .collect()
        };
        for (pid, token) in agents(&workers) {
            if process::signal_group_verified(pid, &token, Signal::TERM) {
                shared.log(&format!("sent SIGTERM to agent pid {pid}"));
            }
        }
        wait_all(&mut workers, self.options.shutdown_grace);
        for (pid, token) in agents(&workers) {
            if process::signal_group_verified(pid, &token, Signal::KILL) {
                shared.log(&format!("sent SIGKILL to agent pid {pid}"));
            }
        }
        wait_all(&mut workers, Duration::from_secs(1));
        let mut requeued = 0;
        for (id, worker) in workers {
            let finished = worker.handle.is_finished();
            if finished {
                if worker.handle.join().is_err() {
                    shared.log(&format!("worker of {id} panicked"));
                }
                continue;
            }
            // Still running: write its state now, and make the worker's own write a no-op.
            let mut st = lock_state(&worker.state);
            if st.finalized {
                continue;
            }
            st.finalized = true;
            let agent_alive = st.agent.as_ref().is_some_and(|(p, t)| process::is_alive(*p, t));
            if agent_alive {
                // Unkillable for now: leave it claimed; the next daemon adopts it.
                shared.log(&format!("{id}: agent still alive; left for the next daemon"));
                continue;
            }
            if shared
                .finish(&worker.item, Err(DispatchError::Interrupted("the daemon stopped".into())))
            {
                requeued += 1;
            }
        }
        requeued
    }
}
