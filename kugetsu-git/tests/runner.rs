//! kugetsu-git's integration tests, one module per file, linked as one test binary.

mod support;

mod git_env;
mod http;
mod https;
mod ssh;
mod worktrees;
