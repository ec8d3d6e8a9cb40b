//! Lost hosts: each daemon renews a lease of its own (`kugetsu_hosts`) with its heartbeat; a
//! host whose lease has been expired for `KUGETSU_HOST_LOST_SECONDS` is lost, and the issues
//! it keeps that have work waiting move: their affinity is released, so the items run on
//! whichever live host claims them first. Each move is recorded (`kugetsu_moves`): `queue
//! hosts` shows it, the lost host is told of it when it comes back, and never claims that
//! issue again (its session and worktree of it are out of date; running them would run the
//! issue twice).
//!
//! Whichever live daemon looks first makes the moves, in one transaction under an advisory
//! lock, so each issue moves once. What each issue's host saved after its last turn
//! (`kugetsu_history`, written only while it keeps the issue) goes with it.

use std::time::Duration;

use kugetsu_core::queue::{QueueError, QueueItem, QueueStatus};

use super::queue::{COLUMNS, item_of, write};
use super::{CHANNEL, Conn, PgFail, from_us};
use crate::backend::{HostMove, HostWatch};

/// The advisory lock key under which lost hosts' issues are moved.
const MOVE_LOCK: i64 = 0x6b75_6765_7473_7502;

/// [`HostWatch`] on PostgreSQL.
pub struct PgHosts {
    conn: Conn,
    host: String,
    lease_ttl: Duration,
    lost_after: Duration,
}

impl std::fmt::Debug for PgHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgHosts").field("host", &self.host).finish_non_exhaustive()
    }
}

