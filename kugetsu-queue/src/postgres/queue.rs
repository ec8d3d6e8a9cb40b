//! [`TaskQueue`] on PostgreSQL: one row per item, the item itself kept as JSON (so fields of
//! other versions survive a rewrite, as in the item files), with the columns a claim, a count
//! and a lease check need beside it.

use std::time::Duration;

use kugetsu_core::clock::{Clock, SystemClock};
use kugetsu_core::queue::{
    Claim, ClaimLane, NewTask, Once, QueueError, QueueItem, QueueListing, QueueStats, QueueStatus,
    TaskQueue,
};
use postgres::Row;
use postgres::types::ToSql;
use std::sync::Arc;
use time::OffsetDateTime;

use super::{CHANNEL, Conn, PgFail, PgOptions, from_us, to_us};

/// The queue on PostgreSQL.
pub struct PgQueue {
    conn: Conn,
    lease_ttl: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for PgQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgQueue").field("server", &self.conn.target()).finish_non_exhaustive()
    }
}

pub(super) const COLUMNS: &str = "id, doc, lease_until_us";

pub(super) fn item_of(row: &Row) -> Result<QueueItem, PgFail> {
    let id: String = row.get(0);
    let doc: String = row.get(1);
    let until: Option<i64> = row.get(2);
    let mut item: QueueItem = serde_json::from_str(&doc).map_err(|e| {
        PgFail::Queue(QueueError::Other {
            context: format!("queue item {id} in the database is not valid JSON ({e})"),
            path: "kugetsu_queue".into(),
        })
    })?;
    item.id = id;
    // The column is what heartbeats renew; the copy in the document is from the claim.
    if let Some(claim) = item.claim.as_mut() {
        claim.expires_at = until.map(from_us);
    }
    Ok(item)
}

fn doc_of(item: &QueueItem) -> Result<String, PgFail> {
    serde_json::to_string(item).map_err(|e| {
        PgFail::Queue(QueueError::Other {
            context: format!("cannot encode queue item {} ({e})", item.id),
            path: "kugetsu_queue".into(),
        })
    })
}

/// Writes `item` back to its row, columns and document together.
pub(super) fn write(tx: &mut postgres::Transaction<'_>, item: &QueueItem) -> Result<(), PgFail> {
    let claim = item.claim.as_ref().filter(|_| item.status == QueueStatus::Notified);
    let params: [&(dyn ToSql + Sync); 8] = [
        &item.id,
        &item.status.as_str(),
        &item.not_before.map(to_us),
        &to_us(item.updated_at.unwrap_or(item.created_at)),
        &claim.and_then(|c| c.lease.clone()),
        &claim.and_then(|c| c.expires_at).map(to_us),
        &claim.and_then(|c| c.host.clone()),
        &doc_of(item)?,
    ];
    tx.execute(
        "UPDATE kugetsu_queue SET status = $2, not_before_us = $3, updated_us = $4, lease = $5,
             lease_until_us = $6, host = $7, doc = $8 WHERE id = $1",
        &params,
    )?;
    Ok(())
}

impl PgQueue {
    pub(super) fn new(conn: Conn, options: &PgOptions) -> Self {
        PgQueue { conn, lease_ttl: options.lease_ttl, clock: Arc::new(SystemClock) }
    }

    /// Uses `clock` for this host's timestamps (tests put a host's clock off with it).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The queue alone (for `queue release-host`, `queue migrate`), with its schema brought up
    /// to date.
    pub fn connect(options: &PgOptions) -> Result<Self, QueueError> {
        let conn = Conn::new(&options.url);
        // Connect now: the commands using it should fail here if the server is unreachable.
        conn.with(|_| Ok(()))?;
        Ok(PgQueue::new(conn, options))
    }

    fn ttl_us(&self) -> i64 {
        self.lease_ttl.as_micros().min(i64::MAX as u128) as i64
    }

