//! A stand-in issue tracker on loopback (plain HTTP, one thread per connection): the issue
//! endpoints of GitHub, GitLab and Gitea as their public REST docs describe them, enough to
//! watch a repository. GitHub's listing includes pull requests (with `pull_request`), pages
//! through `Link`, answers `If-None-Match` with a 304 (which spends no quota) and sends
//! `X-RateLimit-*`; GitLab's sends `RateLimit-*`; Gitea's pages through `Link` too. A test can
//! make the next answer a 403 with `Retry-After`.
//!
//! For reporting back it also keeps comments (GitLab: notes), labels and pull (merge) requests
//! and serves their documented endpoints ([`writes`]); a test can make the forge do a write but
//! lose its answer, as a crash or a cut connection would.

mod writes;

pub use writes::StandInPull;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// Which API the stand-in speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `GET /repos/{o}/{r}/issues`.
    Github,
    /// `GET /api/v4/projects/{id}/issues`.
    Gitlab,
    /// `GET /api/v1/repos/{o}/{r}/issues`.
    Gitea,
}

/// An issue (or a pull request, on GitHub and Gitea) of the one repository served.
#[derive(Debug, Clone)]
pub struct StandInIssue {
    /// Its number.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Open.
    pub open: bool,
    /// Labels.
    pub labels: Vec<String>,
    /// A pull request rather than an issue.
    pub pull_request: bool,
}

/// A request the stand-in answered.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query.
    pub target: String,
    /// `If-None-Match`, if sent.
    pub if_none_match: Option<String>,
    /// The credential header's value, if sent.
    pub auth: Option<String>,
    /// The status answered.
    pub status: u16,
}

#[derive(Debug, Default)]
struct State {
    issues: Vec<StandInIssue>,
    version: u64,
    seen: Vec<Seen>,
    remaining: u64,
    retry_after_once: Option<u64>,
    page_size: Option<usize>,
    comments: Vec<writes::Comment>,
    pulls: Vec<StandInPull>,
    repo_labels: Vec<(u64, String)>,
    checks: Vec<writes::Check>,
    reviews: Vec<writes::Rev>,
    lose_answer_of: Option<String>,
    next_id: u64,
}

