//! What an opencode command needs beyond the hygiene every agent's command gets
//! ([`kugetsu_process::build_command`]).
//!
//! The directory trap: opencode takes the directory to work in from `PWD` when it is set, and a
//! shell sets it to wherever the user stood. A session run with `PWD` naming another directory
//! than its own prints nothing and never ends. The builder always sets `PWD` to the child's own
//! working directory; the other variables that name a directory of the user's shell are
//! dropped, so nothing can steer opencode there.

/// Variables a shell (or npm) sets to a directory the user stood in, besides `PWD`: handed to
/// the builder as [`kugetsu_process::CommandSpec::drop_vars`] for every opencode process.
pub(crate) const SHELL_DIR_VARS: &[&str] = &["OLDPWD", "INIT_CWD"];
