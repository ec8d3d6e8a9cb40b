//! The `kugetsu` command line against the REAL opencode 1.18.33 (from the npm registry) and a
//! mock model on 127.0.0.1: init --headless, start whose tool call writes a file inside the
//! issue's worktree, continue in the same session, and a rejected permission reported as
//! blocked. Without npm or the registry it prints why and passes as skipped
//! (`KUGETSU_REAL_OPENCODE=1` makes that a failure).

// Setup helpers unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

mod support;

#[path = "../../kugetsu-opencode/tests/support/mock_model.rs"]
#[allow(dead_code, missing_docs)]
mod mock_model;
#[path = "../../kugetsu-opencode/tests/support/real.rs"]
mod real;

use support::Env;

#[test]
fn the_cli_drives_the_real_opencode() {
    let Some(bin) = real::opencode() else { return };
    let model = mock_model::MockModel::start();
    let mut env = Env::new();
    for d in ["data", "config", "cache", "xstate"] {
        std::fs::create_dir_all(env.tmp.path().join(d)).unwrap();
    }
    let p = |d: &str| env.tmp.path().join(d).display().to_string();
    let vars = [
        ("XDG_DATA_HOME", p("data")),
        ("XDG_CONFIG_HOME", p("config")),
        ("XDG_CACHE_HOME", p("cache")),
        ("XDG_STATE_HOME", p("xstate")),
        ("OPENCODE_DISABLE_AUTOUPDATE", "1".into()),
        ("OPENCODE_DISABLE_MODELS_FETCH", "1".into()),
        ("OPENCODE_DISABLE_SHARE", "1".into()),
        ("OPENCODE_CONFIG_CONTENT", model.opencode_config()),
    ];
    for (k, v) in &vars {
        env.set(k, v);
    }
    support::sample_repo(&env, &bin);
    std::fs::write(
        env.path("config"),
        format!(
            "KUGETSU_OPENCODE_BIN={}\nKUGETSU_DEFAULT_REPO=local.test/demo/app\nKUGETSU_AGENT_TIMEOUT_MINUTES=5\nKUGETSU_AGENT_IDLE_MINUTES=2\n",
            bin.display()
        ),
    )
    .unwrap();

    let out = env.run(&["init", "--headless"]);
    assert_eq!(out.code, 0, "init: {}{}", out.stdout, out.stderr);
    assert_eq!(env.run(&["status"]).stdout, "ok\n");

    let out = env.run(&["start", "#1", "WRITEFILE:proof.txt"]);
    assert_eq!(out.code, 0, "start: {}{}", out.stdout, out.stderr);
    let wt = env.path("worktrees/local.test-demo-app-1");
    assert_eq!(
        std::fs::read_to_string(wt.join("proof.txt")).unwrap().trim(),
        "written by the mock",
        "the agent's tool call wrote inside the issue's worktree"
    );
    assert!(!env.path("workspace/proof.txt").exists(), "and not in the base session's directory");
    let session = |env: &Env| -> String {
        let list: serde_json::Value =
            serde_json::from_str(&env.run(&["list", "--json"]).stdout).unwrap();
        list.as_array().unwrap()[2]["session_id"].as_str().unwrap().to_string()
    };
    let first = session(&env);

    let out = env.run(&["continue", "#1", "WRITEFILE:second.txt"]);
    assert_eq!(out.code, 0, "continue: {}{}", out.stdout, out.stderr);
    assert!(wt.join("second.txt").exists());
    assert_eq!(session(&env), first, "continue stays in the same session");

    let out = env.run(&["continue", "#1", "READETC"]);
    assert_eq!(out.code, 5, "a rejected permission is not a success: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("blocked"), "{}", out.stdout);
    let file = std::fs::read_to_string(env.path("sessions/local.test-demo-app-1.json")).unwrap();
    assert!(file.contains("\"state\": \"blocked\""), "{file}");
}
