//! Provider pauses on a shared queue: a refusal on one host pauses every host, it is told once,
//! and an ended pause is removed (and told "resumed") by one host only.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

use crate::pg;

use std::sync::Arc;
use std::time::Duration;

use kugetsu_core::pause::{LimitKind, ProviderLimit, holding};
use kugetsu_queue::postgres::{self, PgOptions};
use time::OffsetDateTime;

fn pauses(url: &str, host: &str) -> Arc<dyn kugetsu_core::pause::Pauses> {
    postgres::backend(PgOptions {
        url: url.to_string(),
        host: host.to_string(),
        lease_ttl: Duration::from_secs(30),
        host_lost: Duration::from_secs(300),
        global_limit: Arc::new(|| None),
    })
    .unwrap()
    .pauses
    .expect("a shared queue keeps the pauses")
}

#[test]
fn a_pause_is_every_hosts_and_ends_once() {
    let Some(pg) = pg::Pg::start() else { return };
    let url = pg.database();
    let (a, b) = (pauses(&url, "a"), pauses(&url, "b"));
    let now = OffsetDateTime::now_utc();
    let limit = |kind, until| ProviderLimit {
        provider: "mock".into(),
        kind,
        until,
        message: "slow down".into(),
    };
    let rate = limit(LimitKind::RateLimit, Some(now + time::Duration::seconds(60)));
    assert!(a.pause(&rate, now).unwrap(), "the first refusal is new");
    assert!(!b.pause(&rate, now).unwrap(), "told once, whichever host is refused next");
    let seen = b.list().unwrap();
    assert!(holding(&seen, Some("mock"), now).is_some(), "{seen:?}");
    assert!(holding(&seen, Some("other"), now).is_none());
    // Once over, one host removes it; the other finds nothing to tell.
    let later = now + time::Duration::seconds(61);
    let removed =
        a.resume(None, later, true).unwrap().len() + b.resume(None, later, true).unwrap().len();
    assert_eq!(removed, 1);
    // A quota stays until a person resumes it, from any host.
    a.pause(&limit(LimitKind::Quota, None), now).unwrap();
    assert!(b.resume(None, later, true).unwrap().is_empty());
    assert_eq!(b.resume(Some("mock"), later, false).unwrap().len(), 1);
    assert!(a.list().unwrap().is_empty());
}
