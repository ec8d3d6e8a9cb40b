//! Database connection strings: where their password is, so that it is shown masked and cut
//! out of text. A PostgreSQL connection string comes in the two forms libpq accepts:
//!
//! - a URL, `postgres://user:password@host:port/db?password=...&sslpassword=...`
//!   (`postgresql://` too), its parts percent-encoded;
//! - keywords, `host=db password=secret` or `password = 'a b\'c'`: values unquoted (a `\`
//!   escapes the next character) or single-quoted (`\'` and `\\` inside).
//!
//! Users do not always encode what libpq wants encoded: `postgres://u:pa/ss?#@host/db` is what
//! someone pastes when their password is `pa/ss?#`. libpq would end the user-info at the `/`,
//! the Rust driver at the first `@`; neither tells where the user meant it to end. Masking
//! must not guess in the password's favour, so the user-info is taken to end at the **last**
//! `@`: a host or path with an `@` in it is masked too, a password never shows. A key is
//! secret by the one rule of [`super::is_sensitive`] (`password`, `sslpassword`,
//! `PGPASSWORD`).

use super::is_sensitive;

/// What a masked password is shown as in a connection string.
pub const MASKED: &str = "***";

/// Whether `text` is a PostgreSQL URL (`postgres://` or `postgresql://`, any case).
pub fn is_url(text: &str) -> bool {
    let lower = text.trim_start().get(..13).unwrap_or(text.trim_start()).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// `conn` as it may be shown: the user-info of a URL (user and password) and the value of
/// every secret parameter or keyword replaced by [`MASKED`]; the rest as written.
pub fn redact(conn: &str) -> String {
    // libpq too tells the forms apart by the prefix: a quoted keyword value may hold `://`.
    if is_url(conn) { redact_url(conn) } else { redact_keywords(conn) }
}

/// Every spelling of a password `conn` holds, as written and decoded (percent-decoded in a
/// URL, unquoted and unescaped among keywords), for cutting out of text where the password may
/// appear without its connection string. Without repeats; empty ones left out.
pub fn passwords(conn: &str) -> Vec<String> {
    let mut out = Vec::new();
    if is_url(conn) {
        let rest = &conn[conn.find("://").map_or(0, |i| i + 3)..];
        // Both ends a driver may choose: the first `@` (the Rust driver) and the last (ours).
        for at in [rest.find('@'), rest.rfind('@')].into_iter().flatten() {
            if let Some((_, password)) = rest[..at].split_once(':') {
                out.push(password.to_owned());
                out.push(percent_decode(password));
            }
        }
        for (key, value) in query(conn) {
            if is_sensitive(&percent_decode(key)) {
                out.push(value.to_owned());
                out.push(percent_decode(value));
            }
        }
    } else {
        for pair in keywords(conn) {
            if is_sensitive(pair.key) {
                out.push(conn[pair.value.clone()].to_owned());
                out.push(pair.decoded);
            }
        }
    }
    out.retain(|p| !p.is_empty());
    out.sort();
    out.dedup();
    out
}

fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    // Where the query starts: after the user-info, which may hold `?` itself.
    let (masked, after_info) = match rest.rfind('@') {
        Some(at) => (format!("{}{MASKED}", &url[..start]), &rest[at..]),
        None => (url[..start].to_owned(), rest),
    };
    match after_info.split_once('?') {
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if is_sensitive(&percent_decode(k)) => format!("{k}={MASKED}"),
                    _ => p.to_owned(),
                })
                .collect();
            format!("{masked}{base}?{}", params.join("&"))
        }
        None => format!("{masked}{after_info}"),
    }
}

/// The `key=value` parameters of a URL's query (after the user-info), as written.
fn query(url: &str) -> Vec<(&str, &str)> {
    let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
    let after_info = rest.rfind('@').map_or(rest, |at| &rest[at..]);
    // Also the query as the first `@` would leave it: a `?` inside an unencoded password
    // starts one for a driver that ends the user-info there.
    let first = rest.find('@').map_or(rest, |at| &rest[at..]);
    let mut out = Vec::new();
    for part in [after_info, first, rest] {
        if let Some((_, q)) = part.split_once('?') {
            out.extend(q.split('&').filter_map(|p| p.split_once('=')));
        }
    }
    out
}

fn redact_keywords(conn: &str) -> String {
    let mut out = String::with_capacity(conn.len());
    let mut last = 0;
    for pair in keywords(conn) {
        if is_sensitive(pair.key) {
            out.push_str(&conn[last..pair.whole.start]);
            out.push_str(MASKED);
            last = pair.whole.end;
        }
    }
    out.push_str(&conn[last..]);
    out
}

