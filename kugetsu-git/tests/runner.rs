//! kugetsu-git's integration tests, one module per file, linked as one test binary.

// Fixture code unwraps as the tests do: a failed setup fails the test.
#[allow(clippy::unwrap_used)]
mod support;

mod carry;
mod commit;
mod git_env;
mod http;
mod https;
mod push;
mod ssh;
mod worktrees;
