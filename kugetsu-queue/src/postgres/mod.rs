//! The queue, the agent slots and the leases on PostgreSQL, so that daemons on several hosts
//! drain one queue under one limit (`KUGETSU_QUEUE_URL`).
//!
//! How the guarantees of the file queue carry over to a database shared by hosts:
//! - **One winner per claim**: a claim is one transaction that picks the oldest due row with
//!   `FOR UPDATE SKIP LOCKED` (concurrent claimers skip each other's row instead of waiting)
//!   and marks it `notified`.
//! - **Leases instead of pid tokens**: a pid means nothing on another host, so a claim carries
//!   an expiry, renewed by its daemon's heartbeat ([`TaskQueue::renew`](kugetsu_core::queue::TaskQueue::renew)); a claim whose lease
//!   expired is recovered by any daemon. Every write about a claimed item checks its lease id
//!   in the same statement (fencing), so a daemon that was paused or cut off past its lease
//!   cannot record an outcome over the new owner's.
//! - **Limits**: slots are rows (`kugetsu_slots`), one per running agent, with a lease of their
//!   own renewed by a heartbeat thread. Granting one takes a transaction-scoped advisory lock,
//!   so counting and inserting cannot interleave: no grant ever brings a host over
//!   `MAX_CONCURRENT_AGENTS` or all hosts over `KUGETSU_GLOBAL_MAX_AGENTS`. A killed holder's
//!   slot is freed when its lease expires (later than with a kernel lock, never sooner).
//! - **Affinity**: an issue's worktree and session live on the host that first claimed work on
//!   it (`kugetsu_issue_hosts`); only that host's daemon claims the later items, until
//!   the host is lost and the issue moves.
//! - **Lost hosts**: each daemon renews a lease of its own; the issues of a host whose lease
//!   has been expired for `KUGETSU_HOST_LOST_SECONDS` move to the live hosts ([`PgHosts`]).
//! - **Wake-up**: an enqueue sends `NOTIFY` in its own transaction; daemons `LISTEN`
//!   ([`PgWake`]) and still poll as a fallback.
//! - **TLS**: `sslmode` and `sslrootcert` in the URL, as libpq reads them ([`tls`]); the
//!   server's certificate is checked by rustls.
//! - **Faults**: every operation reconnects when its connection is gone; an unreachable server
//!   is a [`QueueError::Unavailable`] naming the server with its credentials masked, and the
//!   transaction that failed changed nothing.
//!
//! Times kept by the database (lease expiries) come from the server's clock, so hosts with
//! slightly different clocks agree on when a lease ends.

mod hosts;
mod pauses;
mod queue;
mod schema;
mod slots;
mod tls;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kugetsu_core::queue::{Claim, Liveness, QueueError, WakeUp};
use kugetsu_core::secrets::redact_url;
use postgres::fallible_iterator::FallibleIterator;
use time::OffsetDateTime;

pub use hosts::PgHosts;
pub use queue::PgQueue;
pub use schema::{SCHEMA_VERSION, SchemaInfo};
pub use slots::PgSlots;
pub use tls::TlsError;

use crate::backend::Backend;

/// The channel enqueues notify and daemons listen on.
pub const CHANNEL: &str = "kugetsu_queue";

/// The application name of a daemon's `LISTEN` connection (see `pg_stat_activity`).
pub const LISTENER_NAME: &str = "kugetsu-listen";

/// How a backend on PostgreSQL is set up.
#[derive(Clone)]
pub struct PgOptions {
    /// The server (`postgres://user:pass@host:port/db`).
    pub url: String,
    /// This host's name in the shared queue (a machine and its state directory).
    pub host: String,
    /// How long a lease (of a claimed item or a slot) lasts without renewal.
    pub lease_ttl: Duration,
    /// How long a host's lease must have been expired before the host counts as lost and its
    /// waiting issues move (`KUGETSU_HOST_LOST_SECONDS`).
    pub host_lost: Duration,
    /// `KUGETSU_GLOBAL_MAX_AGENTS`, read afresh on every grant; `None` for no limit across
    /// hosts beyond each host's own.
    pub global_limit: Arc<dyn Fn() -> Option<usize> + Send + Sync>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redact_url(&self.url))
            .field("host", &self.host)
            .field("lease_ttl", &self.lease_ttl)
            .field("host_lost", &self.host_lost)
            .finish_non_exhaustive()
    }
}

