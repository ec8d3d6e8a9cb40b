//! Each client against the stand-in forge: the documented endpoints, pull requests skipped,
//! pages followed, ETags and 304s, rate limits, the token in a header only.

use std::time::Duration;

use kugetsu_core::forge::{Forge, ForgeError, ForgeKind, ListQuery, Listing};
use kugetsu_core::secrets::Secret;
use kugetsu_forge::HttpForge;
use kugetsu_test_support::forge::{Dialect, StandInForge};

fn query(etag: Option<String>) -> ListQuery {
    ListQuery { label: "kugetsu".into(), etag }
}

fn numbers(l: &Listing) -> Vec<u64> {
    match l {
        Listing::Issues { issues, .. } => issues.iter().map(|i| i.number).collect(),
        Listing::NotModified { .. } => panic!("not modified"),
    }
}

fn etag(l: &Listing) -> Option<String> {
    match l {
        Listing::Issues { etag, .. } => etag.clone(),
        Listing::NotModified { .. } => None,
    }
}

#[test]
fn github_lists_labelled_issues_without_pull_requests_and_answers_304_when_idle() {
    let stand_in = StandInForge::start(Dialect::Github);
    stand_in.add(1, "one", "body one", &["kugetsu"], false);
    stand_in.add(2, "a pull request", "", &["kugetsu"], true);
    stand_in.add(3, "other", "", &["bug"], false);
    let forge =
        HttpForge::new(ForgeKind::Github, &stand_in.api_url(), Some(Secret::new("ghp_t0ken")));
    let first = forge.list_issues("o/r", &query(None)).unwrap();
    assert_eq!(numbers(&first), [1]);
    let tag = etag(&first).expect("a one-page listing keeps its ETag");
    let again = forge.list_issues("o/r", &query(Some(tag.clone()))).unwrap();
    assert!(matches!(again, Listing::NotModified { pause: None }), "{again:?}");
    let seen = stand_in.seen();
    assert_eq!(seen.last().unwrap().status, 304);
    assert_eq!(seen.last().unwrap().if_none_match.as_deref(), Some(tag.as_str()));
    assert!(seen[0].target.starts_with("/repos/o/r/issues?labels=kugetsu&state=open"));
    assert_eq!(seen[0].auth.as_deref(), Some("Bearer ghp_t0ken"));
    let issue = forge.get_issue("o/r", 1).unwrap();
    assert_eq!((issue.title.as_str(), issue.body.as_str(), issue.open), ("one", "body one", true));
}

#[test]
fn pages_are_followed_through_link_and_keep_no_etag() {
    let stand_in = StandInForge::start(Dialect::Github);
    for n in 1..=5 {
        stand_in.add(n, &format!("issue {n}"), "", &["kugetsu"], false);
    }
    stand_in.page_size(2);
    let forge = HttpForge::new(ForgeKind::Github, &stand_in.api_url(), None);
    let listing = forge.list_issues("o/r", &query(None)).unwrap();
    assert_eq!(numbers(&listing), [1, 2, 3, 4, 5]);
    assert_eq!(etag(&listing), None, "one ETag cannot vouch for three pages");
    assert_eq!(stand_in.seen().len(), 3);
    assert!(stand_in.seen().iter().all(|s| s.auth.is_none()));
    // A listing that cannot be read whole is an error, not a shorter list (whose missing
    // issues would look closed).
    for n in 6..=25 {
        stand_in.add(n, &format!("issue {n}"), "", &["kugetsu"], false);
    }
    stand_in.page_size(1);
    let err = forge.list_issues("o/r", &query(None)).unwrap_err().to_string();
    assert!(err.contains("more than 20 pages"), "{err}");
}

#[test]
fn retry_after_on_a_403_is_a_rate_limit_and_an_error_holds_no_token() {
    let stand_in = StandInForge::start(Dialect::Github);
    stand_in.rate_limit_once(90);
    let forge =
        HttpForge::new(ForgeKind::Github, &stand_in.api_url(), Some(Secret::new("ghp_t0ken")));
    let err = forge.list_issues("o/r", &query(None)).unwrap_err();
    assert!(
        matches!(err, ForgeError::RateLimited { status: 403, wait, .. } if wait == Duration::from_secs(90)),
        "{err:?}"
    );
    let err = forge.get_issue("x/y", 1).unwrap_err();
    assert!(matches!(err, ForgeError::Status { status: 404, .. }), "{err:?}");
    assert!(!err.to_string().contains("t0ken"));
    let dead =
        HttpForge::new(ForgeKind::Github, "http://127.0.0.1:9", Some(Secret::new("ghp_t0ken")));
    let err = dead.list_issues("o/r", &query(None)).unwrap_err().to_string();
    assert!(!err.contains("t0ken"), "{err}");
}

#[test]
fn gitlab_and_gitea_speak_their_own_dialects() {
    let gitlab = StandInForge::start(Dialect::Gitlab);
    gitlab.add(7, "gl", "desc", &["kugetsu"], false);
    gitlab.add(8, "closed", "", &["kugetsu"], false);
    gitlab.close(8);
    let forge = HttpForge::new(ForgeKind::Gitlab, &gitlab.api_url(), Some(Secret::new("glpat-x")));
    let listing = forge.list_issues("o/r", &query(None)).unwrap();
    assert_eq!(numbers(&listing), [7]);
    let seen = gitlab.seen();
    assert!(
        seen[0].target.starts_with("/api/v4/projects/o%2Fr/issues?labels=kugetsu&state=opened")
    );
    assert_eq!(seen[0].auth.as_deref(), Some("glpat-x"));
    assert_eq!(forge.get_issue("o/r", 7).unwrap().body, "desc");

    let gitea = StandInForge::start(Dialect::Gitea);
    gitea.add(1, "tea", "", &["kugetsu"], false);
    gitea.add(2, "pr", "", &["kugetsu"], true);
    let forge = HttpForge::new(ForgeKind::Gitea, &gitea.api_url(), Some(Secret::new("tea")));
    assert_eq!(numbers(&forge.list_issues("o/r", &query(None)).unwrap()), [1]);
    let seen = gitea.seen();
    assert!(seen[0].target.contains("state=open&type=issues"), "{:?}", seen[0]);
    assert_eq!(seen[0].auth.as_deref(), Some("token tea"));
}
