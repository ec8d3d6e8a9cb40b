//! Posting notifications to `KUGETSU_NOTIFY_URL`: the sender that empties the outbox
//! ([`kugetsu_core::outbox`]) and the one POST every path shares (`notify test` too).
//!
//! Who sends: the queue daemon, on a thread of its own for as long as it runs
//! ([`SenderThread`]); `kugetsu notify flush`, which a foreground command that added a
//! notification leaves running detached ([`flush_in_background`]), so the command itself never
//! waits for a receiver. Senders take the outbox's sender lock for each pass, so two of them
//! never post the same delivery. A receiver that does not answer costs a pass at most
//! [`POST_TIMEOUT`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kugetsu_core::StateDir;
use kugetsu_core::outbox::{Backoff, Due, Failure, Outbox, OutboxError, Recorded};
use kugetsu_core::secrets::{redact, webhook};
use kugetsu_core::storage::{self, StorageError};
use serde_json::Value;

/// The longest one POST may take, connecting included.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait for a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a POST went: the receiver's 2xx status, or why not (secrets masked) with the
/// receiver's `Retry-After`.
pub type Posted = Result<u16, Failure>;

/// Posts JSON bodies. Cheap to share; loads the system's roots on its first https request.
#[derive(Clone)]
pub struct Sender {
    agent: ureq::Agent,
}

impl Default for Sender {
    fn default() -> Self {
        Self::new()
    }
}

impl Sender {
    /// A sender with [`POST_TIMEOUT`], no redirects (a receiver that moves is a failure to
    /// look at, not a place to send the body on to) and the system's TLS roots.
    pub fn new() -> Self {
        let roots: Vec<ureq::tls::Certificate<'static>> = rustls_native_certs::load_native_certs()
            .certs
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
            .collect();
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
            .unversioned_rustls_crypto_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .build();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(POST_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("kugetsu/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .into();
        Sender { agent }
    }

    /// POSTs `body` as JSON to `url`: `Ok(status)` for a 2xx answer, else why not, with the
    /// URL's secret parts masked.
    pub fn post(&self, url: &str, body: &Value) -> Posted {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let secrets = webhook::secret_parts(url);
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let result = self.agent.post(url).content_type("application/json").send(&bytes[..]);
        match result {
            Ok(response) => {
                let status = response.status().as_u16();
                if (200..300).contains(&status) {
                    return Ok(status);
                }
                // Delta-seconds only: the date form is rare from webhook receivers.
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Err(Failure { why: format!("HTTP {status}"), retry_after })
            }
            Err(e) => Err(redact(&e.to_string(), &refs).into()),
        }
    }
}

/// What a sender pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Delivered.
    pub delivered: usize,
    /// Failed, to be tried again.
    pub retrying: usize,
    /// Failed for good.
    pub gave_up: usize,
    /// Another sender held the lock: nothing done.
    pub busy: bool,
}

/// Posts every delivery due now and records how each went, under the outbox's sender lock.
/// `log` gets a line for a delivery's first failure and for one given up.
pub fn pass(
    state: &StateDir,
    sender: &Sender,
    backoff: &Backoff,
    log: &dyn Fn(&str),
) -> Result<Pass, OutboxError> {
    let outbox = Outbox::new(state);
    let result = storage::try_with_exclusive_lock(outbox.sender_lock_path(), || {
        let mut pass = Pass::default();
        // A receiver that failed in this pass is not asked again in it: its other deliveries
        // take the same failure (and back off alike), so one that does not answer costs a
        // pass one timeout, not one per notification.
        let mut failed: std::collections::HashMap<String, Failure> = Default::default();
        let due = outbox.due(time::OffsetDateTime::now_utc())?;
        for d in due {
            let posted = match failed.get(&d.url) {
                Some(f) => Err(f.clone()),
                // A report on a watched issue, made on its forge.
                None if d.url.starts_with(kugetsu_core::report::TARGET_PREFIX) => {
                    crate::reporting::deliver(state, &d.payload).map(|()| 200)
                }
                None => sender.post(&d.url, &d.payload),
            };
            if let Err(f) = &posted {
                failed.insert(d.url.clone(), f.clone());
            }
            let now = time::OffsetDateTime::now_utc();
            let recorded = outbox.record(&d, posted.clone().map(|_| ()), now, backoff)?;
            match (recorded, posted) {
                (Recorded::Delivered, _) => pass.delivered += 1,
                (Recorded::Retry(at), Err(Failure { why, .. })) => {
                    pass.retrying += 1;
                    if d.attempts == 0 {
                        log(&format!(
                            "cannot post notification {} to {} ({why}); retrying from {}",
                            d.id,
                            shown(&d.url),
                            kugetsu_core::clock::human(at)
                        ));
                    }
                }
                (Recorded::GaveUp, Err(Failure { why, .. })) => {
                    pass.gave_up += 1;
                    log(&gave_up_line(&d, &why));
                }
                _ => {}
            }
        }
        Ok::<_, OutboxError>(pass)
    });
    match result {
        Err(OutboxError::Storage(StorageError::WouldBlock { .. })) => {
            Ok(Pass { busy: true, ..Pass::default() })
        }
        other => other,
    }
}

fn gave_up_line(d: &Due, why: &str) -> String {
    format!(
        "gave up posting notification {} to {} after {} attempts: {why}",
        d.id,
        shown(&d.url),
        d.attempts + 1
    )
}

/// A delivery's target as logs and listings show it: a webhook's URL masked (it holds a
/// token), a watched issue's report target (`forge:<issue ref>`, no secret) as it is.
pub fn shown(target: &str) -> String {
    if target.starts_with(kugetsu_core::report::TARGET_PREFIX) {
        target.to_string()
    } else {
        webhook::redact(target)
    }
}

/// How long until the next pending delivery is due (zero when one is due now), `None` when
/// nothing is pending.
pub fn next_due_in(state: &StateDir) -> Option<Duration> {
    let next = Outbox::new(state).next_try().ok()??;
    let wait = next - time::OffsetDateTime::now_utc();
    Some(wait.try_into().unwrap_or(Duration::ZERO))
}

/// The queue daemon's sender: a thread that posts what is due until it is dropped. It looks at
/// the outbox at least every [`SenderThread::POLL`], so what another process adds goes out
/// soon.
pub struct SenderThread {
    stop: Arc<AtomicBool>,
    done: std::sync::mpsc::Receiver<()>,
}

impl SenderThread {
    /// How often an idle sender looks at the outbox's size and time.
    pub const POLL: Duration = Duration::from_millis(500);
    /// How often it reads the outbox even when it seems unchanged.
    pub const REREAD: Duration = Duration::from_secs(60);

