//! kugetsu-queue's integration tests that need nothing but the crate, one module per file,
//! linked as one test binary. The shared queue on a real PostgreSQL is `real_postgres`.

mod common;
#[path = "common/conformance.rs"]
mod conformance;

mod daemon;
mod processes;
mod queue;
