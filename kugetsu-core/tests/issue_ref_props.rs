//! Properties of issue refs that keep hostile refs from naming anything outside the state
//! directory and keep two issues from sharing a session file or worktree.

use std::collections::HashMap;
use std::path::{Component, Path};

use kugetsu_core::{IssueRef, StateDir};
use proptest::prelude::*;

/// A segment as the parser accepts it, from a small alphabet so that `-`-joined names collide
/// often unless the hashing works.
fn segment() -> impl Strategy<Value = String> {
    "[a-cA_0-9-][a-c.A_0-9-]{0,5}".prop_filter("no trailing dot", |s| !s.ends_with('.'))
}

fn instance() -> impl Strategy<Value = String> {
    "[a-c0-9][a-c.0-9-]{0,8}".prop_filter("no trailing dot", |s| !s.ends_with('.'))
}

fn id() -> impl Strategy<Value = String> {
    "[a-cA_0-9-]{1,6}"
}

fn ref_text() -> impl Strategy<Value = String> {
    (instance(), prop::collection::vec(segment(), 2..5), id())
        .prop_map(|(i, p, id)| format!("{i}/{}#{id}", p.join("/")))
}

fn long_ref_text() -> impl Strategy<Value = String> {
    ("[a-z]{1,30}", prop::collection::vec("[a-z-]{1,50}", 2..4), "[0-9]{1,20}")
        .prop_map(|(i, p, id)| format!("{i}.org/{}#{id}", p.join("/")))
}

fn assert_safe_component(state: &StateDir, r: &IssueRef) {
    let name = r.file_name();
    assert!(!name.is_empty() && name.len() <= 200, "{r}: {name}");
    assert!(!name.starts_with(['.', '-']), "{r}: {name}");
    assert!(!name.contains(['/', '\0', '\\']), "{r}: {name}");
    let comps: Vec<_> = Path::new(&name).components().collect();
    assert!(matches!(comps.as_slice(), [Component::Normal(_)]), "{r}: {name}");
    let wt = state.worktree_path(r);
    assert_eq!(wt.parent(), Some(state.worktrees_dir().as_path()), "{r}");
    let session = state.issue_session_path(r);
    assert_eq!(session.parent(), Some(state.sessions_dir().as_path()), "{r}");
    assert!(wt.starts_with(state.root()) && session.starts_with(state.root()));
}

proptest! {
    #[test]
    fn parse_print_round_trip(text in ref_text()) {
        // Every generated ref is valid (the instance is generated lowercase, as it is printed).
        let r = IssueRef::parse(&text).expect("generated refs are valid");
        prop_assert_eq!(r.to_string(), text.clone());
        let again = IssueRef::parse(&r.to_string()).expect("printed refs parse");
        prop_assert_eq!(&again, &r);
        prop_assert_eq!(again.file_name(), r.file_name());
    }

    #[test]
    fn file_names_are_injective(texts in prop::collection::vec(ref_text(), 2..40)) {
        let mut seen: HashMap<String, IssueRef> = HashMap::new();
        for text in texts {
            let r = IssueRef::parse(&text).expect("generated refs are valid");
            if let Some(other) = seen.get(&r.file_name()) {
                prop_assert_eq!(other, &r, "two refs share the name {}", r.file_name());
            }
            seen.insert(r.file_name(), r);
        }
    }

    #[test]
    fn long_refs_get_short_distinct_names(a in long_ref_text(), b in long_ref_text()) {
        let state = StateDir::new("/state");
        if let (Ok(ra), Ok(rb)) = (IssueRef::parse(&a), IssueRef::parse(&b)) {
            assert_safe_component(&state, &ra);
            assert_safe_component(&state, &rb);
            prop_assert_eq!(ra == rb, ra.file_name() == rb.file_name());
        }
    }

    #[test]
    fn any_accepted_input_names_a_single_safe_component(text in "\\PC{0,120}") {
        let state = StateDir::new("/state");
        if let Ok(r) = IssueRef::parse(&text) {
            assert_safe_component(&state, &r);
        }
    }

    #[test]
    fn hostile_looking_inputs_never_escape(
        parts in prop::collection::vec(prop::sample::select(vec!["..", ".", "", "a", "-", "%2e", "a.b", "~", "\u{0}", "\\", "x-y"]), 1..6),
        sep in prop::sample::select(vec!["/", "#", "/issues/", "/-/issues/"]),
        scheme in prop::sample::select(vec!["", "https://", "http://"]),
    ) {
        let text = format!("{scheme}{}", parts.join(sep));
        let state = StateDir::new("/state");
        if let Ok(r) = IssueRef::parse(&text) {
            assert_safe_component(&state, &r);
        }
    }
}

#[test]
fn case_and_dash_variants_get_distinct_names() {
    let names: Vec<String> = [
        "github.com/a-b/c#1",
        "github.com/a/b-c#1",
        "github.com/a/b/c#1",
        "github.com/a/b#c-1",
        "github.com/a/b-c-1#x",
        "github.com/a/b#-discuss",
        "github.com/a/b-#discuss",
    ]
    .iter()
    .map(|t| IssueRef::parse(t).expect(t).file_name())
    .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
}
