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
//!
//! A secret can reach text in another spelling than its own: a JSON string holds `"`, `\` and a
//! tab as `\"`, `\\` and `\t`; a URL holds them percent-encoded. So [`redact`] cuts out each
//! secret as written, JSON-escaped and URL-encoded ([`encoded_forms`]), and [`redact_line`]
//! masks a JSON line of agent output on its decoded strings (whatever escapes the agent chose)
//! before the line is stored or its events are shown. Not covered: base64 and other encodings
//! a program may apply on its own, and a secret split across two strings or lines.

pub mod conninfo;
pub mod webhook;

use std::fmt;

/// Keys that are always sensitive (the spec's list).
pub const SENSITIVE_KEYS: &[&str] =
    &["GITEA_TOKEN", "GITHUB_TOKEN", "GITLAB_TOKEN", "API_KEY", "PASSWORD", "TOKEN", "SECRET"];

/// Words that make any key containing them sensitive.
/// A database's or a queue's URL is among them: it may hold a password (`KUGETSU_QUEUE_URL`);
/// so is a webhook's, which holds its receiver's token (`KUGETSU_NOTIFY_URL`).
const SENSITIVE_WORDS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "API_KEY",
    "APIKEY",
    "PASSWD",
    "CREDENTIAL",
    "PRIVATE_KEY",
    "QUEUE_URL",
    "DATABASE_URL",
    "NOTIFY_URL",
    "WEBHOOK",
];

/// Words that make a sensitive key name a webhook, whose URL's last path segment and query
/// values are secrets of their own ([`webhook::secret_parts`]). Only these: the path of any
/// other URL-valued secret (a token key holding a clone URL) is a repository's name, which
/// masking would cut out of every line that mentions it.
const WEBHOOK_WORDS: &[&str] = &["NOTIFY_URL", "WEBHOOK"];

/// Whether `key` names a webhook's URL (see [`WEBHOOK_WORDS`]).
pub fn names_a_webhook(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    WEBHOOK_WORDS.iter().any(|w| upper.contains(w))
}

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
    for (key, value) in vars.into_iter().filter(|(k, _)| is_sensitive(k)) {
        if long_enough(value) {
            out.push(value.to_owned());
        }
        // A connection string's password can be echoed on its own, and decoded.
        out.extend(
            crate::secrets::conninfo::passwords(value).into_iter().filter(|p| long_enough(p)),
        );
        // A webhook's token is in its path or query, and can be echoed without the rest.
        if names_a_webhook(key) {
            for url in webhook::split(value).filter(|u| webhook::check(u).is_ok()) {
                out.extend(webhook::secret_parts(url));
            }
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

/// `secret` as written, as a JSON string holds it (between the quotes) and URL-encoded
/// (every byte but the unreserved ones as `%XX`, in both cases of hex digit, and with a
/// space as `+` too), without repeats.
pub fn encoded_forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json.get(1..json.len().saturating_sub(1)).unwrap_or_default().to_owned();
    let mut forms = vec![secret.to_owned(), json];
    for upper in [true, false] {
        let mut url = String::with_capacity(secret.len() * 3);
        for b in secret.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                url.push(char::from(b));
            } else if upper {
                url.push_str(&format!("%{b:02X}"));
            } else {
                url.push_str(&format!("%{b:02x}"));
            }
        }
        if secret.contains(' ') {
            forms.push(url.replace("%20", "+"));
        }
        forms.push(url);
    }
    forms.sort();
    forms.dedup();
    forms
}

/// Replaces every occurrence of each secret in `text`, in each of its [`encoded_forms`], with
/// `********`. Longer forms are replaced first, so a secret that contains another is not left
/// half visible. Empty secrets are ignored.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    replace_forms(text, &all_forms(secrets))
}

/// Every [`encoded_forms`] of `secrets`, longest first, and equal ones next to each other so
/// that `dedup` drops every repeat: a secret made of `*` replaced twice would multiply the
/// mask each time.
fn all_forms(secrets: &[&str]) -> Vec<String> {
    let mut forms: Vec<String> =
        secrets.iter().filter(|s| !s.is_empty()).flat_map(|s| encoded_forms(s)).collect();
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    forms
}

fn replace_forms(text: &str, forms: &[String]) -> String {
    let out = replace_plain(text, forms);
    // A terminal shows the text around an escape sequence as one: a secret split by one
    // (coloured halves) is still shown whole. Such text loses its escapes with the secret.
    if out.contains('\u{1b}') {
        let plain = crate::ansi::strip(&out);
        if forms.iter().any(|form| plain.contains(form.as_str())) {
            return replace_plain(&plain, forms);
        }
    }
    out
}

fn replace_plain(text: &str, forms: &[String]) -> String {
    let mut out = text.to_string();
    for form in forms {
        if out.contains(form.as_str()) {
            out = out.replace(form.as_str(), MASK);
        }
    }
    out
}

