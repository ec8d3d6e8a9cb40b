//! README promises about the state kugetsu keeps, tried through the `kugetsu` binary with the
//! bundled fake agent: `init --force`, `destroy --base` and `--pm-agent`, `doctor --fix` and
//! `--fix-permissions`, `prune --force`, a corrupt state file (exit 3, kept aside), issue URLs as
//! refs, `server add|list|remove` and `env rm`.

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::Path;

use serde_json::Value;
use support::{Env, git, json, read, ready};

/// The `session_id` of `list --json`'s row for `issue_ref` (`(base)`, `(pm-agent)` or a ref).
fn session_id(env: &Env, issue_ref: &str) -> Option<String> {
    let out = env.run(&["list", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = json(&out.stdout);
    let row = rows.as_array().unwrap().iter().find(|r| r["issue_ref"] == issue_ref)?.clone();
    row["session_id"].as_str().map(str::to_string)
}

/// The fake agent's store: every session it knows, by id.
fn store(env: &Env) -> Value {
    json(&read(&env.tmp.path().join("fake-db.json")))
}

fn stored(env: &Env, id: &str) -> Option<Value> {
    store(env)["sessions"].as_array().unwrap().iter().find(|s| s["id"] == id).cloned()
}

fn edit_store(env: &Env, edit: impl FnOnce(&mut Value)) {
    let path = env.tmp.path().join("fake-db.json");
    let mut db = json(&read(&path));
    edit(&mut db);
    std::fs::write(path, serde_json::to_vec(&db).unwrap()).unwrap();
}

/// Every argv the fake agent was started with.
fn invocations(env: &Env) -> Vec<Vec<String>> {
    read(&env.tmp.path().join("record.jsonl"))
        .lines()
        .map(|l| {
            let r = json(l);
            r["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
        })
        .collect()
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v = json(&read(path));
    edit(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// `init` refuses a second time; `init --force` makes a new base and PM agent session, which
/// every later `start` forks from, and existing issues keep working.
#[test]
fn init_force_makes_new_base_and_pm_sessions() {
    let env = ready();
    let out = env.run(&["start", "#1", "before"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (base, pm) = (session_id(&env, "(base)").unwrap(), session_id(&env, "(pm-agent)").unwrap());

    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("already initialized"), "{}", out.stderr);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(session_id(&env, "(base)").unwrap(), base, "nothing changed");

    let out = env.run(&["init", "--headless", "--force"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let (new_base, new_pm) =
        (session_id(&env, "(base)").unwrap(), session_id(&env, "(pm-agent)").unwrap());
    assert_ne!(new_base, base);
    assert_ne!(new_pm, pm);
    assert_eq!(
        out.stdout,
        format!(
            "base session     {new_base}\npm-agent session {new_pm}\ninitialized {}\n",
            env.state.display()
        )
    );
    assert!(stored(&env, &new_base).is_some() && stored(&env, &new_pm).is_some());
    assert_eq!(env.run(&["status"]).stdout.lines().next(), Some("ok"));

    let out = env.run(&["start", "#2", "after"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let exports: Vec<_> = invocations(&env).into_iter().filter(|a| a[0] == "export").collect();
    assert_eq!(exports.last().unwrap()[1], new_base, "forked from the new base: {exports:?}");
    let out = env.run(&["continue", "#1", "still works"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

/// `destroy --pm-agent -y` deletes the PM agent's session; `destroy --base -y` the base and the
/// PM agent; both leave issue sessions alone, `status` says what is missing, and `init` makes
/// them again. Without `-y` and without a terminal nothing is deleted.
#[test]
fn destroy_base_and_pm_agent() {
    let env = ready();
    let out = env.run(&["start", "#1", "work"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let base = session_id(&env, "(base)").unwrap();
    let pm = session_id(&env, "(pm-agent)").unwrap();
    let issue = session_id(&env, "local.test/demo/app#1").unwrap();

    for args in [&["destroy", "--pm-agent"][..], &["destroy", "--base"]] {
        let out = env.run(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("pass -y"), "{}", out.stderr);
    }
    assert!(stored(&env, &pm).is_some() && stored(&env, &base).is_some());

    let out = env.run(&["destroy", "--pm-agent", "-y"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, format!("deleted session {pm}\ndestroyed pm-agent\n"));
    assert!(stored(&env, &pm).is_none(), "the agent's session is gone");
    assert!(stored(&env, &base).is_some());
    assert_eq!(env.run(&["status"]).stdout.lines().next(), Some("pm_agent_missing"));
    assert_eq!(session_id(&env, "(pm-agent)"), None);
    let out = env.run(&["continue", "#1", "issue sessions go on"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let out = env.run(&["start", "#2", "needs the PM agent"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("Hint: run `kugetsu init --force`"), "{}", out.stderr);
    let out = env.run(&["init", "--headless", "--force"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let pm = session_id(&env, "(pm-agent)").unwrap();
    let base = session_id(&env, "(base)").unwrap();
    let out = env.run(&["destroy", "--base", "-y", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = json(&out.stdout);
    assert_eq!(report["destroyed"], "base and pm-agent");
    assert!(stored(&env, &base).is_none() && stored(&env, &pm).is_none());
    assert!(stored(&env, &issue).is_some(), "the issue's session is kept");
    assert_eq!(env.run(&["status"]).stdout.lines().next(), Some("base_session_missing"));
    assert_eq!(session_id(&env, "local.test/demo/app#1").as_deref(), Some(issue.as_str()));
    let out = env.run(&["start", "#2", "needs a base"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("base session is missing"), "{}", out.stderr);

    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(env.run(&["status"]).stdout.lines().next(), Some("ok"));
    assert_eq!(env.run(&["start", "#2", "now it can"]).code, 0);
}

/// A session left `running` by an agent that is gone: `doctor` names it (exit 1), `doctor --fix`
/// marks it failed (exit 0), and `continue` resumes it.
#[test]
fn doctor_fix_settles_a_session_stuck_running() {
    let env = ready();
    assert_eq!(env.run(&["start", "#1", "work"]).code, 0);
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let file = env.path("sessions/local.test-demo-app-1.json");
    edit_json(&file, |s| {
        s["state"] = "running".into();
        s["agent_pid"] = dead_pid.into();
    });

    let problem = "local.test/demo/app#1: marked running, but no agent process is alive";
    let out = env.run(&["doctor"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(&format!("problem: {problem}")), "{}", out.stdout);
    assert_eq!(json(&read(&file))["state"], "running", "doctor alone changes nothing");

    let out = env.run(&["doctor", "--fix"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(&format!("fixed: {problem}")), "{}", out.stdout);
    let session = json(&read(&file));
    assert_eq!(session["state"], "failed", "{session}");
    assert!(session["agent_pid"].is_null(), "{session}");
    let out = env.run(&["doctor"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.contains("no problems found"), "{}", out.stdout);
    let out = env.run(&["continue", "#1", "resume"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(json(&read(&file))["state"], "idle");
}

/// A fork that lost its permission rules (as opencode's own `--fork` loses them) would hang a
/// headless run on the first question; `doctor --fix-permissions` re-applies the rules, and the
/// question is then refused instead of waited on.
#[test]
fn doctor_fix_permissions_restores_a_forks_rules() {
    let env = ready();
    assert_eq!(env.run(&["start", "#1", "work"]).code, 0);
    let issue = session_id(&env, "local.test/demo/app#1").unwrap();
    let rules = stored(&env, &issue).unwrap()["permission"].clone();
    assert!(rules.to_string().contains("question"), "{rules}");
    edit_store(&env, |db| {
        for s in db["sessions"].as_array_mut().unwrap() {
            if s["id"] == issue.as_str() {
                s["permission"] = Value::Null;
            }
        }
    });

    let out = env.run(&["doctor", "--fix-permissions"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "fixed: local.test/demo/app#1: session {issue} lacked the permission rules"
        )),
        "{}",
        out.stdout
    );
    assert_eq!(stored(&env, &issue).unwrap()["permission"], rules);
    let out = env.run(&["doctor", "--fix-permissions"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(!out.stdout.contains("fixed:"), "nothing left to fix: {}", out.stdout);

    std::fs::write(
        env.tmp.path().join("script.json"),
        r#"{"turns": [{"mode": "question", "text": "asked nobody"}]}"#,
    )
    .unwrap();
    let out = env.run(&["continue", "#1", "ask something"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("tool question failed"), "{}", out.stderr);
}

/// `prune` lists session files and worktrees no issue owns; `prune --force` deletes them, but
/// keeps a worktree with uncommitted work (saying why), and never the base or PM agent files.
#[test]
fn prune_force_removes_orphans_and_keeps_unsaved_work() {
    let env = ready();
    for issue in ["#1", "#2", "#3"] {
        assert_eq!(env.run(&["start", issue, "work"]).code, 0);
    }
    let wt = |n: u32| env.path(&format!("worktrees/local.test-demo-app-{n}"));
    let sf = |n: u32| env.path(&format!("sessions/local.test-demo-app-{n}.json"));
    // #1 keeps uncommitted work; #2's work is committed; #3 stays tracked.
    git(&wt(2), &["add", "WORK.md"]);
    git(&wt(2), &["commit", "-q", "-m", "saved"]);
    git(&wt(2), &["push", "-q", "origin", "fix/issue-2"]);
    edit_json(&env.path("index.json"), |index| {
        let issues = index["issues"].as_object_mut().unwrap();
        issues.remove("local.test/demo/app#1");
        issues.remove("local.test/demo/app#2");
    });

    let out = env.run(&["prune"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for p in [sf(1), sf(2)] {
        assert!(out.stdout.contains(&format!("would remove session file {}", p.display())));
    }
    assert!(out.stdout.contains(&format!("would remove worktree {}", wt(2).display())));
    // The dry run already says what --force would keep, and why.
    assert!(!out.stdout.contains(&format!("would remove worktree {}", wt(1).display())));
    assert!(
        out.stdout.contains(&format!("kept {} (", wt(1).display()))
            && out.stdout.contains("1 changed file(s)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("run `kugetsu prune --force` to delete them"), "{}", out.stdout);
    assert!(!out.stdout.contains(&wt(3).display().to_string()), "{}", out.stdout);
    assert!(sf(1).exists() && wt(2).exists(), "a dry run deletes nothing");

    let out = env.run(&["prune", "--force"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(&format!("removed worktree {}", wt(2).display())));
    assert!(
        out.stdout.contains(&format!("kept {} (", wt(1).display()))
            && out.stdout.contains("1 changed file(s)"),
        "{}",
        out.stdout
    );
    assert!(!sf(1).exists() && !sf(2).exists() && !wt(2).exists());
    assert_eq!(read(&wt(1).join("WORK.md")), "done\n", "unsaved work is kept");
    assert!(sf(3).exists() && wt(3).exists(), "a tracked issue is not an orphan");
    assert!(env.path("sessions/base.json").exists() && env.path("sessions/pm-agent.json").exists());
    assert_eq!(env.run(&["status"]).stdout.lines().next(), Some("ok"));
    assert_eq!(env.run(&["continue", "#3", "still tracked"]).code, 0);
}

/// A state file that is not what kugetsu wrote: the command exits 3 naming it, and the bytes are
/// kept aside as `<name>.corrupt-<time>`, not lost.
#[test]
fn a_corrupt_state_file_exits_3_and_is_kept_aside() {
    let env = ready();
    assert_eq!(env.run(&["start", "#1", "work"]).code, 0);
    let kept = |name: &str| -> Vec<std::path::PathBuf> {
        let (dir, file) = name.rsplit_once('/').unwrap_or(("", name));
        std::fs::read_dir(env.path(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_str().unwrap();
                n.starts_with(&format!("{file}.corrupt-"))
            })
            .collect()
    };

    let garbage = b"{\"issues\": {\"local.test/demo/app#1\": [tru\xff";
    let session = env.path("sessions/local.test-demo-app-1.json");
    std::fs::write(&session, garbage).unwrap();
    let out = env.run(&["continue", "#1", "more"]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains(&format!("{} is corrupt", session.display())), "{}", out.stderr);
    let aside = kept("sessions/local.test-demo-app-1.json");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), garbage, "the bytes are kept");
    assert!(out.stderr.contains(&aside[0].display().to_string()), "{}", out.stderr);

    let index = env.path("index.json");
    std::fs::write(&index, "not json at all\n").unwrap();
    for args in [&["list"][..], &["start", "#2", "x"], &["status"]] {
        let out = env.run(args);
        assert_eq!(out.code, 3, "{args:?}: {}{}", out.stdout, out.stderr);
    }
    let aside = kept("index.json");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(read(&aside[0]), "not json at all\n");
}

/// Issue URLs (GitHub's `/issues/N`, GitLab's `/-/issues/N` with subgroups) are refs: the
/// session, worktree and branch are the same as for `instance/owner/repo#N`, so either form
/// reaches it afterwards.
#[test]
fn issue_urls_are_refs() {
    let env = ready();
    let repo = env.tmp.path().join("repo");
    std::fs::write(
        env.path("repos.json"),
        serde_json::to_vec(&serde_json::json!({
            "local.test/demo/app": repo,
            "github.com/o/r": repo,
            "gitlab.com/group/sub/r": repo,
        }))
        .unwrap(),
    )
    .unwrap();

    let out = env.run(&["start", "https://github.com/o/r/issues/14", "from a URL"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("github.com/o/r#14: completed\n"), "{}", out.stdout);
    let wt = env.path("worktrees/github.com-o-r-14");
    assert_eq!(git(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(), "fix/issue-14");
    let out = env.run(&["continue", "github.com/o/r#14", "by its ref"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = env.run(&["continue", "https://github.com/o/r/issues/14", "by its URL again"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    let out = env.run(&["start", "https://gitlab.com/group/sub/r/-/issues/42", "GitLab"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("gitlab.com/group/sub/r#42: completed\n"), "{}", out.stdout);
    assert!(env.path("worktrees/gitlab.com-group-sub-r-42").is_dir());

    let listed = env.run(&["list", "--json"]).stdout;
    let refs: Vec<_> = json(&listed)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["issue_ref"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refs, ["(base)", "(pm-agent)", "github.com/o/r#14", "gitlab.com/group/sub/r#42"]);

    let out = env.run(&["start", "https://github.com/o/r/wiki/14", "not an issue"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("is not an issue URL"), "{}", out.stderr);
}

/// `server add` (and again: updated), `server list` (text and JSON), `server remove`.
#[test]
fn server_add_list_remove() {
    let (env, _repo) = Env::with_fake_agent();
    let out = env.run(&["server", "list"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "no servers configured\n"), "{}", out.stderr);

    let out = env.run(&["server", "add", "gitea", "https://git.example.com"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "added server gitea\n"), "{}", out.stderr);
    let out = env.run(&["server", "add", "gitea", "https://git2.example.com"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "updated server gitea\n"), "{}", out.stderr);
    let out = env.run(&["server", "add", "work-gitlab", "https://gitlab.example.org"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let out = env.run(&["server", "list"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<_> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(lines.iter().any(|l| l.contains("gitea") && l.ends_with("https://git2.example.com")));
    assert!(lines.iter().any(|l| l.contains("work-gitlab") && l.ends_with("gitlab.example.org")));
    let listed = json(&env.run(&["server", "list", "--json"]).stdout);
    let names: Vec<_> = listed.as_array().unwrap().iter().map(|s| s["name"].clone()).collect();
    assert_eq!(names.len(), 2, "{listed}");
    assert!(names.contains(&"gitea".into()) && names.contains(&"work-gitlab".into()));

    let out = env.run(&["server", "remove", "gitea"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "removed server gitea\n"), "{}", out.stderr);
    let out = env.run(&["server", "list"]);
    assert!(!out.stdout.contains("gitea "), "{}", out.stdout);
    assert!(out.stdout.contains("work-gitlab"), "{}", out.stdout);
    let out = env.run(&["server", "get", "work-gitlab"]);
    assert_eq!(out.stdout, "https://gitlab.example.org\n");
}

/// `env rm KEY [agent]` removes a variable from that env file: it is no longer listed, and the
/// next agent run no longer gets it.
#[test]
fn env_rm_removes_a_variable() {
    let env = ready();
    for args in
        [&["env", "set", "TEAM_NAME", "blue"][..], &["env", "set", "PM_ONLY", "1", "pm-agent"]]
    {
        assert_eq!(env.run(args).code, 0);
    }
    assert_eq!(env.run(&["start", "#1", "with it"]).code, 0);
    let last_run_env = || -> String {
        let record = read(&env.tmp.path().join("record.jsonl"));
        let run = record.lines().map(json).rfind(|r| r["argv"][0] == "run").unwrap();
        run["env_names"].to_string()
    };
    assert!(last_run_env().contains("\"TEAM_NAME\""), "{}", last_run_env());

    let out = env.run(&["env", "rm", "TEAM_NAME"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "removed TEAM_NAME from default\n"));
    let out = env.run(&["env", "rm", "PM_ONLY", "pm-agent"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "removed PM_ONLY from pm-agent\n"));
    assert!(!env.run(&["env", "show"]).stdout.contains("TEAM_NAME"));
    assert!(!env.run(&["env", "show", "pm-agent"]).stdout.contains("PM_ONLY"));
    assert!(!read(&env.path("env/default.env")).contains("TEAM_NAME"));
    assert_eq!(env.run(&["continue", "#1", "without it"]).code, 0);
    assert!(!last_run_env().contains("\"TEAM_NAME\""), "{}", last_run_env());
}

/// Runs `kugetsu args...` as `env.run` does, under the usual umask 022.
fn run_with_umask_022(env: &Env, args: &[&str]) -> support::Output {
    let mut cmd = env.program("sh");
    cmd.args(["-c", "umask 022 && exec \"$0\" \"$@\""]).arg(env!("CARGO_BIN_EXE_kugetsu"));
    let out = cmd.args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    support::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
    }
}

/// README: the state directory's files are created `0600`, its directories `0700`, whatever the
/// umask. (The worktrees, the git mirrors and the agents' workspace hold files git and the agents
/// make, with their usual modes, inside `0700` directories.)
#[test]
fn state_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (env, _repo) = Env::with_fake_agent();
    // The fixture wrote these itself; kugetsu rewrites neither.
    for own in ["config", "repos.json"] {
        std::fs::set_permissions(env.path(own), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    for args in [
        &["init", "--headless"][..],
        &["start", "#1", "work"],
        &["continue", "#1", "more"],
        &["queue", "enqueue", "#2", "later"],
        &["delegate", "think"],
        &["server", "add", "gitea", "https://git.example.com"],
        &["env", "set", "TEAM", "blue", "pm-agent"],
        &["queue-daemon", "start"],
        &["notify", "list"],
    ] {
        let out = run_with_umask_022(&env, args);
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
    }
    support::wait_for("the daemon to finish the queue", || {
        let out = env.run(&["queue", "stats", "--json"]);
        json(&out.stdout)["completed"] == 2
    });
    assert_eq!(env.run(&["queue-daemon", "stop"]).code, 0);
    let out = run_with_umask_022(&env, &["start", "#3", "in the background", "--detach"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    support::wait_for("the background run", || {
        env.run(&["list", "--json"]).stdout.contains("local.test/demo/app#3")
            && json(&read(&env.path("sessions/local.test-demo-app-3.json")))["state"] == "idle"
    });

    let mut wrong = Vec::new();
    let mut walk = vec![env.state.clone()];
    while let Some(dir) = walk.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            let inside_git_or_agent = ["worktrees", "mirrors", "workspace"]
                .iter()
                .any(|d| path.starts_with(env.path(d)) && path != env.path(d));
            if inside_git_or_agent {
                continue;
            }
            if meta.is_dir() {
                if mode != 0o700 {
                    wrong.push(format!("{mode:o} {}", path.display()));
                }
                walk.push(path);
            } else if meta.is_file() && mode != 0o600 {
                wrong.push(format!("{mode:o} {}", path.display()));
            }
        }
    }
    wrong.sort();
    assert!(wrong.is_empty(), "not private:\n{}", wrong.join("\n"));
}

/// A session file names the driver that made it (`agent`) and keeps the id under the original
/// kugetsu's key. A session another driver made is refused by `continue` and `destroy` with a
/// one-line error and the setting to change (exit 1), without a call to the agent; `list` and
/// `doctor` say whose it is.
#[test]
fn a_session_of_another_driver_is_refused_with_a_hint() {
    let env = ready();
    assert_eq!(env.run(&["start", "#1", "x"]).code, 0);
    let path = env.path("sessions/local.test-demo-app-1.json");
    let file = json(&read(&path));
    assert_eq!(file["agent"], "opencode", "{file}");
    assert!(file["opencode_session_id"].as_str().unwrap().starts_with("ses_"), "{file}");
    edit_json(&path, |f| f["agent"] = "claude-code".into());
    let calls = invocations(&env).len();

    for args in [&["continue", "#1", "more"][..], &["destroy", "#1", "-y"]] {
        let out = env.run(args);
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stderr,
            "Error: local.test/demo/app#1 was made by the agent driver claude-code, but opencode \
             is configured\nHint: set KUGETSU_AGENT=claude-code to work on it (`--config \
             KUGETSU_AGENT=claude-code` for one command)\n",
            "{args:?}"
        );
    }
    assert_eq!(invocations(&env).len(), calls, "the agent was not asked");
    assert!(path.exists() && env.path("worktrees/local.test-demo-app-1").is_dir());

    let out = env.run(&["list"]);
    let row = out.stdout.lines().find(|l| l.starts_with("local.test/demo/app#1")).unwrap();
    assert!(row.contains(" idle (claude-code) "), "{row}");
    let rows = json(&env.run(&["list", "--json"]).stdout);
    let agents: Vec<&str> =
        rows.as_array().unwrap().iter().map(|r| r["agent"].as_str().unwrap()).collect();
    assert_eq!(agents, ["opencode", "opencode", "claude-code"]);
    let out = env.run(&["doctor"]);
    assert!(
        out.stdout.contains(
            "problem: local.test/demo/app#1: made by the agent driver claude-code, but opencode is configured"
        ),
        "{}",
        out.stdout
    );

    // Back to the driver that made it: a file naming none is the default driver's.
    edit_json(&path, |f| {
        f.as_object_mut().unwrap().remove("agent");
    });
    assert_eq!(env.run(&["continue", "#1", "more"]).code, 0);
    assert!(json(&read(&path)).get("agent").is_none(), "written back as it was");
}