    /// Reads, changes and writes one item in a transaction holding its row lock; `check`
    /// refuses the change (nothing written) by returning an error.
    fn change(
        &self,
        id: &str,
        check: &dyn Fn(&QueueItem) -> Result<(), QueueError>,
        f: &mut dyn FnMut(&mut QueueItem),
    ) -> Result<QueueItem, QueueError> {
        self.conn.with(|c| {
            let mut tx = c.transaction()?;
            let row = tx
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM kugetsu_queue WHERE id = $1 FOR UPDATE"),
                    &[&id],
                )?
                .ok_or_else(|| QueueError::NotFound { id: id.to_string() })?;
            let mut item = item_of(&row)?;
            check(&item)?;
            let was = item.status;
            let ran_on = item.claim.as_ref().and_then(|c| c.host.clone());
            item.updated_at = Some(self.clock.now());
            f(&mut item);
            item.id = id.to_string();
            write(&mut tx, &item)?;
            if was == QueueStatus::Notified
                && item.status == QueueStatus::Completed
                && let (Some(issue), Some(host)) = (&item.issue_ref, &ran_on)
            {
                // The issue has history on its host now: a move would lose it.
                tx.execute(
                    "UPDATE kugetsu_issue_hosts SET turns = turns + 1
                     WHERE issue_ref = $1 AND host = $2",
                    &[issue, host],
                )?;
            }
            if was == QueueStatus::Notified && item.status != QueueStatus::Notified {
                // A run ended (its slot is free) or an item came back: daemons that found no
                // room or no work may now find some.
                tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &item.id])?;
            }
            tx.commit()?;
            Ok(item)
        })
    }

    /// Gives up the issues `host` holds and puts its claimed items back to `pending`, for a
    /// host that is gone for good: its issues move elsewhere, with the history it saved after
    /// their last turns (what it did since stays on it). Returns the issues released and the
    /// items requeued.
    pub fn release_host(&self, host: &str) -> Result<(Vec<String>, Vec<String>), QueueError> {
        self.conn.with(|c| {
            let mut tx = c.transaction()?;
            let issues: Vec<String> = tx
                .query(
                    "DELETE FROM kugetsu_issue_hosts WHERE host = $1 RETURNING issue_ref",
                    &[&host],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let now: i64 = tx.query_one("SELECT kugetsu_now_us()", &[])?.get(0);
            let why = format!(
                "its host {host} was released by hand: the issue moves to another host, with \
                 the history {host} saved after its last finished turn if it saved one"
            );
            for issue in &issues {
                tx.execute(
                    "INSERT INTO kugetsu_moves (at_us, issue_ref, from_host, why)
                     VALUES ($1, $2, $3, $4)",
                    &[&now, issue, &host, &why],
                )?;
            }
            let rows = tx.query(
                &format!(
                    "SELECT {COLUMNS} FROM kugetsu_queue WHERE status = 'notified' AND host = $1
                     FOR UPDATE"
                ),
                &[&host],
            )?;
            let mut requeued = Vec::new();
            for row in &rows {
                let mut item = item_of(row)?;
                item.status = QueueStatus::Pending;
                item.claim = None;
                item.agent_token = None;
                item.last_error = Some(format!("its host {host} was released"));
                item.updated_at = Some(self.clock.now());
                write(&mut tx, &item)?;
                requeued.push(item.id);
            }
            tx.execute("DELETE FROM kugetsu_slots WHERE host = $1", &[&host])?;
            tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL])?;
            tx.commit()?;
            Ok((issues, requeued))
        })
    }

    /// Records that `issue` lives on `host` (a session started there by hand), unless another
    /// host keeps it already; returns the host that keeps it.
    pub fn hold_issue(&self, issue: &str, host: &str) -> Result<String, QueueError> {
        let now = to_us(self.clock.now());
        self.conn.with(|c| {
            c.execute(
                "INSERT INTO kugetsu_issue_hosts (issue_ref, host, since_us, turns)
                 VALUES ($1, $2, $3, 1) ON CONFLICT (issue_ref) DO NOTHING",
                &[&issue, &host, &now],
            )?;
            Ok(c.query_one("SELECT host FROM kugetsu_issue_hosts WHERE issue_ref = $1", &[&issue])?
                .get(0))
        })
    }

    /// Which host holds each issue (`list`, `status`).
    pub fn issue_hosts(&self) -> Result<Vec<(String, String)>, QueueError> {
        self.conn.with(|c| {
            Ok(c.query("SELECT issue_ref, host FROM kugetsu_issue_hosts ORDER BY issue_ref", &[])?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
        })
    }

    /// Every move of an issue away from a lost or released host, newest first.
    pub fn moves(&self) -> Result<Vec<crate::backend::HostMove>, QueueError> {
        self.conn.with(super::hosts::moves)
    }

    /// Stores `item` as it is (id, state, attempts), unless an item with its id is there:
    /// what `queue migrate` does with each item of a file queue. Returns whether it was added.
    pub fn import(&self, item: &QueueItem) -> Result<bool, QueueError> {
        self.conn.with(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "INSERT INTO kugetsu_queue (id, status, issue_ref, updated_us, doc)
                 VALUES ($1, 'pending', $2, 0, '{}') ON CONFLICT (id) DO NOTHING",
                &[&item.id, &item.issue_ref],
            )?;
            if n == 1 {
                write(&mut tx, item)?;
                tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL])?;
            }
            tx.commit()?;
            Ok(n == 1)
        })
    }
}

