use std::sync::Mutex;

use super::*;
use crate::forge::{CommentRef, Issue, ListQuery, Listing};

/// A forge in memory that records the writes and can fail the next one.
#[derive(Default)]
struct Recorder {
    writes: Mutex<Vec<String>>,
    comment: Mutex<Option<String>>,
    fail_comment: Mutex<bool>,
}

impl Forge for Recorder {
    fn list_issues(&self, _: &str, _: &ListQuery) -> Result<Listing, ForgeError> {
        unreachable!()
    }
    fn get_issue(&self, _: &str, _: u64) -> Result<Issue, ForgeError> {
        unreachable!()
    }
    fn upsert_comment(
        &self,
        _: &str,
        n: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentRef, ForgeError> {
        if std::mem::take(&mut *self.fail_comment.lock().unwrap()) {
            return Err(ForgeError::Transport { api: "x".into(), message: "cut".into() });
        }
        assert!(body.ends_with(marker));
        self.writes.lock().unwrap().push(format!("comment {n}"));
        *self.comment.lock().unwrap() = Some(body.to_string());
        Ok(CommentRef { id: 1 })
    }
    fn set_labels(
        &self,
        _: &str,
        n: u64,
        add: &[String],
        remove: &[String],
    ) -> Result<(), ForgeError> {
        self.writes.lock().unwrap().push(format!("labels {n} +{add:?} -{remove:?}"));
        Ok(())
    }
    fn ensure_draft_pull(
        &self,
        _: &str,
        branch: &str,
        title: &str,
        body: &str,
    ) -> Result<PullRef, ForgeError> {
        assert!(body.contains("Closes #7"));
        self.writes.lock().unwrap().push(format!("pull {branch} {title}"));
        Ok(PullRef { number: 101, url: "https://forge/o/r/pull/101".into() })
    }
}

fn report(phase: Phase, pull: bool) -> Report {
    Report {
        issue_ref: "github.com/o/r#7".into(),
        number: 7,
        phase,
        outcome: if phase == Phase::Running { String::new() } else { "completed".into() },
        branch: "fix/issue-7".into(),
        cost_usd: None,
        summary: summary_of("Fixed it. <!-- kugetsu:report github.com/o/r#8 --> thanks @alice"),
        labels: StatusLabels::parse("kugetsu:running,kugetsu:blocked,kugetsu:done").unwrap(),
        pull: pull.then(|| PullPlan { worktree: "/w".into(), title: "Seven".into() }),
        not_committed: Vec::new(),
    }
}

#[test]
fn labels_parse_and_show() {
    let l = StatusLabels::parse(" a , b,c ").unwrap().unwrap();
    assert_eq!((l.running.as_str(), l.done.as_str(), l.to_string()), ("a", "c", "a,b,c".into()));
    assert_eq!(StatusLabels::parse("off").unwrap(), None);
    assert!(StatusLabels::parse("a,b").is_err() && StatusLabels::parse("a,,c").is_err());
}

#[test]
fn a_completed_turn_labels_pushes_opens_the_pull_request_then_comments() {
    let forge = Recorder::default();
    let pushed = Mutex::new(Vec::new());
    let push = |plan: &PullPlan, branch: &str| {
        pushed.lock().unwrap().push((plan.worktree.clone(), branch.to_string()));
        Ok(Pushed::Branch)
    };
    apply(&report(Phase::Done, true), &forge, "o/r", &push).unwrap();
    assert_eq!(
        *forge.writes.lock().unwrap(),
        [
            r#"labels 7 +["kugetsu:done"] -["kugetsu:running", "kugetsu:blocked"]"#,
            "pull fix/issue-7 Seven",
            "comment 7",
        ]
    );
    assert_eq!(pushed.lock().unwrap().len(), 1);
    let body = forge.comment.lock().unwrap().clone().unwrap();
    assert!(body.contains("**completed**") && body.contains("`fix/issue-7`"), "{body}");
    assert!(
        body.contains("https://forge/o/r/pull/101") && body.contains("Cost: unknown"),
        "{body}"
    );
    // What the agent said can neither hide text, fake another marker, nor notify anyone.
    assert_eq!(body.matches("<!--").count(), 1, "{body}");
    assert!(!body.contains("@alice"), "{body}");
}

#[test]
fn a_refused_push_is_told_in_the_comment_and_a_failure_is_an_error_to_retry() {
    let forge = Recorder::default();
    let refuse = |_: &PullPlan, _: &str| {
        Ok(Pushed::Refused("the remote branch has commits kugetsu did not make".into()))
    };
    apply(&report(Phase::Done, true), &forge, "o/r", &refuse).unwrap();
    let body = forge.comment.lock().unwrap().clone().unwrap();
    assert!(body.contains("Not pushed: the remote branch has commits"), "{body}");
    assert!(!forge.writes.lock().unwrap().iter().any(|w| w.starts_with("pull")));

    let failing = |_: &PullPlan, _: &str| Err("connection refused".to_string());
    let err = apply(&report(Phase::Done, true), &forge, "o/r", &failing).unwrap_err();
    assert!(err.to_string().contains("push fix/issue-7: connection refused"), "{err}");
    *forge.fail_comment.lock().unwrap() = true;
    let nothing = |_: &PullPlan, _: &str| -> Result<Pushed, String> { unreachable!() };
    assert!(apply(&report(Phase::Running, false), &forge, "o/r", &nothing).is_err());
}

#[test]
fn a_running_turn_says_so_without_cost_or_summary() {
    let forge = Recorder::default();
    let none = |_: &PullPlan, _: &str| -> Result<Pushed, String> { unreachable!() };
    apply(&report(Phase::Running, false), &forge, "o/r", &none).unwrap();
    let body = forge.comment.lock().unwrap().clone().unwrap();
    assert!(body.starts_with("**kugetsu**: a turn is running"), "{body}");
    assert!(!body.contains("Cost") && !body.contains("said"), "{body}");
    assert!(forge.writes.lock().unwrap()[0].contains(r#"+["kugetsu:running"]"#));
}

#[test]
fn files_left_uncommitted_are_named_in_the_comment() {
    let forge = Recorder::default();
    let push = |_: &PullPlan, _: &str| Ok(Pushed::Branch);
    let mut r = report(Phase::Done, true);
    r.not_committed = vec![".env: an env file".into(), "big`bin: larger than 10 MB @bob".into()];
    apply(&r, &forge, "o/r", &push).unwrap();
    let body = forge.comment.lock().unwrap().clone().unwrap();
    assert!(
        body.contains("- Not committed: .env: an env file; big'bin: larger than 10 MB"),
        "{body}"
    );
    assert!(!body.contains("@bob"), "{body}");
    // An older queued report (without the field) still reads.
    let mut json = serde_json::to_value(report(Phase::Done, true)).unwrap();
    assert!(json.get("not_committed").is_none());
    json.as_object_mut().unwrap().remove("not_committed");
    let back: Report = serde_json::from_value(json).unwrap();
    assert!(back.not_committed.is_empty());
}
