//! Whether a failed step is worth trying again: a property of the error, decided where the
//! error is defined, so that every retry loop (the queue daemon's, an embedder's) agrees.

/// What trying the same step again, with nothing else changed, can achieve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The failure may pass on its own (a busy issue, an unreachable server, a crashed agent):
    /// try again later.
    Later,
    /// The same request fails the same way until someone changes something (a missing `init`,
    /// a base ref that does not exist, work that would be lost): retrying cannot help.
    Never,
    /// The step was stopped by a stop request and left nothing half-done: the request itself
    /// is fine, and whoever asked for the stop decides what happens next.
    Stopped,
}

impl Retry {
    /// Whether trying again later may succeed.
    pub fn is_worthwhile(self) -> bool {
        self == Retry::Later
    }
}
