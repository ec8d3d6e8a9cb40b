//! Clone-URL and token routing (`repos::clone_url_for`, `repos::token_var_for`,
//! `servers::check_url`, `ServersFile::for_host`) on arbitrary URLs, servers and repos entries.
//!
//! Input lines: `server NAME URL` and `default NAME` build `servers.json`, `repo KEY URL` (the
//! key may hold a space) builds `repos.json`, `issue REF` names an issue to route, and any other
//! line is a URL. What must hold, checked against a strict reading of the URL written here
//! independently of kugetsu's parser:
//! - a token variable is chosen only for an `https` URL with a plain `host[:port]` authority
//!   (no user-info) whose host is exactly `github.com` (`GITHUB_TOKEN`) or `gitlab.com`
//!   (`GITLAB_TOKEN`) on port 443, or exactly the host and port of an added https server (the
//!   token its name suggests);
//! - look-alikes of every such host (`<host>.evil.example`, `evil<host>`, user-info tricks,
//!   other ports and schemes, a `#`, `?` or `\` before an `@`) never get one, and the host's
//!   case changes nothing;
//! - a clone URL derived for an issue carries no credentials (no password, no user but an ssh
//!   one), is the `repos.json` entry when there is one, else under an added server's base or
//!   `https://<instance>/<path>.git`, and routes tokens by its own host.
#![no_main]

use std::collections::BTreeMap;

use kugetsu_core::IssueRef;
use kugetsu_core::repos::{ReposFile, TOKEN_VARS, check_clone_url, clone_url_for, token_var_for};
use kugetsu_core::servers::{ServersFile, check_url};
use libfuzzer_sys::fuzz_target;

/// The host and port of an https URL whose authority is a plain `host[:port]` (a name of
/// letters, digits, `.` and `-`, or a bracketed IPv6 address); None for anything else (no
/// token may go there).
fn strict_https_host(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (inner, after) = v6.split_once(']')?;
            if inner.is_empty()
                || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
            {
                return None;
            }
            let port = match after {
                "" => None,
                a => Some(a.strip_prefix(':')?),
            };
            (&authority[..inner.len() + 2], port)
        }
        None => {
            if !authority.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b)) {
                return None;
            }
            match authority.split_once(':') {
                None => (authority, None),
                Some((host, port)) => (host, Some(port)),
            }
        }
    };
    let port = match port {
        None => 443,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse().ok()?
        }
        Some(_) => return None,
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
}

fn token_for_name(name: &str) -> &'static str {
    let name = name.to_ascii_lowercase();
    if name.contains("gitlab") {
        "GITLAB_TOKEN"
    } else if name.contains("github") {
        "GITHUB_TOKEN"
    } else {
        "GITEA_TOKEN"
    }
}

/// The token variables that may go to `url`.
fn allowed(url: &str, servers: &ServersFile) -> Vec<&'static str> {
    let Some((host, port)) = strict_https_host(url) else { return Vec::new() };
    let mut out = Vec::new();
    match (host.as_str(), port) {
        ("github.com", 443) => out.push("GITHUB_TOKEN"),
        ("gitlab.com", 443) => out.push("GITLAB_TOKEN"),
        _ => {}
    }
    for (name, base) in &servers.servers {
        if strict_https_host(base).as_ref() == Some(&(host.clone(), port)) {
            out.push(token_for_name(name));
        }
    }
    out
}

fn check_token(url: &str, servers: &ServersFile) -> Option<&'static str> {
    let var = token_var_for(url, servers);
    if let Some(var) = var {
        assert!(TOKEN_VARS.contains(&var));
        let ok = allowed(url, servers);
        assert!(ok.contains(&var), "{var} chosen for {url:?}; may go there: {ok:?}");
    }
    var
}

