//! Where an issue's repository is cloned from: `repos.json` overrides, named servers, or the
//! URL derived from the ref.
//!
//! `repos.json` is the spec's flat object mapping a key to a clone URL. A key is an issue ref
//! (`github.com/shoko/kugetsu#14`, for that issue only), a repository
//! (`github.com/shoko/kugetsu`, for all its issues), or the spec's own example form
//! `github.com/shoko kugetsu#14` (owner and repository separated by a space), which is read as
//! the issue ref it means. Without an entry, a server from `servers.json` whose host is the
//! ref's instance supplies the base URL, and otherwise the URL is
//! `https://<instance>/<owner>/<repo>.git`. Clone URLs never carry credentials (see
//! [`crate::servers`]); tokens reach git from env files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::issue_ref::{IssueRef, RepoRef};
use crate::secrets::redact_url;
use crate::servers::{ServersFile, UrlError, check_url};
use crate::state::StateDir;
use crate::storage::{self, StorageError};
use crate::worktree::RepoSource;

/// Why a `repos.json` operation or a clone URL lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A key that is neither an issue ref nor a repository.
    #[error("repos.json key {key:?} is neither instance/owner/repo#id nor instance/owner/repo")]
    BadKey {
        /// The key as written in `repos.json`.
        key: String,
    },
    /// A clone URL was refused.
    #[error("{} entry {key:?}: {source}", path.display())]
    BadUrl {
        /// The `repos.json` file.
        path: PathBuf,
        /// The key whose URL is wrong.
        key: String,
        /// Why.
        #[source]
        source: UrlError,
    },
    /// No entry with that key.
    #[error("no repos.json entry for {key:?}")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Checks a clone URL: a URL accepted by [`check_url`], an scp-like `[user@]host:path` (no
/// password can be expressed there), or an absolute local path.
pub fn check_clone_url(url: &str) -> Result<(), UrlError> {
    if url.contains("://") {
        return check_url(url).map(|_| ());
    }
    let bad = |problem: &str| UrlError { shown: redact_url(url), problem: problem.into() };
    if url.is_empty() {
        return Err(bad("it is empty"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains whitespace or control characters"));
    }
    if url.starts_with('/') {
        return if url.split('/').any(|s| s == "..") {
            Err(bad("it contains '..'"))
        } else {
            Ok(())
        };
    }
    // scp-like: [user@]host:path
    let Some((authority, path)) = url.split_once(':') else {
        return Err(bad("it is not a URL, an absolute path, or user@host:path"));
    };
    let host = match authority.rsplit_once('@') {
        Some((user, host)) => {
            if user.is_empty()
                || !user.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(bad("its user name is not a plain name"));
            }
            host
        }
        None => authority,
    };
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)) {
        return Err(bad("its host is not a host name"));
    }
    if path.is_empty() || path.contains('@') {
        return Err(bad("its path is empty or contains '@'"));
    }
    Ok(())
}

/// A `repos.json` key, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoKey {
    /// One issue.
    Issue(IssueRef),
    /// A whole repository.
    Repo(RepoRef),
}

impl RepoKey {
    /// Parses a key (see the module docs for the accepted forms).
    pub fn parse(key: &str) -> Result<Self, RepoError> {
        let bad = || RepoError::BadKey { key: key.to_string() };
        if key.contains('#') {
            if let Ok(r) = IssueRef::parse(key) {
                return Ok(RepoKey::Issue(r));
            }
            // The spec's example writes `instance/owner repo#id`.
            let fixed = key.trim().replacen(' ', "/", 1);
            return IssueRef::parse(&fixed).map(RepoKey::Issue).map_err(|_| bad());
        }
        RepoRef::parse(key).map(RepoKey::Repo).map_err(|_| bad())
    }
}

/// `repos.json`: key → clone URL, sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReposFile {
    path: PathBuf,
    entries: BTreeMap<String, String>,
}

impl ReposFile {
    /// A file at `path` with these entries (for tests and embedders).
    pub fn from_entries(path: PathBuf, entries: BTreeMap<String, String>) -> Self {
        ReposFile { path, entries }
    }

