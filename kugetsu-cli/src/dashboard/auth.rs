//! Who may use the dashboard: whoever holds the token kept in the state directory
//! (`dashboard.token`, `0600`, made on first use). Everything else gets a bare 401.
//!
//! Where the token may come from depends on what a request can do:
//! - `Authorization: Bearer <token>`: every request (the page's script sends it; so can curl);
//! - `?token=` in the URL or the `kugetsu_token` cookie: reads only (`GET`), so the first load
//!   from the printed URL, a reload and the event streams (`EventSource` sends no headers)
//!   work, while no other site can make a browser change anything: a cross-site form or
//!   image carries at most the cookie (and `SameSite=Strict` keeps even that away), never the
//!   header, and no `GET` changes state.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use kugetsu_core::StateDir;

use crate::error::{CliError, exit};

/// The cookie the page's first load sets, for reloads and the page's own assets.
pub const COOKIE: &str = "kugetsu_token";

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

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
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
    /// The cookie, on a read.
    Cookie,
}

/// Whether the request may go on, and how it proved it.
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
    if query_token(uri).is_some_and(|t| ok(&t)) {
        return Some(Proof::Query);
    }
    cookie(headers).is_some_and(ok).then_some(Proof::Cookie)
}

/// The middleware: 401 with nothing else unless [`check`] passes. A page loaded from the
/// printed URL also gets the cookie, so a reload finds its way in.
pub async fn require_token(
    State(app): State<super::App>,
    request: Request,
    next: Next,
) -> Response {
    let Some(proof) = check(&app.token, request.method(), request.headers(), request.uri()) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let mut response = next.run(request).await;
    if proof == Proof::Query
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            app.token
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_accept_url_and_cookie_but_changes_only_the_header() {
        let t = "ab".repeat(32);
        let uri = |s: &str| s.parse::<axum::http::Uri>().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(check(&t, &Method::GET, &h, &uri("/")), None);
        assert_eq!(check(&t, &Method::GET, &h, &uri(&format!("/?token={t}"))), Some(Proof::Query));
        assert_eq!(check(&t, &Method::POST, &h, &uri(&format!("/api/stop?token={t}"))), None);
        h.insert(header::COOKIE, format!("a=b; {COOKIE}={t}").parse().unwrap());
        assert_eq!(check(&t, &Method::GET, &h, &uri("/")), Some(Proof::Cookie));
        assert_eq!(check(&t, &Method::POST, &h, &uri("/api/stop")), None, "a cookie alone");
        h.insert(header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        assert_eq!(check(&t, &Method::POST, &h, &uri("/api/stop")), Some(Proof::Header));
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert_eq!(check(&t, &Method::POST, &h, &uri("/api/stop")), None);
        assert!(!same(b"abc", b"abd") && !same(b"ab", b"abc") && same(b"abc", b"abc"));
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
