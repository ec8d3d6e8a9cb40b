//! Named git servers (`servers.json`) for `kugetsu server list|add|remove|default|get`, and the
//! URL checks shared with `repos.json`.
//!
//! A server is a name and a base URL (`github` → `https://github.com`); an issue whose instance
//! is that URL's host is cloned from under that base (a self-hosted Gitea on another port or
//! path, an ssh endpoint). URLs are stored, logged and shown, so they must never hold
//! credentials: a URL with a user and password, or any user at all for http(s), where that is
//! how tokens get pasted, is refused, and the refusal itself never repeats the secret. Tokens
//! belong in env files.
//!
//! A server may also name its issue tracker's API (`--api`: GitHub Enterprise's `/api/v3`, a
//! self-hosted GitLab's `/api/v4`, Gitea's `/api/v1`, a local stand-in), which watching a
//! tracker uses; github.com's and gitlab.com's are known without it ([`api_for`]). An API URL
//! is https, or plain http only on loopback, since the forge's token travels with each request.
//!
//! The file is `{"default": "<name>", "servers": {"<name>": "<url>", ...}, "apis": {"<name>":
//! {"url": "<api url>", "forge": "github|gitlab|gitea"}}}`; other fields are kept.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::forge::ForgeKind;
use crate::issue_ref::RepoRef;
use crate::secrets::redact_url;
use crate::state::StateDir;
use crate::storage::{self, StorageError};

/// Longest server name.
pub const MAX_SERVER_NAME_LEN: usize = 64;
/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Why a URL was refused. The message never contains the URL's user-info part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URL {shown}: {problem}")]
pub struct UrlError {
    /// The URL with any user-info replaced by `***`.
    pub shown: String,
    /// What is wrong.
    pub problem: String,
}

/// A checked URL, split into the parts kugetsu uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedUrl {
    /// `https`, `http`, `ssh`, `git` or `file`.
    pub scheme: String,
    /// The user (ssh only), never a password.
    pub user: Option<String>,
    /// The host, lowercased (empty for `file`).
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
    /// The path, starting with `/` or empty.
    pub path: String,
}

fn bad(url: &str, problem: impl Into<String>) -> UrlError {
    UrlError { shown: redact_url(url), problem: problem.into() }
}

fn check_host(url: &str, host: &str) -> Result<String, UrlError> {
    if host.is_empty() {
        return Err(bad(url, "it has no host"));
    }
    let ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !host.starts_with(['-', '.'])
    };
    if !ok {
        return Err(bad(url, format!("host {host:?} is not a host name or address")));
    }
    Ok(host.to_ascii_lowercase())
}

fn check_path(url: &str, path: &str) -> Result<(), UrlError> {
    if let Some(c) =
        path.chars().find(|&c| !(c.is_ascii_alphanumeric() || "/._~%+-:=,".contains(c)))
    {
        return Err(bad(url, format!("its path contains {c:?}")));
    }
    if path.split('/').any(|seg| seg == "..") {
        return Err(bad(url, "its path contains '..'"));
    }
    Ok(())
}