    /// Every entry.
    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.entries
    }

    /// The explicit clone URL for `issue`: an entry for the issue itself wins over one for its
    /// repository. Keys that cannot be parsed are ignored here (see [`ReposFile::problems`]).
    pub fn url_for(&self, issue: &IssueRef) -> Result<Option<&str>, RepoError> {
        let repo = issue.repo();
        let mut repo_match = None;
        for (key, url) in &self.entries {
            match RepoKey::parse(key) {
                Ok(RepoKey::Issue(r)) if &r == issue => return self.checked(key, url).map(Some),
                Ok(RepoKey::Repo(r)) if r == repo => repo_match = Some((key, url)),
                _ => {}
            }
        }
        repo_match.map(|(key, url)| self.checked(key, url)).transpose()
    }

    fn checked<'a>(&self, key: &str, url: &'a str) -> Result<&'a str, RepoError> {
        check_clone_url(url).map_err(|source| RepoError::BadUrl {
            path: self.path.clone(),
            key: key.to_string(),
            source,
        })?;
        Ok(url)
    }

    /// Every entry whose key or URL is wrong, as messages (for `doctor`).
    pub fn problems(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|(key, url)| {
                RepoKey::parse(key)
                    .err()
                    .map(|e| e.to_string())
                    .or_else(|| self.checked(key, url).err().map(|e| e.to_string()))
            })
            .collect()
    }
}

/// The `repos.json` of a state directory.
#[derive(Debug, Clone)]
pub struct Repos {
    path: PathBuf,
    lock: PathBuf,
}

impl Repos {
    /// The repos file of `state`.
    pub fn new(state: &StateDir) -> Self {
        Repos { path: state.repos_path(), lock: state.lock_path("repos") }
    }

    /// Reads the file (empty when missing). Values that are not strings make the file
    /// invalid; it is reported, and kept aside, like any corrupt state file.
    pub fn load(&self) -> Result<ReposFile, RepoError> {
        let entries = storage::read_json(&self.path)?.unwrap_or_default();
        Ok(ReposFile { path: self.path.clone(), entries })
    }

    /// Sets the clone URL for a key (checked). Returns the previous URL.
    pub fn set(&self, key: &str, url: &str) -> Result<Option<String>, RepoError> {
        RepoKey::parse(key)?;
        check_clone_url(url).map_err(|source| RepoError::BadUrl {
            path: self.path.clone(),
            key: key.to_string(),
            source,
        })?;
        storage::update_json(
            &self.path,
            &self.lock,
            BTreeMap::new,
            |m: &mut BTreeMap<String, String>| Ok(m.insert(key.to_string(), url.to_string())),
        )
    }

    /// Removes a key. Returns its URL.
    pub fn remove(&self, key: &str) -> Result<String, RepoError> {
        storage::update_json(
            &self.path,
            &self.lock,
            BTreeMap::new,
            |m: &mut BTreeMap<String, String>| {
                m.remove(key).ok_or_else(|| RepoError::NotFound { key: key.to_string() })
            },
        )
    }
}

/// The clone URL of `issue`'s repository: an explicit `repos.json` entry, else under the base
/// URL of a server whose host is the issue's instance, else `https://<instance>/<path>.git`.
pub fn clone_url_for(
    issue: &IssueRef,
    servers: &ServersFile,
    repos: &ReposFile,
) -> Result<String, RepoError> {
    if let Some(url) = repos.url_for(issue)? {
        return Ok(url.to_string());
    }
    let repo_path = issue.path().join("/");
    if let Some((name, _)) = servers.for_host(issue.instance())
        && let Some(base) = servers.get(name)
    {
        return Ok(format!("{}/{repo_path}.git", base.trim_end_matches('/')));
    }
    Ok(format!("https://{}/{repo_path}.git", issue.instance()))
}

/// Env-file variables holding tokens git may send to a server.
pub const TOKEN_VARS: [&str; 3] = ["GITHUB_TOKEN", "GITLAB_TOKEN", "GITEA_TOKEN"];

