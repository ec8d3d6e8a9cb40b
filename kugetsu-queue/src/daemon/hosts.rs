//! The daemon's part in moving a lost host's work: its own host's lease, the moves it makes,
//! and the moves it learns of when it comes back from being lost.

use super::events::QueueEventKind;
use super::setup::Daemon;
use super::workers::Shared;

impl Daemon {
    /// Renews this host's lease, moves the waiting issues of lost hosts, and logs the moves of
    /// this host's own issues made while it was lost. An unreachable queue is logged and
    /// retried at the next heartbeat.
    pub(super) fn watch_hosts(&self, shared: &Shared) {
        let Some(hosts) = &self.hosts else { return };
        if let Err(e) = hosts.beat() {
            shared.log(&format!("cannot renew this host's lease: {e}"));
            return;
        }
        match hosts.moved_away() {
            Ok(moves) => {
                for m in moves {
                    shared.log(&format!(
                        "{} moved to {} while this host was lost ({}); this host will not run \
                         it again",
                        m.issue_ref,
                        m.to_host.as_deref().unwrap_or("another host"),
                        m.why
                    ));
                }
            }
            Err(e) => shared.log(&format!("cannot read the moves of this host's issues: {e}")),
        }
        match hosts.move_lost() {
            Ok(moves) => {
                for m in moves {
                    shared.log(&format!(
                        "{} moved away from lost host {}: {}",
                        m.issue_ref, m.from_host, m.why
                    ));
                    for item in &m.items {
                        shared.event(QueueEventKind::TaskQueued, item, &m.why);
                    }
                }
            }
            Err(e) => shared.log(&format!("cannot look for lost hosts: {e}")),
        }
    }
}