    /// Starts the thread; `log` gets its lines (the daemon's log).
    pub fn start(state: StateDir, log: Arc<dyn Fn(&str) + Send + Sync>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, done) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let spawned = std::thread::Builder::new().name("notify-sender".into()).spawn(move || {
            let sender = Sender::new();
            let backoff = Backoff::default();
            let path = state.outbox_path();
            let stamp = || std::fs::metadata(&path).ok().map(|m| (m.modified().ok(), m.len()));
            let mut reported = false;
            // The outbox as last read, and when its next delivery is due: an idle daemon
            // looks at the file's size and time only, and reads it when it changed (another
            // process added to it), when a retry is due, or every minute anyway.
            let (mut seen, mut next, mut last_read) = (None, None, Instant::now());
            let mut first = true;
            while !flag.load(Ordering::Relaxed) {
                let now = time::OffsetDateTime::now_utc();
                let due = next.is_some_and(|t| t <= now);
                if first || due || stamp() != seen || last_read.elapsed() > Self::REREAD {
                    first = false;
                    match pass(&state, &sender, &backoff, &*log) {
                        Ok(_) => reported = false,
                        Err(e) if !reported => {
                            reported = true;
                            log(&format!("cannot read the notification outbox: {e}"));
                        }
                        Err(_) => {}
                    }
                    // Taken before the read: a change made after it is seen next time.
                    seen = stamp();
                    next = Outbox::new(&state).next_try().ok().flatten();
                    last_read = Instant::now();
                }
                let until = |t: time::OffsetDateTime| {
                    Duration::try_from(t - time::OffsetDateTime::now_utc()).unwrap_or_default()
                };
                let wait = next.map_or(Self::POLL, |t| until(t).min(Self::POLL));
                std::thread::sleep(wait.max(Duration::from_millis(50)));
            }
            let _ = tx.send(());
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the notification sender");
        }
        SenderThread { stop, done }
    }
}

impl Drop for SenderThread {
    /// Stops the thread, waiting for a POST under way only briefly: one cut short is posted
    /// again by the next sender (a receiver may see it twice, never not at all).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.done.recv_timeout(Duration::from_secs(2));
    }
}

