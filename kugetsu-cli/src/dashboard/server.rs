//! The listener and the connection loop: hyper's HTTP/1 server under the router, with bounds
//! that keep the dashboard answering when clients misbehave.
//!
//! - at most [`MAX_CONNECTIONS`] connections are served at once; one more is closed at once
//!   rather than queued, so a thousand idle sockets cost a thousand accepts, not memory;
//! - a client gets [`HEADER_TIMEOUT`] to send its request's head, and a head is at most
//!   [`MAX_HEAD`] bytes; a body at most [`MAX_BODY`] (`routes`);
//! - blocking work (the state files) runs on a bounded pool of threads, so a burst of requests
//!   queues instead of starting a thread each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::{CliError, exit};

/// Connections served at once (50 live pages with their streams use about 100).
pub const MAX_CONNECTIONS: usize = 256;
/// Time a client has to send a request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head, in bytes.
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest request body, in bytes (a message to an agent, as JSON).
pub const MAX_BODY: usize = 256 * 1024;
/// Threads for blocking work.
const BLOCKING_THREADS: usize = 8;

/// The runtime the dashboard runs on: two workers (it mostly waits) and a bounded pool.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .thread_name("kugetsu-dashboard")
        .build()
        .map_err(|e| CliError::new(exit::FAILURE, format!("cannot start the dashboard: {e}")))
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, CliError> {
    TcpListener::bind(addr).await.map_err(|e| {
        CliError::new(exit::FAILURE, format!("cannot listen on {addr}: {e}"))
            .with_hint("pick another port with --listen 127.0.0.1:PORT")
    })
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, router: axum::Router) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, for instance: wait a little instead of spinning.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}