/// The advisory lock key under which [`TaskQueue::enqueue_once`] checks and adds.
const ONCE_LOCK: i64 = 0x6b75_6765_7473_7504;

/// Adds a pending item for `task` in `tx`, under a fresh id; notifies the daemons at commit.
fn insert(
    tx: &mut postgres::Transaction<'_>,
    task: &NewTask,
    once_key: Option<&str>,
    now: OffsetDateTime,
) -> Result<QueueItem, PgFail> {
    // Ids sort in enqueue order like the file queue's (`q_<unix ns>`); a collision with another
    // host's id (same nanosecond) moves on to the next free one.
    let mut n = now.unix_timestamp_nanos().max(0);
    let item = loop {
        let mut item = QueueItem::pending(format!("q_{n:020}"), task, now);
        item.once_key = once_key.map(str::to_string);
        let added = tx.execute(
            "INSERT INTO kugetsu_queue (id, status, issue_ref, updated_us, doc)
             VALUES ($1, 'pending', $2, $3, $4) ON CONFLICT (id) DO NOTHING",
            &[&item.id, &item.issue_ref, &to_us(now), &doc_of(&item)?],
        )?;
        if added == 1 {
            break item;
        }
        n += 1;
    };
    // Delivered when the transaction commits, to every daemon listening.
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &item.id])?;
    Ok(item)
}

impl TaskQueue for PgQueue {
    fn enqueue(&self, task: NewTask) -> Result<QueueItem, QueueError> {
        crate::queue::validate(&task)?;
        let now = self.clock.now();
        self.conn.with(|c| {
            let mut tx = c.transaction()?;
            let item = insert(&mut tx, &task, None, now)?;
            tx.commit()?;
            Ok(item)
        })
    }

    fn enqueue_once(&self, task: NewTask, key: &str) -> Result<Once, QueueError> {
        crate::queue::validate(&task)?;
        kugetsu_core::queue::validate_once_key(key)?;
        let now = self.clock.now();
        self.conn.with(|c| {
            let mut tx = c.transaction()?;
            // Every host's check-and-add in turn: two cannot both miss the other's item.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ONCE_LOCK])?;
            let rows = tx.query(
                &format!(
                    "SELECT {COLUMNS} FROM kugetsu_queue WHERE issue_ref IS NOT DISTINCT FROM $1"
                ),
                &[&task.issue_ref],
            )?;
            for row in &rows {
                // An unreadable row is not this key's: `list` reports it.
                if let Ok(item) = item_of(row)
                    && item.once_key.as_deref() == Some(key)
                {
                    return Ok(Once::Found(item));
                }
            }
            let item = insert(&mut tx, &task, Some(key), now)?;
            tx.commit()?;
            Ok(Once::Added(item))
        })
    }

