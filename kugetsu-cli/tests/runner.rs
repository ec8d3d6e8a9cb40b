//! The command line end to end, through the built `kugetsu` binary with git and the bundled
//! fake agent only: one module per file, linked as one test binary. The suites that drive a
//! real part (opencode, PostgreSQL, sshd, Chromium) are targets of their own.

mod dashboard_support;
// The https git server of kugetsu-git's tests, for a token's way through the whole binary.
#[path = "../../kugetsu-git/tests/support/http.rs"]
#[allow(dead_code, clippy::unwrap_used)]
mod git_http;
mod support;
mod webhook_receiver;

mod budgets;
mod claude_limits;
mod cli_basics;
mod daemon_service;
mod dashboard;
mod e2e;
mod https_token;
mod night;
mod rate_limits;
mod readme_config;
mod readme_daemon;
mod readme_promises;
mod readme_state;
mod report_back;
mod rerun_flags;
mod shell_world;
mod signals;
mod snapshots_flow;
mod threat_model;
mod watch;
mod webhooks;
