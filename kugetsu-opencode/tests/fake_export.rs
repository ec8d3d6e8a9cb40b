//! A session carried to another host: `export_session` on one session store, `import_session`
//! into another (a host whose state is gone has only what was exported), history and rules
//! kept, the new session in the new directory, and secrets masked in what travels.

use crate::support;
use crate::support_fake::Fake;

use kugetsu_core::agent::{AgentDriver, AgentError, ForkRequest, RunOutcome, SessionId};
use serde_json::json;
use support::{Sink, agent_env};

#[test]
fn a_session_moves_to_another_store_with_its_history_and_no_secret() {
    let here = Fake::new();
    let d = here.driver();
    let base = here.create_base(&d);
    let session = here.fork(&d, &base, "tree");
    here.script(json!([{"mode": "ok", "text": "first answer"}]));
    let mut run = here.sb.run_req(&session, "tree", "turn one, token s3cr3t-t0ken-value");
    run.env = agent_env(&[("MY_API_KEY", "s3cr3t-t0ken-value")]);
    assert_eq!(d.run(&run, &mut Sink::default()).expect("run").outcome, RunOutcome::Completed);

    let env = agent_env(&[("MY_API_KEY", "s3cr3t-t0ken-value")]);
    let export = d.export_session(&session, &env).expect("export");
    assert!(export.contains("first answer"), "{export}");
    assert!(!export.contains("s3cr3t-t0ken-value"), "the secret travels masked");

    let there = Fake::new();
    let d2 = there.driver();
    std::fs::create_dir_all(there.sb.path("moved")).expect("dir");
    let req = ForkRequest {
        base: session.clone(),
        dir: there.sb.path("moved"),
        title: "moved".into(),
        env: agent_env(&[]),
    };
    let moved = d2.import_session(&export, &req).expect("import");
    assert_ne!(moved, session, "a fresh id");
    let doc = there.export(&moved);
    assert_eq!(doc["info"]["directory"], there.sb.path("moved").to_string_lossy().as_ref());
    let texts = doc.to_string();
    assert!(texts.contains("prime") && texts.contains("first answer"), "{texts}");
    assert!(!d2.fix_permissions(&moved).expect("fix"), "the deny rules came along");

    // A session the store does not know, and an export that is not one.
    let gone = SessionId::new("ses_ffffffffffffAAAAAAAAAAAAAA").expect("id");
    assert!(matches!(d.export_session(&gone, &env), Err(AgentError::SessionNotFound { .. })));
    assert!(matches!(d2.import_session("not json", &req), Err(AgentError::Protocol { .. })));
    // Another agent's export (the documents of other drivers name their agent).
    let other = json!({"agent": "another", "version": 1, "entries": []}).to_string();
    match d2.import_session(&other, &req) {
        Err(AgentError::Protocol { detail, .. }) => {
            assert!(detail.contains("\"another\""), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}
