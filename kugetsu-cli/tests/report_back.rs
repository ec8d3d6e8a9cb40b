//! Reporting back on watched issues through the binary, against the stand-in GitHub: each turn
//! the daemon runs labels the issue and keeps one comment on it up to date, a lost answer to
//! the comment's POST and a daemon restart post nothing twice, and a foreground turn on an
//! issue of a watched repository reports too. A completed turn with commits pushes the branch
//! to the real `git http-backend` and opens one draft pull request, which later turns keep;
//! what a turn left uncommitted is committed first, except files holding a secret.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use kugetsu_test_support::forge::{Dialect, StandInForge};

use crate::git_http::GitHttpServer;
use crate::support::{Env, git, json, ready, wait_for};

const REPO: &str = "127.0.0.1/o/r";

fn pending_reports(env: &Env) -> usize {
    let v = json(&env.ok(&["--json", "notify", "outbox"]));
    let list = v.get("entries").cloned().unwrap_or(v);
    list.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .flat_map(|e| e["deliveries"].as_array().cloned().unwrap_or_default())
        .filter(|d| d["state"] == "pending")
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
    env.ok(&["server", "add", "standin", &forge.base_url(), "--api", &forge.api_url()]);
    env.set("KUGETSU_WATCH_INTERVAL_SECONDS", "1");
    env.set("KUGETSU_PULL_REQUESTS", "off");
    env.ok(&["watch", "add", REPO, "--label", "kugetsu"]);
    env.ok(&["env", "set", "GITHUB_TOKEN", "ghp_reportTOKEN77"]);
    env
}