/// Which env-file token may be sent to the server of clone URL `url`, if any.
///
/// A token is a credential for one service, so it goes only where the user pointed it: over
/// https, `GITHUB_TOKEN` to `github.com` and `GITLAB_TOKEN` to `gitlab.com` (exact hosts: a
/// look-alike such as `github.com.example.net` gets nothing), and to a server added with
/// `kugetsu server add` the token its name suggests (`GITLAB_TOKEN` if the name contains
/// "gitlab", `GITHUB_TOKEN` if "github", otherwise `GITEA_TOKEN`). Any other host, and any
/// scheme but https, gets none. The host is the clone URL's own, not the issue ref's, so a
/// `repos.json` entry pointing elsewhere cannot carry a token away either.
pub fn token_var_for(url: &str, servers: &ServersFile) -> Option<&'static str> {
    let checked = check_url(url).ok()?;
    if checked.scheme != "https" {
        return None;
    }
    match (checked.host.as_str(), checked.port) {
        ("github.com", None | Some(443)) => return Some("GITHUB_TOKEN"),
        ("gitlab.com", None | Some(443)) => return Some("GITLAB_TOKEN"),
        _ => {}
    }
    let same_server = |base: &crate::servers::CheckedUrl| {
        base.scheme == "https"
            && base.host == checked.host
            && base.port.unwrap_or(443) == checked.port.unwrap_or(443)
    };
    let (name, _) = servers.for_host(&checked.host).filter(|(_, base)| same_server(base))?;
    let name = name.to_ascii_lowercase();
    Some(if name.contains("gitlab") {
        "GITLAB_TOKEN"
    } else if name.contains("github") {
        "GITHUB_TOKEN"
    } else {
        "GITEA_TOKEN"
    })
}

