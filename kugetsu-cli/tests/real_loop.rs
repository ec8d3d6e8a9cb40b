//! The whole loop of a watched issue through the daemon on the REAL opencode and the mock
//! model, against the stand-in GitHub and the real `git http-backend`: the labelled issue is
//! started, the agent's file (left uncommitted, as agents do) is committed by kugetsu, pushed,
//! and a draft pull request opened; its check fails once, which continues the issue with the
//! check's text; the next push goes green, nothing more is asked; the merge cleans up. One
//! comment on the issue throughout, one pull request.

use super::git_http::GitHttpServer;
use super::support::git;
use super::{mock_model, real, real_env, wait_for_long};
use kugetsu_test_support::forge::{Dialect, StandInForge};

const REPO: &str = "127.0.0.1/o/r";

/// Runs the loop with the opencode at `bin` (1.18.33 or 2.1.2).
pub fn the_loop(bin: &std::path::Path) {
    let model = mock_model::MockModel::start();
    let forge = StandInForge::start(Dialect::Github);
    forge.add(1, "Fix the parser", "Please fix it. WRITEFILE:fix.txt\n", &["kugetsu"], false);
    let mut env = real_env(bin, &model);
    env.ok(&["init", "--headless"]);

    // The sample repository, served over smart HTTP as the watched repository's clone URL.
    let git_home = env.tmp.path().join("git-home");
    std::fs::create_dir_all(&git_home).unwrap();
    let server = GitHttpServer::start(env.tmp.path(), &git_home, None);
    let sample = env.tmp.path().join("repo");
    let mut repos: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(env.path("repos.json")).unwrap()).unwrap();
    repos.insert(REPO.into(), server.url("repo").into());
    std::fs::write(env.path("repos.json"), serde_json::to_string(&repos).unwrap()).unwrap();
    let at_remote = |what: &str| {
        let out = kugetsu_test_support::git_command(&sample, &git_home)
            .args(["rev-parse", "--verify", "-q", what])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let show = |what: &str| {
        let out = kugetsu_test_support::git_command(&sample, &git_home)
            .args(["show", what])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let remote_branch = || at_remote("refs/heads/fix/issue-1");

    env.ok(&["server", "add", "standin", &forge.base_url(), "--api", &forge.api_url()]);
    env.set("KUGETSU_WATCH_INTERVAL_SECONDS", "1");
    env.ok(&["watch", "add", REPO, "--label", "kugetsu"]);
    env.ok(&["env", "set", "GITHUB_TOKEN", "ghp_loopTOKEN4242"]);

    // label → start → comment → draft pull request.
    env.ok(&["queue-daemon", "start"]);
    wait_for_long("the draft pull request", || !forge.pulls().is_empty());
    wait_for_long("the push", || !remote_branch().is_empty());
    wait_for_long("the comment linking it", || {
        forge.comments(1).iter().any(|c| c.contains("Pull request:"))
    });
    let log = || env.ok(&["queue-daemon", "logs"]);
    assert_eq!(show("fix/issue-1:fix.txt"), "written by the mock\n", "{}", log());
    let wt = std::fs::read_dir(env.path("worktrees"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().contains("o-r-1"))
        .expect("the issue's worktree");
    assert_eq!(git(&wt, &["status", "--porcelain"]), "", "kugetsu committed the turn's file");
    let pull = forge.pulls()[0].clone();
    assert_eq!((pull.head.as_str(), pull.draft), ("fix/issue-1", true));
    assert!(pull.body.contains("Closes #1."), "{pull:?}");

    // failing check → continue (with the check's text) → a new push.
    let first = remote_branch();
    forge.set_head(pull.number, &first);
    forge.add_check(&first, "unit", false, "1 test failed; WRITEFILE:fix2.txt");
    wait_for_long("the continue's push", || remote_branch() != first);
    assert_eq!(show("fix/issue-1:fix2.txt"), "written by the mock\n", "{}", log());
    let prompts: Vec<String> =
        model.requests.lock().unwrap().iter().map(|r| r.to_string()).collect();
    assert!(prompts.iter().any(|p| p.contains("1 test failed")), "the model got the check");

    // green → nothing more asked.
    let second = remote_branch();
    forge.set_head(pull.number, &second);
    forge.add_check(&second, "unit", true, "all passed");
    let polls = |f: &StandInForge| f.seen().iter().filter(|s| s.target.contains("/check")).count();
    let seen = polls(&forge);
    wait_for_long("a look at the green check", || polls(&forge) > seen + 1);
    wait_for_long("the second turn done", || env.completed(&format!("{REPO}#1")) == 2);

    // merge → cleanup.
    forge.merge(pull.number);
    wait_for_long("the cleanup", || {
        env.ok(&["notify", "list"]).contains("pull request was merged")
    });
    env.ok(&["queue-daemon", "stop"]);
    assert_eq!(env.completed(&format!("{REPO}#1")), 2, "no third turn after the green check");
    let notes = env.ok(&["notify", "list"]);
    assert!(notes.contains("removed its worktree and agent session"), "{notes}");
    assert!(!wt.exists(), "{}", wt.display());
    assert_eq!(forge.pulls().len(), 1);
    assert_eq!(forge.comments(1).len(), 1, "one comment, updated in place");
    assert!(forge.comments(1)[0].contains("**completed**"), "{:?}", forge.comments(1));
}

#[test]
fn the_whole_loop_on_the_real_opencode() {
    let Some(bin) = real::opencode() else { return };
    the_loop(&bin);
}

#[test]
fn the_whole_loop_on_the_real_opencode_2() {
    let Some(bin) = real::opencode2() else { return };
    the_loop(&bin);
}
