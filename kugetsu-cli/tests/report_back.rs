//! Reporting back on watched issues through the binary, against the stand-in GitHub: each turn
//! the daemon runs labels the issue and keeps one comment on it up to date, a lost answer to
//! the comment's POST and a daemon restart post nothing twice, and a foreground turn on an
//! issue of a watched repository reports too.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use kugetsu_test_support::forge::{Dialect, StandInForge};

use crate::support::{Env, json, ready, wait_for};

const REPO: &str = "127.0.0.1/o/r";

fn ok(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
    out.stdout
}

fn pending_reports(env: &Env) -> usize {
    let v = json(&ok(env, &["--json", "notify", "outbox"]));
    let list = v.get("entries").cloned().unwrap_or(v);
    list.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .flat_map(|e| e["deliveries"].as_array().cloned().unwrap_or_default())
        .filter(|d| d["state"] == "pending")
        .count()
}

fn completed(env: &Env, n: u64) -> usize {
    let v = json(&ok(env, &["--json", "queue", "list"]));
    let list = v.get("items").cloned().unwrap_or(v);
    let issue = format!("{REPO}#{n}");
    list.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|i| i["issue_ref"] == issue.as_str() && i["status"] == "completed")
        .count()
}

/// A ready home watching `127.0.0.1/o/r` on `forge` (cloned from the sample repository).
fn watched(forge: &StandInForge) -> Env {
    let mut env = ready();
    let repos = std::fs::read_to_string(env.path("repos.json")).unwrap();
    let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&repos).unwrap();
    let sample = map["local.test/demo/app"].clone();
    map.insert(REPO.into(), sample);
    std::fs::write(env.path("repos.json"), serde_json::to_string(&map).unwrap()).unwrap();
    ok(&env, &["server", "add", "standin", &forge.base_url(), "--api", &forge.api_url()]);
    env.set("KUGETSU_WATCH_INTERVAL_SECONDS", "1");
    env.set("KUGETSU_PULL_REQUESTS", "off");
    ok(&env, &["watch", "add", REPO, "--label", "kugetsu"]);
    ok(&env, &["env", "set", "GITHUB_TOKEN", "ghp_reportTOKEN77"]);
    env
}

#[test]
fn each_turn_labels_the_issue_and_keeps_one_comment_across_a_lost_answer_and_restarts() {
    let forge = StandInForge::start(Dialect::Github);
    forge.add(1, "Fix the parser", "please", &["kugetsu"], false);
    let env = watched(&forge);
    // The comment is posted, but its answer never comes: the retry must find it, not repost.
    forge.lose_answer_of_next("POST", "/issues/1/comments");

    ok(&env, &["queue-daemon", "start"]);
    wait_for("the first turn", || completed(&env, 1) == 1);
    wait_for("the report made", || {
        forge.comments(1).iter().any(|c| c.contains("completed")) && pending_reports(&env) == 0
    });
    let comments = forge.comments(1);
    assert_eq!(comments.len(), 1, "{comments:?}");
    let body = &comments[0];
    assert!(body.contains("the last turn ended: **completed**"), "{body}");
    assert!(body.contains("`fix/issue-1`") && body.contains("Cost: unknown"), "{body}");
    assert!(body.contains("> wrote WORK.md"), "what the agent said: {body}");
    assert!(body.ends_with(&format!("<!-- kugetsu:report {REPO}#1 -->")), "{body}");
    assert_eq!(forge.labels(1), ["kugetsu", "kugetsu:done"]);
    let posts = |f: &StandInForge| {
        f.seen().iter().filter(|s| s.method == "POST" && s.target.ends_with("/comments")).count()
    };
    assert_eq!(posts(&forge), 1, "one POST of the comment, its retry found it");

    // A restart resumes nothing that was made, and posts nothing.
    ok(&env, &["queue-daemon", "stop"]);
    let writes = |f: &StandInForge| f.seen().iter().filter(|s| s.method != "GET").count();
    let before = writes(&forge);
    ok(&env, &["queue-daemon", "start"]);
    wait_for("an idle poll after the restart", || {
        forge.seen().iter().filter(|s| s.status == 304).count() >= 2
    });
    assert_eq!(writes(&forge), before, "a restart writes nothing");

    // A second turn is blocked on a permission: the same comment says so, labelled blocked.
    let script = |json: &str| std::fs::write(env.tmp.path().join("script.json"), json).unwrap();
    script(r#"{"default": {"mode": "permission"}}"#);
    ok(&env, &["queue", "enqueue", &format!("{REPO}#1"), "and the tests too"]);
    wait_for("the blocked turn's report", || {
        forge.comments(1).iter().any(|c| c.contains("**blocked: permission rejected"))
    });
    wait_for("its labels", || forge.labels(1) == ["kugetsu", "kugetsu:blocked"]);
    // A third completes: updated in place again.
    script(
        r#"{"default": {"mode": "tool", "path": "T.md", "content": "t\n", "text": "added tests"}}"#,
    );
    ok(&env, &["queue", "enqueue", &format!("{REPO}#1"), "go on"]);
    wait_for("the third turn", || completed(&env, 1) == 2);
    wait_for("its report", || forge.comments(1).iter().any(|c| c.contains("> added tests")));
    wait_for("nothing left to report", || pending_reports(&env) == 0);
    ok(&env, &["queue-daemon", "stop"]);
    assert_eq!(forge.comments(1).len(), 1, "{:?}", forge.comments(1));
    assert_eq!(posts(&forge), 1);
    assert_eq!(forge.labels(1), ["kugetsu", "kugetsu:done"]);
    let log = ok(&env, &["queue-daemon", "logs"]);
    assert!(!log.contains("ghp_reportTOKEN77"), "{log}");
    assert!(forge.seen().iter().all(|s| s.auth.as_deref() == Some("Bearer ghp_reportTOKEN77")));
}

#[test]
fn a_foreground_turn_on_a_watched_repositorys_issue_reports_too_and_others_do_not() {
    let forge = StandInForge::start(Dialect::Github);
    forge.add(2, "By hand", "", &[], false);
    let env = watched(&forge);
    ok(&env, &["start", &format!("{REPO}#2"), "go"]);
    wait_for("the report of the foreground turn", || {
        forge.comments(2).iter().any(|c| c.contains("**completed**"))
    });
    assert_eq!(forge.labels(2), ["kugetsu:done"]);
    // Not watched: nothing is asked of any forge.
    let before = forge.seen().len();
    ok(&env, &["start", "local.test/demo/app#3", "go"]);
    ok(&env, &["notify", "flush"]);
    assert_eq!(forge.seen().len(), before);
}