fn look_alikes(host: &str) -> Vec<String> {
    [
        format!("https://{host}.evil.example/o/r.git"),
        format!("https://evil{host}/o/r.git"),
        format!("https://{host}@evil.example/o/r.git"),
        format!("https://{host}:443@evil.example/o/r.git"),
        format!("https://{host}:x@evil.example/o/r.git"),
        format!("https://evil.example@{host}/o/r.git"),
        format!("https://evil.example/{host}/o/r.git"),
        format!("https://evil.example#@{host}/o/r.git"),
        format!("https://evil.example?@{host}/o/r.git"),
        format!("https://evil.example\\@{host}/o/r.git"),
        format!("https://{host}\\@evil.example/o/r.git"),
        format!("https://{host}:8443/o/r.git"),
        format!("https://{host}./o/r.git"),
        format!("http://{host}/o/r.git"),
        format!("ssh://git@{host}/o/r.git"),
        format!("git://{host}/o/r.git"),
        format!("git@{host}:o/r.git"),
        format!("https:/{host}/o/r.git"),
        format!("https://{host}%2f@evil.example/o/r.git"),
    ]
    .into()
}

/// Whether `url` holds no password and, unless it is ssh, no user (where http tokens hide).
fn no_credentials(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return check_clone_url(url).is_ok();
    };
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    match authority.rsplit_once('@') {
        None => true,
        Some((user, _)) => scheme.eq_ignore_ascii_case("ssh") && !user.contains(':'),
    }
}

fn with_upper_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find('/').unwrap_or(rest.len());
    Some(format!("{scheme}://{}{}", rest[..end].to_ascii_uppercase(), &rest[end..]))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut servers = ServersFile::default();
    let mut repos = BTreeMap::new();
    let mut issues = Vec::new();
    let mut urls = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("server ") {
            if let Some((name, url)) = rest.split_once(' ') {
                servers.servers.insert(name.to_string(), url.to_string());
            }
        } else if let Some(name) = line.strip_prefix("default ") {
            servers.default = Some(name.to_string());
        } else if let Some(rest) = line.strip_prefix("repo ") {
            if let Some((key, url)) = rest.rsplit_once(' ') {
                repos.insert(key.to_string(), url.to_string());
            }
        } else if let Some(r) = line.strip_prefix("issue ") {
            issues.extend(IssueRef::parse(r).ok());
        } else {
            urls.push(line.to_string());
        }
    }
    let repos = ReposFile::from_entries("/state/repos.json".into(), repos);

    for url in &urls {
        let var = check_token(url, &servers);
        if let Some(upper) = with_upper_host(url) {
            assert_eq!(check_token(&upper, &servers), var, "{url:?} vs {upper:?}");
        }
        if let Ok(checked) = check_url(url) {
            assert_eq!(checked.host, checked.host.to_ascii_lowercase());
            assert!(checked.user.is_none() || checked.scheme == "ssh", "{url:?}");
        }
    }

    // The hosts tokens are for, and every look-alike of them.
    let mut hosts = vec!["github.com".to_string(), "gitlab.com".to_string()];
    for base in servers.servers.values() {
        if let Ok(c) = check_url(base) {
            hosts.push(c.host);
        }
    }
    assert_eq!(check_token("https://github.com/o/r.git", &servers), Some("GITHUB_TOKEN"));
    assert_eq!(check_token("https://GitLab.COM/o/r.git", &servers), Some("GITLAB_TOKEN"));
    for host in &hosts {
        for url in look_alikes(host) {
            check_token(&url, &servers);
        }
        if let Some((name, checked)) = servers.for_host(host) {
            assert_eq!(&checked.host, host);
            let base = servers.get(name).expect("for_host names a server");
            assert_eq!(check_url(base).as_ref(), Ok(&checked));
        }
    }

    for issue in &issues {
        let Ok(url) = clone_url_for(issue, &servers, &repos) else { continue };
        assert!(no_credentials(&url), "{issue} -> {url:?}");
        check_token(&url, &servers);
        let explicit = repos.url_for(issue).ok().flatten();
        let server = servers.for_host(issue.instance());
        let repo_path = issue.path().join("/");
        match (explicit, server) {
            (Some(_), _) => {}
            (None, Some((name, _))) => {
                let base = servers.get(name).expect("a server").trim_end_matches('/');
                assert_eq!(url, format!("{base}/{repo_path}.git"));
            }
            (None, None) => {
                assert_eq!(url, format!("https://{}/{repo_path}.git", issue.instance()));
            }
        }
        if let Some(explicit) = explicit {
            assert_eq!(url, explicit);
        }
    }
});
