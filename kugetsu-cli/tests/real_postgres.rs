//! Several hosts on a queue shared through a real PostgreSQL server (Debian's `postgresql`,
//! started by the tests on loopback), through the binary: one module per file, linked as one
//! test binary. Without the server the tests say why and pass as skipped, unless
//! `KUGETSU_REAL_POSTGRES=1` or `CI` is set.

// The PostgreSQL client and backend come with the `postgres` feature.
#![cfg(feature = "postgres")]

mod dashboard_support;
#[path = "../../kugetsu-queue/tests/common/pg.rs"]
mod pg;
mod support;

mod dashboard_shared_queue;
mod lost_host;
mod multi_host;
mod queue_secret;
mod queue_tls;