/// Checks a URL of the form `scheme://[user@]host[:port][/path]`.
///
/// Schemes: `https`, `http`, `ssh`, `git`, and `file` (`file:///path`). No query, fragment,
/// whitespace or control characters; no credentials (see the module docs).
pub fn check_url(url: &str) -> Result<CheckedUrl, UrlError> {
    if url.len() > MAX_URL_LEN {
        return Err(bad(url, format!("it is longer than {MAX_URL_LEN} bytes")));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(url, "it contains whitespace or control characters"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(bad(url, "it has no scheme (expected e.g. https://host)"));
    };
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "https" | "http" | "ssh" | "git" | "file") {
        return Err(bad(
            url,
            format!("scheme {scheme:?} is not one of https, http, ssh, git, file"),
        ));
    }
    if rest.contains(['?', '#']) {
        return Err(bad(url, "query strings and fragments are not allowed"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            if userinfo.contains(':') {
                return Err(bad(url, "it contains a password; put tokens in an env file instead"));
            }
            if scheme != "ssh" {
                return Err(bad(
                    url,
                    "it contains a user name, which is where tokens hide in http URLs; put tokens in an env file instead",
                ));
            }
            if userinfo.is_empty()
                || !userinfo.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(bad(url, "its user name is not a plain name"));
            }
            (Some(userinfo.to_string()), hostport)
        }
        None => (None, authority),
    };
    if scheme == "file" {
        if !hostport.is_empty() && hostport != "localhost" {
            return Err(bad(url, "file URLs must be file:///absolute/path"));
        }
        if path.is_empty() {
            return Err(bad(url, "it has no path"));
        }
        check_path(url, path)?;
        return Ok(CheckedUrl { scheme, user, host: String::new(), port: None, path: path.into() });
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && (h.starts_with('[') == h.ends_with(']')) => {
            // Digits only: `u16`'s parser also takes a sign (`+443`), which git refuses.
            let digits = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
            let port: u16 =
                p.parse().ok().filter(|&n| digits && n > 0).ok_or_else(|| {
                    bad(url, format!("port {p:?} is not a number from 1 to 65535"))
                })?;
            (h, Some(port))
        }
        _ => (hostport, None),
    };
    let host = check_host(url, host)?;
    check_path(url, path)?;
    Ok(CheckedUrl { scheme, user, host, port, path: path.to_string() })
}

/// Why a `servers.json` operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The name cannot be used.
    #[error(
        "invalid server name {name:?}: use ASCII letters, digits, '.', '_' and '-' (at most 64), not starting with '.' or '-'"
    )]
    BadName {
        /// The name as given.
        name: String,
    },
    /// The URL was refused.
    #[error("server {name}: {source}")]
    BadUrl {
        /// The server whose URL was refused.
        name: String,
        /// Why.
        #[source]
        source: UrlError,
    },
    /// No such server.
    #[error("no server named {name:?} (see: kugetsu server list)")]
    NotFound {
        /// The server name asked for.
        name: String,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Checks a server name.
pub fn validate_server_name(name: &str) -> Result<(), ServerError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SERVER_NAME_LEN
        && !name.starts_with(['.', '-'])
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok { Ok(()) } else { Err(ServerError::BadName { name: name.to_string() }) }
}

/// `servers.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServersFile {
    /// The default server's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Name → base URL.
    #[serde(default)]
    pub servers: BTreeMap<String, String>,
    /// Name → its issue tracker's API.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub apis: BTreeMap<String, ServerApi>,
    /// Fields written by other versions, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A server's issue tracker API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerApi {
    /// Its base URL (no trailing `/`).
    pub url: String,
    /// Its dialect.
    pub forge: ForgeKind,
}

/// Where the API of a repository's tracker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTarget {
    /// The API base URL.
    pub url: String,
    /// Its dialect.
    pub forge: ForgeKind,
    /// The repository's path on it (`owner/repo`).
    pub repo: String,
}

/// Why a repository's tracker API is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no issue tracker API known for {repo}: add its server with an API URL (kugetsu server add NAME https://{host} --api API_URL)"
)]
pub struct NoApi {
    /// The repository.
    pub repo: String,
    /// Its host.
    pub host: String,
}

/// The tracker API of `repo`: its server's `--api`, else api.github.com for github.com and
/// gitlab.com/api/v4 for gitlab.com.
pub fn api_for(repo: &RepoRef, servers: &ServersFile) -> Result<ApiTarget, NoApi> {
    let path = repo.path().join("/");
    if let Some((name, _)) = servers.for_host(repo.instance())
        && let Some(api) = servers.apis.get(name)
    {
        return Ok(ApiTarget { url: api.url.clone(), forge: api.forge, repo: path });
    }
    let (url, forge) = match repo.instance() {
        "github.com" => ("https://api.github.com", ForgeKind::Github),
        "gitlab.com" => ("https://gitlab.com/api/v4", ForgeKind::Gitlab),
        host => {
            return Err(NoApi { repo: repo.to_string(), host: host.to_string() });
        }
    };
    Ok(ApiTarget { url: url.into(), forge, repo: path })
}

