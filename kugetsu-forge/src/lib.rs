//! The issue trackers' REST APIs behind [`kugetsu_core::forge::Forge`]: GitHub (and GitHub
//! Enterprise), GitLab, Gitea and Forgejo, each at the API base its server was given.
//!
//! A crate of its own because it is network code for three forges: core has no network, and
//! the CLI wires but holds no policy. It reads what watching a tracker needs (a conditional,
//! paginated listing of labelled open issues; one issue) and writes what reporting back needs
//! (one comment kept up to date, labels, a draft pull request), each idempotent.
//!
//! Every request carries the forge's token in a header (never in a URL, so never in an error
//! or a log), follows no redirect, and follows a `Link: rel="next"` only under the same API
//! base. A 403 or 429 that says to wait (`Retry-After`, or a spent quota:
//! `X-RateLimit-Remaining: 0` until `X-RateLimit-Reset` on GitHub and Gitea, `RateLimit-*` on
//! GitLab) is [`ForgeError::RateLimited`]; a success that spends the quota says to pause.

mod cache;
mod checks;
mod dialect;
mod http;
mod writes;

use kugetsu_core::forge::{
    Checks, CommentRef, Forge, ForgeError, ForgeKind, Issue, ListQuery, Listing, PullRef,
    PullState, Review,
};
use kugetsu_core::secrets::Secret;

pub use cache::ReadCache;
pub use http::{MAX_WAIT, REQUEST_TIMEOUT};

/// The most pages one listing reads.
pub const MAX_PAGES: usize = 20;

/// A forge's REST API over HTTP.
pub struct HttpForge {
    http: http::Http,
    kind: ForgeKind,
}

impl HttpForge {
    /// A client of `kind`'s API at `api`, sending `token` (if any) with each request.
    pub fn new(kind: ForgeKind, api: &str, token: Option<Secret>) -> Self {
        HttpForge { http: http::Http::new(kind, api, token), kind }
    }

    /// Shares `cache` with the other clients that get it: a process that makes a client per
    /// pass (the daemon's watcher) keeps its answers from one pass to the next.
    pub fn with_cache(mut self, cache: std::sync::Arc<ReadCache>) -> Self {
        self.http.cache = cache;
        self
    }

    fn writer(&self) -> writes::Writer<'_> {
        writes::Writer { http: &self.http, kind: self.kind }
    }

    fn status(&self, what: &str, status: u16) -> ForgeError {
        ForgeError::Status { api: self.http.api.clone(), what: what.into(), status }
    }
}

impl Forge for HttpForge {
    fn list_issues(&self, repo: &str, query: &ListQuery) -> Result<Listing, ForgeError> {
        let (mut url, what) = dialect::list_url(self.kind, &self.http.api, repo, &query.label);
        let mut issues = Vec::new();
        let mut etag = None;
        let mut pause = None;
        let bad = |message: String| ForgeError::BadAnswer {
            api: self.http.api.clone(),
            what: what.clone(),
            message,
        };
        // A listing read in part would make the issues not read look closed: it is an error.
        for page in 0..=MAX_PAGES {
            if page == MAX_PAGES {
                return Err(bad(format!("more than {MAX_PAGES} pages of labelled open issues")));
            }
            let first = page == 0;
            let answer = self.http.get(&url, query.etag.as_deref().filter(|_| first))?;
            pause = answer.wait.or(pause);
            if first && answer.status == 304 {
                return Ok(Listing::NotModified { pause });
            }
            if !(200..300).contains(&answer.status) {
                return Err(self.status(&what, answer.status));
            }
            issues.extend(dialect::parse_issues(self.kind, &answer.body).map_err(&bad)?);
            match answer.next {
                Some(next) if self.http.owns(&next) => url = next,
                Some(_) => return Err(bad("a next page outside the API".into())),
                None => {
                    // One ETag vouches for one page: keep it only for a one-page listing.
                    etag = answer.etag.filter(|_| first);
                    break;
                }
            }
        }
        Ok(Listing::Issues { issues, etag, pause })
    }

    fn get_issue(&self, repo: &str, number: u64) -> Result<Issue, ForgeError> {
        let (url, what) = dialect::issue_url(self.kind, &self.http.api, repo, number);
        let answer = self.http.get(&url, None)?;
        if !(200..300).contains(&answer.status) {
            return Err(self.status(&what, answer.status));
        }
        let value: serde_json::Value =
            serde_json::from_str(&answer.body).map_err(|e| ForgeError::BadAnswer {
                api: self.http.api.clone(),
                what: what.clone(),
                message: e.to_string(),
            })?;
        dialect::parse_issue(self.kind, &value)
            .map_err(|message| ForgeError::BadAnswer { api: self.http.api.clone(), what, message })?
            .ok_or_else(|| self.status("a pull request, not an issue", 404))
    }

    fn upsert_comment(
        &self,
        repo: &str,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentRef, ForgeError> {
        self.writer().upsert_comment(repo, number, marker, body)
    }

    fn set_labels(
        &self,
        repo: &str,
        number: u64,
        add: &[String],
        remove: &[String],
    ) -> Result<(), ForgeError> {
        let current = self.get_issue(repo, number)?.labels;
        self.writer().set_labels(repo, number, &current, add, remove)
    }

    fn ensure_draft_pull(
        &self,
        repo: &str,
        branch: &str,
        title: &str,
        body: &str,
    ) -> Result<PullRef, ForgeError> {
        self.writer().ensure_draft_pull(repo, branch, title, body)
    }

    fn find_pull(&self, repo: &str, branch: &str) -> Result<Option<PullState>, ForgeError> {
        self.writer().find_pull(repo, branch)
    }

    fn checks(&self, repo: &str, sha: &str) -> Result<Checks, ForgeError> {
        self.writer().checks(repo, sha)
    }

    fn changes_requested(&self, repo: &str, number: u64) -> Result<Vec<Review>, ForgeError> {
        self.writer().changes_requested(repo, number)
    }
}
