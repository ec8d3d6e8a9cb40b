//! kugetsu-core's integration tests, one module per file, linked as one test binary.

mod common;

mod budgets;
mod corrupt_state;
mod crash;
mod crash_all_kinds;
mod disk_errors;
mod hostile_refs;
mod issue_ref_props;
mod orchestrator;
mod original_state;
mod symlinks;
