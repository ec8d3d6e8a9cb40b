//! Who may use the dashboard: whoever holds the token kept in the state directory
//! (`dashboard.token`, `0600`, made on first use), through an address the dashboard answers
//! to. Everything else gets a bare 401 (no token) or 403 (a foreign `Host` or `Origin`).
//!
//! - The token is never put in a cookie. Browsers do not keep cookies apart by port, so a
//!   cookie of `127.0.0.1:7420` reaches every other server on `127.0.0.1` the browser visits,
//!   such as the dev server an agent just started. The page's script keeps the token in the
//!   tab's session storage instead and sends it as `Authorization: Bearer <token>`.
//! - `?token=` in the URL is taken on reads (`GET`) only: the first load from the printed URL
//!   and the event streams (`EventSource` sends no headers). No `GET` changes anything.
//! - The page itself (`/` without the token) and its two assets are the same for everyone and
//!   hold no state, so a reload finds its way in: the script reads the token from the tab
//!   and asks for the state with it.
//! - `Host` must name the dashboard ([`Reach`]): another site can make its own name resolve to
//!   127.0.0.1 (DNS rebinding) and so reach the dashboard as its own origin, but its requests
//!   then name that site.
//! - Every `POST` with an `Origin` must come from the dashboard's own: a browser always sends
//!   it on a `POST`, and another site's cannot spell the dashboard's.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use kugetsu_core::StateDir;

use crate::error::{CliError, exit};

/// What anyone may load without the token: the page without its state, and its assets.
const PUBLIC: &[&str] = &["/", "/assets/app.js", "/assets/app.css", "/favicon.ico"];

/// Bytes of randomness in a token (shown as twice as many hex digits).
const TOKEN_BYTES: usize = 32;

/// The token of `state`: the one kept in `dashboard.token`, or a new one written there
/// (private from creation) when there is none yet. Made under a lock, so two dashboards
/// started at once agree on one.
pub fn load_or_create(state: &StateDir) -> Result<String, CliError> {
    let path = state.dashboard_token_path();
    let lock = state.lock_path("dashboard-token");
    kugetsu_core::storage::with_exclusive_lock(&lock, || {
        if let Some(bytes) = kugetsu_core::storage::read_bytes(&path)? {
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            if text.len() == TOKEN_BYTES * 2 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(text);
            }
            tracing::warn!(path = %path.display(), "the dashboard token is malformed; making a new one");
        }
        let mut raw = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut raw).map_err(|e| {
            CliError::new(exit::FAILURE, format!("cannot make a dashboard token: {e}"))
        })?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        kugetsu_core::storage::atomic_write(&path, format!("{token}\n").as_bytes())?;
        Ok(token)
    })
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

fn query_token(uri: &axum::http::Uri) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Q {
        token: Option<String>,
    }
    axum::extract::Query::<Q>::try_from_uri(uri).ok()?.0.token
}

/// How a request proved it holds the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The `Authorization` header.
    Header,
    /// The URL (`?token=`), on a read.
    Query,
}

/// Whether the request holds the token, and how it proved it.
pub fn check(
    token: &str,
    method: &Method,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Option<Proof> {
    let ok = |t: &str| same(t.as_bytes(), token.as_bytes());
    if bearer(headers).is_some_and(ok) {
        return Some(Proof::Header);
    }
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    query_token(uri).is_some_and(|t| ok(&t)).then_some(Proof::Query)
}

/// The names a request's `Host` may give the dashboard: `localhost`, the address it listens
/// on (any loopback address when that is loopback, any address when it listens on all of
/// them), and the names it was told (`--host`, for a proxy such as `tailscale serve`). The port
/// is not compared: an SSH tunnel may bring the dashboard to another port, and a rebinding
/// attack needs a name of its own, not a port.
#[derive(Debug, Clone)]
pub struct Reach {
    listen: SocketAddr,
    names: Vec<String>,
}

impl Reach {
    /// The dashboard listening on `listen`, also known as `names`.
    pub fn new(listen: SocketAddr, names: &[String]) -> Reach {
        Reach { listen, names: names.iter().map(|n| n.to_ascii_lowercase()).collect() }
    }

    /// Whether a `Host` header's value names the dashboard.
    pub fn allows(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else { return false };
        if name == "localhost" || self.names.contains(&name) {
            return true;
        }
        let Ok(ip) = name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else {
            return false;
        };
        let listen = self.listen.ip();
        ip == listen || listen.is_unspecified() || (listen.is_loopback() && ip.is_loopback())
    }
}

/// The name part of a `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`), lower-cased;
/// `None` for an empty or malformed one.
fn host_name(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if host.starts_with('[') {
        let end = host.find(']')?;
        let rest = &host[end + 1..];
        if !(rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        &host[..=end]
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => host,
        }
    };
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a request that changes something came from the dashboard's own page: no
/// `Origin` (not a browser: curl, a script), or one whose host and port are the request's
/// `Host` (the page's origin, whatever scheme a proxy in front adds). `Origin: null` (a
/// sandboxed frame, a file) is refused.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let (Ok(origin), Some(Ok(host))) =
        (origin.to_str(), headers.get(header::HOST).map(|h| h.to_str()))
    else {
        return false;
    };
    let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host.trim()))
}