/// The whole backend on PostgreSQL: the queue, the slots, the lease rule and the `LISTEN`
/// wake-up. Nothing is connected yet: the first operation connects and creates or migrates the
/// schema, so commands that never touch the queue (`list`, `status`) work while the server is
/// down, and an operation that cannot reach it fails cleanly, writing nothing.
pub fn backend(options: PgOptions) -> Result<Backend, QueueError> {
    let queue = PgQueue::new(Conn::new(&options.url), &options);
    let slots = PgSlots::new(Conn::new(&options.url), &options);
    Ok(Backend {
        queue: Arc::new(queue),
        slots: Arc::new(slots),
        liveness: Arc::new(LeaseLiveness { host: options.host.clone() }),
        wake: Some(Arc::new(PgWake { url: options.url.clone() })),
        seat: Some(Arc::new(HostSeat { url: options.url.clone(), host: options.host.clone() })),
        hosts: Some(Arc::new(PgHosts::new(
            Conn::new(&options.url),
            &options.host,
            options.lease_ttl,
            options.host_lost,
        ))),
        pauses: Some(Arc::new(pauses::PgPauses::new(Conn::new(&options.url)))),
        host: Some(options.host),
    })
}

/// Creates or migrates the schema at `url`; returns what was there before and after.
pub fn migrate(url: &str) -> Result<SchemaInfo, QueueError> {
    let conn = Conn::unchecked(url);
    conn.with(|c| schema::migrate(c).map_err(PgFail::Query))
}

/// What `doctor` reports about the shared queue: the schema, the hosts holding live leases,
/// and items whose lease expired (their host is gone or cut off).
pub fn inspect(url: &str) -> Result<schema::Inspection, QueueError> {
    let conn = Conn::unchecked(url);
    conn.with(|c| schema::inspect(c).map_err(PgFail::Query))
}

/// One connection, opened on first use and again after it broke (a server restart, a
/// network cut), shared by the threads of a process under a mutex.
pub(crate) struct Conn {
    url: String,
    client: Mutex<Option<postgres::Client>>,
    /// Whether this process has checked the schema (on its first connection).
    migrated: std::sync::atomic::AtomicBool,
}

/// Why an operation failed, before it becomes a [`QueueError`].
pub(crate) enum PgFail {
    /// The query failed (the connection may have broken under it).
    Query(postgres::Error),
    /// A queue-level answer (not found, lease lost, invalid task).
    Queue(QueueError),
}

impl From<postgres::Error> for PgFail {
    fn from(e: postgres::Error) -> Self {
        PgFail::Query(e)
    }
}

