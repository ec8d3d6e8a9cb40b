//! kugetsu-queue's shared queue on a real PostgreSQL server (Debian's `postgresql`, started by
//! the tests on loopback), one module per file, linked as one test binary. Without the server
//! the tests say why and pass as skipped, unless `KUGETSU_REAL_POSTGRES=1` or `CI` is set.

// The PostgreSQL client and backend come with the `postgres` feature.
#![cfg(feature = "postgres")]

mod common;
#[path = "common/conformance.rs"]
mod conformance;
#[path = "common/pg.rs"]
mod pg;

mod postgres;
mod postgres_daemons;
mod postgres_lost;
mod postgres_pauses;
mod postgres_tls;