    fn list(&self) -> Result<QueueListing, QueueError> {
        self.conn.with(|c| {
            let rows =
                c.query(&format!("SELECT {COLUMNS} FROM kugetsu_queue ORDER BY seq"), &[])?;
            let mut listing = QueueListing::default();
            for row in &rows {
                match item_of(row) {
                    Ok(item) => listing.items.push(item),
                    Err(PgFail::Queue(e)) => listing.problems.push(e.to_string()),
                    Err(e) => return Err(e),
                }
            }
            Ok(listing)
        })
    }

    fn stats(&self) -> Result<QueueStats, QueueError> {
        self.conn.with(|c| {
            let mut s = QueueStats::default();
            for row in c.query("SELECT status, count(*) FROM kugetsu_queue GROUP BY status", &[])? {
                let status: String = row.get(0);
                let n = row.get::<_, i64>(1).max(0) as usize;
                s.total += n;
                match status.as_str() {
                    "pending" => s.pending += n,
                    "notified" => s.notified += n,
                    "completed" => s.completed += n,
                    "error" => s.error += n,
                    _ => s.corrupt += n,
                }
            }
            Ok(s)
        })
    }

    fn claim_next_in(
        &self,
        claim: &Claim,
        now: OffsetDateTime,
        lane: ClaimLane,
    ) -> Result<Option<QueueItem>, QueueError> {
        let lane = match lane {
            ClaimLane::Any => "any",
            ClaimLane::Issues => "issues",
            ClaimLane::Pm => "pm",
        };
        let host = claim.host.clone();
        self.conn.with(|c| {
            // A claim that loses an affinity race (another host took the issue at the same
            // moment) rolls back and looks again: the issue is then excluded.
            for _ in 0..8 {
                let mut tx = c.transaction()?;
                let row = tx.query_opt(
                    &format!(
                        "SELECT {COLUMNS} FROM kugetsu_queue q
                         LEFT JOIN kugetsu_issue_hosts h ON h.issue_ref = q.issue_ref
                         WHERE q.status = 'pending'
                           AND (q.not_before_us IS NULL OR q.not_before_us <= $1)
                           AND (q.issue_ref IS NULL OR $2::text IS NULL OR h.host = $2
                                OR (h.host IS NULL AND NOT EXISTS (
                                    SELECT 1 FROM kugetsu_moves m
                                    WHERE m.issue_ref = q.issue_ref AND m.from_host = $2)))
                           AND ($3 = 'any' OR ($3 = 'issues') = (q.issue_ref IS NOT NULL))
                         ORDER BY q.seq LIMIT 1
                         FOR UPDATE OF q SKIP LOCKED"
                    ),
                    &[&to_us(now), &host, &lane],
                )?;
                let Some(row) = row else { return Ok(None) };
                let mut item = item_of(&row)?;
                if let (Some(issue), Some(host)) = (&item.issue_ref, &host) {
                    tx.execute(
                        "INSERT INTO kugetsu_issue_hosts (issue_ref, host, since_us)
                         VALUES ($1, $2, $3) ON CONFLICT (issue_ref) DO NOTHING",
                        &[issue, host, &to_us(now)],
                    )?;
                    let holder: String = tx
                        .query_one(
                            "SELECT host FROM kugetsu_issue_hosts WHERE issue_ref = $1",
                            &[issue],
                        )?
                        .get(0);
                    if &holder != host {
                        tx.rollback()?;
                        continue;
                    }
                    tx.execute(
                        "UPDATE kugetsu_moves SET to_host = $2 WHERE issue_ref = $1
                         AND to_host IS NULL",
                        &[issue, host],
                    )?;
                }
                let until: i64 =
                    tx.query_one("SELECT kugetsu_now_us() + $1", &[&self.ttl_us()])?.get(0);
                let mut claim = claim.clone();
                claim.expires_at = Some(from_us(until));
                item.status = QueueStatus::Notified;
                item.claim = Some(claim);
                item.attempts = item.attempts.saturating_add(1);
                item.updated_at = Some(now);
                write(&mut tx, &item)?;
                tx.commit()?;
                return Ok(Some(item));
            }
            Ok(None)
        })
    }

