//! The issue ref parser on arbitrary text: never panics, and every ref it accepts maps to a
//! single plain file name inside the state directory that parses back to the same ref.
#![no_main]

use std::path::{Component, Path};

use kugetsu_core::{IssueRef, RepoRef, StateDir};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let default = RepoRef::parse("github.com/shoko/kugetsu").ok();
    let _ = RepoRef::parse(text);
    for parsed in [IssueRef::parse(text), IssueRef::parse_with_default(text, default.as_ref())] {
        let Ok(r) = parsed else { continue };
        let name = r.file_name();
        let comps: Vec<_> = Path::new(&name).components().collect();
        assert!(matches!(comps.as_slice(), [Component::Normal(_)]), "{text:?} -> {name:?}");
        assert!(!name.starts_with('.') && !name.contains('\0'), "{text:?} -> {name:?}");
        let state = StateDir::new("/state");
        assert_eq!(state.worktree_path(&r).parent(), Some(state.worktrees_dir().as_path()));
        assert_eq!(state.issue_session_path(&r).parent(), Some(state.sessions_dir().as_path()));
        let again = IssueRef::parse(&r.to_string()).expect("a printed ref parses");
        assert_eq!(again, r, "{text:?}");
        assert!(!r.branch().is_empty());
    }
});
