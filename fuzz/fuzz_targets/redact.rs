//! Secret redaction (`secrets::redact` over an agent environment's `secret_values`, as
//! notifications, logs and the daemon use it) and env-value masking, on arbitrary text and
//! secrets.
//!
//! Input: the text to redact, then NUL-separated variables, each `KEY=VALUE` (or a bare value,
//! which becomes `TOKEN_<n>`). What must hold:
//! - `secret_values` is exactly the sensitive values of at least `MIN_REDACTED_LEN` characters,
//!   the lines as long of multi-line ones, the passwords as long of connection strings, and the
//!   secret parts of a webhook key's URLs;
//! - none of them appears in the redacted text. Values containing `*` are left out of this check: the mask is made
//!   of `*`, so such a value can be spelled by the mask and its neighbours without leaking
//!   anything (`a*` next to a masked word);
//! - a text holding no sensitive value in any of its spellings (`encoded_forms`), not even
//!   once its terminal escapes are gone (`ansi::strip`: a terminal shows the text around an
//!   escape as one), comes back unchanged, and redacting twice changes nothing more;
//! - non-sensitive values are never secrets; the environment's Debug output shows sensitive
//!   values only as `********`.
#![no_main]

use std::collections::BTreeMap;

use kugetsu_core::agent::AgentEnv;
use kugetsu_core::ansi;
use kugetsu_core::secrets::{
    MASK, MIN_REDACTED_LEN, SENSITIVE_KEYS, encoded_forms, is_sensitive, mask_value, redact,
    webhook,
};
use libfuzzer_sys::fuzz_target;

fn is_identifier(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let mut parts = input.split('\0');
    let text = parts.next().unwrap_or_default();
    let mut vars = BTreeMap::new();
    for (n, part) in parts.enumerate() {
        match part.split_once('=') {
            Some((k, v)) if is_identifier(k) => vars.insert(k.to_string(), v.to_string()),
            _ => vars.insert(format!("TOKEN_{n}"), part.to_string()),
        };
    }
    let env = AgentEnv(vars.clone());
    let owned = env.secret_values();
    let secrets: Vec<&str> = owned.iter().map(String::as_str).collect();
    let long = |v: &str| v.chars().count() >= MIN_REDACTED_LEN;
    let mut expected: Vec<&str> = Vec::new();
    // A value that is a connection string also gives its password (see `conninfo`).
    let mut conn_passwords: Vec<Vec<String>> = Vec::new();
    for (k, v) in vars.iter().filter(|(k, _)| is_sensitive(k)) {
        if long(v) {
            expected.push(v);
        }
        conn_passwords.push(kugetsu_core::secrets::conninfo::passwords(v));
        // A webhook's URLs also give their secret parts (see `webhook::secret_parts`).
        if kugetsu_core::secrets::names_a_webhook(k) {
            for url in webhook::split(v).filter(|u| webhook::check(u).is_ok()) {
                conn_passwords.push(webhook::secret_parts(url));
            }
        }
        if v.contains('\n') {
            expected.extend(v.lines().map(str::trim).filter(|l| long(l)));
        }
    }
    let conn_passwords: Vec<String> = conn_passwords.into_iter().flatten().collect();
    expected.extend(conn_passwords.iter().map(String::as_str).filter(|p| long(p)));
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(secrets, expected, "secret_values is exactly the sensitive values long enough");

    let out = redact(text, &secrets);
    for secret in secrets.iter().filter(|s| !s.is_empty() && !s.contains('*')) {
        assert!(!out.contains(secret), "{secret:?} left in {out:?} (from {text:?})");
    }
    let shown = ansi::strip(text);
    if secrets
        .iter()
        .flat_map(|s| encoded_forms(s))
        .all(|f| f.is_empty() || !(text.contains(&f) || shown.contains(&f)))
    {
        assert_eq!(out, text, "nothing to redact, nothing changed");
    }
    if secrets.iter().all(|s| !s.contains('*')) {
        assert_eq!(redact(&out, &secrets), out, "redaction is idempotent");
    }

    for key in SENSITIVE_KEYS {
        assert!(is_sensitive(key) && is_sensitive(&key.to_ascii_lowercase()), "{key}");
    }
    for (k, v) in &vars {
        let shown = mask_value(k, v);
        assert!(shown == v || shown == MASK);
        if is_sensitive(k) && !v.is_empty() {
            assert_eq!(shown, MASK, "{k}");
        }
    }
    let masked: BTreeMap<&str, &str> =
        vars.iter().map(|(k, v)| (k.as_str(), mask_value(k, v))).collect();
    assert_eq!(format!("{env:?}"), format!("{masked:?}"));
});
