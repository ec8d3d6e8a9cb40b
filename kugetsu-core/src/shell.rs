//! The small, safe subset of shell assignment syntax that `config` and the env files are
//! written in.
//!
//! The original kugetsu `source`d these files with bash, so users write them as shell:
//! `KEY=VALUE`, `export KEY=VALUE`, comments, single and double quotes, backslash escapes, and in
//! `config` also `$HOME`-style variables and a leading `~`. kugetsu never runs a shell, so this
//! parser accepts exactly that subset and rejects everything else (command substitution, `;`,
//! pipes, redirections, several words on a line) with the line number, instead of guessing what
//! bash would have done.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

/// Longest key accepted.
pub(crate) const MAX_KEY_LEN: usize = 128;

/// One `KEY=VALUE` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assignment {
    /// The key, a shell identifier.
    pub key: String,
    /// The value after quote removal (and expansion, where allowed).
    pub value: String,
    /// The 1-based line the statement starts on.
    pub line: usize,
    /// Bytes of the whole statement, from the start of its first line to the end of its last
    /// line (newline included), so that it can be replaced or removed while every other line
    /// (comments included) is kept.
    pub span: Range<usize>,
}

/// A syntax error, with the 1-based line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// Its 1-based line number in the file.
    pub line: usize,
    /// What is wrong, in words.
    pub message: String,
}

/// What `$NAME` and a leading `~` mean.
pub(crate) enum Expansion<'a> {
    /// They are errors outside single quotes (env files: values are taken literally).
    Refuse,
    /// `$NAME`/`${NAME}` take earlier assignments in the file first, then `lookup`; `~` is `home`.
    Expand {
        /// Variables from outside the file (the environment the caller was given).
        lookup: &'a dyn Fn(&str) -> Option<String>,
        /// What a leading `~` means.
        home: &'a Path,
    },
}

/// Whether `key` is a shell identifier kugetsu accepts: `[A-Za-z_][A-Za-z0-9_]*`, at most
/// [`MAX_KEY_LEN`] bytes.
pub(crate) fn is_identifier(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && key.len() <= MAX_KEY_LEN
}

