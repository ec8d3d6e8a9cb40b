//! Env files (`env/default.env`, `env/<agent>.env`): variables handed to agents through their
//! environment, never their argv, and masked wherever kugetsu prints or logs them.

/// Keys that are always sensitive (the spec's list).
pub const SENSITIVE_KEYS: &[&str] =
    &["GITEA_TOKEN", "GITHUB_TOKEN", "GITLAB_TOKEN", "API_KEY", "PASSWORD", "TOKEN", "SECRET"];

/// Words that make any key containing them sensitive.
const SENSITIVE_WORDS: &[&str] = &["TOKEN", "SECRET", "PASSWORD", "API_KEY", "APIKEY", "PASSWD", "CREDENTIAL", "PRIVATE_KEY"];

/// Whether the value of `key` must be masked.
pub fn is_sensitive(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    SENSITIVE_KEYS.contains(&upper.as_str()) || SENSITIVE_WORDS.iter().any(|w| upper.contains(w))
}

/// The value as it may be shown: `********` for sensitive keys, else the value itself.
pub fn mask_value<'a>(key: &str, value: &'a str) -> &'a str {
    if is_sensitive(key) && !value.is_empty() { "********" } else { value }
}
