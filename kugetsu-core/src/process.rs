//! Whether a process runs: the seam through which the orchestration judges a pid recorded in
//! the state directory (an agent's, or the writer's of a temp file).
//!
//! Core reads no `/proc` and signals nothing; it is handed a [`Liveness`]. The kernel's answer
//! is `kugetsu_process::SystemLiveness` (which also knows that an exited, unreaped process, a
//! zombie, no longer runs); fakes answer for the pids they made up, so a test need not hand out
//! the test runner's own pid as an agent's.

/// Whether a process runs.
pub trait Liveness: Send + Sync + std::fmt::Debug {
    /// Whether `pid` names a process that exists and has not exited.
    fn is_running(&self, pid: u32) -> bool;
}
