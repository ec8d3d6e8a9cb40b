//! What the daemon tells the world about items (claimed, completed, retried, failed...): the
//! spec's notification kinds and the [`Notifier`] seam.

use time::OffsetDateTime;

/// The kinds of queue transitions, with the spec's notification type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueEventKind {
    /// Put (back) in the queue. The daemon emits it when it requeues an item (a retry, an
    /// interruption, a recovered claim); for a fresh enqueue the enqueuing command emits it.
    TaskQueued,
    /// Claimed by the daemon.
    TaskDequeued,
    /// Its dispatch began (or its orphaned agent was adopted).
    TaskStarted,
    /// Finished.
    TaskCompleted,
    /// Failed for good.
    TaskError,
    /// A budget is spent: an item's turn was stopped at it, or an item waits for it.
    OverBudget,
}

impl QueueEventKind {
    /// `task_queued`, `task_dequeued`, ... as written to `notifications.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueEventKind::TaskQueued => "task_queued",
            QueueEventKind::TaskDequeued => "task_dequeued",
            QueueEventKind::TaskStarted => "task_started",
            QueueEventKind::TaskCompleted => "task_completed",
            QueueEventKind::TaskError => "task_error",
            QueueEventKind::OverBudget => "over_budget",
        }
    }
}

/// One queue transition.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueEvent {
    /// What happened.
    pub kind: QueueEventKind,
    /// The item.
    pub item_id: String,
    /// Its issue ref, if any.
    pub issue_ref: Option<String>,
    /// Its request.
    pub message: String,
    /// Details in words (the error, the retry time, the outcome).
    pub detail: String,
    /// When.
    pub at: OffsetDateTime,
    /// What the item's turn cost, for the end of one (as the agent reported it; `None`:
    /// unknown, or no turn).
    pub cost_usd: Option<kugetsu_core::usage::Usd>,
}

/// Receives queue transitions (the CLI appends them to `notifications.json`). Must not block
/// for long: it is called from the daemon's loop and workers.
pub trait Notifier: Send + Sync {
    /// Records one transition.
    fn notify(&self, event: &QueueEvent);
}

impl<F: Fn(&QueueEvent) + Send + Sync> Notifier for F {
    fn notify(&self, event: &QueueEvent) {
        self(event)
    }
}

/// A notifier that drops everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn notify(&self, _event: &QueueEvent) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_match_the_spec() {
        assert_eq!(QueueEventKind::TaskQueued.as_str(), "task_queued");
        assert_eq!(QueueEventKind::TaskError.as_str(), "task_error");
    }
}
