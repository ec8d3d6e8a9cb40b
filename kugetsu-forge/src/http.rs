//! One request to a forge's API: the agent (system roots, timeouts, no redirects), the token in
//! a header, a JSON body for a write, and what the answer's headers say about the rate limit
//! and the next page.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kugetsu_core::forge::{ForgeError, ForgeKind};
use kugetsu_core::secrets::Secret;

use crate::cache::ReadCache;

/// The longest one request may take, connecting included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest wait the forge may impose on us at once; a longer one is waited in turns.
pub const MAX_WAIT: Duration = Duration::from_secs(60 * 60);
/// The wait when the forge says to wait but not for how long.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// The largest answer read.
const MAX_BODY: u64 = 8 * 1024 * 1024;

/// An answer: status, body, and the headers kugetsu reads.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body (empty for a 304).
    pub body: String,
    /// `ETag`.
    pub etag: Option<String>,
    /// The `rel="next"` target of `Link`.
    pub next: Option<String>,
    /// How long to wait before the next request, when the forge says so.
    pub wait: Option<Duration>,
}

/// The HTTP side of a client.
pub struct Http {
    agent: ureq::Agent,
    pub(crate) api: String,
    kind: ForgeKind,
    token: Option<Secret>,
    /// Answers of earlier reads, asked for again conditionally ([`Http::read`]).
    pub(crate) cache: Arc<ReadCache>,
}

fn header(r: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    r.headers().get(name).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string())
}

fn agent() -> ureq::Agent {
    let roots: Vec<ureq::tls::Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .build();
    ureq::Agent::config_builder()
        .timeout_global(Some(REQUEST_TIMEOUT))
        .http_status_as_error(false)
        // A redirect could carry the token's header to another host.
        .max_redirects(0)
        .user_agent(concat!("kugetsu/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .into()
}

/// Seconds from now until the epoch second `reset`.
fn until_epoch(reset: &str) -> Option<Duration> {
    let reset: u64 = reset.parse().ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now).max(1)))
}

/// What the headers say about waiting: `Retry-After` (seconds), else a spent quota
/// (`X-RateLimit-Remaining: 0` with `X-RateLimit-Reset` on GitHub and Gitea, `RateLimit-*` on
/// GitLab) until its reset.
fn wait_of(r: &ureq::http::Response<ureq::Body>) -> Option<Duration> {
    if let Some(after) = header(r, "retry-after") {
        return Some(after.parse().map(Duration::from_secs).unwrap_or(DEFAULT_WAIT).min(MAX_WAIT));
    }
    for prefix in ["x-ratelimit", "ratelimit"] {
        if header(r, &format!("{prefix}-remaining")).as_deref() == Some("0") {
            let reset = header(r, &format!("{prefix}-reset"));
            return Some(reset.and_then(|s| until_epoch(&s)).unwrap_or(DEFAULT_WAIT).min(MAX_WAIT));
        }
    }
    None
}

/// The `rel="next"` URL of a `Link` header.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| url.to_string())
    })
}