/// The middleware: 403 for a `Host` that does not name the dashboard and for a `POST` from
/// another origin, then 401 unless [`check`] passes; a public path without the token gets the
/// page without its state.
pub async fn require_token(
    State(app): State<super::App>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !app.reach.allows(host) {
        return refuse(StatusCode::FORBIDDEN, request).await;
    }
    let reads = request.method() == Method::GET || request.method() == Method::HEAD;
    if !reads && !same_origin(headers) {
        return refuse(StatusCode::FORBIDDEN, request).await;
    }
    if check(&app.token, request.method(), headers, request.uri()).is_some() {
        return next.run(request).await;
    }
    match request.uri().path() {
        "/" if reads => super::page::shell(app).await,
        path if reads && PUBLIC.contains(&path) => next.run(request).await,
        _ => refuse(StatusCode::UNAUTHORIZED, request).await,
    }
}

/// How long a refused request's body may take to arrive before the refusal goes anyway.
const REFUSED_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `status`, once the request's body (up to the largest one accepted) has been read, for a
/// little while at most: answered before it, the connection closes while the client still
/// writes the body, and the client sees a reset (a broken pipe) instead of the refusal.
async fn refuse(status: StatusCode, request: Request) -> Response {
    let body = axum::body::to_bytes(request.into_body(), super::server::MAX_BODY);
    let _ = tokio::time::timeout(REFUSED_BODY_WAIT, body).await;
    status.into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_accept_the_url_but_changes_only_the_header() {
        let t = "ab".repeat(32);
        let uri = |s: &str| s.parse::<axum::http::Uri>().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(check(&t, &Method::GET, &h, &uri("/")), None);
        assert_eq!(check(&t, &Method::GET, &h, &uri(&format!("/?token={t}"))), Some(Proof::Query));
        assert_eq!(check(&t, &Method::POST, &h, &uri(&format!("/api/stop?token={t}"))), None);
        h.insert(header::COOKIE, format!("kugetsu_token={t}").parse().unwrap());
        assert_eq!(check(&t, &Method::GET, &h, &uri("/")), None, "a cookie is no proof");
        h.insert(header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        assert_eq!(check(&t, &Method::POST, &h, &uri("/api/stop")), Some(Proof::Header));
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert_eq!(check(&t, &Method::POST, &h, &uri("/api/stop")), None);
        assert!(!same(b"abc", b"abd") && !same(b"ab", b"abc") && same(b"abc", b"abc"));
    }

    #[test]
    fn only_names_of_the_dashboard_reach_it() {
        let names = ["devbox.tail1.ts.net".to_owned()];
        let lo = Reach::new("127.0.0.1:7420".parse().unwrap(), &names);
        for ok in [
            "127.0.0.1:7420",
            "127.0.0.1",
            "localhost:7420",
            "LOCALHOST:8000",
            "[::1]:7420",
            "127.0.0.2:7420",
            "DevBox.tail1.ts.net",
        ] {
            assert!(lo.allows(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example:7420",
            "127.0.0.1.evil.example:7420",
            "localhost.evil.example",
            "192.168.1.5:7420",
            "127.0.0.1:7420:1",
            "[::1",
            "[::1]x",
            "ts.net",
        ] {
            assert!(!lo.allows(bad), "{bad}");
        }
        let ip = Reach::new("100.64.0.7:7420".parse().unwrap(), &[]);
        assert!(ip.allows("100.64.0.7:7420") && !ip.allows("100.64.0.8:7420"));
        assert!(!ip.allows("127.0.0.1:7420"), "it does not listen there");
        let all = Reach::new("0.0.0.0:7420".parse().unwrap(), &[]);
        assert!(all.allows("192.168.1.5:7420") && !all.allows("rebound.example:7420"));
    }

    #[test]
    fn a_change_must_come_from_the_dashboards_own_origin() {
        let with = |origin: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "127.0.0.1:7420".parse().unwrap());
            if let Some(o) = origin {
                h.insert(header::ORIGIN, o.parse().unwrap());
            }
            same_origin(&h)
        };
        assert!(with(None), "no browser, no Origin");
        assert!(with(Some("http://127.0.0.1:7420")));
        assert!(with(Some("https://127.0.0.1:7420")), "behind a TLS proxy");
        for bad in [
            "http://127.0.0.1:5173",
            "http://localhost:7420",
            "null",
            "http://127.0.0.1:7420.evil.example",
            "http://evil.example",
        ] {
            assert!(!with(Some(bad)), "{bad}");
        }
    }

    #[test]
    fn the_token_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("k"));
        state.ensure().unwrap();
        let first = load_or_create(&state).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create(&state).unwrap(), first);
        let mode = std::fs::metadata(state.dashboard_token_path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