impl From<QueueError> for PgFail {
    fn from(e: QueueError) -> Self {
        PgFail::Queue(e)
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The URL's TLS settings cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The server refused the connection for a reason of its TLS settings.
    #[error("{why}")]
    Refused {
        /// What it means for the URL's TLS settings.
        why: String,
        /// The driver's error.
        source: postgres::Error,
    },
    /// The driver could not connect.
    #[error(transparent)]
    Driver(#[from] postgres::Error),
}

/// How long a connection attempt may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a session may sit idle inside a transaction, and how long a statement waits for
/// a lock, before the server gives up on it (set in `Conn::connect_as`).
const SESSION_LOCK_LIMIT: Duration = Duration::from_secs(10);

impl Conn {
    pub(crate) fn new(url: &str) -> Self {
        Conn {
            url: url.to_string(),
            client: Mutex::new(None),
            migrated: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A connection that leaves the schema as it finds it (`migrate`, `doctor`).
    fn unchecked(url: &str) -> Self {
        let conn = Conn::new(url);
        conn.migrated.store(true, std::sync::atomic::Ordering::Relaxed);
        conn
    }

    fn lock(&self) -> MutexGuard<'_, Option<postgres::Client>> {
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server, as it may be shown.
    pub(crate) fn target(&self) -> String {
        redact_url(&self.url)
    }

    fn unavailable(&self, e: &dyn std::error::Error) -> QueueError {
        // The driver's top message is generic ("error connecting to server"); the cause
        // ("Connection refused") is what tells the user what to fix.
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        // The driver's messages name host and port, never the password; masked anyway.
        let message = kugetsu_core::secrets::redact(&message, &[&self.url]);
        QueueError::Unavailable { target: self.target(), message }
    }

    pub(crate) fn connect(url: &str) -> Result<postgres::Client, ConnectError> {
        Conn::connect_as(url, "kugetsu")
    }

    /// Connects under `name` as the application name (unless the URL sets one), so that
    /// `pg_stat_activity` tells kugetsu's connections apart.
    fn connect_as(url: &str, name: &str) -> Result<postgres::Client, ConnectError> {
        let (url, tls) = tls::split(url)?;
        let mut config: postgres::Config = url.parse()?;
        config.ssl_mode(match tls.mode {
            tls::SslMode::Disable => postgres::config::SslMode::Disable,
            tls::SslMode::Prefer => postgres::config::SslMode::Prefer,
            // The driver only asks for TLS; the connector checks the certificate.
            tls::SslMode::Require | tls::SslMode::VerifyCa | tls::SslMode::VerifyFull => {
                postgres::config::SslMode::Require
            }
        });
        config.connect_timeout(CONNECT_TIMEOUT);
        // A host paused (SIGSTOP, a frozen VM) inside one of kugetsu's short transactions
        // would hold that transaction's locks, the slot grant's advisory lock among them, for
        // as long as it stays paused, and stall every other host: the server ends such a
        // session after SESSION_LOCK_LIMIT (the paused host reconnects when it wakes), and a
        // wait for a lock gives up after as long and is retried like any failed round.
        let limit = SESSION_LOCK_LIMIT.as_millis();
        config.options(&format!(
            "-c idle_in_transaction_session_timeout={limit} -c lock_timeout={limit}"
        ));
        if config.get_application_name().is_none() {
            config.application_name(name);
        }
        config.connect(tls::connector(&tls)?).map_err(|e| match tls::explain(&e, &tls) {
            Some(why) => ConnectError::Refused { why, source: e },
            None => ConnectError::Driver(e),
        })
    }

    /// Runs `f` on the connection, opening it first if needed. A broken connection is
    /// dropped, so the next call reconnects.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, PgFail>,
    ) -> Result<T, QueueError> {
        let mut guard = self.lock();
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            let mut client = Conn::connect(&self.url).map_err(|e| self.unavailable(&e))?;
            if !self.migrated.load(std::sync::atomic::Ordering::Relaxed) {
                let info = schema::migrate(&mut client).map_err(|e| self.unavailable(&e))?;
                if info.version > SCHEMA_VERSION {
                    return Err(QueueError::Unavailable {
                        target: self.target(),
                        message: format!(
                            "its schema is version {}, newer than this kugetsu's ({SCHEMA_VERSION}): \
                             upgrade kugetsu",
                            info.version
                        ),
                    });
                }
                self.migrated.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            *guard = Some(client);
        }
        let Some(client) = guard.as_mut() else {
            return Err(QueueError::Unavailable {
                target: self.target(),
                message: "no connection".into(),
            });
        };
        match f(client) {
            Ok(v) => Ok(v),
            Err(PgFail::Queue(e)) => Err(e),
            Err(PgFail::Query(e)) => {
                if client.is_closed() || e.as_db_error().is_none() {
                    *guard = None;
                }
                Err(self.unavailable(&e))
            }
        }
    }
}

/// Microseconds since the epoch, as the tables store times.
pub(crate) fn to_us(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The inverse of [`to_us`].
pub(crate) fn from_us(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// [`Liveness`] across hosts: a claim lives while its lease has not expired; an agent can be
/// watched only on its own host.
#[derive(Debug, Clone)]
pub struct LeaseLiveness {
    host: String,
}

impl Liveness for LeaseLiveness {
    fn own_token(&self) -> String {
        kugetsu_process::identity::own_token()
    }

    fn holder_alive(&self, claim: &Claim, now: OffsetDateTime) -> bool {
        claim.expires_at.is_some_and(|t| t > now)
    }

    fn agent_alive(&self, claim: &Claim, agent_token: &str) -> bool {
        claim.host.as_deref() == Some(self.host.as_str())
            && claim
                .agent_pid
                .is_some_and(|pid| kugetsu_process::identity::is_alive(pid, agent_token))
    }
}

/// The seat of one host: a session-level advisory lock on a connection of its own, which the
/// server releases when that connection ends (the daemon exits or dies).
struct HostSeat {
    url: String,
    host: String,
}

impl crate::backend::DaemonSeat for HostSeat {
    fn take(&self) -> Result<Option<Box<dyn std::any::Any + Send>>, QueueError> {
        let conn = Conn::unchecked(&self.url);
        let key = format!("kugetsu-host:{}", self.host);
        let taken = conn.with(|c| {
            Ok(c.query_one("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", &[&key])?
                .get::<_, bool>(0))
        })?;
        Ok(taken.then(|| Box::new(conn) as Box<dyn std::any::Any + Send>))
    }
}

/// `LISTEN kugetsu_queue` on a connection of its own, reconnecting (with a growing pause) when
/// the server goes away; after a reconnect it wakes the daemon once, since notifications sent
/// meanwhile were lost.
#[derive(Debug, Clone)]
pub struct PgWake {
    url: String,
}

impl WakeUp for PgWake {
    fn listen(&self, on_wake: &mut dyn FnMut() -> bool) -> Result<(), String> {
        let mut pause = Duration::from_millis(200);
        let mut reconnected = false;
        loop {
            if let Ok(mut client) = Conn::connect_as(&self.url, LISTENER_NAME)
                && client.batch_execute(&format!("LISTEN {CHANNEL}")).is_ok()
            {
                pause = Duration::from_millis(200);
                if reconnected && !on_wake() {
                    return Ok(());
                }
                loop {
                    let next = client.notifications().timeout_iter(Duration::from_secs(1)).next();
                    match next {
                        Ok(Some(_)) => {
                            if !on_wake() {
                                return Ok(());
                            }
                        }
                        Err(_) => break,
                        // A quiet second: make sure the connection still answers.
                        Ok(None) => {
                            if client.is_closed() || client.simple_query("").is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            reconnected = true;
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }
}