fn micros(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

impl PgHosts {
    pub(super) fn new(conn: Conn, host: &str, lease_ttl: Duration, lost_after: Duration) -> Self {
        PgHosts { conn, host: host.to_string(), lease_ttl, lost_after }
    }
}

/// An issue of a lost host with work waiting.
struct Stranded {
    issue: String,
    host: String,
    turns: i32,
    /// What the host saved after the issue's last turn (see `HostWatch::save_history`).
    saved: Option<String>,
}

/// What an issue's move leaves behind, in words.
fn why(from: &str, lost_after: Duration, turns: i32, saved: Option<&str>) -> String {
    let lost = format!("its host {from} is lost (silent for over {}s)", lost_after.as_secs());
    if let Some(doc) = saved.filter(|_| turns > 0) {
        let missing: Vec<String> = serde_json::from_str::<serde_json::Value>(doc)
            .ok()
            .and_then(|d| d.get("missing").cloned())
            .and_then(|m| serde_json::from_value(m).ok())
            .unwrap_or_default();
        let mut text = format!(
            "{lost}; the issue moves with its history as saved after its last finished turn \
             there"
        );
        if !missing.is_empty() {
            text.push_str(&format!(" (not saved: {})", missing.join("; ")));
        }
        return text;
    }
    if turns > 0 {
        format!(
            "{lost}; its history there ({turns} finished turn(s): the agent session and the \
             worktree's unpushed work) was not saved for other hosts and stays on it: the issue \
             starts afresh on another host"
        )
    } else {
        format!("{lost}; it had no finished turn there: it starts afresh on another host")
    }
}

/// Moves `issue` away from `from` inside `tx`: releases its affinity, puts its items that
/// `from` was running back to `pending` (their turn in flight is lost, and said so), notes
/// the move on its waiting items and records it. Returns the items as left.
pub(super) fn move_issue(
    tx: &mut postgres::Transaction<'_>,
    issue: &str,
    from: &str,
    why: &str,
    now_us: i64,
) -> Result<Vec<QueueItem>, PgFail> {
    tx.execute(
        "DELETE FROM kugetsu_issue_hosts WHERE issue_ref = $1 AND host = $2",
        &[&issue, &from],
    )?;
    let rows = tx.query(
        &format!(
            "SELECT {COLUMNS} FROM kugetsu_queue
             WHERE issue_ref = $1 AND status IN ('pending', 'notified') ORDER BY seq FOR UPDATE"
        ),
        &[&issue],
    )?;
    let mut items = Vec::new();
    for row in &rows {
        let mut item = item_of(row)?;
        let running_there = item.status == QueueStatus::Notified
            && item.claim.as_ref().and_then(|c| c.host.as_deref()) == Some(from);
        if item.status == QueueStatus::Notified && !running_there {
            continue; // Another host runs it (it cannot be of this issue's host, but be safe).
        }
        if running_there {
            // Its claim is cleared: the lost host, should it come back, records nothing more
            // (every write of its worker is fenced on that claim).
            item.status = QueueStatus::Pending;
            item.claim = None;
            item.agent_token = None;
            item.last_error = Some(format!("{why}; the turn it was running there is lost"));
        } else {
            item.last_error = Some(why.to_string());
        }
        item.updated_at = Some(from_us(now_us));
        write(tx, &item)?;
        items.push(item);
    }
    tx.execute(
        "INSERT INTO kugetsu_moves (at_us, issue_ref, from_host, why) VALUES ($1, $2, $3, $4)",
        &[&now_us, &issue, &from, &why],
    )?;
    Ok(items)
}

impl HostWatch for PgHosts {
    fn beat(&self) -> Result<(), QueueError> {
        let ttl = micros(self.lease_ttl);
        self.conn.with(|c| {
            c.execute(
                "INSERT INTO kugetsu_hosts (host, alive_until_us)
                 VALUES ($1, kugetsu_now_us() + $2)
                 ON CONFLICT (host) DO UPDATE SET alive_until_us = EXCLUDED.alive_until_us",
                &[&self.host, &ttl],
            )?;
            Ok(())
        })
    }

    fn move_lost(&self) -> Result<Vec<HostMove>, QueueError> {
        let lost = micros(self.lost_after);
        self.conn.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MOVE_LOCK])?;
            let now: i64 = tx.query_one("SELECT kugetsu_now_us()", &[])?.get(0);
            // A host that never ran a daemon (an issue held by a `start` by hand) is judged
            // from when it took the issue: nothing would run the issue's items there.
            let stranded: Vec<Stranded> = tx
                .query(
                    "SELECT i.issue_ref, i.host, i.turns, s.doc FROM kugetsu_issue_hosts i
                     LEFT JOIN kugetsu_hosts h ON h.host = i.host
                     LEFT JOIN kugetsu_history s ON s.issue_ref = i.issue_ref AND s.host = i.host
                     WHERE i.host <> $1
                       AND coalesce(h.alive_until_us, i.since_us) + $2 < $3
                       AND EXISTS (SELECT 1 FROM kugetsu_queue q WHERE q.issue_ref = i.issue_ref
                                   AND q.status IN ('pending', 'notified'))
                     ORDER BY i.issue_ref
                     FOR UPDATE OF i",
                    &[&self.host, &lost, &now],
                )?
                .iter()
                .map(|r| Stranded {
                    issue: r.get(0),
                    host: r.get(1),
                    turns: r.get(2),
                    saved: r.get(3),
                })
                .collect();
            let mut moves = Vec::new();
            for s in stranded {
                let why = why(&s.host, self.lost_after, s.turns, s.saved.as_deref());
                let items = move_issue(&mut tx, &s.issue, &s.host, &why, now)?;
                moves.push(HostMove {
                    issue_ref: s.issue,
                    from_host: s.host,
                    to_host: None,
                    at: from_us(now),
                    why,
                    items,
                });
            }
            if !moves.is_empty() {
                tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL])?;
            }
            tx.commit()?;
            Ok(moves)
        })
    }

    fn save_history(&self, issue: &str, doc: &str) -> Result<bool, QueueError> {
        self.conn.with(|c| {
            let n = c.execute(
                "INSERT INTO kugetsu_history (issue_ref, host, saved_us, doc)
                 SELECT $1, $2, kugetsu_now_us(), $3
                 WHERE EXISTS (SELECT 1 FROM kugetsu_issue_hosts WHERE issue_ref = $1 AND host = $2)
                 ON CONFLICT (issue_ref) DO UPDATE
                 SET host = EXCLUDED.host, saved_us = EXCLUDED.saved_us, doc = EXCLUDED.doc",
                &[&issue, &self.host, &doc],
            )?;
            Ok(n == 1)
        })
    }

    fn history(&self, issue: &str) -> Result<Option<(String, String)>, QueueError> {
        self.conn.with(|c| {
            Ok(c.query_opt(
                "SELECT host, doc FROM kugetsu_history WHERE issue_ref = $1 AND host <> $2",
                &[&issue, &self.host],
            )?
            .map(|r| (r.get(0), r.get(1))))
        })
    }

    fn moved_away(&self) -> Result<Vec<HostMove>, QueueError> {
        self.conn.with(|c| {
            Ok(c.query(
                "UPDATE kugetsu_moves SET told = true WHERE from_host = $1 AND NOT told
                 RETURNING issue_ref, to_host, at_us, why",
                &[&self.host],
            )?
            .iter()
            .map(|r| HostMove {
                issue_ref: r.get(0),
                from_host: self.host.clone(),
                to_host: r.get(1),
                at: from_us(r.get(2)),
                why: r.get(3),
                items: Vec::new(),
            })
            .collect())
        })
    }
}

/// Every move recorded, newest first (`queue hosts`).
pub(super) fn moves(c: &mut postgres::Client) -> Result<Vec<HostMove>, PgFail> {
    Ok(c.query(
        "SELECT issue_ref, from_host, to_host, at_us, why FROM kugetsu_moves ORDER BY seq DESC",
        &[],
    )?
    .iter()
    .map(|r| HostMove {
        issue_ref: r.get(0),
        from_host: r.get(1),
        to_host: r.get(2),
        at: from_us(r.get(3)),
        why: r.get(4),
        items: Vec::new(),
    })
    .collect())
}
