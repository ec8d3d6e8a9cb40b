//! The writes of reporting back against the stand-in forge, in each dialect: one comment kept
//! up to date (found again by its marker, also after a write whose answer was lost), labels
//! added and removed by name, one draft pull request per branch, updated in place.

use kugetsu_core::forge::{ChecksState, Forge, ForgeError, ForgeKind};
use kugetsu_core::secrets::Secret;
use kugetsu_forge::HttpForge;
use kugetsu_test_support::forge::{Dialect, StandInForge};

const MARKER: &str = "<!-- kugetsu:report o/r#1 -->";

fn each_dialect() -> Vec<(StandInForge, HttpForge)> {
    [
        (Dialect::Github, ForgeKind::Github),
        (Dialect::Gitlab, ForgeKind::Gitlab),
        (Dialect::Gitea, ForgeKind::Gitea),
    ]
    .into_iter()
    .map(|(dialect, kind)| {
        let stand_in = StandInForge::start(dialect);
        stand_in.add(1, "one", "", &["kugetsu"], false);
        let forge = HttpForge::new(kind, &stand_in.api_url(), Some(Secret::new("t0ken")));
        (stand_in, forge)
    })
    .collect()
}

#[test]
fn one_comment_is_kept_up_to_date_even_when_a_posts_answer_is_lost() {
    for (stand_in, forge) in each_dialect() {
        let first = forge.upsert_comment("o/r", 1, MARKER, "running").unwrap();
        assert_eq!(stand_in.comments(1), [format!("running\n\n{MARKER}")]);
        let second = forge.upsert_comment("o/r", 1, MARKER, &format!("done\n{MARKER}")).unwrap();
        assert_eq!(first, second);
        assert_eq!(stand_in.comments(1), [format!("done\n{MARKER}")]);
        // The same text again is not even sent.
        let writes = |s: &StandInForge| s.seen().iter().filter(|r| r.method != "GET").count();
        let before = writes(&stand_in);
        forge.upsert_comment("o/r", 1, MARKER, &format!("done\n{MARKER}")).unwrap();
        assert_eq!(writes(&stand_in), before);

        // Posted, but the answer never came: the retry finds it by its marker.
        let other = "<!-- kugetsu:report o/r#2 -->";
        stand_in.add(2, "two", "", &[], false);
        stand_in.lose_answer_of_next("POST", "");
        let err = forge.upsert_comment("o/r", 2, other, "first").unwrap_err();
        assert!(matches!(err, ForgeError::Transport { .. }), "{err:?}");
        forge.upsert_comment("o/r", 2, other, "again").unwrap();
        assert_eq!(stand_in.comments(2), [format!("again\n\n{other}")], "posted once");
        assert!(
            stand_in.seen().iter().all(|r| r.auth.as_deref().is_some_and(|a| a.contains("t0ken")))
        );
    }
}

#[test]
fn labels_are_added_and_removed_by_name_and_a_repeat_writes_nothing() {
    for (stand_in, forge) in each_dialect() {
        let s = |v: &[&str]| v.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        forge.set_labels("o/r", 1, &s(&["kugetsu:running"]), &s(&["kugetsu:done"])).unwrap();
        assert_eq!(stand_in.labels(1), ["kugetsu", "kugetsu:running"]);
        forge
            .set_labels(
                "o/r",
                1,
                &s(&["kugetsu:done"]),
                &s(&["kugetsu:running", "kugetsu:blocked"]),
            )
            .unwrap();
        assert_eq!(stand_in.labels(1), ["kugetsu", "kugetsu:done"]);
        let writes = |s: &StandInForge| s.seen().iter().filter(|r| r.method != "GET").count();
        let before = writes(&stand_in);
        forge
            .set_labels(
                "o/r",
                1,
                &s(&["kugetsu:done"]),
                &s(&["kugetsu:running", "kugetsu:blocked"]),
            )
            .unwrap();
        assert_eq!(writes(&stand_in), before, "nothing to change, nothing sent");
    }
}

#[test]
fn one_draft_pull_request_per_branch_is_opened_then_updated() {
    for (stand_in, forge) in each_dialect() {
        let first = forge.ensure_draft_pull("o/r", "fix/issue-1", "one", "Closes #1. v1").unwrap();
        let pulls = stand_in.pulls();
        assert_eq!(pulls.len(), 1);
        assert_eq!((pulls[0].head.as_str(), pulls[0].base.as_str()), ("fix/issue-1", "main"));
        assert!(pulls[0].draft && pulls[0].title.ends_with("one"), "{pulls:?}");
        assert!(first.url.ends_with(&format!("/{}", first.number)), "{first:?}");
        let again = forge.ensure_draft_pull("o/r", "fix/issue-1", "one", "Closes #1. v2").unwrap();
        assert_eq!(again, first);
        let pulls = stand_in.pulls();
        assert_eq!((pulls.len(), pulls[0].body.as_str()), (1, "Closes #1. v2"));
    }
}

