//! A session carried to another host against the fake: exported from one `HOME`, imported into
//! another `HOME` and directory, where its turns resume it; bad exports refused whole.

use std::os::unix::fs::PermissionsExt;

use kugetsu_core::agent::{AgentDriver, AgentEnv, AgentError, ForkRequest, RunOutcome, RunRequest};
use serde_json::{Value, json};

use crate::fake_driver::{World, limits, log};

const SECRET: &str = "tok-fake-transfer-5c1e9a77d2";

fn env() -> AgentEnv {
    AgentEnv([("SERVICE_TOKEN".to_owned(), SECRET.to_owned())].into())
}

fn import_req(w: &World, dir: &str) -> ForkRequest {
    let base = kugetsu_core::agent::SessionId::new("unused").expect("id");
    ForkRequest { base, dir: w.dir(dir), title: "moved issue".into(), env: AgentEnv::default() }
}

/// Every file under `dir`, for "nothing was written".
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(files(&p)) } else { out.push(p) }
    }
    out.sort();
    out
}

#[test]
fn a_session_exported_from_one_home_carries_on_in_another() {
    let (a, b) = (World::new(), World::new());
    let base = a.create("base").session;
    let req = RunRequest {
        session: base.clone(),
        dir: a.dir("base"),
        prompt: format!("remember PELICAN-7 and the token {SECRET}"),
        env: env(),
        limits: limits(),
        log_path: a.dir("run.log"),
    };
    a.driver.run(&req, &mut Vec::new()).expect("second turn");

    let export = a.driver.export_session(&base, &env()).expect("export");
    assert!(export.contains("PELICAN-7"), "the history is in the export");
    assert!(!export.contains(SECRET), "a secret of the env reached the export");
    assert!(!export.contains("sk-ant-secret-value-1234"), "the driver's key reached the export");

    let moved = b.driver.import_session(&export, &import_req(&b, "tree")).expect("import");
    assert_ne!(moved, base);
    let path = b.transcript(&moved).expect("the transcript is where Claude Code finds it");
    assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
    let info = b.driver.session_info(&moved).expect("info").expect("known");
    assert_eq!((info.title.as_str(), info.directory), ("moved issue", b.dir("tree")));

    b.script(json!([{"mode": "bash", "command": "pwd > where.txt"}]));
    let report = b.run(&moved, "tree", "where are we").expect("a turn after the move");
    assert_eq!(report.outcome, RunOutcome::Completed, "{}", log(&b));
    let where_ = std::fs::read_to_string(b.dir("tree/where.txt")).expect("the tool ran there");
    assert_eq!(where_.trim(), b.dir("tree").display().to_string());
    // Resumed (not started anew), on a history naming the new session and directory only.
    assert!(log(&b).contains(&format!("--resume {moved}")), "{}", log(&b));
    let text = std::fs::read_to_string(&path).expect("transcript");
    assert!(text.contains("PELICAN-7") && text.contains("where are we"), "{text}");
    assert!(!text.contains(base.as_str()), "{text}");
    for entry in text.lines().map(|l| serde_json::from_str::<Value>(l).expect("entry")) {
        assert_eq!(entry["cwd"], json!(b.dir("tree")), "{entry}");
    }
    // The running total came along: the turn is charged its own cost.
    assert!(log(&b).trim_end().ends_with("completed (tokens 12052, $0.0124)"), "{}", log(&b));

    let again = b.driver.import_session(&export, &import_req(&b, "tree")).expect("again");
    assert_ne!(again, moved, "a second import is a second session");
    assert_eq!(b.driver.list_sessions(&b.dir("tree")).expect("list").len(), 2);
}

#[test]
fn a_bad_export_is_refused_and_writes_nothing() {
    let (a, b) = (World::new(), World::new());
    let base = a.create("base").session;
    let good: Value =
        serde_json::from_str(&a.driver.export_session(&base, &env()).expect("export")).unwrap();
    let mut newer = good.clone();
    newer["version"] = json!(99);
    let mut other = good.clone();
    other["agent"] = json!("opencode");
    let opencode = json!({"info": {"id": "ses_daf577df7ffemleIT04EBpY18O"}, "messages": []});
    let cases = [
        ("not json".to_owned(), "not JSON"),
        (opencode.to_string(), "not a Claude Code session export"),
        (other.to_string(), "of agent `opencode`"),
        (newer.to_string(), "version is 99"),
        (good.to_string()[..good.to_string().len() / 2].to_owned(), "not JSON"),
    ];
    for (text, said) in cases {
        match b.driver.import_session(&text, &import_req(&b, "tree")) {
            Err(AgentError::Protocol { detail, .. }) => assert!(detail.contains(said), "{detail}"),
            other => panic!("{said}: {other:?}"),
        }
    }
    let missing = b.driver.import_session(&good.to_string(), &import_req(&b, "nowhere"));
    assert!(matches!(missing, Err(AgentError::Io { .. })), "{missing:?}");
    assert_eq!(files(&b.dir("home")), Vec::<std::path::PathBuf>::new());
    assert_eq!(files(&b.dir("state")), Vec::<std::path::PathBuf>::new());

    let unknown =
        kugetsu_core::agent::SessionId::new("5b1f0e36-9a4c-4d2e-8f10-6c2b7e0d9a11").unwrap();
    assert!(matches!(
        a.driver.export_session(&unknown, &AgentEnv::default()),
        Err(AgentError::SessionNotFound { .. })
    ));
}

#[test]
fn a_fork_not_yet_run_moves_with_its_bases_history() {
    let (a, b) = (World::new(), World::new());
    let base = a.create("base").session;
    let req = ForkRequest {
        base: base.clone(),
        dir: a.dir("tree"),
        title: "issue 7".into(),
        env: AgentEnv::default(),
    };
    let fork = a.driver.fork_session(&req).expect("fork");
    let export = a.driver.export_session(&fork, &AgentEnv::default()).expect("export a fork");
    let moved = b.driver.import_session(&export, &import_req(&b, "tree")).expect("import");
    let text = std::fs::read_to_string(b.transcript(&moved).expect("made")).expect("read");
    assert!(text.contains("prime me"), "{text}");
    assert!(!text.contains(base.as_str()), "the base's id is left in the history:\n{text}");
}
