//! [`AgentSlots`] on PostgreSQL: a held slot is a row of `kugetsu_slots` with a lease that a
//! heartbeat thread renews while the guard lives. Grants are serialised by a transaction-
//! scoped advisory lock, so the per-host and the global count cannot both be read as "room
//! left" by two grants at once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kugetsu_core::queue::{AgentSlots, QueueError, SlotGuard, poll_for_slot};

use super::{Conn, PgOptions};
use crate::slots::MAX_SLOTS;

/// The advisory lock key under which slots are granted.
const GRANT_LOCK: i64 = 0x6b75_6765_7473_7502;

/// Slots shared by the hosts of one database.
pub struct PgSlots {
    inner: Arc<Inner>,
    global: Arc<dyn Fn() -> Option<usize> + Send + Sync>,
}

struct Inner {
    conn: Conn,
    host: String,
    ttl: Duration,
    /// Holder ids of the slots this process holds, renewed by the heartbeat.
    held: Mutex<HashSet<String>>,
    /// Makes holder ids unique within the process.
    counter: AtomicU64,
    /// Whether the heartbeat thread runs.
    beating: Mutex<bool>,
}

impl std::fmt::Debug for PgSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSlots").field("host", &self.inner.host).finish_non_exhaustive()
    }
}

/// A held slot; dropping it deletes the row (or, if the server cannot be reached then, its
/// lease runs out).
struct PgSlotGuard {
    index: usize,
    holder: String,
    inner: Arc<Inner>,
}

impl SlotGuard for PgSlotGuard {
    fn index(&self) -> usize {
        self.index
    }
}

impl Drop for PgSlotGuard {
    fn drop(&mut self) {
        self.inner.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.holder);
        let holder = self.holder.clone();
        let _ = self.inner.conn.with(|c| {
            c.execute("DELETE FROM kugetsu_slots WHERE holder = $1", &[&holder])?;
            Ok(())
        });
    }
}

impl PgSlots {
    pub(super) fn new(conn: Conn, options: &PgOptions) -> Self {
        PgSlots {
            inner: Arc::new(Inner {
                conn,
                host: options.host.clone(),
                ttl: options.lease_ttl,
                held: Mutex::new(HashSet::new()),
                counter: AtomicU64::new(0),
                beating: Mutex::new(false),
            }),
            global: options.global_limit.clone(),
        }
    }

    fn ttl_us(&self) -> i64 {
        self.inner.ttl.as_micros().min(i64::MAX as u128) as i64
    }

    /// Starts the heartbeat thread once: every third of the lease it renews every slot this
    /// process holds. It holds the slots weakly and ends when they are all gone.
    fn start_heartbeat(&self) {
        let mut beating = self.inner.beating.lock().unwrap_or_else(|e| e.into_inner());
        if *beating {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let every = (self.inner.ttl / 3).max(Duration::from_millis(100));
        let started = std::thread::Builder::new().name("slot-heartbeat".into()).spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(inner) = weak.upgrade() else { return };
                let held: Vec<String> =
                    inner.held.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
                if held.is_empty() {
                    continue;
                }
                let ttl = inner.ttl.as_micros().min(i64::MAX as u128) as i64;
                // An unreachable server renews nothing; the next beat tries again.
                let _ = inner.conn.with(|c| {
                    c.execute(
                        "UPDATE kugetsu_slots SET expires_us = kugetsu_now_us() + $2
                         WHERE holder = ANY($1)",
                        &[&held, &ttl],
                    )?;
                    Ok(())
                });
            }
        });
        *beating = started.is_ok();
    }
}

impl AgentSlots for PgSlots {
    fn try_acquire(&self, limit: usize) -> Result<Option<Box<dyn SlotGuard>>, QueueError> {
        let limit = limit.min(MAX_SLOTS);
        let global = (self.global)();
        if limit == 0 || global == Some(0) {
            return Ok(None);
        }
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let holder = format!("{}/{}/{n}", self.inner.host, kugetsu_process::identity::own_token());
        let host = self.inner.host.clone();
        let ttl = self.ttl_us();
        let granted = self.inner.conn.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&GRANT_LOCK])?;
            tx.execute("DELETE FROM kugetsu_slots WHERE expires_us < kugetsu_now_us()", &[])?;
            let total: i64 = tx.query_one("SELECT count(*) FROM kugetsu_slots", &[])?.get(0);
            if global.is_some_and(|g| total as usize >= g) {
                return Ok(None);
            }
            let mine: Vec<i32> = tx
                .query("SELECT idx FROM kugetsu_slots WHERE host = $1", &[&host])?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if mine.len() >= limit {
                return Ok(None);
            }
            let Some(index) = (0..limit as i32).find(|i| !mine.contains(i)) else {
                return Ok(None);
            };
            tx.execute(
                "INSERT INTO kugetsu_slots (host, idx, holder, expires_us)
                 VALUES ($1, $2, $3, kugetsu_now_us() + $4)",
                &[&host, &index, &holder, &ttl],
            )?;
            tx.commit()?;
            Ok(Some(index as usize))
        })?;
        let Some(index) = granted else { return Ok(None) };
        self.inner.held.lock().unwrap_or_else(|e| e.into_inner()).insert(holder.clone());
        self.start_heartbeat();
        Ok(Some(Box::new(PgSlotGuard { index, holder, inner: self.inner.clone() })))
    }

    fn acquire(&self, limit: usize, timeout: Duration) -> Result<Box<dyn SlotGuard>, QueueError> {
        // Each try is a round trip to the server: pause longer between them than for files.
        let pauses = (Duration::from_millis(20), Duration::from_millis(250));
        poll_for_slot(limit, timeout, pauses, || self.try_acquire(limit))
    }

    fn active(&self) -> Result<usize, QueueError> {
        let host = self.inner.host.clone();
        self.inner.conn.with(|c| {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM kugetsu_slots
                     WHERE host = $1 AND expires_us >= kugetsu_now_us()",
                    &[&host],
                )?
                .get(0);
            Ok(n as usize)
        })
    }
}
