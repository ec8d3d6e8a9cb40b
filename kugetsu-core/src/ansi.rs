//! Terminal escape sequences in text a program printed: agents colour their stderr, and a
//! terminal shows text around an escape as if the escape were not there.

/// Removes ANSI escape sequences from `s`: CSI (`ESC [` parameters, then one final byte in
/// `@`..`~`), OSC (`ESC ]` up to BEL or `ESC \`), and two-character escapes (`ESC` and the
/// character after it). A lone `ESC` at the end goes too, so the result holds no `ESC`.
pub fn strip(s: &str) -> String {
    if !s.contains('\u{1b}') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csi_osc_and_short_escapes_are_removed() {
        assert_eq!(strip("\u{1b}[93m\u{1b}[1m! \u{1b}[0mx"), "! x");
        assert_eq!(strip("a\u{1b}]0;title\u{7}b"), "ab");
        assert_eq!(strip("a\u{1b}]0;title\u{1b}\\b"), "ab");
        assert_eq!(strip("a\u{1b}cb"), "ab");
        assert_eq!(strip("plain"), "plain");
        assert_eq!(strip("trailing\u{1b}"), "trailing");
    }

    proptest::proptest! {
        #[test]
        fn no_escape_is_left(line in ".*", raw in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let lossy = String::from_utf8_lossy(&raw).into_owned();
            for l in [&line, &lossy] {
                proptest::prop_assert!(!strip(l).contains('\u{1b}'), "escape left in {:?}", l);
            }
        }
    }
}
