//! Webhook URLs (`KUGETSU_NOTIFY_URL`): which are accepted, how they are shown, and which of
//! their parts are cut out of text. A receiver's URL is its password: Slack and Mattermost put
//! the token in the path (`/services/T000/B000/XXXX`, `/hooks/<key>`), ntfy in the topic or an
//! `?auth=` parameter, others in the user-info. So a URL is shown as its scheme, host and port
//! only, everything after them masked, and every such part of at least
//! [`super::MIN_REDACTED_LEN`] characters is a secret to cut out of text.

use super::MIN_REDACTED_LEN;

/// What a masked part of a URL is shown as.
pub const MASKED: &str = "***";

/// The URLs of a `KUGETSU_NOTIFY_URL` value: separated by commas or whitespace (neither appears
/// unencoded in a URL a receiver hands out), empty pieces skipped.
pub fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty())
}

/// The parts of a URL: scheme, user-info (without its `@`), host and port, and the rest (path,
/// query, fragment) from its first `/`, `?` or `#`.
struct Parts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    authority: &'a str,
    rest: &'a str,
}

fn parts(url: &str) -> Option<Parts<'_>> {
    let (scheme, after) = url.split_once("://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    // The user-info ends at the last `@` of the authority: a password with an unencoded `@`
    // is then masked whole, never half shown.
    let (userinfo, authority) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    Some(Parts { scheme, userinfo, authority, rest })
}

/// Whether `url` is one kugetsu can post to (an `http://` or `https://` URL with a host), or
/// why not (in words that do not repeat the URL).
pub fn check(url: &str) -> Result<(), &'static str> {
    let Some(p) = parts(url) else { return Err("is not a URL (no `://`)") };
    if !p.scheme.eq_ignore_ascii_case("http") && !p.scheme.eq_ignore_ascii_case("https") {
        return Err("is not an http:// or https:// URL");
    }
    let host = match p.authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(h, _)| h),
        None => p.authority.split(':').next().unwrap_or(""),
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if url.chars().any(char::is_control) {
        return Err("holds a control character");
    }
    Ok(())
}

/// `url` as it may be shown: scheme, host and port; the user-info and everything after the
/// host replaced by [`MASKED`]. Text that is not a URL is masked whole.
pub fn redact(url: &str) -> String {
    let Some(p) = parts(url) else { return MASKED.to_string() };
    let user = if p.userinfo.is_some() { format!("{MASKED}@") } else { String::new() };
    let rest =
        if p.rest.is_empty() || p.rest == "/" { p.rest.to_string() } else { format!("/{MASKED}") };
    format!("{}://{user}{}{rest}", p.scheme, p.authority)
}

/// Every URL in `list` ([`split`]) masked by [`redact`], for a value that may be a list.
pub fn redact_list(list: &str) -> String {
    split(list).map(redact).collect::<Vec<_>>().join(", ")
}

/// The secret parts of `url` to cut out of text: the URL itself, its user-info (and the
/// password in it), its path and query, the path's last segment (where Slack, Mattermost,
/// Discord and ntfy put the token or topic; the segments before it are words like `services`
/// that masking would only wreck text with) and each query value. Shorter than
/// [`MIN_REDACTED_LEN`] ones are left out.
pub fn secret_parts(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    if let Some(p) = parts(url) {
        if let Some(user) = p.userinfo {
            out.push(user.to_string());
            if let Some((_, password)) = user.split_once(':') {
                out.push(password.to_string());
                out.push(super::conninfo::percent_decode(password));
            }
        }
        let rest = p.rest.trim_start_matches('/');
        out.push(rest.to_string());
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        out.extend(path.rsplit('/').next().map(str::to_string));
        for pair in query.split(['&', '#']) {
            let value = pair.split_once('=').map_or(pair, |(_, v)| v);
            out.push(value.to_string());
            out.push(super::conninfo::percent_decode(value));
        }
    }
    out.retain(|s| s.chars().count() >= MIN_REDACTED_LEN);
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_on_commas_and_whitespace() {
        let urls: Vec<&str> =
            split(" https://a.example/x, http://b.example:8080/y\nhttps://c ,,").collect();
        assert_eq!(urls, ["https://a.example/x", "http://b.example:8080/y", "https://c"]);
    }

    #[test]
    fn only_http_and_https_urls_with_a_host_are_accepted() {
        for good in
            ["https://hooks.slack.com/services/T/B/X", "HTTP://127.0.0.1:9/h", "http://[::1]:80/"]
        {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        assert_eq!(check("ftp://x/y"), Err("is not an http:// or https:// URL"));
        assert_eq!(check("hooks.slack.com/x"), Err("is not a URL (no `://`)"));
        assert_eq!(check("https:///path"), Err("has no host"));
        assert_eq!(check("https://u:p@/path"), Err("has no host"));
        assert_eq!(check("https://h/a\u{7}b"), Err("holds a control character"));
    }

    #[test]
    fn shown_without_user_info_path_or_query() {
        assert_eq!(
            redact("https://hooks.slack.com/services/T000/B000/XXXXsecret"),
            "https://hooks.slack.com/***"
        );
        assert_eq!(redact("https://ntfy.example/topic?auth=tok3n"), "https://ntfy.example/***");
        assert_eq!(redact("http://user:p@ss@h.example:8080/x"), "http://***@h.example:8080/***");
        assert_eq!(redact("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
        assert_eq!(redact("http://127.0.0.1:9000/"), "http://127.0.0.1:9000/");
        assert_eq!(redact("no url at all"), "***");
        assert_eq!(redact_list("https://a/x1, https://b"), "https://a/***, https://b");
    }

    #[test]
    fn every_token_spelling_is_a_secret_part() {
        let parts = secret_parts(
            "https://bot:pa%2Fss@hooks.example/services/T000/B000/XXXXsecret?auth=tok3n&x=1",
        );
        for want in [
            "pa%2Fss",
            "pa/ss",
            "XXXXsecret",
            "tok3n",
            "bot:pa%2Fss",
            "services/T000/B000/XXXXsecret?auth=tok3n&x=1",
        ] {
            assert!(parts.iter().any(|p| p == want), "{want} in {parts:?}");
        }
        assert!(parts.iter().all(|p| p.chars().count() >= MIN_REDACTED_LEN), "{parts:?}");
    }
}