/// The [`RepoSource`] a worktree backend needs for `issue`: [`clone_url_for`], the repository's
/// mirror key, and no token (the caller adds one from the env files).
pub fn repo_source_for(
    issue: &IssueRef,
    servers: &ServersFile,
    repos: &ReposFile,
) -> Result<RepoSource, RepoError> {
    Ok(RepoSource {
        url: clone_url_for(issue, servers, repos)?,
        mirror_key: issue.repo().mirror_key(),
        token: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(s: &str) -> IssueRef {
        IssueRef::parse(s).unwrap()
    }

    fn repos(pairs: &[(&str, &str)]) -> ReposFile {
        ReposFile::from_entries(
            "/s/repos.json".into(),
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        )
    }

    #[test]
    fn default_url_is_derived_from_the_ref() {
        let url = clone_url_for(
            &issue("github.com/shoko/kugetsu#14"),
            &ServersFile::default(),
            &ReposFile::default(),
        );
        assert_eq!(url.unwrap(), "https://github.com/shoko/kugetsu.git");
        let url = clone_url_for(
            &issue("gitlab.com/g/sub/r#1"),
            &ServersFile::default(),
            &ReposFile::default(),
        );
        assert_eq!(url.unwrap(), "https://gitlab.com/g/sub/r.git");
    }

    #[test]
    fn servers_supply_the_base_for_their_host() {
        let mut servers = ServersFile::default();
        servers.servers.insert("gitea".into(), "https://git.example.org:3000/forge".into());
        servers.servers.insert("gh".into(), "ssh://git@github.com".into());
        let none = ReposFile::default();
        assert_eq!(
            clone_url_for(&issue("git.example.org/o/r#2"), &servers, &none).unwrap(),
            "https://git.example.org:3000/forge/o/r.git"
        );
        assert_eq!(
            clone_url_for(&issue("github.com/o/r#2"), &servers, &none).unwrap(),
            "ssh://git@github.com/o/r.git"
        );
    }

    #[test]
    fn repos_entries_win_issue_before_repo_and_spec_form_is_understood() {
        let r = repos(&[
            ("github.com/shoko kugetsu#14", "https://custom.repo.url/owner/repo.git"),
            ("github.com/shoko/kugetsu", "git@mirror.example:shoko/kugetsu.git"),
        ]);
        let none = ServersFile::default();
        assert_eq!(
            clone_url_for(&issue("github.com/shoko/kugetsu#14"), &none, &r).unwrap(),
            "https://custom.repo.url/owner/repo.git"
        );
        assert_eq!(
            clone_url_for(&issue("github.com/shoko/kugetsu#15"), &none, &r).unwrap(),
            "git@mirror.example:shoko/kugetsu.git"
        );
        let src = repo_source_for(&issue("github.com/shoko/kugetsu#15"), &none, &r).unwrap();
        assert_eq!(src.mirror_key, "github.com-shoko-kugetsu");
        assert!(src.token.is_none());
    }

    #[test]
    fn credentials_in_repos_entries_are_refused_without_echo() {
        let r = repos(&[
            ("github.com/o/r", "https://x:ghp_secret@github.com/o/r.git"),
            ("nonsense", "/x"),
        ]);
        let err = clone_url_for(&issue("github.com/o/r#1"), &ServersFile::default(), &r)
            .unwrap_err()
            .to_string();
        assert!(err.contains("password") && !err.contains("ghp_secret"), "{err}");
        let problems = r.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| !p.contains("ghp_secret")));
    }

    #[test]
    fn clone_url_forms() {
        for ok in [
            "https://h/o/r.git",
            "git@h.org:o/r.git",
            "h:o/r",
            "/srv/git/r.git",
            "file:///srv/r",
            "ssh://git@h:22/o/r",
        ] {
            check_clone_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "r.git", "a:b@h:x", "us er@h:x", "/a/../b", "h:", "http://t@h/x"] {
            assert!(check_clone_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_and_remove_entries() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("k"));
        state.ensure().unwrap();
        let repos = Repos::new(&state);
        assert!(repos.load().unwrap().entries().is_empty());
        assert_eq!(repos.set("github.com/o/r", "https://m.org/o/r.git").unwrap(), None);
        assert!(matches!(repos.set("bad key", "https://m.org/x"), Err(RepoError::BadKey { .. })));
        assert!(matches!(
            repos.set("github.com/o/r#1", "https://t@m.org/x"),
            Err(RepoError::BadUrl { .. })
        ));
        assert_eq!(
            clone_url_for(
                &issue("github.com/o/r#3"),
                &ServersFile::default(),
                &repos.load().unwrap()
            )
            .unwrap(),
            "https://m.org/o/r.git"
        );
        assert_eq!(repos.remove("github.com/o/r").unwrap(), "https://m.org/o/r.git");
        assert!(matches!(repos.remove("github.com/o/r"), Err(RepoError::NotFound { .. })));
    }

    #[test]
    fn tokens_go_only_to_the_server_they_are_for() {
        let mut servers = ServersFile::default();
        for (name, url) in [
            ("gitea", "https://git.corp.example"),
            ("work-gitlab", "https://gl.corp.example:8443"),
            ("github-enterprise", "https://github.corp.example"),
            ("plain", "http://insecure.example"),
        ] {
            servers.servers.insert(name.into(), url.into());
        }
        let cases = [
            ("https://github.com/o/r.git", Some("GITHUB_TOKEN")),
            ("https://GitHub.com/o/r.git", Some("GITHUB_TOKEN")),
            ("https://gitlab.com/o/r.git", Some("GITLAB_TOKEN")),
            ("https://git.corp.example/o/r.git", Some("GITEA_TOKEN")),
            ("https://gl.corp.example:8443/o/r.git", Some("GITLAB_TOKEN")),
            ("https://github.corp.example/o/r.git", Some("GITHUB_TOKEN")),
            // Look-alikes, other ports, other schemes and unknown hosts get nothing.
            ("https://github.com.evil.example/o/r.git", None),
            ("https://evilgithub.com/o/r.git", None),
            ("https://github.com:8443/o/r.git", None),
            ("https://gl.corp.example/o/r.git", None),
            ("http://github.com/o/r.git", None),
            ("http://insecure.example/o/r.git", None),
            ("ssh://git@github.com/o/r.git", None),
            ("git@github.com:o/r.git", None),
            ("/srv/git/r", None),
            ("https://unknown.example/o/r.git", None),
        ];
        for (url, expected) in cases {
            assert_eq!(token_var_for(url, &servers), expected, "{url}");
        }
    }
}