/// One line of agent output as kugetsu may keep and show it. A line that is JSON has every
/// string in it (keys too) masked on its decoded value, so no escape the agent chose hides a
/// secret, and is written again only when that changed something (a line without secrets stays
/// byte for byte); then, like any other line, it goes through [`redact`]. A secret in a spot
/// no string covers (a number, across an escape) is still cut out of the text, at the price of
/// the line no longer parsing: hiding the secret wins over reading the event. A secret split
/// by terminal escape sequences is cut out too, with the escapes of the text that held it.
pub fn redact_line(line: &str, secrets: &[&str]) -> String {
    let forms = all_forms(secrets);
    if forms.is_empty() {
        return line.to_owned();
    }
    let body = line.trim_end_matches(['\n', '\r']);
    let ending = &line[body.len()..];
    // Without a backslash no string of the line is escaped: its text is the decoded value,
    // and the line need not be parsed.
    let parsed = if body.contains('\\') {
        serde_json::from_str::<serde_json::Value>(body).ok()
    } else {
        None
    };
    let decoded = match parsed {
        Some(mut value @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => {
            if redact_value(&mut value, &forms) {
                serde_json::to_string(&value).ok().map(|text| text + ending)
            } else {
                None
            }
        }
        _ => None,
    };
    replace_forms(decoded.as_deref().unwrap_or(line), &forms)
}

/// Masks every string (and key) of `value` in place; whether anything changed.
fn redact_value(value: &mut serde_json::Value, forms: &[String]) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            let masked = replace_forms(s, forms);
            let changed = masked != *s;
            *s = masked;
            changed
        }
        Value::Array(items) => {
            items.iter_mut().fold(false, |changed, v| redact_value(v, forms) | changed)
        }
        Value::Object(map) => {
            let mut changed = false;
            let old = std::mem::take(map);
            for (key, mut v) in old {
                changed |= redact_value(&mut v, forms);
                let masked = replace_forms(&key, forms);
                changed |= masked != key;
                map.insert(masked, v);
            }
            changed
        }
        _ => false,
    }
}

/// `url` with the user-info of `scheme://user:pass@host` (or of scp-like `user@host:`) replaced
/// by `***`, for messages. A PostgreSQL URL is masked by [`crate::secrets::conninfo::redact`], which
/// also covers a password its user did not percent-encode.
pub fn redact_url(url: &str) -> String {
    if crate::secrets::conninfo::is_url(url) {
        return crate::secrets::conninfo::redact(url);
    }
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

/// The value of a secret setting as an error message may show it: a list of webhook URLs
/// masked by [`webhook::redact_list`], a database's connection string by
/// [`conninfo::redact`].
pub fn redact_setting(value: &str) -> String {
    let lower = value.to_ascii_lowercase();
    if lower.contains("http://") || lower.contains("https://") {
        webhook::redact_list(value)
    } else {
        conninfo::redact(value)
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
    fn a_secret_is_cut_out_in_every_spelling_and_on_decoded_json() {
        let secret = "ab\"cd\\ef\tSECRET9 x";
        let forms = encoded_forms(secret);
        for form in [secret, "ab\\\"cd\\\\ef\\tSECRET9 x", "ab%22cd%5Cef%09SECRET9%20x"] {
            assert!(forms.iter().any(|f| f == form), "{form:?} in {forms:?}");
            assert_eq!(redact(&format!("<{form}>"), &[secret]), format!("<{MASK}>"), "{form:?}");
        }
        assert!(forms.iter().any(|f| f == "ab%22cd%5Cef%09SECRET9+x"));
        assert_eq!(encoded_forms("ghp_abcdef"), ["ghp_abcdef"], "a plain one is spelled once");

        // The agent's own escapes (here `\u0022` for a quote) hide nothing, and the line is
        // still the same JSON with the secret masked.
        let line =
            "{\"type\":\"text\",\"part\":{\"text\":\"say ab\\u0022cd\\\\ef\\tSECRET9 x!\"}}\n";
        let out = redact_line(line, &[secret]);
        assert_eq!(out, format!("{{\"type\":\"text\",\"part\":{{\"text\":\"say {MASK}!\"}}}}\n"));
        let untouched = "{\"type\": \"text\",  \"part\": {\"text\": \"hi\"}}\n";
        assert_eq!(redact_line(untouched, &[secret]), untouched, "no secret, same bytes");
        assert_eq!(
            redact_line("Error: ab\"cd\\ef\tSECRET9 x", &[secret]),
            format!("Error: {MASK}")
        );
        // Split by a terminal escape, it is shown whole: the escapes go with it.
        let coloured = "Error: ab\"cd\\e\u{1b}[1mf\tSECRET9 x\u{1b}[0m!";
        assert_eq!(redact_line(coloured, &[secret]), format!("Error: {MASK}!"));
        let json = "{\"text\":\"ab\\\"cd\\\\ef\\u001b[0m\\tSECRET9 x\"}";
        assert_eq!(redact_line(json, &[secret]), format!("{{\"text\":\"{MASK}\"}}"));
        let harmless = "\u{1b}[1mError:\u{1b}[0m hi";
        assert_eq!(redact_line(harmless, &[secret]), harmless, "colours kept");
        let number = "{\"n\": 12345678}";
        assert!(
            !redact_line(number, &["12345678"]).contains("12345678"),
            "not a string, still cut"
        );
    }

    #[test]
    fn a_repeated_secret_is_replaced_once() {
        // Two variables may hold the same value; a `*` secret replaced once per copy would
        // multiply the mask (8^copies stars).
        assert_eq!(redact("a*", &["*", "b", "*", "c", "*"]), format!("a{MASK}"));
        assert_eq!(redact("x ab y", &["ab", "cd", "ab"]), format!("x {MASK} y"));
    }

    #[test]
    fn only_a_webhook_key_makes_its_urls_path_a_secret() {
        let clone = "https://github.com/shoko/kugetsu.git";
        let got = secret_values([("API_TOKEN", clone)]);
        assert_eq!(got, [clone], "a token key's URL is a secret whole, its repository is not");
        let hook = "https://hooks.example.com/services/T0001/B0002/abcdefghijkl";
        let got = secret_values([("KUGETSU_NOTIFY_URL", hook)]);
        assert!(got.iter().any(|s| s == "abcdefghijkl"), "{got:?}");
    }
}