/// Whether `host` (as [`check_url`] gives it) is this machine's loopback.
pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host == "[::1]" || host.starts_with("127.")
}

/// Checks an API base URL: https, or http on loopback only; no credentials.
pub fn check_api_url(url: &str) -> Result<CheckedUrl, UrlError> {
    let checked = check_url(url)?;
    match checked.scheme.as_str() {
        "https" => Ok(checked),
        "http" if is_loopback_host(&checked.host) => Ok(checked),
        "http" => Err(bad(
            url,
            "plain http is accepted only on loopback (the forge's token would travel in clear)",
        )),
        _ => Err(bad(url, "an API URL must be https://")),
    }
}

/// A configured server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Its name.
    pub name: String,
    /// Its base URL (no trailing `/`).
    pub url: String,
    /// Whether it is the default.
    pub is_default: bool,
}

impl ServersFile {
    /// Every server, by name.
    pub fn list(&self) -> Vec<Server> {
        self.servers
            .iter()
            .map(|(name, url)| Server {
                name: name.clone(),
                url: url.clone(),
                is_default: self.default.as_deref() == Some(name),
            })
            .collect()
    }

    /// The base URL of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.servers.get(name).map(String::as_str)
    }

    /// The server whose URL has `host` as its host (the default one first if several do),
    /// with its checked URL. Entries with invalid URLs are skipped.
    pub fn for_host(&self, host: &str) -> Option<(&str, CheckedUrl)> {
        let host = host.to_ascii_lowercase();
        let default = self.default.as_deref();
        let mut matches: Vec<(&str, CheckedUrl)> = self
            .servers
            .iter()
            .filter_map(|(name, url)| {
                let checked = check_url(url).ok()?;
                (checked.host == host).then_some((name.as_str(), checked))
            })
            .collect();
        matches.sort_by_key(|(name, _)| Some(*name) != default);
        matches.into_iter().next()
    }
}

/// The `servers.json` of a state directory.
#[derive(Debug, Clone)]
pub struct Servers {
    path: PathBuf,
    lock: PathBuf,
}

impl Servers {
    /// The servers of `state`.
    pub fn new(state: &StateDir) -> Self {
        Servers { path: state.servers_path(), lock: state.lock_path("servers") }
    }

    /// Reads the file (empty when missing).
    pub fn load(&self) -> Result<ServersFile, ServerError> {
        Ok(storage::read_json(&self.path)?.unwrap_or_default())
    }

    /// Adds or replaces a server. Returns its previous URL. The first server added becomes the
    /// default.
    pub fn add(&self, name: &str, url: &str) -> Result<Option<String>, ServerError> {
        validate_server_name(name)?;
        check_url(url).map_err(|source| ServerError::BadUrl { name: name.into(), source })?;
        let url = url.trim_end_matches('/').to_string();
        storage::update_json(
            &self.path,
            &self.lock,
            ServersFile::default,
            |file: &mut ServersFile| {
                if file.default.is_none() && file.servers.is_empty() {
                    file.default = Some(name.to_string());
                }
                Ok(file.servers.insert(name.to_string(), url))
            },
        )
    }