/// One `key=value` of a keyword string.
struct Pair<'a> {
    key: &'a str,
    /// The value's bytes as written, quotes excluded.
    value: std::ops::Range<usize>,
    /// The value's bytes as written, quotes included: what masking replaces.
    whole: std::ops::Range<usize>,
    /// The value as libpq reads it.
    decoded: String,
}

/// The pairs of a keyword string, read as libpq reads them; words that are not followed by
/// `=` are skipped, an unterminated quote runs to the end (so its value is still masked).
fn keywords(conn: &str) -> Vec<Pair<'_>> {
    let bytes = conn.as_bytes();
    let skip_space = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut pairs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        i = skip_space(i);
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &conn[key_start..i];
        i = skip_space(i);
        if i >= bytes.len() || bytes[i] != b'=' {
            continue;
        }
        i = skip_space(i + 1);
        let (mut decoded, quoted) = (Vec::new(), bytes.get(i) == Some(&b'\''));
        let whole_start = i;
        if quoted {
            i += 1;
        }
        let value_start = i;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if i + 1 < bytes.len() => {
                    decoded.push(bytes[i + 1]);
                    i += 2;
                    continue;
                }
                b'\'' if quoted => break,
                c if !quoted && c.is_ascii_whitespace() => break,
                c => decoded.push(c),
            }
            i += 1;
        }
        let value_end = i;
        if quoted && i < bytes.len() {
            i += 1;
        }
        pairs.push(Pair {
            key,
            value: value_start..value_end,
            whole: whole_start..i,
            decoded: String::from_utf8_lossy(&decoded).into_owned(),
        });
    }
    pairs
}

/// `%XX` decoded (a malformed escape is kept as written); bytes that are not UTF-8 become
/// U+FFFD.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).and_then(|&b| hex(b)), bytes.get(i + 2).and_then(|&b| hex(b)))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_shows_no_password_whatever_it_holds() {
        for (url, shown) in [
            ("postgres://u:pw@h/db", "postgres://***@h/db"),
            ("postgres://u:pa/ss?#@host/db", "postgres://***@host/db"),
            (
                "postgresql://u:p@ss@host:5432/db?sslmode=require",
                "postgresql://***@host:5432/db?sslmode=require",
            ),
            ("POSTGRES://u:pa%2Fss%3F%23%40@h/db", "POSTGRES://***@h/db"),
            (
                "postgres://h/db?user=k&password=pw&sslmode=disable",
                "postgres://h/db?user=k&password=***&sslmode=disable",
            ),
            (
                "postgres://h/db?sslpassword=pw&pass%77ord=x",
                "postgres://h/db?sslpassword=***&pass%77ord=***",
            ),
            ("postgres://h1:5432,h2/db", "postgres://h1:5432,h2/db"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
        assert!(is_url("PostgreSQL://x") && is_url("postgres://") && !is_url("host=x"));
    }

    #[test]
    fn keywords_show_no_password_however_quoted() {
        for (conn, shown) in [
            ("host=db password=secret user=k", "host=db password=*** user=k"),
            ("host=db password = 'a b\\'c' port=5", "host=db password = *** port=5"),
            ("password='unterminated x=y", "password=***"),
            ("PGPASSWORD=p\\ q host=h", "PGPASSWORD=*** host=h"),
            ("sslpassword=k dbname=x", "sslpassword=*** dbname=x"),
            ("password='a://b@c' host=h", "password=*** host=h"),
        ] {
            assert_eq!(redact(conn), shown, "{conn}");
        }
    }

    #[test]
    fn every_spelling_of_the_password_is_found() {
        let found = passwords("postgres://u:pa%2Fss%3F%23%40@h/db");
        assert!(found.contains(&"pa/ss?#@".to_owned()), "{found:?}");
        assert!(found.contains(&"pa%2Fss%3F%23%40".to_owned()), "{found:?}");
        let found = passwords("postgres://u:pa/ss?#@host/db");
        assert!(found.contains(&"pa/ss?#".to_owned()), "{found:?}");
        let found = passwords("postgres://u:p@ss@host/db");
        assert!(found.contains(&"p@ss".to_owned()) && found.contains(&"p".to_owned()));
        assert_eq!(passwords("postgres://h/db?password=a%20b"), ["a b", "a%20b"]);
        assert_eq!(passwords("host=h password='a b\\'c'"), ["a b'c", "a b\\'c"]);
        assert_eq!(passwords("password=x\\ y"), ["x y", "x\\ y"]);
        assert!(passwords("postgres://u@h/db").is_empty());
        assert!(passwords("ghp_abcdef").is_empty());
    }
}
