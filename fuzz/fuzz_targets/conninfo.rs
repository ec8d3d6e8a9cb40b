//! Connection strings (`conninfo::redact`, `conninfo::passwords`, and `secret_values` of a
//! variable holding one), on the two forms libpq accepts, built from the input by their
//! grammar, and on arbitrary text.
//!
//! Input: the first byte chooses the form and its spellings; the rest, split at NUL, gives
//! the password (any characters: `/`, `?`, `#`, `@`, quotes, backslashes, spaces), then the
//! user, host, database and a query parameter's value (cut down to what those parts hold).
//!
//! - URL: `postgres://` or `postgresql://` in any case, `user:password@` with the password
//!   percent-encoded (as libpq wants) or as typed, one or two `host[:port]`, `/db`, and query
//!   parameters (`sslmode`, `application_name`, a `password` or `sslpassword` percent-encoded).
//! - Keywords: `host=... password=... dbname=...` in any order, spaces around `=` or not, the
//!   password single-quoted (`\'` and `\\` escaped) or unquoted (`\` before whitespace, quotes
//!   and backslashes).
//!
//! What must hold: `redact` gives exactly the string with each password replaced by `***`
//! and the rest as written; `passwords` finds the password as libpq reads it; a variable
//! holding the string is masked (`KUGETSU_QUEUE_URL` is sensitive) and its `secret_values`
//! cut the password out of any text that echoes it. On arbitrary text: no panic.
#![no_main]

use kugetsu_core::secrets::conninfo::{MASKED, passwords, redact};
use kugetsu_core::secrets::{MIN_REDACTED_LEN, is_sensitive, redact as cut, secret_values};
use libfuzzer_sys::fuzz_target;

fn keep(text: &str, allowed: impl Fn(char) -> bool, fallback: &str) -> String {
    let kept: String = text.chars().filter(|c| allowed(*c)).take(16).collect();
    if kept.is_empty() { fallback.to_owned() } else { kept }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn unquoted(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_whitespace() || c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else { return };
    let input = String::from_utf8_lossy(rest);
    // Arbitrary text: no panic, whatever it is.
    let _ = (redact(&input), passwords(&input));

    let mut parts = input.split('\0');
    let password = parts.next().unwrap_or_default().to_owned();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let user = keep(parts.next().unwrap_or_default(), word, "kugetsu");
    let host = keep(parts.next().unwrap_or_default(), |c| word(c) || c == '.', "db");
    let db = keep(parts.next().unwrap_or_default(), word, "q");
    let app = keep(parts.next().unwrap_or_default(), word, "app");
    if password.is_empty() {
        return;
    }

    let (conn, expected) = if choice & 1 == 0 {
        let scheme = ["postgres", "postgresql", "POSTGRES", "PostgreSQL"][usize::from(choice >> 1 & 3)];
        // As typed: a password with `@`, `/`, `?` or `#` unencoded is what users paste.
        let typed = if choice & 8 == 0 { encode(&password) } else { password.clone() };
        let hosts = if choice & 16 == 0 { format!("{host}:5432") } else { format!("{host},{host}2:6543") };
        let mut query = vec![format!("application_name={app}")];
        let mut masked_query = query.clone();
        if choice & 32 != 0 {
            query.push("sslmode=require".into());
            masked_query.push("sslmode=require".into());
        }
        if choice & 64 != 0 {
            let key = if choice & 128 == 0 { "password" } else { "sslpassword" };
            query.push(format!("{key}={}", encode(&password)));
            masked_query.push(format!("{key}={MASKED}"));
        }
        (
            format!("{scheme}://{user}:{typed}@{hosts}/{db}?{}", query.join("&")),
            format!("{scheme}://{MASKED}@{hosts}/{db}?{}", masked_query.join("&")),
        )
    } else {
        let eq = if choice & 2 == 0 { "=" } else { " = " };
        let value = if choice & 4 == 0 { quoted(&password) } else { unquoted(&password) };
        let key = if choice & 8 == 0 { "password" } else { "PGPASSWORD" };
        let pairs = [format!("host={host}"), format!("dbname={db}"), format!("user={user}")];
        let at = usize::from(choice >> 4) % (pairs.len() + 1);
        let (mut conn, mut expected) = (pairs.to_vec(), pairs.to_vec());
        conn.insert(at, format!("{key}{eq}{value}"));
        expected.insert(at, format!("{key}{eq}{MASKED}"));
        (conn.join(" "), expected.join(" "))
    };

    assert_eq!(redact(&conn), expected, "{conn:?}");
    let found = passwords(&conn);
    assert!(found.contains(&password), "{password:?} not among {found:?} of {conn:?}");

    // Held in the queue's variable: masked, and the password cut out of what echoes it.
    assert!(is_sensitive("KUGETSU_QUEUE_URL"));
    let secrets = secret_values([("KUGETSU_QUEUE_URL", conn.as_str())]);
    if password.chars().count() >= MIN_REDACTED_LEN && !password.contains('*') {
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let echoed = format!("the agent says {password} and {conn} and {}", encode(&password));
        let out = cut(&echoed, &refs);
        assert!(!out.contains(&password), "{password:?} left in {out:?}");
    }
});