    /// Adds or replaces a server with its tracker API (`forge` guessed from the API's path when
    /// not given). Returns the previous URL.
    pub fn add_with_api(
        &self,
        name: &str,
        url: &str,
        api: &str,
        forge: Option<ForgeKind>,
    ) -> Result<Option<String>, ServerError> {
        validate_server_name(name)?;
        check_url(url).map_err(|source| ServerError::BadUrl { name: name.into(), source })?;
        check_api_url(api).map_err(|source| ServerError::BadUrl { name: name.into(), source })?;
        let previous = self.add(name, url)?;
        let api = api.trim_end_matches('/').to_string();
        let forge = forge.unwrap_or_else(|| ForgeKind::guess_from_api(&api));
        storage::update_json(
            &self.path,
            &self.lock,
            ServersFile::default,
            |file: &mut ServersFile| {
                file.apis.insert(name.to_string(), ServerApi { url: api, forge });
                Ok::<_, ServerError>(())
            },
        )?;
        Ok(previous)
    }

    /// Removes a server (and the default, if it was the default).
    pub fn remove(&self, name: &str) -> Result<String, ServerError> {
        validate_server_name(name)?;
        storage::update_json(
            &self.path,
            &self.lock,
            ServersFile::default,
            |file: &mut ServersFile| {
                let url = file
                    .servers
                    .remove(name)
                    .ok_or_else(|| ServerError::NotFound { name: name.to_string() })?;
                if file.default.as_deref() == Some(name) {
                    file.default = None;
                }
                file.apis.remove(name);
                Ok(url)
            },
        )
    }

    /// Makes `name` the default server.
    pub fn set_default(&self, name: &str) -> Result<(), ServerError> {
        validate_server_name(name)?;
        storage::update_json(
            &self.path,
            &self.lock,
            ServersFile::default,
            |file: &mut ServersFile| {
                if !file.servers.contains_key(name) {
                    return Err(ServerError::NotFound { name: name.to_string() });
                }
                file.default = Some(name.to_string());
                Ok(())
            },
        )
    }

