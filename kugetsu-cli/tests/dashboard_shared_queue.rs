//! `kugetsu dashboard` on a queue shared through a real PostgreSQL server: work queued on
//! another host changes nothing in this host's state directory, yet the page's event stream
//! reports it and the API shows it.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

use crate::{dashboard_support, pg, support};

use dashboard_support::Dashboard;
use support::{Env, ready};

fn host(url: &str) -> Env {
    let env = ready();
    let config = std::fs::read_to_string(env.path("config")).unwrap();
    std::fs::write(env.path("config"), format!("{config}KUGETSU_QUEUE_URL='{url}'\n")).unwrap();
    env
}

#[test]
fn work_queued_on_another_host_reaches_the_event_stream() {
    let Some(pg) = pg::Pg::start() else { return };
    let url = pg.database();
    let (here, there) = (host(&url), host(&url));
    let d = Dashboard::start(&here);
    let mut events = d.stream("/api/events");
    assert_eq!(events.next().0, "hello");
    let out = there.run(&["queue", "enqueue", "#7", "from the other host"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // Keep-alives flow meanwhile, so the stream itself never times out: bound the wait here.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        events.until("change", |_| true);
        let _ = tx.send(());
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("no change event within 30 s of the enqueue on the other host");
    let (code, body) = d.get("/api/queue");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("from the other host"), "{body}");
}
