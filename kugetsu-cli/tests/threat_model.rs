//! The promises of `docs/threat-model.md` that no other suite holds, one test each (the
//! dashboard's are in `dashboard.rs` and `browser.rs`, the SSH script's in `remote_ssh.rs`).

#![allow(clippy::unwrap_used)]

use crate::support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use support::Env;

fn is_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// A directory another local user could have prepared for the demo, with the `bin/opencode`
/// the demo would run planted in it once the demo made `bin/`: refused before anything runs.
fn refused(env: &Env, dir: &Path, why: &str) {
    let out = env.run(&["demo", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains(why), "{why:?} missing in {}", out.stderr);
    assert!(!out.stdout.contains("[1]"), "no step ran: {}", out.stdout);
    assert!(!dir.join("bin").exists() && !dir.join("state").exists(), "nothing was made");
}

/// The demo runs the `bin/opencode` of its scratch directory: a directory in the shared temp
/// dir whose name another user can guess (and make first) would let them run anything as the
/// demo's user. So the default is a fresh, random, private directory made by a call that fails
/// if the name exists, and `--dir` takes only a new directory or an empty one of the user's
/// own that others cannot write to.
#[test]
fn the_demo_works_only_in_a_directory_nobody_else_can_have_prepared() {
    let mut env = Env::new();
    let shared = env.tmp.path().join("shared-tmp");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, PermissionsExt::from_mode(0o1777)).unwrap();
    env.set("TMPDIR", shared.to_str().unwrap());

    let writable = shared.join("writable");
    std::fs::create_dir(&writable).unwrap();
    std::fs::set_permissions(&writable, PermissionsExt::from_mode(0o777)).unwrap();
    refused(&env, &writable, "lets others write to it");
    let link = shared.join("link");
    let mine = env.tmp.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::os::unix::fs::symlink(&mine, &link).unwrap();
    refused(&env, &link, "is a symbolic link");
    if is_root() {
        let theirs = shared.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(&theirs, PermissionsExt::from_mode(0o755)).unwrap();
        refused(&env, &theirs, "owned by uid 65534");
    }

    let out = env.run(&["demo", "--keep"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let made = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("kugetsu demo: the whole flow in "))
        .map(std::path::PathBuf::from)
        .unwrap();
    assert_eq!(made.parent(), Some(shared.as_path()), "in the temp dir it was given");
    let name = made.file_name().unwrap().to_str().unwrap();
    let rest = name.strip_prefix("kugetsu-demo-").unwrap();
    assert!(!rest.contains(&std::process::id().to_string()) && !rest.contains('-'), "{name}");
    let meta = std::fs::symlink_metadata(&made).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o7777, 0o700, "private");
    assert_eq!(meta.uid(), std::fs::metadata("/proc/self").unwrap().uid());
    std::fs::remove_dir_all(&made).unwrap();
}

/// A secret of the env files holding what JSON escapes (a quote, a backslash, a tab), echoed
/// by the agent in its text and in an error: masked in everything `start` and `continue`
/// print (also with `--json`), in the run logs, notifications and every file of the state
/// directory but the env files. (opencode sends it JSON-escaped: masking the raw line missed
/// it, then printed the decoded text.)
#[test]
fn an_echoed_secret_with_quotes_backslashes_and_tabs_leaks_nowhere() {
    let env = support::ready();
    let secret = "ab\"cd\\ef\tSECRET9";
    assert_eq!(env.run(&["env", "set", "API_TOKEN", secret]).code, 0);
    let script = |turn: serde_json::Value| {
        let doc = serde_json::json!({"turns": [turn], "default": turn});
        std::fs::write(env.tmp.path().join("script.json"), doc.to_string()).unwrap();
    };
    script(serde_json::json!({"mode": "tool", "path": "WORK.md", "content": "x\n",
        "text": format!("say {secret} twice: {secret}")}));
    let mut outputs = Vec::new();
    let start = env.run(&["start", "#7", "echo it"]);
    assert_eq!(start.code, 0, "{}{}", start.stdout, start.stderr);
    assert!(start.stderr.contains("agent: say ******** twice: ********"), "{}", start.stderr);
    outputs.push(("start", start.stdout + &start.stderr));
    script(serde_json::json!({"mode": "error", "message": format!("bad key {secret}")}));
    let failed = env.run(&["--json", "continue", "#7", "again"]);
    assert_ne!(failed.code, 0, "{}{}", failed.stdout, failed.stderr);
    outputs.push(("--json continue", failed.stdout + &failed.stderr));
    for args in [
        &["logs", "50"][..],
        &["notify", "list", "--all"],
        &["--json", "notify", "list", "--all"],
        &["--json", "list"],
        &["--json", "status"],
    ] {
        let out = env.run(args);
        outputs.push((args[0], out.stdout + &out.stderr));
    }
    let json_escaped = serde_json::to_string(secret).unwrap();
    let json_escaped = json_escaped.trim_matches('"');
    for (what, text) in &outputs {
        for form in [secret, json_escaped, "SECRET9"] {
            assert!(!text.contains(form), "`{what}` shows {form:?}:\n{text}");
        }
    }
    let logs = &outputs[2].1;
    assert!(logs.contains("say ******** twice: ********"), "the agent's words are kept: {logs}");
    for path in env.all_files() {
        if path.is_file() && path.starts_with(&env.state) && !path.starts_with(env.path("env")) {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            assert!(!text.contains("SECRET9"), "{} holds the secret:\n{text}", path.display());
        }
    }
}

/// The dashboard stays on loopback unless told otherwise: an address beyond it is refused
/// before anything listens, and with `--allow-remote` it warns that the page is plain HTTP.
#[test]
fn the_dashboard_refuses_an_address_beyond_loopback_unless_told() {
    let env = Env::new();
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let out = env.run(&["dashboard", "--listen", listen]);
        assert_eq!(out.code, 2, "{listen}: {}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains("is not a loopback address"), "{}", out.stderr);
        assert!(out.stderr.contains("--allow-remote"), "{}", out.stderr);
        assert!(!out.stdout.contains("token="), "no URL was printed");
    }
}