/// `notify flush`: passes until nothing is due within `window`, or `budget` has passed.
/// Returns the totals.
pub fn flush(
    state: &StateDir,
    window: Duration,
    budget: Duration,
    log: &dyn Fn(&str),
) -> Result<Pass, OutboxError> {
    let sender = Sender::new();
    let backoff = Backoff::default();
    let started = Instant::now();
    let mut total = Pass::default();
    loop {
        let p = pass(state, &sender, &backoff, log)?;
        total.delivered += p.delivered;
        total.gave_up += p.gave_up;
        total.busy = p.busy;
        if p.busy {
            // Another sender (the daemon) is at it.
            break;
        }
        match next_due_in(state) {
            Some(wait) if wait <= window && started.elapsed() + wait < budget => {
                std::thread::sleep(wait.max(Duration::from_millis(50)));
            }
            _ => break,
        }
    }
    total.retrying = Outbox::new(state)
        .list()?
        .iter()
        .flat_map(|e| &e.deliveries)
        .filter(|d| d.state == kugetsu_core::outbox::DeliveryState::Pending)
        .count();
    Ok(total)
}

/// Leaves `kugetsu notify flush` running detached, so that what this command added to the
/// outbox goes out without this command waiting for a receiver. Nothing when the queue
/// daemon runs: its sender posts it. A failure leaves the notification for the next sender.
pub fn flush_in_background(ctx: &crate::context::Ctx) {
    if kugetsu_queue::daemon::status(&ctx.state).is_ok_and(|s| s.running) {
        return;
    }
    let env = match ctx.config().and_then(|config| ctx.child_env(&config)) {
        Ok(env) => env,
        Err(e) => {
            tracing::warn!(error = %e.message, "cannot post the notifications now");
            return;
        }
    };
    let spawned = std::env::current_exe().and_then(|exe| {
        let mut cmd = std::process::Command::new(exe);
        cmd.args(ctx.child_args())
            .args(["notify", "flush"])
            .env_clear()
            .envs(env)
            .current_dir(ctx.state.root())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        kugetsu_process::detach(&mut cmd);
        cmd.spawn()
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot post the notifications now");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::atomic::AtomicUsize;

    /// A receiver on loopback that answers every request with `status`; counts them.
    fn receiver(status: u16) -> (String, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/tok-unit-1", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                seen.fetch_add(1, Ordering::SeqCst);
                read_request(&mut stream);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        (url, count)
    }

    /// Reads a whole request, body included: answering and closing with part of it unread
    /// makes the kernel reset the connection, which the sender may see before the answer.
    fn read_request(stream: &mut std::net::TcpStream) {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    return;
                }
            }
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    }

    #[test]
    fn a_failing_receiver_is_asked_once_a_pass_and_each_receiver_backs_off_alone() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("k"));
        state.ensure().unwrap();
        let ((bad, bad_hits), (good, good_hits)) = (receiver(500), receiver(200));
        let outbox = Outbox::new(&state);
        let now = time::OffsetDateTime::now_utc();
        for id in ["n_1", "n_2", "n_3"] {
            outbox
                .add(id, serde_json::json!({"text": id}), &[bad.clone(), good.clone()], now)
                .unwrap();
        }
        let lines = std::sync::Mutex::new(Vec::new());
        let log = |l: &str| lines.lock().unwrap().push(l.to_string());
        let p = pass(&state, &Sender::new(), &Backoff::default(), &log).unwrap();
        assert_eq!((p.delivered, p.retrying, p.gave_up, p.busy), (3, 3, 0, false));
        assert_eq!(bad_hits.load(Ordering::SeqCst), 1, "one request to the failing receiver");
        assert_eq!(good_hits.load(Ordering::SeqCst), 3);
        for e in outbox.list().unwrap() {
            let bad = e.deliveries.iter().find(|d| d.url == bad).unwrap();
            assert_eq!(
                (bad.state, bad.attempts),
                (kugetsu_core::outbox::DeliveryState::Pending, 1)
            );
            assert_eq!(bad.last_error.as_deref(), Some("HTTP 500"));
        }
        let lines = lines.into_inner().unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines.iter().all(|l| !l.contains("tok-unit-1") && l.contains("/***")), "{lines:?}");
        // Nothing is due now: the next pass asks nobody.
        let p = pass(&state, &Sender::new(), &Backoff::default(), &|_| {}).unwrap();
        assert_eq!((p.delivered, p.retrying), (0, 0));
        assert_eq!(bad_hits.load(Ordering::SeqCst), 1);
    }
}