/// The running stand-in; it serves until the test process ends.
#[derive(Clone)]
pub struct StandInForge {
    dialect: Dialect,
    port: u16,
    state: Arc<Mutex<State>>,
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl StandInForge {
    /// Starts a stand-in for `dialect` on a free loopback port, serving repository `o/r`.
    pub fn start(dialect: Dialect) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let state = Arc::new(Mutex::new(State { remaining: 5000, ..State::default() }));
        let forge = StandInForge { dialect, port, state };
        let server = forge.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let server = server.clone();
                std::thread::spawn(move || server.serve(stream));
            }
        });
        forge
    }

    /// The server's base URL (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The API base URL, as `server add --api` takes it.
    pub fn api_url(&self) -> String {
        match self.dialect {
            Dialect::Github => self.base_url(),
            Dialect::Gitlab => format!("{}/api/v4", self.base_url()),
            Dialect::Gitea => format!("{}/api/v1", self.base_url()),
        }
    }

    fn change(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.state.lock().expect("stand-in state");
        f(&mut s);
        s.version += 1;
    }

    /// Adds an open issue (or pull request) with `labels`.
    pub fn add(&self, number: u64, title: &str, body: &str, labels: &[&str], pull_request: bool) {
        self.change(|s| {
            s.issues.push(StandInIssue {
                number,
                title: title.into(),
                body: body.into(),
                open: true,
                labels: labels.iter().map(|l| l.to_string()).collect(),
                pull_request,
            })
        });
    }

    /// Closes issue `number`.
    pub fn close(&self, number: u64) {
        self.change(|s| {
            s.issues.iter_mut().filter(|i| i.number == number).for_each(|i| i.open = false)
        });
    }

    /// Answers the next request with 403 and `Retry-After: seconds`.
    pub fn rate_limit_once(&self, seconds: u64) {
        self.state.lock().expect("stand-in state").retry_after_once = Some(seconds);
    }

    /// Serves listings `n` issues a page (default: the `per_page`/`limit` asked for).
    pub fn page_size(&self, n: usize) {
        self.state.lock().expect("stand-in state").page_size = Some(n);
    }

    /// Does the next `method` request (`POST`, ...) whose path ends with `suffix` but sends
    /// no answer, as a crash between the write and its record would leave it.
    pub fn lose_answer_of_next(&self, method: &str, suffix: &str) {
        self.state.lock().expect("stand-in state").lose_answer_of =
            Some(format!("{method} {suffix}"));
    }

    /// The repository's path prefix in this dialect.
    fn prefix(&self) -> &'static str {
        match self.dialect {
            Dialect::Github => "/repos/o/r",
            Dialect::Gitlab => "/api/v4/projects/o%2Fr",
            Dialect::Gitea => "/api/v1/repos/o/r",
        }
    }

    /// Whether `target` is the issue listing or one issue.
    fn is_issue_route(&self, target: &str) -> bool {
        let path = target.split('?').next().unwrap_or(target);
        path.strip_prefix(self.prefix())
            .and_then(|r| r.strip_prefix("/issues"))
            .is_some_and(|rest| rest.is_empty() || rest[1..].chars().all(|c| c.is_ascii_digit()))
    }

    /// Every request answered so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("stand-in state").seen.clone()
    }

    /// How many polls of the issue listing were answered 304 (the listing unchanged; other
    /// reads asked again answer 304 too, and are not counted).
    pub fn idle_polls(&self) -> usize {
        let s = self.state.lock().expect("stand-in state");
        let listing = |target: &str| {
            let path = target.split('?').next().unwrap_or(target);
            path.strip_prefix(self.prefix()).is_some_and(|rest| rest == "/issues")
        };
        s.seen.iter().filter(|r| r.status == 304 && listing(&r.target)).count()
    }

    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(match stream.try_clone() {
            Ok(s) => s,
            Err(_) => return,
        });
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let method = line.split_whitespace().next().unwrap_or("GET").to_string();
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (mut if_none_match, mut auth, mut length) = (None, None, 0usize);
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let v = v.trim().to_string();
                match k.trim().to_ascii_lowercase().as_str() {
                    "if-none-match" => if_none_match = Some(v),
                    "authorization" | "private-token" => auth = Some(v),
                    "content-length" => length = v.parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length.min(1 << 20)];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            return;
        }
        let (status, headers, body) = if method == "GET" && self.is_issue_route(&target) {
            self.answer(&target, if_none_match.as_deref())
        } else {
            let answer = self.answer_more(&method, &target, &body);
            self.conditional(&method, if_none_match.as_deref(), answer)
        };
        let lose = {
            let mut s = self.state.lock().expect("stand-in state");
            s.seen.push(Seen {
                method: method.clone(),
                target: target.clone(),
                if_none_match,
                auth,
                status,
            });
            let lose = s.lose_answer_of.as_ref().is_some_and(|l| {
                let (m, suffix) = l.split_once(' ').unwrap_or((l, ""));
                m == method && target.split('?').next().is_some_and(|p| p.ends_with(suffix))
            });
            if lose {
                s.lose_answer_of = None;
            }
            lose
        };
        if lose {
            // Done, but the client never hears of it.
            return;
        }
        let mut out = stream;
        let mut text = format!(
            "HTTP/1.1 {status} X\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        text.push_str(&body);
        let _ = out.write_all(text.as_bytes());
    }

    fn issue_json(&self, i: &StandInIssue) -> String {
        let labels: Vec<String> = match self.dialect {
            Dialect::Gitlab => i.labels.iter().map(|l| json_str(l)).collect(),
            _ => {
                i.labels.iter().map(|l| format!("{{\"id\":1,\"name\":{}}}", json_str(l))).collect()
            }
        };
        match self.dialect {
            Dialect::Gitlab => format!(
                "{{\"id\":{},\"iid\":{},\"project_id\":1,\"title\":{},\"description\":{},\"state\":\"{}\",\"labels\":[{}]}}",
                1000 + i.number,
                i.number,
                json_str(&i.title),
                json_str(&i.body),
                if i.open { "opened" } else { "closed" },
                labels.join(",")
            ),
            _ => format!(
                "{{\"id\":{},\"number\":{},\"title\":{},\"body\":{},\"state\":\"{}\",\"labels\":[{}]{}}}",
                1000 + i.number,
                i.number,
                json_str(&i.title),
                json_str(&i.body),
                if i.open { "open" } else { "closed" },
                labels.join(","),
                if i.pull_request { ",\"pull_request\":{\"url\":\"x\"}" } else { "" }
            ),
        }
    }

    /// The rate-limit headers of an answer.
    fn quota(&self, s: &State) -> Vec<(String, String)> {
        let reset = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() + 3600)
            .unwrap_or(0);
        match self.dialect {
            Dialect::Gitlab => vec![
                ("RateLimit-Limit".into(), "2000".into()),
                ("RateLimit-Remaining".into(), s.remaining.to_string()),
                ("RateLimit-Reset".into(), reset.to_string()),
            ],
            _ => vec![
                ("X-RateLimit-Limit".into(), "5000".into()),
                ("X-RateLimit-Remaining".into(), s.remaining.to_string()),
                ("X-RateLimit-Reset".into(), reset.to_string()),
            ],
        }
    }

    /// GitHub gives every successful GET an `ETag` and answers one asked for again with it in
    /// `If-None-Match` with a 304, which spends no quota.
    fn conditional(
        &self,
        method: &str,
        if_none_match: Option<&str>,
        (status, mut headers, body): (u16, Vec<(String, String)>, String),
    ) -> (u16, Vec<(String, String)>, String) {
        if method != "GET" || status != 200 || self.dialect != Dialect::Github {
            return (status, headers, body);
        }
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("etag"));
        let etag = format!("W/\"{:x}\"", writes::fnv(&body));
        headers.push(("ETag".into(), etag.clone()));
        if if_none_match == Some(etag.as_str()) {
            let mut s = self.state.lock().expect("stand-in state");
            s.remaining += 1;
            return (304, headers, String::new());
        }
        (status, headers, body)
    }

    fn answer(
        &self,
        target: &str,
        if_none_match: Option<&str>,
    ) -> (u16, Vec<(String, String)>, String) {
        let mut s = self.state.lock().expect("stand-in state");
        let quota = |s: &State| self.quota(s);
        if let Some(after) = s.retry_after_once.take() {
            return (
                403,
                vec![("Retry-After".into(), after.to_string())],
                "{\"message\":\"secondary rate limit\"}".into(),
            );
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let prefix = match self.dialect {
            Dialect::Github => "/repos/o/r/issues",
            Dialect::Gitlab => "/api/v4/projects/o%2Fr/issues",
            Dialect::Gitea => "/api/v1/repos/o/r/issues",
        };
        let Some(rest) = path.strip_prefix(prefix) else {
            return (404, vec![], "{\"message\":\"Not Found\"}".into());
        };
        if let Some(number) = rest.strip_prefix('/') {
            let found = s.issues.iter().find(|i| i.number.to_string() == number).cloned();
            s.remaining = s.remaining.saturating_sub(1);
            return match found {
                Some(i) => (200, quota(&s), self.issue_json(&i)),
                None => (404, quota(&s), "{\"message\":\"Not Found\"}".into()),
            };
        }
        if !rest.is_empty() {
            return (404, vec![], "{\"message\":\"Not Found\"}".into());
        }
        let page: usize =
            query_param(query, "page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
        let etag = format!("W/\"v{}-p{page}\"", s.version);
        if self.dialect == Dialect::Github && if_none_match == Some(etag.as_str()) {
            // GitHub: a 304 does not count against the quota.
            let mut headers = quota(&s);
            headers.push(("ETag".into(), etag));
            return (304, headers, String::new());
        }
        s.remaining = s.remaining.saturating_sub(1);
        let wanted: Vec<String> = query_param(query, "labels")
            .map(decode)
            .map(|l| l.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        let state_wanted = query_param(query, "state").unwrap_or("open");
        let only_issues =
            self.dialect == Dialect::Gitea && query_param(query, "type") == Some("issues");
        let list: Vec<&StandInIssue> = s
            .issues
            .iter()
            .filter(|i| wanted.iter().all(|w| i.labels.contains(w)))
            .filter(|i| match state_wanted {
                "open" | "opened" => i.open,
                "closed" => !i.open,
                _ => true,
            })
            .filter(|i| !(i.pull_request && (only_issues || self.dialect == Dialect::Gitlab)))
            .collect();
        let per_page = s.page_size.unwrap_or_else(|| {
            query_param(query, "per_page")
                .or_else(|| query_param(query, "limit"))
                .and_then(|p| p.parse().ok())
                .unwrap_or(30)
        });
        let chunk: Vec<String> = list
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|i| self.issue_json(i))
            .collect();
        let mut headers = quota(&s);
        if self.dialect == Dialect::Github {
            headers.push(("ETag".into(), etag));
        }
        if page * per_page < list.len() {
            let other: Vec<&str> = query.split('&').filter(|kv| !kv.starts_with("page=")).collect();
            let next = format!("{}{path}?{}&page={}", self.base_url(), other.join("&"), page + 1);
            headers.push(("Link".into(), format!("<{next}>; rel=\"next\"")));
        }
        (200, headers, format!("[{}]", chunk.join(",")))
    }
}