    fn update(&self, id: &str, f: &mut dyn FnMut(&mut QueueItem)) -> Result<QueueItem, QueueError> {
        self.change(id, &|_| Ok(()), f)
    }

    fn update_claimed(
        &self,
        id: &str,
        claim: &Claim,
        f: &mut dyn FnMut(&mut QueueItem),
    ) -> Result<QueueItem, QueueError> {
        self.change(
            id,
            &|item| {
                if claim.holds(item) {
                    Ok(())
                } else {
                    Err(QueueError::LeaseLost { id: id.to_string() })
                }
            },
            f,
        )
    }

    fn clear(&self, older_than: OffsetDateTime) -> Result<usize, QueueError> {
        self.conn.with(|c| {
            let n = c.execute(
                "DELETE FROM kugetsu_queue WHERE status IN ('completed', 'error')
                 AND updated_us < $1",
                &[&to_us(older_than)],
            )?;
            Ok(n as usize)
        })
    }

    fn get(&self, id: &str) -> Result<QueueItem, QueueError> {
        self.conn.with(|c| {
            let row = c
                .query_opt(&format!("SELECT {COLUMNS} FROM kugetsu_queue WHERE id = $1"), &[&id])?
                .ok_or_else(|| QueueError::NotFound { id: id.to_string() })?;
            item_of(&row)
        })
    }

    /// Lease expiries are on the server's clock; they are handed back shifted onto this host's
    /// clock (by the difference read now), so a daemon whose clock is off by some seconds
    /// still judges a peer's lease as the server does.
    fn claimed(&self) -> Result<Vec<QueueItem>, QueueError> {
        let local = self.clock.now();
        self.conn.with(|c| {
            let server: i64 = c.query_one("SELECT kugetsu_now_us()", &[])?.get(0);
            let skew = time::Duration::microseconds(to_us(local) - server);
            c.query(
                &format!(
                    "SELECT {COLUMNS} FROM kugetsu_queue WHERE status = 'notified' ORDER BY seq"
                ),
                &[],
            )?
            .iter()
            .map(|row| {
                let mut item = item_of(row)?;
                if let Some(at) = item.claim.as_mut().and_then(|c| c.expires_at.as_mut()) {
                    *at += skew;
                }
                Ok(item)
            })
            .collect()
        })
    }

    fn next_retry_at(&self, now: OffsetDateTime) -> Result<Option<OffsetDateTime>, QueueError> {
        self.conn.with(|c| {
            let row = c.query_one(
                "SELECT min(not_before_us) FROM kugetsu_queue
                 WHERE status = 'pending' AND not_before_us > $1",
                &[&to_us(now)],
            )?;
            Ok(row.get::<_, Option<i64>>(0).map(from_us))
        })
    }

    fn problems(&self) -> Result<Vec<String>, QueueError> {
        Ok(Vec::new())
    }

    fn renew(&self, claims: &[(String, Claim)]) -> Result<Vec<String>, QueueError> {
        let ids: Vec<String> = claims.iter().map(|(id, _)| id.clone()).collect();
        let leases: Vec<String> =
            claims.iter().map(|(_, c)| c.lease.clone().unwrap_or_default()).collect();
        self.conn.with(|c| {
            Ok(c.query(
                "UPDATE kugetsu_queue q SET lease_until_us = kugetsu_now_us() + $3
                 FROM unnest($1::text[], $2::text[]) AS held(id, lease)
                 WHERE q.id = held.id AND q.lease = held.lease AND q.status = 'notified'
                 RETURNING q.id",
                &[&ids, &leases, &self.ttl_us()],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn lease_ttl(&self) -> Option<Duration> {
        Some(self.lease_ttl)
    }
}
