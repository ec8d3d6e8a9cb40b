//! A session of the 2.x driver carried to another host on the fake's 2.x dialect:
//! `export_session` on one data directory, `import_session` into another, and a turn there
//! (the same on the real 2.1.2 is in `real_opencode`).

use kugetsu_core::agent::{AgentDriver, AgentError, ForkRequest, RunOutcome, SessionId};
use kugetsu_opencode::OpencodeV2Driver;
use serde_json::json;

use crate::support::{Sink, agent_env};
use crate::support_fake::Fake;

fn driver(f: &Fake) -> OpencodeV2Driver {
    let mut env = f.base_env();
    env.push(("FAKE_OPENCODE_VERSION".into(), "2.1.2".into()));
    OpencodeV2Driver::new(f.options().base_env(env).export_cache(f.sb.path("cache")))
}

#[test]
fn a_2x_session_moves_to_another_data_dir_with_its_history_and_no_secret() {
    let here = Fake::new();
    let d = driver(&here);
    here.script(json!([{"mode": "ok", "text": "primed"}]));
    let report = d
        .create_session(&here.sb.create_req("base", "kugetsu base", "prime"), &mut Vec::new())
        .expect("create");
    assert_eq!(report.outcome, RunOutcome::Completed);
    let session = report.session;
    here.script(json!([{"mode": "ok", "text": "first answer"}]));
    let mut run = here.sb.run_req(&session, "base", "turn one, token s3cr3t-t0ken-value");
    run.env = agent_env(&[("MY_API_KEY", "s3cr3t-t0ken-value")]);
    assert_eq!(d.run(&run, &mut Sink::default()).expect("run").outcome, RunOutcome::Completed);

    let env = agent_env(&[("MY_API_KEY", "s3cr3t-t0ken-value")]);
    let export = d.export_session(&session, &env).expect("export");
    assert!(export.contains("first answer") && export.contains("prime"), "{export}");
    assert!(!export.contains("s3cr3t-t0ken-value"), "the secret travels masked");

    let there = Fake::new();
    let d2 = driver(&there);
    std::fs::create_dir_all(there.sb.path("moved")).expect("dir");
    let req = ForkRequest {
        base: session.clone(),
        dir: there.sb.path("moved"),
        title: "moved".into(),
        env: agent_env(&[]),
    };
    let moved = d2.import_session(&export, &req).expect("import");
    assert_ne!(moved, session, "a fresh id");
    let info = d2.session_info(&moved).expect("info").expect("imported");
    assert_eq!((info.directory, info.title.as_str()), (there.sb.path("moved"), "moved"));
    assert!(d2.repair_session(&moved).expect("repair").is_none(), "the deny rules came along");
    // Twice: another session, not a silent no-op (2.x refuses an id it has).
    let twice = d2.import_session(&export, &req).expect("import again");
    assert_ne!(twice, moved);

    there.script(json!([{"mode": "tool", "path": "after.txt"}]));
    let run = there.sb.run_req(&moved, "moved", "WRITEFILE:after.txt");
    let report = d2.run(&run, &mut Sink::default()).expect("run");
    assert_eq!(report.outcome, RunOutcome::Completed);
    assert!(there.sb.path("moved").join("after.txt").exists(), "ran in the import's directory");
    let after = d2.export_session(&moved, &agent_env(&[])).expect("export");
    assert!(after.contains("first answer") && after.contains("WRITEFILE:after.txt"), "{after}");

    // A session the store does not know, and exports that are not one (1.x's has no location).
    let gone = SessionId::new("ses_ffffffffffffAAAAAAAAAAAAAA").expect("id");
    assert!(matches!(d.export_session(&gone, &env), Err(AgentError::SessionNotFound { .. })));
    assert!(matches!(d2.import_session("not json", &req), Err(AgentError::Protocol { .. })));
    let v1 = json!({"info": {"id": "ses_ffffffffffffAAAAAAAAAAAAAA", "directory": "/x"},
                    "messages": []});
    assert!(d2.import_session(&v1.to_string(), &req).is_err());
    // Another agent's export (the documents of other drivers name their agent).
    let other = json!({"agent": "another", "version": 1, "entries": []}).to_string();
    match d2.import_session(&other, &req) {
        Err(AgentError::Protocol { detail, .. }) => {
            assert!(detail.contains("\"another\""), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

/// A driver on a serve of its own (no daemon's) forks by importing the base's export into the
/// worktree: there with its title, the rules and the base's history, and no `fork` lineage,
/// which only the serve's fork records. When the serve refuses the import, its own fork and
/// move make the fork instead.
#[test]
fn a_driver_on_its_own_serve_forks_by_import_else_by_the_serves_fork() {
    for refuse_import in [false, true] {
        let f = Fake::new();
        let d = if refuse_import {
            let mut env = f.base_env();
            env.push(("FAKE_OPENCODE_VERSION".into(), "2.1.2".into()));
            env.push(("FAKE_OPENCODE_FAIL".into(), "serve-import".into()));
            OpencodeV2Driver::new(f.options().base_env(env).export_cache(f.sb.path("cache")))
        } else {
            driver(&f)
        };
        f.script(json!([{"mode": "ok", "text": "primed"}]));
        let base = d
            .create_session(&f.sb.create_req("base", "kugetsu base", "prime"), &mut Vec::new())
            .expect("create")
            .session;
        assert!(d.own_serve().is_some(), "the driver started its serve");
        let fork = d
            .fork_session(&ForkRequest {
                base: base.clone(),
                dir: f.sb.path("tree"),
                title: "issue 14".into(),
                env: agent_env(&[]),
            })
            .expect("fork");
        let info = d.session_info(&fork).expect("info").expect("the fork exists");
        assert_eq!((info.directory, info.title.as_str()), (f.sb.path("tree"), "issue 14"));
        assert!(d.repair_session(&fork).expect("repair").is_none(), "with the deny rules");
        let export: serde_json::Value =
            serde_json::from_str(&d.export_session(&fork, &agent_env(&[])).expect("export"))
                .expect("json");
        assert_eq!(export["info"].get("fork").is_some(), refuse_import, "{export}");
        assert!(export["messages"].to_string().contains("prime"), "the base's history");
        f.script(json!([{"mode": "tool", "path": "forked.txt"}]));
        let run = f.sb.run_req(&fork, "tree", "WRITEFILE:forked.txt");
        assert_eq!(d.run(&run, &mut Sink::default()).expect("run").outcome, RunOutcome::Completed);
        assert!(f.sb.path("tree").join("forked.txt").exists(), "ran in the worktree");
        let listed = d.list_sessions(&f.sb.path("tree")).expect("list");
        assert_eq!(listed.len(), 1, "one fork, nothing half-made: {listed:?}");
    }
}
