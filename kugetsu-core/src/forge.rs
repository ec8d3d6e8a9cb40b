//! The seam to an issue tracker's API (GitHub, GitLab, Gitea/Forgejo): what the orchestration
//! asks of a forge, with no network here. The HTTP clients live in `kugetsu-forge`.
//!
//! Reads are what watching a tracker needs ([`Forge::list_issues`], [`Forge::get_issue`]).
//! Listing is conditional: the caller hands back the [`ListQuery::etag`] of the last answer, and
//! an unchanged listing is [`Listing::NotModified`] (one cheap request; on GitHub a 304 does not
//! count against the rate limit).
//!
//! Writes (a comment kept up to date, labels, a pull request) are what reporting back
//! ([`crate::report`]) needs; a client that does not make one returns
//! [`ForgeError::Unsupported`]. They are idempotent across a daemon restart: each names its
//! target by a `marker` that the forge's copy carries (a hidden line in a comment, the branch
//! of a pull request), so a write that happened but was not recorded is found, not repeated.

use std::time::Duration;

/// Which API dialect a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    /// GitHub and GitHub Enterprise (REST v3).
    Github,
    /// GitLab (REST v4).
    Gitlab,
    /// Gitea and Forgejo (REST v1).
    Gitea,
}

impl ForgeKind {
    /// Its lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::Github => "github",
            ForgeKind::Gitlab => "gitlab",
            ForgeKind::Gitea => "gitea",
        }
    }

    /// Parses `github`, `gitlab`, `gitea` (or `forgejo`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "github" => Some(ForgeKind::Github),
            "gitlab" => Some(ForgeKind::Gitlab),
            "gitea" | "forgejo" => Some(ForgeKind::Gitea),
            _ => None,
        }
    }

    /// The env-file variable holding this forge's token (as the git side routes them).
    pub fn token_var(self) -> &'static str {
        match self {
            ForgeKind::Github => "GITHUB_TOKEN",
            ForgeKind::Gitlab => "GITLAB_TOKEN",
            ForgeKind::Gitea => "GITEA_TOKEN",
        }
    }

    /// The dialect an API base URL's path suggests: `/api/v4` is GitLab's, `/api/v1` Gitea's,
    /// anything else (api.github.com, `/api/v3` of GitHub Enterprise) GitHub's.
    pub fn guess_from_api(api: &str) -> Self {
        let path = api.trim_end_matches('/');
        if path.ends_with("/api/v4") {
            ForgeKind::Gitlab
        } else if path.ends_with("/api/v1") {
            ForgeKind::Gitea
        } else {
            ForgeKind::Github
        }
    }
}

/// One issue as a forge lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Its number in the repository (GitLab's `iid`).
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body (empty when none).
    pub body: String,
    /// Open (not closed or merged).
    pub open: bool,
    /// Its labels' names.
    pub labels: Vec<String>,
}

/// What [`Forge::list_issues`] asks for: the open issues with a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// The label.
    pub label: String,
    /// The ETag of the previous answer, sent as `If-None-Match`.
    pub etag: Option<String>,
}

/// What a listing returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// Nothing changed since [`ListQuery::etag`].
    NotModified {
        /// Wait before the next request, when the forge says its quota is spent.
        pause: Option<Duration>,
    },
    /// Every open issue with the label (pull requests left out).
    Issues {
        /// The issues, all pages.
        issues: Vec<Issue>,
        /// The ETag to send next time (only for a single-page answer: one ETag cannot vouch
        /// for several pages).
        etag: Option<String>,
        /// Wait before the next request, when the forge says its quota is spent.
        pause: Option<Duration>,
    },
}

/// Why a forge request failed. Never holds a token: clients send it in a header only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForgeError {
    /// The forge asked us to wait (`Retry-After`, or a spent quota).
    #[error("{api}: rate limited (status {status}); waiting {}s", wait.as_secs())]
    RateLimited {
        /// The API base.
        api: String,
        /// The HTTP status.
        status: u16,
        /// How long to wait.
        wait: Duration,
    },
    /// An answer that is not a success.
    #[error("{api}: {what} answered HTTP {status}")]
    Status {
        /// The API base.
        api: String,
        /// What was asked (`GET /repos/o/r/issues`).
        what: String,
        /// The HTTP status.
        status: u16,
    },
    /// No answer (connection, TLS, timeout).
    #[error("{api}: {message}")]
    Transport {
        /// The API base.
        api: String,
        /// Why.
        message: String,
    },
    /// An answer that does not have the documented shape.
    #[error("{api}: unexpected answer to {what}: {message}")]
    BadAnswer {
        /// The API base.
        api: String,
        /// What was asked.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// Not implemented for this forge yet.
    #[error("{0} is not supported yet")]
    Unsupported(&'static str),
}

/// A comment kugetsu keeps up to date on an issue (for reporting back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentRef {
    /// The forge's id of the comment.
    pub id: u64,
}