/// Percent-encodes a query value or a path segment.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Http {
    /// A client of the API at `api` (no trailing `/`).
    pub fn new(kind: ForgeKind, api: &str, token: Option<Secret>) -> Self {
        Http {
            agent: agent(),
            api: api.trim_end_matches('/').to_string(),
            kind,
            token,
            cache: Arc::default(),
        }
    }

    /// Whether `url` is under this API (so the token may go there): a `Link` from the forge is
    /// followed only if it is.
    pub fn owns(&self, url: &str) -> bool {
        url.strip_prefix(&self.api).is_some_and(|rest| rest.starts_with(['/', '?']))
    }

    /// GETs `url`, conditional on `etag`. A 403 or 429 that asks us to wait is
    /// [`ForgeError::RateLimited`]; other statuses are returned for the caller to judge.
    pub fn get(&self, url: &str, etag: Option<&str>) -> Result<Answer, ForgeError> {
        self.send("GET", url, etag, None)
    }

    /// GETs `url` conditionally on the answer kept for it, which a 304 gives back (as a 200);
    /// a new answer with an `ETag` is kept.
    pub fn read(&self, url: &str) -> Result<Answer, ForgeError> {
        let kept = self.cache.get(url);
        let mut answer = self.get(url, kept.as_ref().map(|k| k.etag.as_str()))?;
        match kept {
            Some(kept) if answer.status == 304 => {
                answer.status = 200;
                answer.body = kept.body;
                answer.next = kept.next;
                answer.etag = Some(kept.etag);
            }
            _ if (200..300).contains(&answer.status) => {
                if let Some(etag) = &answer.etag {
                    self.cache.put(url, etag, &answer.body, answer.next.as_deref());
                }
            }
            _ => {}
        }
        Ok(answer)
    }

    /// Sends `method` to `url` with `body` as JSON (a write), judged as [`Http::get`] is.
    pub fn write(
        &self,
        method: &str,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ForgeError> {
        self.send(method, url, None, body)
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        etag: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ForgeError> {
        let mut req = ureq::http::Request::builder().method(method).uri(url);
        req = match self.kind {
            ForgeKind::Github => req
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28"),
            _ => req.header("Accept", "application/json"),
        };
        if let Some(token) = &self.token {
            req = match self.kind {
                ForgeKind::Github => {
                    req.header("Authorization", format!("Bearer {}", token.expose()))
                }
                ForgeKind::Gitlab => req.header("PRIVATE-TOKEN", token.expose()),
                ForgeKind::Gitea => {
                    req.header("Authorization", format!("token {}", token.expose()))
                }
            };
        }
        if let Some(etag) = etag {
            req = req.header("If-None-Match", etag);
        }
        let transport = |message: String| {
            let secret = self.token.as_ref().map(|t| t.expose().to_string()).unwrap_or_default();
            ForgeError::Transport {
                api: self.api.clone(),
                message: kugetsu_core::secrets::redact(&message, &[secret.as_str()]),
            }
        };
        let sent = match body {
            // A GET carries no body, not even an empty one.
            None => req.body(()).map(|r| self.agent.run(r)),
            Some(body) => req
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(body).unwrap_or_default())
                .map(|r| self.agent.run(r)),
        };
        let mut r =
            sent.map_err(|e| transport(e.to_string()))?.map_err(|e| transport(e.to_string()))?;
        let status = r.status().as_u16();
        let wait = wait_of(&r);
        if matches!(status, 403 | 429) && wait.is_some() || status == 429 {
            let wait = wait.unwrap_or(DEFAULT_WAIT);
            return Err(ForgeError::RateLimited { api: self.api.clone(), status, wait });
        }
        let etag = header(&r, "etag");
        let next = header(&r, "link").and_then(|l| next_link(&l));
        let body = if status == 304 {
            String::new()
        } else {
            r.body_mut().with_config().limit(MAX_BODY).read_to_string().map_err(|e| {
                ForgeError::Transport { api: self.api.clone(), message: e.to_string() }
            })?
        };
        Ok(Answer { status, body, etag, next, wait })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_encoding() {
        let link = r#"<https://api.github.com/repositories/1/issues?page=2>; rel="next", <https://api.github.com/repositories/1/issues?page=5>; rel="last""#;
        assert_eq!(
            next_link(link).as_deref(),
            Some("https://api.github.com/repositories/1/issues?page=2")
        );
        assert_eq!(next_link(r#"<https://x/?page=1>; rel="prev""#), None);
        assert_eq!(encode("good first issue"), "good%20first%20issue");
        assert_eq!(encode("group/sub/p"), "group%2Fsub%2Fp");
        let http = Http::new(ForgeKind::Github, "https://h/api/v3/", None);
        assert!(http.owns("https://h/api/v3/repos/o/r/issues?page=2"));
        assert!(!http.owns("https://h/api/v30/x") && !http.owns("https://evil/api/v3/x"));
    }
}