#[test]
fn the_loop_reads_a_pulls_head_its_checks_and_reviews_requesting_changes() {
    for (stand_in, forge) in each_dialect() {
        let kind = format!("{:?}", stand_in.api_url());
        assert_eq!(forge.find_pull("o/r", "fix/issue-1").unwrap(), None, "{kind}");
        let pull = forge.ensure_draft_pull("o/r", "fix/issue-1", "one", "b").unwrap();
        stand_in.set_head(pull.number, "abc123");
        let found = forge.find_pull("o/r", "fix/issue-1").unwrap().unwrap();
        assert_eq!((found.number, found.head_sha.as_str()), (pull.number, "abc123"));
        assert!(found.open && !found.merged, "{kind}");
        let none = forge.checks("o/r", "abc123").unwrap();
        assert_eq!(none.state, ChecksState::Pending, "no checks yet: {kind}");
        stand_in.add_check("abc123", "lint", true, "");
        assert_eq!(forge.checks("o/r", "abc123").unwrap().state, ChecksState::Success, "{kind}");
        stand_in.add_check("abc123", "unit", false, "line 1\nassertion failed: parse(\"x\")");
        let checks = forge.checks("o/r", "abc123").unwrap();
        assert_eq!(checks.state, ChecksState::Failure, "{kind}");
        assert!(checks.failures[0].contains("assertion failed"), "{kind}: {checks:?}");
        stand_in.request_changes(pull.number, "alice", "Rename it.");
        let reviews = forge.changes_requested("o/r", pull.number).unwrap();
        let said = |r: &[kugetsu_core::forge::Review]| {
            r.iter().map(|r| (r.author.clone(), r.body.clone())).collect::<Vec<_>>()
        };
        assert_eq!(said(&reviews), [("alice".into(), "Rename it.".into())], "{kind}");
        // Asked again: a new review, with a later id (on GitLab, the newer comment).
        stand_in.request_changes(pull.number, "alice", "And the tests.");
        let again = forge.changes_requested("o/r", pull.number).unwrap();
        assert_eq!(again.last().map(|r| r.body.as_str()), Some("And the tests."), "{kind}");
        assert!(again.last().unwrap().id > reviews[0].id, "{kind}: {again:?}");
        stand_in.merge(pull.number);
        let merged = forge.find_pull("o/r", "fix/issue-1").unwrap().unwrap();
        assert!(merged.merged && !merged.open, "{kind}");
    }
}

/// The loop's reads are kept with their `ETag`, also across clients sharing the cache: asked
/// again unchanged, GitHub answers 304 (no quota spent) and the kept answer is used; a changed
/// answer is read whole.
#[test]
fn reads_asked_again_are_conditional_and_a_304_gives_the_kept_answer() {
    let stand_in = StandInForge::start(Dialect::Github);
    stand_in.add(1, "one", "", &["kugetsu"], false);
    let cache = std::sync::Arc::new(kugetsu_forge::ReadCache::new());
    let client = || {
        HttpForge::new(ForgeKind::Github, &stand_in.api_url(), Some(Secret::new("t0ken")))
            .with_cache(cache.clone())
    };
    let pull = client().ensure_draft_pull("o/r", "fix/issue-1", "one", "b").unwrap();
    stand_in.set_head(pull.number, "abc123");
    stand_in.add_check("abc123", "unit", false, "assertion failed");
    let first = client().checks("o/r", "abc123").unwrap();
    let again = client().checks("o/r", "abc123").unwrap();
    assert_eq!(again, first);
    assert_eq!(client().find_pull("o/r", "fix/issue-1").unwrap().unwrap().head_sha, "abc123");
    let found = client().find_pull("o/r", "fix/issue-1").unwrap().unwrap();
    assert_eq!(found.head_sha, "abc123");
    let statuses = |path: &str| -> Vec<u16> {
        stand_in.seen().iter().filter(|r| r.target.contains(path)).map(|r| r.status).collect()
    };
    assert_eq!(statuses("/check-runs"), [200, 304], "the checks asked again");
    assert_eq!(statuses("/pulls?"), [200, 200, 304], "made, then read whole, then 304");
    // Changed: read whole, and kept anew.
    stand_in.add_check("abc123", "lint", true, "");
    assert_eq!(client().checks("o/r", "abc123").unwrap().failures.len(), 1);
    assert_eq!(statuses("/check-runs").last(), Some(&200));
    assert!(cache.len() >= 2);
}