/// Quotes `value` so that [`parse`] (and a POSIX shell) reads it back unchanged: bare when it is
/// made only of characters no shell treats specially, else in single quotes with each `'`
/// written as `'\''`.
pub(crate) fn quote(value: &str) -> String {
    let bare = !value.is_empty()
        && !value.starts_with('~')
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./:@%+,=".contains(&b));
    if bare {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

struct Parser<'t, 'e> {
    text: &'t str,
    pos: usize,
    line: usize,
    expansion: &'e Expansion<'e>,
    seen: BTreeMap<String, String>,
}

/// Parses every statement of `text`.
pub(crate) fn parse(text: &str, expansion: &Expansion<'_>) -> Result<Vec<Assignment>, SyntaxError> {
    let mut p = Parser { text, pos: 0, line: 1, expansion, seen: BTreeMap::new() };
    let mut out = Vec::new();
    while let Some(a) = p.statement()? {
        p.seen.insert(a.key.clone(), a.value.clone());
        out.push(a);
    }
    Ok(out)
}

fn describe(c: char) -> String {
    if c.is_control() { format!("{c:?}") } else { format!("'{c}'") }
}

impl Parser<'_, '_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.text[self.pos..].chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn err<T>(&self, line: usize, message: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError { line, message: message.into() })
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\r')) {
            self.bump();
        }
    }

    fn skip_to_line_end(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    fn identifier(&mut self) -> &str {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
            self.bump();
        }
        &self.text[start..self.pos]
    }

    fn statement(&mut self) -> Result<Option<Assignment>, SyntaxError> {
        loop {
            let start = self.pos;
            self.skip_blanks();
            match self.peek() {
                None => return Ok(None),
                Some('\n') => {
                    self.bump();
                    continue;
                }
                Some('#') => {
                    self.skip_to_line_end();
                    continue;
                }
                Some(_) => {}
            }
            let line = self.line;
            let mut key = self.identifier().to_string();
            if key == "export" && matches!(self.peek(), Some(' ' | '\t')) {
                self.skip_blanks();
                key = self.identifier().to_string();
            }
            match self.peek() {
                Some('=') if is_identifier(&key) => {}
                Some('=') if key.is_empty() => {
                    return self.err(line, "expected KEY=VALUE, found '=' with no key");
                }
                Some('=') => {
                    return self.err(
                        line,
                        format!("{key:?} is not a valid key (letters, digits and '_', not starting with a digit)"),
                    );
                }
                Some(' ' | '\t') if !key.is_empty() => {
                    let mut probe = self.pos;
                    while matches!(self.text[probe..].chars().next(), Some(' ' | '\t')) {
                        probe += 1;
                    }
                    if self.text[probe..].starts_with('=') {
                        return self.err(
                            line,
                            format!("no spaces are allowed around '=' (write {key}=VALUE)"),
                        );
                    }
                    return self.err(
                        line,
                        format!("expected KEY=VALUE, found {key:?} followed by a space"),
                    );
                }
                None | Some('\n') if !key.is_empty() => {
                    return self
                        .err(line, format!("expected KEY=VALUE, found {key:?} with no '='"));
                }
                Some(c) => {
                    return self.err(line, format!("expected KEY=VALUE, found {}", describe(c)));
                }
                None => return self.err(line, "expected KEY=VALUE"),
            }
            self.bump();
            let value = self.value(&key, line)?;
            self.skip_blanks();
            match self.peek() {
                None | Some('\n') => {}
                Some('#') => {}
                Some(c) => {
                    return self.err(
                        self.line,
                        format!(
                            "unexpected {} after the value of {key} (quote values that contain spaces)",
                            describe(c)
                        ),
                    );
                }
            }
            self.skip_to_line_end();
            return Ok(Some(Assignment { key, value, line, span: start..self.pos }));
        }
    }

    fn value(&mut self, key: &str, line: usize) -> Result<String, SyntaxError> {
        let mut out = String::new();
        let mut first = true;
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' | '\n' => break,
                '\'' => {
                    let open = self.line;
                    self.bump();
                    loop {
                        match self.bump() {
                            None => {
                                return self
                                    .err(open, format!("unterminated ' in the value of {key}"));
                            }
                            Some('\'') => break,
                            Some('\0') => return self.err(self.line, "NUL bytes are not allowed"),
                            Some(c) => out.push(c),
                        }
                    }
                }
                '"' => {
                    let open = self.line;
                    self.bump();
                    loop {
                        match self.peek() {
                            None => {
                                return self
                                    .err(open, format!("unterminated \" in the value of {key}"));
                            }
                            Some('"') => {
                                self.bump();
                                break;
                            }
                            Some('\\') => {
                                self.bump();
                                match self.bump() {
                                    None => {
                                        return self.err(
                                            open,
                                            format!("unterminated \" in the value of {key}"),
                                        );
                                    }
                                    Some('\n') => {}
                                    Some('\0') => {
                                        return self.err(self.line, "NUL bytes are not allowed");
                                    }
                                    Some(c @ ('$' | '`' | '"' | '\\')) => out.push(c),
                                    Some(c) => {
                                        out.push('\\');
                                        out.push(c);
                                    }
                                }
                            }
                            Some('$') => self.dollar(key, &mut out)?,
                            Some('`') => {
                                return self.err(
                                    self.line,
                                    "command substitution (`...`) is not supported",
                                );
                            }
                            Some('\0') => return self.err(self.line, "NUL bytes are not allowed"),
                            Some(c) => {
                                self.bump();
                                out.push(c);
                            }
                        }
                    }
                }
                '\\' => {
                    self.bump();
                    match self.bump() {
                        None => {
                            return self
                                .err(line, format!("the value of {key} ends with a lone '\\'"));
                        }
                        Some('\n') => {}
                        Some('\0') => return self.err(self.line, "NUL bytes are not allowed"),
                        Some(c) => out.push(c),
                    }
                }
                '$' => self.dollar(key, &mut out)?,
                '`' => return self.err(self.line, "command substitution (`...`) is not supported"),
                '~' if first => {
                    let Expansion::Expand { home, .. } = self.expansion else {
                        return self.err(
                            self.line,
                            format!("a leading '~' in the value of {key} is not expanded here; quote it or write the full path"),
                        );
                    };
                    match self.peek2() {
                        None | Some('/' | ' ' | '\t' | '\r' | '\n') => {
                            self.bump();
                            let Some(h) = home.to_str() else {
                                return self
                                    .err(self.line, "the home directory is not valid UTF-8");
                            };
                            out.push_str(h);
                        }
                        Some(_) => {
                            return self.err(
                                self.line,
                                format!("'~user' in the value of {key} is not supported"),
                            );
                        }
                    }
                }
                ';' | '&' | '|' | '<' | '>' | '(' | ')' => {
                    return self.err(
                        self.line,
                        format!("{} in the value of {key} is shell syntax kugetsu does not run; quote the value", describe(c)),
                    );
                }
                '\0' => return self.err(self.line, "NUL bytes are not allowed"),
                c => {
                    self.bump();
                    out.push(c);
                }
            }
            first = false;
        }
        Ok(out)
    }

    /// At a `$` outside single quotes.
    fn dollar(&mut self, key: &str, out: &mut String) -> Result<(), SyntaxError> {
        let line = self.line;
        let lookup = match self.expansion {
            Expansion::Refuse => {
                return self.err(
                    line,
                    format!("'$' in the value of {key} must be inside single quotes (values are not expanded here)"),
                );
            }
            Expansion::Expand { lookup, .. } => *lookup,
        };
        self.bump();
        let name = match self.peek() {
            Some('{') => {
                self.bump();
                let name = self.identifier().to_string();
                if self.peek() != Some('}') || !is_identifier(&name) {
                    return self.err(line, "only ${NAME} is supported, not other ${...} forms");
                }
                self.bump();
                name
            }
            Some('(') => return self.err(line, "command substitution ($(...)) is not supported"),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => self.identifier().to_string(),
            None | Some(' ' | '\t' | '\r' | '\n' | '"' | '\'' | '/') => {
                out.push('$');
                return Ok(());
            }
            Some(c) => {
                return self.err(line, format!("${c} is not supported; only $NAME and ${{NAME}}"));
            }
        };
        let value = match self.seen.get(&name) {
            Some(v) => Some(v.clone()),
            None => lookup(&name),
        };
        match value {
            Some(v) => {
                out.push_str(&v);
                Ok(())
            }
            None => self.err(line, format!("${name} in the value of {key} is not set")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn refuse(text: &str) -> Result<Vec<(String, String)>, SyntaxError> {
        parse(text, &Expansion::Refuse).map(|v| v.into_iter().map(|a| (a.key, a.value)).collect())
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn reads_the_shell_subset() {
        let text = "# comment\n\n  export A=1\nB='two words' # trailing\nC=\"x \\\"y\\\" \\$z\"\nD=a'b'\"c\"\\ d\nE=\nF=a#b\r\n";
        assert_eq!(
            refuse(text).unwrap(),
            vec![
                kv("A", "1"),
                kv("B", "two words"),
                kv("C", "x \"y\" $z"),
                kv("D", "abc d"),
                kv("E", ""),
                kv("F", "a#b")
            ]
        );
    }

    #[test]
    fn multi_line_single_quotes_keep_line_numbers() {
        let text = "A='x\ny'\nB=2\nC=3 4\n";
        let err = parse(text, &Expansion::Refuse).unwrap_err();
        assert_eq!(err.line, 4, "{err:?}");
        let ok = parse("A='x\ny'\nB=2\n", &Expansion::Refuse).unwrap();
        assert_eq!(ok[1].line, 3);
        assert_eq!(ok[0].span, 0..8);
    }

    #[test]
    fn rejects_what_it_would_have_to_guess() {
        for (text, needle) in [
            ("A = 1", "no spaces are allowed around '='"),
            ("A=1 2", "unexpected '2'"),
            ("A=$(id)", "'$'"),
            ("A=`id`", "command substitution"),
            ("A=1; rm -rf /", "';'"),
            ("A='open", "unterminated '"),
            ("A=\"open", "unterminated \""),
            ("1A=1", "not a valid key"),
            ("A", "no '='"),
            ("=1", "no key"),
            ("A=$HOME", "single quotes"),
            ("A=~/x", "leading '~'"),
            ("A=x\\", "lone"),
            ("A=a\0b", "NUL"),
            ("A=a\\\0b", "NUL"),
            ("A=\"a\\\0b\"", "NUL"),
            ("-x", "found '-'"),
        ] {
            let err = parse(text, &Expansion::Refuse).expect_err(text);
            assert!(err.message.contains(needle), "{text:?}: {}", err.message);
        }
    }

    #[test]
    fn expands_variables_and_home_when_allowed() {
        let lookup = |k: &str| (k == "HOME").then(|| "/h".to_string());
        let exp = Expansion::Expand { lookup: &lookup, home: Path::new("/home/u") };
        let got = parse("A=~/x\nB=$HOME/y\nC=\"${A}z\"\nD='$A'\nE=$\nF=~\n", &exp).unwrap();
        let vals: Vec<_> = got.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(vals, ["/home/u/x", "/h/y", "/home/u/xz", "$A", "$", "/home/u"]);
        let err = parse("A=$NOPE", &exp).unwrap_err();
        assert!(err.message.contains("$NOPE in the value of A is not set"), "{}", err.message);
        assert!(parse("A=${A:-x}", &exp).unwrap_err().message.contains("${NAME}"));
        assert!(parse("A=$(id)", &exp).unwrap_err().message.contains("command substitution"));
        assert!(parse("A=~root/x", &exp).unwrap_err().message.contains("~user"));
    }

    #[test]
    fn quote_examples() {
        assert_eq!(quote("abc-1.2/x"), "abc-1.2/x");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("a b#$c"), "'a b#$c'");
        assert_eq!(quote("~"), "'~'");
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in prop_oneof!["\\PC{0,200}", any::<String>()]) {
            let _ = parse(&text, &Expansion::Refuse);
            let lookup = |_: &str| Some("v".to_string());
            let _ = parse(&text, &Expansion::Expand { lookup: &lookup, home: Path::new("/h") });
        }

        #[test]
        fn parse_never_panics_on_shell_like_text(text in "[A-Z_=$'\"\\\\ #~{}()\n\tab]{0,80}") {
            let _ = parse(&text, &Expansion::Refuse);
            let lookup = |_: &str| None;
            let _ = parse(&text, &Expansion::Expand { lookup: &lookup, home: Path::new("/h") });
        }

        #[test]
        fn quoted_values_round_trip(key in "[A-Za-z_][A-Za-z0-9_]{0,20}", value in "[^\u{0}]{0,60}") {
            let text = format!("# header\n{key}={}\n", quote(&value));
            let got = parse(&text, &Expansion::Refuse).unwrap();
            prop_assert_eq!(got.len(), 1);
            prop_assert_eq!(&got[0].key, &key);
            prop_assert_eq!(&got[0].value, &value);
            let lookup = |_: &str| None;
            let got = parse(&text, &Expansion::Expand { lookup: &lookup, home: Path::new("/h") }).unwrap();
            prop_assert_eq!(&got[0].value, &value);
        }
    }
}
