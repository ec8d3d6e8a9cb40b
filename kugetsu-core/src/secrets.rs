//! Secrets: which values are secret, how they are shown, and how they are cut out of text. The
//! one place for these rules, used by env files (`env list`), agent output (run logs, events),
//! notifications, URLs in messages and the clone token.
//!
//! A variable is secret by its name (the spec's token keys, and any key containing `TOKEN`,
//! `SECRET`, `PASSWORD`, `API_KEY`, ...). Shown, its value is always [`MASK`]. Cut out of text
//! (what an agent printed, a notification), every secret value of at least
//! [`MIN_REDACTED_LEN`] characters is replaced: shorter values are no credential worth hiding,
//! and replacing every `1` or `e` would wreck the very output being protected (an agent's JSON
//! events are read after redaction).

use std::fmt;

/// Keys that are always sensitive (the spec's list).
pub const SENSITIVE_KEYS: &[&str] =
    &["GITEA_TOKEN", "GITHUB_TOKEN", "GITLAB_TOKEN", "API_KEY", "PASSWORD", "TOKEN", "SECRET"];

/// Words that make any key containing them sensitive.
const SENSITIVE_WORDS: &[&str] =
    &["TOKEN", "SECRET", "PASSWORD", "API_KEY", "APIKEY", "PASSWD", "CREDENTIAL", "PRIVATE_KEY"];

/// What a masked value is shown as.
pub const MASK: &str = "********";

/// Whether the value of `key` must be masked.
pub fn is_sensitive(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    SENSITIVE_KEYS.contains(&upper.as_str()) || SENSITIVE_WORDS.iter().any(|w| upper.contains(w))
}

/// The value as it may be shown: [`MASK`] for sensitive keys, else the value itself.
pub fn mask_value<'a>(key: &str, value: &'a str) -> &'a str {
    if is_sensitive(key) && !value.is_empty() { MASK } else { value }
}

/// Shortest value [`redact`] cuts out of text (see the module docs).
pub const MIN_REDACTED_LEN: usize = 4;

/// The values of the secret variables among `vars` that [`redact`] should cut out of text: one
/// rule for run logs, events and notifications. Sorted, without repeats.
pub fn secret_values<'a, I>(vars: I) -> Vec<String>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let long_enough = |v: &str| v.chars().count() >= MIN_REDACTED_LEN;
    let mut out: Vec<String> = Vec::new();
    for (_, value) in vars.into_iter().filter(|(k, _)| is_sensitive(k)) {
        if long_enough(value) {
            out.push(value.to_owned());
        }
        // Output is read and redacted line by line: a multi-line secret (a private key) is cut
        // out line by line too.
        if value.contains('\n') {
            out.extend(value.lines().map(str::trim).filter(|l| long_enough(l)).map(str::to_owned));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Replaces every occurrence of each secret in `text` with `********`. Longer secrets are
/// replaced first, so a secret that contains another is not left half visible. Empty secrets
/// are ignored.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut sorted: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    // Longest first, and equal ones next to each other so that `dedup` drops every repeat: a
    // secret made of `*` replaced twice would multiply the mask each time.
    sorted.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    sorted.dedup();
    let mut out = text.to_string();
    for secret in sorted {
        if out.contains(secret) {
            out = out.replace(secret, MASK);
        }
    }
    out
}

/// `url` with the user-info of `scheme://user:pass@host` (or of scp-like `user@host:`) replaced
/// by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let (prefix, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let masked = match rest[..authority_end].rfind('@') {
        Some(at) => format!("{prefix}***{}", &rest[at..]),
        None => url.to_string(),
    };
    // A database URL may carry its password as a parameter instead.
    match masked.split_once('?') {
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if is_sensitive(k) => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
        None => masked,
    }
}

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_what_is_cut_out() {
        let vars = [
            ("GITHUB_TOKEN", "ghp_abcdef"),
            ("MY_API_KEY", "k3y!"),
            ("DB_PASSWORD", "abc"),
            ("HOME", "/home/u"),
            ("OTHER_TOKEN", "ghp_abcdef"),
        ];
        assert_eq!(secret_values(vars), vec!["ghp_abcdef".to_string(), "k3y!".to_string()]);
        assert_eq!(mask_value("DB_PASSWORD", "abc"), MASK, "shown, every secret is masked");
        let key = "-----BEGIN KEY-----\nMIIEabc\n-----END KEY-----\n";
        let values = secret_values([("PRIVATE_KEY", key)]);
        let lines: Vec<&str> = values.iter().map(String::as_str).collect();
        assert_eq!(redact("line MIIEabc printed", &lines), format!("line {MASK} printed"));
        assert_eq!(
            redact("k3y!k3y! ghp_abcdef", &["k3y!", "ghp_abcdef"]),
            format!("{MASK}{MASK} {MASK}")
        );
        assert_eq!(redact_url("https://u:p@h/x"), "https://***@h/x");
        assert_eq!(
            redact_url("postgres://h/db?user=k&password=pw&sslmode=disable"),
            "postgres://h/db?user=k&password=***&sslmode=disable"
        );
        assert_eq!(
            format!("{:?} {}", Secret::new("s3cret"), Secret::new("s3cret")),
            "Secret(***) ***"
        );
    }

    #[test]
    fn redact_hides_every_secret() {
        assert_eq!(
            redact("token ghp_abc and ghp_abcdef", &["ghp_abc", "ghp_abcdef", ""]),
            "token ******** and ********"
        );
        let env = crate::agent::AgentEnv(
            [("GITEA_TOKEN".into(), "s3cr3t".into()), ("EDITOR".into(), "vi".into())].into(),
        );
        assert_eq!(env.secret_values(), ["s3cr3t"]);
        assert_eq!(
            redact(
                "push with s3cr3t in vi",
                &env.secret_values().iter().map(String::as_str).collect::<Vec<_>>()
            ),
            "push with ******** in vi"
        );
    }

    #[test]
    fn a_repeated_secret_is_replaced_once() {
        // Two variables may hold the same value; a `*` secret replaced once per copy would
        // multiply the mask (8^copies stars).
        assert_eq!(redact("a*", &["*", "b", "*", "c", "*"]), format!("a{MASK}"));
        assert_eq!(redact("x ab y", &["ab", "cd", "ab"]), format!("x {MASK} y"));
    }
}
