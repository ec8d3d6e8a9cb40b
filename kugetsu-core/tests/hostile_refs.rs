//! Issue refs are the one piece of user (and agent) input that becomes a file name in the state
//! directory. 100,000 random refs map to 100,000 distinct names, each a direct child of
//! `sessions/` and `worktrees/`; hostile refs (`..`, absolute paths, NUL, overlong parts,
//! look-alike Unicode, invisible and bidi characters) are refused with an error naming the
//! part that is wrong.

use crate::common;

use common::Rng;
use std::collections::HashMap;
use std::path::{Component, Path};

use kugetsu_core::{IssueRef, IssueRefError, StateDir};

/// A string from a small alphabet, so that names made by joining parts with `-` or by folding
/// case would collide often if the mapping were not injective.
fn word(rng: &mut Rng, alphabet: &[u8], max: usize) -> String {
    let len = 1 + rng.below(max);
    (0..len).map(|_| alphabet[rng.below(alphabet.len())] as char).collect()
}

fn assert_direct_children(state: &StateDir, r: &IssueRef) {
    let name = r.file_name();
    let comps: Vec<_> = Path::new(&name).components().collect();
    assert!(matches!(comps.as_slice(), [Component::Normal(_)]), "{r}: {name}");
    assert_eq!(state.worktree_path(r).parent(), Some(state.worktrees_dir().as_path()), "{r}");
    assert_eq!(state.issue_session_path(r).parent(), Some(state.sessions_dir().as_path()), "{r}");
}

#[test]
fn a_hundred_thousand_random_refs_get_distinct_safe_names() {
    const N: usize = 100_000;
    let state = StateDir::new("/state");
    let mut rng = Rng::seeded(0x5eed_1234_abcd_0001);
    let seg = b"abAB_-.0123";
    let host = b"ab-.0123";
    let mut by_name: HashMap<String, IssueRef> = HashMap::with_capacity(N);
    let mut refs: HashMap<IssueRef, ()> = HashMap::with_capacity(N);
    let (mut tried, mut rejected) = (0usize, 0usize);
    while refs.len() < N {
        tried += 1;
        assert!(tried < 20 * N, "the generator produces too few valid refs");
        // Half the refs come from a dense space (a few letters and '-', short parts), where
        // refs that differ only in where a '-' or a '/' falls are plentiful: a name made by
        // joining parts with '-' would collide there. The other half spread widely.
        let text = if rng.below(2) == 0 {
            let depth = 2 + rng.below(2);
            let path: Vec<String> = (0..depth).map(|_| word(&mut rng, b"a-", 3)).collect();
            let instance = ["a", "b", "a-b"][rng.below(3)];
            format!("{instance}/{}#{}", path.join("/"), word(&mut rng, b"1-", 3))
        } else {
            let depth = 2 + rng.below(3);
            let path: Vec<String> = (0..depth).map(|_| word(&mut rng, seg, 6)).collect();
            format!("{}/{}#{}", word(&mut rng, host, 8), path.join("/"), word(&mut rng, seg, 6))
        };
        let Ok(r) = IssueRef::parse(&text) else {
            rejected += 1;
            continue;
        };
        assert_direct_children(&state, &r);
        let name = r.file_name();
        if let Some(other) = by_name.get(&name) {
            assert_eq!(other, &r, "{other} and {r} share the file name {name}");
        }
        by_name.insert(name, r.clone());
        refs.insert(r, ());
    }
    assert_eq!(by_name.len(), N, "{N} distinct refs, {} distinct names", by_name.len());
    eprintln!("{N} distinct refs from {tried} inputs ({rejected} rejected), {N} distinct names");
}

/// Each hostile ref and the part its error must name.
const HOSTILE: &[(&str, &str)] = &[
    ("github.com/../etc#1", "\"..\""),
    ("github.com/o/..#1", "\"..\""),
    ("github.com/o/r#..", "\"..\""),
    ("../../etc/passwd#1", "\"..\""),
    ("github.com/./r#1", "\".\""),
    ("/etc/passwd#1", "instance"),
    ("//etc/passwd#1", "instance"),
    ("github.com//etc/passwd#1", "\"\""),
    ("github.com/o/r#1/../../x", "issue id"),
    ("github.com\\o\\r#1", "\\\\"),
    ("github.com/o/r#1\0", "\\0"),
    ("github.com/o\0/r#1", "\\0"),
    ("github.com/o/r\n/x#1", "\\n"),
    ("github.com/o/.git#1", "\".git\""),
    ("github.com/o/r#1;rm -rf ~", "issue id"),
    ("github.com/o/r#$(id)", "issue id"),
    ("github.com/o/r#%2e%2e", "%2e%2e"),
    // Look-alikes: Cyrillic 'а' (U+0430), fullwidth solidus, fullwidth digit one.
    ("github.com/shoko/kugets\u{430}#1", "kugets\u{430}"),
    ("github.com/o\u{ff0f}r#1", "o\u{ff0f}r"),
    ("github.com/o/r#\u{ff11}", "\u{ff11}"),
    ("gith\u{430}b.com/o/r#1", "gith\u{430}b.com"),
    // Invisible characters: zero-width space, zero-width joiner, BOM, soft hyphen.
    ("github.com/o/r\u{200b}#1", "\\u{200b}"),
    ("github.com/o\u{200d}/r#1", "\\u{200d}"),
    ("\u{feff}github.com/o/r#1", "\\u{feff}"),
    ("github.com/o/r\u{ad}#1", "\\u{ad}"),
    // Bidi overrides that make a name display differently from what it is.
    ("github.com/o/r\u{202e}1#gpj", "\\u{202e}"),
    ("github.com/o/\u{2066}r#1", "\\u{2066}"),
    ("https://github.com/o/r/issues/../../1", "URL"),
    ("https://github.com/o/r/issues/1/../../../x", "URL"),
    ("file:///etc/passwd#1", "file:"),
];

#[test]
fn hostile_refs_are_refused_with_an_error_naming_the_part() {
    let mut failures = Vec::new();
    let long = format!("github.com/o/{}#1", "a".repeat(300));
    let long_id = format!("github.com/o/r#{}", "1".repeat(300));
    let huge = format!("github.com/o/r#{}", "1".repeat(100_000));
    let mut cases: Vec<(&str, &str)> = HOSTILE.to_vec();
    cases.push((&long, "315 bytes long"));
    cases.push((&long_id, "315 bytes long"));
    cases.push((&huge, "bytes long"));
    // Overlong parts inside a ref short enough overall: the part is named.
    let long_segment = format!("github.com/o/{}#1", "b".repeat(101));
    let long_issue_id = format!("github.com/o/r#{}", "2".repeat(65));
    cases.push((&long_segment, "bbbbbbbbbb"));
    cases.push((&long_issue_id, "2222222222"));
    for (input, part) in cases {
        match IssueRef::parse(input) {
            Ok(r) => failures.push(format!("{input:?} was accepted as {r}")),
            Err(e) => {
                let message = e.to_string();
                if !message.contains(part) {
                    failures.push(format!("{input:?}: error does not name {part:?}: {message}"));
                }
                if message.len() > 1000 || message.contains('\n') || message.contains('\0') {
                    failures.push(format!("{input:?}: not one short printable line: {e:?}"));
                }
                if matches!(e, IssueRefError::Empty) {
                    failures.push(format!("{input:?}: reported as empty"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