#[test]
fn each_turn_labels_the_issue_and_keeps_one_comment_across_a_lost_answer_and_restarts() {
    let forge = StandInForge::start(Dialect::Github);
    forge.add(1, "Fix the parser", "please", &["kugetsu"], false);
    let env = watched(&forge);
    // Each model call costs $0.25, as the agent reports it: the comment shows what the turn cost.
    std::fs::write(
        env.tmp.path().join("script.json"),
        r#"{"default": {"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "wrote WORK.md", "cost": 0.25}}"#,
    )
    .unwrap();
    // The comment is posted, but its answer never comes: the retry must find it, not repost.
    forge.lose_answer_of_next("POST", "/issues/1/comments");

    env.ok(&["queue-daemon", "start"]);
    wait_for("the first turn", || env.completed(&format!("{REPO}#1")) == 1);
    wait_for("the report made", || {
        forge.comments(1).iter().any(|c| c.contains("completed")) && pending_reports(&env) == 0
    });
    let comments = forge.comments(1);
    assert_eq!(comments.len(), 1, "{comments:?}");
    let body = &comments[0];
    assert!(body.contains("the last turn ended: **completed**"), "{body}");
    assert!(body.contains("`fix/issue-1`") && body.contains("Cost: $0.50"), "{body}");
    assert!(body.contains("> wrote WORK.md"), "what the agent said: {body}");
    assert!(body.ends_with(&format!("<!-- kugetsu:report {REPO}#1 -->")), "{body}");
    assert_eq!(forge.labels(1), ["kugetsu", "kugetsu:done"]);
    let posts = |f: &StandInForge| {
        f.seen().iter().filter(|s| s.method == "POST" && s.target.ends_with("/comments")).count()
    };
    assert_eq!(posts(&forge), 1, "one POST of the comment, its retry found it");
    let outbox = env.ok(&["notify", "outbox"]);
    assert!(outbox.contains(&format!("forge:{REPO}#1")), "a report's target is shown: {outbox}");

    // A restart resumes nothing that was made, and posts nothing.
    env.ok(&["queue-daemon", "stop"]);
    let writes = |f: &StandInForge| f.seen().iter().filter(|s| s.method != "GET").count();
    let before = writes(&forge);
    let idle = forge.idle_polls();
    env.ok(&["queue-daemon", "start"]);
    wait_for("an idle poll after the restart", || forge.idle_polls() > idle);
    assert_eq!(writes(&forge), before, "a restart writes nothing");

    // A second turn is blocked on a permission: the same comment says so, labelled blocked.
    let script = |json: &str| std::fs::write(env.tmp.path().join("script.json"), json).unwrap();
    script(r#"{"default": {"mode": "permission"}}"#);
    env.ok(&["queue", "enqueue", &format!("{REPO}#1"), "and the tests too"]);
    wait_for("the blocked turn's report", || {
        forge.comments(1).iter().any(|c| c.contains("**blocked: permission rejected"))
    });
    wait_for("its labels", || forge.labels(1) == ["kugetsu", "kugetsu:blocked"]);
    // A third completes: updated in place again.
    script(
        r#"{"default": {"mode": "tool", "path": "T.md", "content": "t\n", "text": "added tests"}}"#,
    );
    env.ok(&["queue", "enqueue", &format!("{REPO}#1"), "go on"]);
    wait_for("the third turn", || env.completed(&format!("{REPO}#1")) == 2);
    wait_for("its report", || forge.comments(1).iter().any(|c| c.contains("> added tests")));
    wait_for("nothing left to report", || pending_reports(&env) == 0);
    env.ok(&["queue-daemon", "stop"]);
    assert_eq!(forge.comments(1).len(), 1, "{:?}", forge.comments(1));
    assert_eq!(posts(&forge), 1);
    assert_eq!(forge.labels(1), ["kugetsu", "kugetsu:done"]);
    let log = env.ok(&["queue-daemon", "logs"]);
    assert!(!log.contains("ghp_reportTOKEN77"), "{log}");
    assert!(forge.seen().iter().all(|s| s.auth.as_deref() == Some("Bearer ghp_reportTOKEN77")));
}

#[test]
fn a_foreground_turn_on_a_watched_repositorys_issue_reports_too_and_others_do_not() {
    let forge = StandInForge::start(Dialect::Github);
    forge.add(2, "By hand", "", &[], false);
    let env = watched(&forge);
    env.ok(&["start", &format!("{REPO}#2"), "go"]);
    wait_for("the report of the foreground turn", || {
        forge.comments(2).iter().any(|c| c.contains("**completed**"))
    });
    assert_eq!(forge.labels(2), ["kugetsu:done"]);
    // Not watched: nothing is asked of any forge.
    let before = forge.seen().len();
    env.ok(&["start", "local.test/demo/app#3", "go"]);
    env.ok(&["notify", "flush"]);
    assert_eq!(forge.seen().len(), before);
}

/// The worktree of `REPO#n`.
fn worktree_of(env: &Env, n: u64) -> std::path::PathBuf {
    std::fs::read_dir(env.path("worktrees"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.contains("o-r") && name.ends_with(&format!("-{n}"))
        })
        .expect("the issue's worktree")
}

/// Serves the sample repository with the real `git http-backend` as `REPO`'s clone URL (pushes
/// go there); returns the server and a reader of its `fix/issue-1`.
fn serve_repo(env: &Env) -> (GitHttpServer, impl Fn() -> String + use<>) {
    let git_home = env.tmp.path().join("git-home");
    std::fs::create_dir_all(&git_home).unwrap();
    let server = GitHttpServer::start(env.tmp.path(), &git_home, None);
    let sample = env.tmp.path().join("repo");
    let repos = std::fs::read_to_string(env.path("repos.json")).unwrap();
    let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&repos).unwrap();
    map.insert(REPO.into(), server.url("repo").into());
    std::fs::write(env.path("repos.json"), serde_json::to_string(&map).unwrap()).unwrap();
    let remote_branch = move || {
        let out = kugetsu_test_support::git_command(&sample, &git_home)
            .args(["rev-parse", "--verify", "-q", "refs/heads/fix/issue-1"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    (server, remote_branch)
}

#[test]
fn commits_are_pushed_and_one_draft_pull_request_opened_and_kept_across_turns_and_restarts() {
    let forge = StandInForge::start(Dialect::Github);
    forge.add(1, "Fix the parser", "please", &["kugetsu"], false);
    let mut env = watched(&forge);
    env.set("KUGETSU_PULL_REQUESTS", "draft");
    // The agent's own commits only: what it leaves uncommitted stays so.
    env.set("KUGETSU_COMMIT_LEFTOVERS", "0");
    let (_server, remote_branch) = serve_repo(&env);

    // A first turn without commits: reported, nothing pushed, no pull request.
    env.ok(&["queue-daemon", "start"]);
    wait_for("the first turn", || env.completed(&format!("{REPO}#1")) == 1);
    wait_for("its report", || forge.comments(1).iter().any(|c| c.contains("**completed**")));
    wait_for("nothing left to report", || pending_reports(&env) == 0);
    assert!(forge.pulls().is_empty() && remote_branch().is_empty());
    assert!(!forge.comments(1)[0].contains("Pull request"), "{:?}", forge.comments(1));

    // The agent commits (as it would, with git in its worktree); the next turn pushes.
    let wt = worktree_of(&env, 1);
    git(&wt, &["add", "-A"]);
    git(&wt, &["commit", "-q", "-m", "Fix the parser"]);
    let first = git(&wt, &["rev-parse", "HEAD"]).trim().to_string();
    env.ok(&["queue", "enqueue", &format!("{REPO}#1"), "push it"]);
    wait_for("the pull request", || !forge.pulls().is_empty());
    wait_for("its link in the comment", || {
        forge.comments(1).iter().any(|c| c.contains("Pull request:"))
    });
    assert_eq!(remote_branch(), first);
    let pull = forge.pulls()[0].clone();
    assert_eq!((pull.head.as_str(), pull.base.as_str(), pull.draft), ("fix/issue-1", "main", true));
    assert!(pull.body.contains("Closes #1."), "{pull:?}");
    let comment = forge.comments(1)[0].clone();
    assert!(comment.contains(&format!("/o/r/pull/{} (draft)", pull.number)), "{comment}");

    // A restart makes nothing again.
    wait_for("nothing left to report", || pending_reports(&env) == 0);
    env.ok(&["queue-daemon", "stop"]);
    let writes = |f: &StandInForge| f.seen().iter().filter(|s| s.method != "GET").count();
    let before = writes(&forge);
    env.ok(&["queue-daemon", "start"]);
    let idle = forge.idle_polls();
    wait_for("an idle poll after the restart", || forge.idle_polls() > idle);
    assert_eq!(writes(&forge), before, "a restart writes nothing");

    // Another commit and turn: the same branch moves on, the same pull request and comment.
    std::fs::write(wt.join("MORE.md"), "more\n").unwrap();
    git(&wt, &["add", "-A"]);
    git(&wt, &["commit", "-q", "-m", "And the tests"]);
    let second = git(&wt, &["rev-parse", "HEAD"]).trim().to_string();
    env.ok(&["queue", "enqueue", &format!("{REPO}#1"), "more"]);
    wait_for("the second push", || remote_branch() == second);
    wait_for("nothing left to report", || pending_reports(&env) == 0);
    env.ok(&["queue-daemon", "stop"]);
    assert_eq!(forge.pulls().len(), 1, "{:?}", forge.pulls());
    assert_eq!(forge.comments(1).len(), 1);
    let seen = forge.seen();
    let opened = seen.iter().filter(|s| s.method == "POST" && s.target.ends_with("/pulls"));
    assert_eq!(opened.count(), 1);

    // Merged: the worktree and session go (everything in them was pushed).
    forge.merge(pull.number);
    env.ok(&["queue-daemon", "start"]);
    wait_for("the cleanup", || env.ok(&["notify", "list"]).contains("pull request was merged"));
    env.ok(&["queue-daemon", "stop"]);
    let notes = env.ok(&["notify", "list"]);
    assert!(notes.contains("removed its worktree and agent session"), "{notes}");
    assert!(!wt.exists(), "{}", wt.display());
    assert!(!env.ok(&["list"]).contains(&format!("{REPO}#1")));
}

#[test]
fn failed_checks_and_reviews_requesting_changes_continue_the_issue_up_to_the_round_limit() {
    let forge = StandInForge::start(Dialect::Github);
    forge.add(1, "Fix the parser", "please", &["kugetsu"], false);
    let mut env = watched(&forge);
    env.set("KUGETSU_PULL_REQUESTS", "draft");
    env.set("KUGETSU_LOOP_ROUNDS", "2");
    env.set("KUGETSU_COMMIT_LEFTOVERS", "0");
    let (_server, remote_branch) = serve_repo(&env);
    let messages = |env: &Env| -> Vec<String> {
        let v = json(&env.ok(&["--json", "queue", "list"]));
        let list = v.get("items").cloned().unwrap_or(v);
        list.as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|i| i["message"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    // A first turn; the agent commits; a second turn pushes and opens the pull request.
    env.ok(&["queue-daemon", "start"]);
    wait_for("the first turn", || env.completed(&format!("{REPO}#1")) == 1);
    let wt = worktree_of(&env, 1);
    git(&wt, &["add", "-A"]);
    git(&wt, &["commit", "-q", "-m", "Fix the parser"]);
    env.ok(&["queue", "enqueue", &format!("{REPO}#1"), "push it"]);
    wait_for("the pull request", || !forge.pulls().is_empty());
    wait_for("the push", || !remote_branch().is_empty());
    let pull = forge.pulls()[0].number;
    let head = remote_branch();
    forge.set_head(pull, &head);

    // Its check fails: a continue with what the check said, once for that commit.
    forge.add_check(&head, "unit", false, "thread 'parse' panicked: ghp_reportTOKEN77 left: 1");
    wait_for("the continue for the failed check", || env.completed(&format!("{REPO}#1")) == 3);
    let asked = messages(&env).into_iter().find(|m| m.contains("checks of the pull request"));
    let asked = asked.expect("a continue about the checks");
    assert!(
        asked.contains("<untrusted-ci>") && asked.contains("thread 'parse' panicked"),
        "{asked}"
    );
    assert!(!asked.contains("ghp_reportTOKEN77"), "masked: {asked}");
    // The loop's later polls ask again conditionally: an unchanged answer is a 304, which
    // spends none of GitHub's quota.
    let checks = format!("/commits/{head}/check-runs");
    let conditional = |status: u16| {
        forge.seen().iter().filter(|r| r.target.contains(&checks) && r.status == status).count()
    };
    wait_for("a poll's checks answered 304", || conditional(304) >= 2);
    let seen = forge.seen();
    let whole = seen.iter().filter(|r| r.target.contains(&checks) && r.if_none_match.is_none());
    assert_eq!(whole.count(), 1, "only the first read of the checks is whole");

    // A review requests changes: one more round.
    forge.request_changes(pull, "alice", "Please rename parse to read.");
    wait_for("the continue for the review", || env.completed(&format!("{REPO}#1")) == 4);
    assert!(messages(&env).iter().any(|m| m.contains("Please rename parse to read.")));

    // The next failure is past the limit (2): told once, not continued.
    forge.set_head(pull, "0123456789abcdef0123456789abcdef01234567");
    forge.add_check("0123456789abcdef0123456789abcdef01234567", "unit", false, "again");
    wait_for("the loop's limit told", || env.ok(&["notify", "list"]).contains("after 2 rounds"));
    env.ok(&["queue-daemon", "stop"]);
    assert_eq!(env.completed(&format!("{REPO}#1")), 4, "no fifth turn");
    let taken = &json(&std::fs::read_to_string(env.path("watches.json")).unwrap())["watches"][REPO]
        ["taken"]["1"];
    assert_eq!(taken["rounds"], 2, "{taken}");

    // Closed while its worktree holds uncommitted work: kept, and said so.
    std::fs::write(wt.join("NOTES.md"), "unsaved\n").unwrap();
    forge.close(1);
    env.ok(&["queue-daemon", "start"]);
    wait_for("the cleanup's answer", || env.ok(&["notify", "list"]).contains("it was closed"));
    env.ok(&["queue-daemon", "stop"]);
    let notes = env.ok(&["notify", "list"]);
    assert!(notes.contains("1 changed files"), "{notes}");
    assert!(wt.join("NOTES.md").exists());
}

#[test]
fn work_left_uncommitted_is_committed_pushed_and_opens_the_pull_request() {
    let forge = StandInForge::start(Dialect::Github);
    forge.add(1, "Fix the parser", "please", &["kugetsu"], false);
    let mut env = watched(&forge);
    env.set("KUGETSU_PULL_REQUESTS", "draft");
    let (_server, remote_branch) = serve_repo(&env);
    // The first turn writes WORK.md, every later one a file holding the forge's token.
    std::fs::write(
        env.tmp.path().join("script.json"),
        r#"{"turns": [{"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "wrote WORK.md\nand more"}],
            "default": {"mode": "tool", "path": "leak.txt", "content": "key ghp_reportTOKEN77\n", "text": "wrote leak.txt"}}"#,
    )
    .unwrap();

    // No commit by anyone but kugetsu: the turn's file is committed, pushed, the PR opened.
    env.ok(&["queue-daemon", "start"]);
    wait_for("the pull request", || !forge.pulls().is_empty());
    wait_for("the push", || !remote_branch().is_empty());
    wait_for("nothing left to report", || pending_reports(&env) == 0);
    let wt = worktree_of(&env, 1);
    let head = git(&wt, &["rev-parse", "HEAD"]).trim().to_string();
    assert_eq!(remote_branch(), head);
    let sample = env.tmp.path().join("repo");
    let at_remote = |what: &str| {
        let git_home = env.tmp.path().join("git-home");
        let out = kugetsu_test_support::git_command(&sample, &git_home)
            .args(["show", &format!("fix/issue-1{what}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(at_remote(":WORK.md"), "done\n");
    assert_eq!(
        git(&wt, &["log", "-1", "--format=%an|%B"]).trim_end(),
        format!("kugetsu|kugetsu: {REPO}#1 turn 1\n\nwrote WORK.md")
    );
    assert_eq!(git(&wt, &["status", "--porcelain"]), "");
    let pull = forge.pulls()[0].clone();
    assert_eq!((pull.head.as_str(), pull.draft), ("fix/issue-1", true));
    let comment = forge.comments(1)[0].clone();
    assert!(comment.contains("Pull request:") && !comment.contains("Not committed"), "{comment}");

    // A turn whose file holds a secret: left out, said so, nothing new pushed.
    env.ok(&["queue", "enqueue", &format!("{REPO}#1"), "again"]);
    wait_for("the second turn", || env.completed(&format!("{REPO}#1")) == 2);
    wait_for("the comment about the file", || {
        forge.comments(1).iter().any(|c| c.contains("Not committed: leak.txt: holds a secret"))
    });
    wait_for("nothing left to report", || pending_reports(&env) == 0);
    env.ok(&["queue-daemon", "stop"]);
    assert_eq!(git(&wt, &["rev-parse", "HEAD"]).trim(), head);
    assert_eq!(remote_branch(), head);
    assert_eq!(git(&wt, &["status", "--porcelain"]), "?? leak.txt\n");
    assert!(!at_remote("").contains("leak.txt"));
    assert_eq!(forge.pulls().len(), 1);
}