    /// The base URL of `name`.
    pub fn get(&self, name: &str) -> Result<String, ServerError> {
        validate_server_name(name)?;
        self.load()?
            .get(name)
            .map(str::to_string)
            .ok_or_else(|| ServerError::NotFound { name: name.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_credentials_refused_without_echo() {
        let ok = check_url("https://GitHub.com").unwrap();
        assert_eq!(
            (ok.scheme.as_str(), ok.host.as_str(), ok.port, ok.path.as_str()),
            ("https", "github.com", None, "")
        );
        let ok = check_url("ssh://git@gitea.example.org:2222/base").unwrap();
        assert_eq!(
            (ok.user.as_deref(), ok.port, ok.path.as_str()),
            (Some("git"), Some(2222), "/base")
        );
        assert_eq!(check_url("http://[::1]:3000/x").unwrap().host, "[::1]");
        assert_eq!(check_url("file:///srv/git/r.git").unwrap().path, "/srv/git/r.git");
        for (url, needle) in [
            ("https://user:ghp_secret@github.com", "password"),
            ("https://ghp_secret@github.com/o/r.git", "user name"),
            ("ssh://git:hunter2@host/x", "password"),
            ("github.com", "no scheme"),
            ("ftp://host", "not one of"),
            ("https://host/a b", "whitespace"),
            ("https://host/x?token=1", "query"),
            ("https://", "no host"),
            ("https://ho_st", "not a host name"),
            ("https://host:0", "port"),
            ("https://host:99999", "port"),
            ("https://host:+443", "port"),
            ("https://host/../x", "'..'"),
            ("https://host/\"x", "path contains"),
            ("file://remote/x", "file:///"),
        ] {
            let err = check_url(url).expect_err(url).to_string();
            assert!(err.contains(needle), "{url}: {err}");
            assert!(!err.contains("secret") && !err.contains("hunter2"), "{url}: {err}");
        }
        assert_eq!(redact_url("https://a:b@h/p@q"), "https://***@h/p@q");
        assert_eq!(redact_url("https://h/p"), "https://h/p");
    }

    #[test]
    fn add_list_default_get_remove() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("k"));
        state.ensure().unwrap();
        let s = Servers::new(&state);
        assert!(s.load().unwrap().list().is_empty());
        assert_eq!(s.add("github", "https://github.com/").unwrap(), None);
        s.add("gitea", "https://git.example.org:3000/gitea").unwrap();
        let file = s.load().unwrap();
        assert_eq!(file.default.as_deref(), Some("github"), "first added becomes the default");
        assert_eq!(s.get("github").unwrap(), "https://github.com");
        s.set_default("gitea").unwrap();
        let list = s.load().unwrap().list();
        assert_eq!(
            list.iter().filter(|x| x.is_default).map(|x| x.name.as_str()).collect::<Vec<_>>(),
            ["gitea"]
        );
        assert_eq!(s.load().unwrap().for_host("GIT.example.org").unwrap().0, "gitea");
        assert!(s.load().unwrap().for_host("gitlab.com").is_none());
        assert!(matches!(s.set_default("nope"), Err(ServerError::NotFound { .. })));
        assert!(matches!(s.add("../x", "https://h"), Err(ServerError::BadName { .. })));
        let err = s.add("evil", "https://tok@h").unwrap_err().to_string();
        assert!(err.starts_with("server evil: invalid URL https://***@h:"), "{err}");
        assert_eq!(s.remove("gitea").unwrap(), "https://git.example.org:3000/gitea");
        assert_eq!(s.load().unwrap().default, None);
        assert!(matches!(s.remove("gitea"), Err(ServerError::NotFound { .. })));
        assert!(matches!(s.get("gitea"), Err(ServerError::NotFound { .. })));
    }

    #[test]
    fn api_urls_per_server_and_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("k"));
        state.ensure().unwrap();
        let s = Servers::new(&state);
        let repo = |r: &str| RepoRef::parse(r).unwrap();
        let file = s.load().unwrap();
        let gh = api_for(&repo("github.com/o/r"), &file).unwrap();
        assert_eq!(
            (gh.url.as_str(), gh.forge, gh.repo.as_str()),
            ("https://api.github.com", ForgeKind::Github, "o/r")
        );
        assert_eq!(
            api_for(&repo("gitlab.com/g/s/p"), &file).unwrap().url,
            "https://gitlab.com/api/v4"
        );
        let err = api_for(&repo("git.example.org/o/r"), &file).unwrap_err().to_string();
        assert!(err.contains("--api"), "{err}");
        let err =
            s.add_with_api("tea", "https://git.example.org", "http://git.example.org/api/v1", None);
        assert!(err.unwrap_err().to_string().contains("only on loopback"));
        s.add_with_api("tea", "https://git.example.org", "https://git.example.org/api/v1/", None)
            .unwrap();
        s.add_with_api(
            "local",
            "http://127.0.0.1:3000",
            "http://127.0.0.1:3000",
            Some(ForgeKind::Gitlab),
        )
        .unwrap();
        let file = s.load().unwrap();
        let tea = api_for(&repo("git.example.org/o/r"), &file).unwrap();
        assert_eq!(
            (tea.url.as_str(), tea.forge),
            ("https://git.example.org/api/v1", ForgeKind::Gitea)
        );
        assert_eq!(api_for(&repo("127.0.0.1/o/r"), &file).unwrap().forge, ForgeKind::Gitlab);
        s.remove("tea").unwrap();
        assert!(!s.load().unwrap().apis.contains_key("tea"));
    }

    #[test]
    fn unknown_fields_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("k"));
        state.ensure().unwrap();
        std::fs::write(state.servers_path(), r#"{"servers":{"a":"https://a.org"},"version":3}"#)
            .unwrap();
        Servers::new(&state).add("b", "https://b.org").unwrap();
        let raw: Value =
            serde_json::from_slice(&std::fs::read(state.servers_path()).unwrap()).unwrap();
        assert_eq!(raw["version"], 3);
        assert_eq!(raw["servers"]["b"], "https://b.org");
    }
}
