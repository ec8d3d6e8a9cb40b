//! The tables, created and migrated by kugetsu itself: `kugetsu_schema` holds the version, and
//! each step from one version to the next runs once, in a transaction, under an advisory lock
//! (so two daemons starting together do not both migrate). A database migrated by a newer
//! kugetsu is refused rather than misread.

/// The schema version this kugetsu writes.
pub const SCHEMA_VERSION: i32 = 3;

/// The advisory lock key under which the schema is migrated ("kugetsu" as digits, roughly).
const MIGRATE_LOCK: i64 = 0x6b75_6765_7473_7501;

/// Each step, in order: `STEPS[n]` takes the schema from version `n` to `n + 1`.
const STEPS: &[&str] = &[
    // 1: items (the whole item as JSON, plus the columns claims and counts need), the host
    // each issue lives on, and the slot leases.
    "CREATE TABLE kugetsu_queue (
        id text PRIMARY KEY,
        seq bigserial NOT NULL,
        status text NOT NULL,
        issue_ref text,
        not_before_us bigint,
        updated_us bigint NOT NULL,
        lease text,
        lease_until_us bigint,
        host text,
        doc text NOT NULL
    );
    CREATE INDEX kugetsu_queue_by_status ON kugetsu_queue (status, seq);
    CREATE TABLE kugetsu_issue_hosts (
        issue_ref text PRIMARY KEY,
        host text NOT NULL,
        since_us bigint NOT NULL
    );
    CREATE TABLE kugetsu_slots (
        host text NOT NULL,
        idx integer NOT NULL,
        holder text NOT NULL UNIQUE,
        expires_us bigint NOT NULL,
        PRIMARY KEY (host, idx)
    );
    CREATE FUNCTION kugetsu_now_us() RETURNS bigint LANGUAGE sql VOLATILE AS
        $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint $$;",
    // 2: each daemon's own lease (a host whose lease has been expired for
    // KUGETSU_HOST_LOST_SECONDS is lost), the turns each issue completed on its host, the moves
    // of issues away from lost or released hosts, and what each issue's host saved after its
    // last turn for another host to carry it on.
    "CREATE TABLE kugetsu_hosts (
        host text PRIMARY KEY,
        alive_until_us bigint NOT NULL
    );
    ALTER TABLE kugetsu_issue_hosts ADD COLUMN turns integer NOT NULL DEFAULT 0;
    CREATE TABLE kugetsu_moves (
        seq bigserial PRIMARY KEY,
        at_us bigint NOT NULL,
        issue_ref text NOT NULL,
        from_host text NOT NULL,
        to_host text,
        why text NOT NULL,
        told boolean NOT NULL DEFAULT false
    );
    CREATE INDEX kugetsu_moves_by_issue ON kugetsu_moves (issue_ref, from_host);
    CREATE TABLE kugetsu_history (
        issue_ref text PRIMARY KEY,
        host text NOT NULL,
        saved_us bigint NOT NULL,
        doc text NOT NULL
    );",
    // 3: the providers paused because they refused for a rate limit or a quota (one row
    // each, the pause as JSON), which every host's daemon obeys.
    "CREATE TABLE kugetsu_pauses (
        provider text PRIMARY KEY,
        doc text NOT NULL
    );",
];

/// The schema as found (after migrating).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaInfo {
    /// The version now in the database.
    pub version: i32,
    /// The version before this call (0: there was none).
    pub was: i32,
}

/// Brings the schema to [`SCHEMA_VERSION`].
pub(super) fn migrate(client: &mut postgres::Client) -> Result<SchemaInfo, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS kugetsu_schema (version integer NOT NULL)")?;
    let was: i32 = match tx.query_opt("SELECT version FROM kugetsu_schema", &[])? {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO kugetsu_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    if was > SCHEMA_VERSION {
        // Not an error the driver knows: commit nothing, and say it through the version.
        tx.rollback()?;
        return Ok(SchemaInfo { version: was, was });
    }
    for (n, step) in STEPS.iter().enumerate().skip(was.max(0) as usize) {
        tx.batch_execute(step)?;
        tx.execute("UPDATE kugetsu_schema SET version = $1", &[&(n as i32 + 1)])?;
    }
    tx.commit()?;
    Ok(SchemaInfo { version: SCHEMA_VERSION, was })
}

/// A host's live leases, for `doctor` and `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLeases {
    /// The host.
    pub host: String,
    /// Items it runs under a live lease.
    pub items: i64,
    /// Agent slots it holds.
    pub slots: i64,
}

/// What `doctor` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The schema version found.
    pub version: i32,
    /// Hosts holding live leases.
    pub hosts: Vec<HostLeases>,
    /// Items still `notified` whose lease expired, with the host that held them.
    pub stuck: Vec<(String, String)>,
}

pub(super) fn inspect(client: &mut postgres::Client) -> Result<Inspection, postgres::Error> {
    let version = client
        .query_opt("SELECT version FROM kugetsu_schema", &[])
        .ok()
        .flatten()
        .map_or(0, |r| r.get(0));
    if version < 1 {
        return Ok(Inspection { version, hosts: Vec::new(), stuck: Vec::new() });
    }
    let now: i64 = client.query_one("SELECT kugetsu_now_us()", &[])?.get(0);
    let hosts = client
        .query(
            "SELECT host, sum(items)::bigint, sum(slots)::bigint FROM (
                SELECT host, 1 AS items, 0 AS slots FROM kugetsu_queue
                    WHERE status = 'notified' AND lease_until_us > $1 AND host IS NOT NULL
                UNION ALL
                SELECT host, 0, 1 FROM kugetsu_slots WHERE expires_us > $1
             ) t GROUP BY host ORDER BY host",
            &[&now],
        )?
        .iter()
        .map(|r| HostLeases { host: r.get(0), items: r.get(1), slots: r.get(2) })
        .collect();
    let stuck = client
        .query(
            "SELECT id, coalesce(host, '') FROM kugetsu_queue
             WHERE status = 'notified' AND coalesce(lease_until_us, 0) <= $1 ORDER BY seq",
            &[&now],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Inspection { version, hosts, stuck })
}
