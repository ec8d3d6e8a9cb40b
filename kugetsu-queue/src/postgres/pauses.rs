//! Provider pauses on the shared queue (`kugetsu_pauses`, one row per paused provider), so
//! every host sees a pause any host's turn caused, and one host's `queue resume` ends it for
//! all. Each change reads and writes the rows in one transaction under an advisory lock, so a
//! pause is told once and an ended pause is removed (and told "resumed") by one host only;
//! removing one wakes every daemon.

use kugetsu_core::pause::{self, Pause, PauseError, Pauses, ProviderLimit};
use kugetsu_core::queue::QueueError;
use time::OffsetDateTime;

use super::{CHANNEL, Conn, PgFail};

/// The advisory lock key under which pauses change.
const PAUSE_LOCK: i64 = 0x6b75_6765_7473_7503;

/// [`Pauses`] on PostgreSQL.
pub struct PgPauses {
    conn: Conn,
}

impl PgPauses {
    pub(super) fn new(conn: Conn) -> Self {
        PgPauses { conn }
    }

    /// Runs `f` on every pause, under the lock, and writes back what it left.
    fn change<R>(&self, f: impl FnOnce(&mut Vec<Pause>) -> R) -> Result<R, PauseError> {
        self.conn
            .with(|c| {
                let mut tx = c.transaction()?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PAUSE_LOCK])?;
                let mut list = read(&mut tx)?;
                let before = list.clone();
                let out = f(&mut list);
                if list != before {
                    tx.execute("DELETE FROM kugetsu_pauses", &[])?;
                    for p in &list {
                        let doc = serde_json::to_string(p).map_err(|e| data(e.to_string()))?;
                        tx.execute(
                            "INSERT INTO kugetsu_pauses (provider, doc) VALUES ($1, $2)",
                            &[&p.limit.provider, &doc],
                        )?;
                    }
                    if list.len() < before.len() {
                        tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL])?;
                    }
                }
                tx.commit()?;
                Ok(out)
            })
            .map_err(backend)
    }
}

fn read(tx: &mut postgres::Transaction<'_>) -> Result<Vec<Pause>, PgFail> {
    let rows = tx.query("SELECT doc FROM kugetsu_pauses ORDER BY provider", &[])?;
    rows.iter()
        .map(|r| {
            let doc: String = r.get(0);
            serde_json::from_str(&doc).map_err(|e| {
                data(format!("a provider pause in the database is not valid JSON ({e})"))
            })
        })
        .collect()
}

fn data(context: String) -> PgFail {
    PgFail::Queue(QueueError::Other { context, path: "kugetsu_pauses".into() })
}

fn backend(e: QueueError) -> PauseError {
    PauseError::Backend { message: e.to_string() }
}

impl Pauses for PgPauses {
    fn list(&self) -> Result<Vec<Pause>, PauseError> {
        self.conn
            .with(|c| {
                let mut tx = c.transaction()?;
                let list = read(&mut tx)?;
                tx.commit()?;
                Ok(list)
            })
            .map_err(backend)
    }

    fn pause(&self, limit: &ProviderLimit, now: OffsetDateTime) -> Result<bool, PauseError> {
        self.change(|list| pause::apply(list, limit, now))
    }

    fn resume(
        &self,
        provider: Option<&str>,
        now: OffsetDateTime,
        only_over: bool,
    ) -> Result<Vec<Pause>, PauseError> {
        self.change(|list| pause::take(list, provider, now, only_over))
    }
}
