//! The shared queue on a server that accepts only TLS, as managed PostgreSQL does: `sslmode`
//! and `sslrootcert` in the URL as libpq reads them, and refusals that say why.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

use crate::{conformance, pg};

use std::sync::Arc;
use std::time::Duration;

use kugetsu_core::queue::QueueError;
use kugetsu_queue::postgres::{self, PgOptions};
use time::OffsetDateTime;

fn queue(url: &str) -> Arc<dyn kugetsu_core::queue::TaskQueue> {
    let options = PgOptions {
        url: url.to_string(),
        host: "h1".to_string(),
        lease_ttl: Duration::from_secs(30),
        host_lost: Duration::from_secs(300),
        global_limit: Arc::new(|| None),
    };
    postgres::backend(options).unwrap().queue
}

/// An item goes in and comes out again through `url`.
fn round_trip(url: &str) {
    let queue = queue(url);
    let item = queue.enqueue(conformance::task("over TLS", None)).unwrap();
    let claimed = queue.claim_next(&conformance::claim("l1"), OffsetDateTime::now_utc()).unwrap();
    assert_eq!(claimed.map(|c| c.id), Some(item.id), "{url}");
}

/// What connecting through `url` is refused with, as the CLI shows it (one line).
fn refusal(url: &str) -> String {
    let err = queue(url).enqueue(conformance::task("refused", None)).unwrap_err();
    assert!(matches!(err, QueueError::Unavailable { .. }), "{err:?}");
    let line = err.to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(!line.contains("s3cretpw"), "the password is masked: {line}");
    line
}

#[test]
fn tls_only_server() {
    let Some(pg) = pg::Pg::start() else { return };
    let dbs: Vec<String> = (0..4).map(|_| pg.database()).collect();
    // Before TLS is on: `require` will not fall back to plain, and says so.
    let line = refusal(&format!("{}?sslmode=require", dbs[3]));
    assert!(
        line.contains("the server does not accept TLS, and sslmode=require requires it"),
        "{line}"
    );

    let tls = pg.require_tls();
    let ca = tls.ca.display().to_string();
    let other_ca = tls.other_ca.display().to_string();

    // `require` encrypts without checking the chain (no root file given), as libpq does.
    round_trip(&format!("{}?sslmode=require", dbs[0]));
    // `verify-full` checks the chain against the given CA and the name (127.0.0.1 is in it).
    round_trip(&format!("{}?sslmode=verify-full&sslrootcert={ca}", dbs[1]));
    // The default is libpq's `prefer`: TLS when offered.
    round_trip(&dbs[2]);

    // A certificate from another CA is refused, saying so.
    let line = refusal(&format!("{}?sslmode=verify-full&sslrootcert={other_ca}", dbs[3]));
    assert!(
        line.contains(&format!(
            "the server's certificate is not signed by the CA in sslrootcert {other_ca}"
        )),
        "{line}"
    );

    // `require` with a root file checks the chain against it, as libpq does.
    let line = refusal(&format!("{}?sslmode=require&sslrootcert={other_ca}", dbs[3]));
    assert!(line.contains("is not signed by the CA in sslrootcert"), "{line}");

    // Without sslrootcert the system's CAs are trusted, and none of them signed this one.
    let line = refusal(&format!("{}?sslmode=verify-full", dbs[3]));
    assert!(line.contains("system's trusted"), "{line}");

    // A root file that is not there is named, and nothing is sent.
    let missing = tls.ca.with_file_name("missing.pem");
    let line =
        refusal(&format!("{}?sslmode=verify-full&sslrootcert={}", dbs[3], missing.display()));
    assert!(line.contains(&format!("sslrootcert {}: ", missing.display())), "{line}");

    // A name the certificate does not list: `host` names it, `hostaddr` reaches the server.
    let wrong_name = dbs[3].replace("127.0.0.1", "db.invalid");
    let line =
        refusal(&format!("{wrong_name}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}"));
    assert!(line.contains("the server's certificate does not name the host"), "{line}");
    // `verify-ca` checks the chain only, so the same name is accepted.
    round_trip(&format!("{wrong_name}?hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert={ca}"));

    // Without TLS, the `hostnossl ... reject` line answers; the message says what to set.
    let line = refusal(&format!("{}?sslmode=disable", dbs[3]));
    assert!(line.contains("the server refuses unencrypted connections"), "{line}");
    assert!(line.contains("sslmode=verify-full"), "{line}");
}