/// A pull (merge) request kugetsu opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRef {
    /// Its number (GitLab's `iid`).
    pub number: u64,
    /// Its page for people (empty when the forge gave none).
    pub url: String,
}

/// How the checks of a commit went (check runs, commit statuses, pipelines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksState {
    /// Still running, or none reported.
    Pending,
    /// All passed.
    Success,
    /// At least one failed.
    Failure,
}

/// The checks of a commit: how they went and, for the failed ones, what they said (a name, a
/// summary, the tail of a log when the forge gives one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checks {
    /// Overall.
    pub state: ChecksState,
    /// One text per failed check.
    pub failures: Vec<String>,
}

/// The pull (merge) request of a branch, as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullState {
    /// Its number (GitLab's `iid`).
    pub number: u64,
    /// The commit its head is at.
    pub head_sha: String,
    /// Still open.
    pub open: bool,
    /// Merged.
    pub merged: bool,
}

/// A review that requests changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// The forge's id of the review (grows with time).
    pub id: u64,
    /// Who wrote it.
    pub author: String,
    /// What it says.
    pub body: String,
}

/// An issue tracker's API, for one server. `repo` is the repository's path on it
/// (`owner/repo`, or `group/sub/project` on GitLab).
pub trait Forge: Send + Sync {
    /// The open issues of `repo` carrying `query.label`, conditional on `query.etag`.
    fn list_issues(&self, repo: &str, query: &ListQuery) -> Result<Listing, ForgeError>;

    /// One issue.
    fn get_issue(&self, repo: &str, number: u64) -> Result<Issue, ForgeError>;

    /// Creates, or updates in place, the one comment on issue `number` whose text carries
    /// `marker`. Idempotent: the marker is looked up before a new comment is posted.
    fn upsert_comment(
        &self,
        repo: &str,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentRef, ForgeError> {
        let _ = (repo, number, marker, body);
        Err(ForgeError::Unsupported("commenting on an issue"))
    }

    /// Makes issue `number` carry `add` and none of `remove`. Idempotent by nature.
    fn set_labels(
        &self,
        repo: &str,
        number: u64,
        add: &[String],
        remove: &[String],
    ) -> Result<(), ForgeError> {
        let _ = (repo, number, add, remove);
        Err(ForgeError::Unsupported("labelling an issue"))
    }

    /// The open pull request from `branch`, opened as a draft if there is none, with `body`
    /// (an open one gets `body` again). Idempotent: the branch names it.
    fn ensure_draft_pull(
        &self,
        repo: &str,
        branch: &str,
        title: &str,
        body: &str,
    ) -> Result<PullRef, ForgeError> {
        let _ = (repo, branch, title, body);
        Err(ForgeError::Unsupported("opening a pull request"))
    }

    /// The most recent pull request from `branch`, open or not, if there is one.
    fn find_pull(&self, repo: &str, branch: &str) -> Result<Option<PullState>, ForgeError> {
        let _ = (repo, branch);
        Err(ForgeError::Unsupported("reading pull requests"))
    }

    /// How the checks of commit `sha` went (check runs and commit statuses, or pipelines).
    fn checks(&self, repo: &str, sha: &str) -> Result<Checks, ForgeError> {
        let _ = (repo, sha);
        Err(ForgeError::Unsupported("reading checks"))
    }

    /// The reviews of pull request `number` that request changes, oldest first.
    fn changes_requested(&self, repo: &str, number: u64) -> Result<Vec<Review>, ForgeError> {
        let _ = (repo, number);
        Err(ForgeError::Unsupported("reading reviews"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_guess_from_the_api_path() {
        assert_eq!(ForgeKind::parse("Forgejo"), Some(ForgeKind::Gitea));
        assert_eq!(ForgeKind::parse("svn"), None);
        assert_eq!(ForgeKind::guess_from_api("https://gitlab.com/api/v4/"), ForgeKind::Gitlab);
        assert_eq!(ForgeKind::guess_from_api("https://git.example.org/api/v1"), ForgeKind::Gitea);
        assert_eq!(ForgeKind::guess_from_api("https://ghe.example.org/api/v3"), ForgeKind::Github);
        assert_eq!(ForgeKind::guess_from_api("https://api.github.com"), ForgeKind::Github);
    }
}
