//! The driver conformance suite: what every `AgentDriver` must do, checked through the trait
//! alone, against every driver and its fake.
//!
//! A [`World`] is one driver in a fresh, hermetic world of its own. Against the fakes the
//! worlds are made from the CLI's driver table (`fakes.rs`, in `runner`): a driver with a
//! bundled fake is checked with nothing added here. Against a real agent a subject (a function
//! that makes a world, or says why it cannot and returns `None`: the real agent is missing)
//! knows how to install that agent and give it a mock model, and [`suite!`] turns it into one
//! test per check in its own target. The checks name no agent.

// Each test target uses the parts its own subjects need only.
#![allow(dead_code)]

pub mod claude;
pub mod opencode;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kugetsu_core::agent::{
    AgentDriver, AgentEnv, AgentError, AgentEvent, CreateSessionRequest, EventSink, ForkRequest,
    RunLimits, RunOutcome, RunReport, RunRequest, SessionId,
};
use kugetsu_core::pause::LimitKind;

/// One driver in a fresh world of its own: directories, the agent's store, a log.
pub trait World {
    /// The driver under test.
    fn driver(&self) -> &dyn AgentDriver;
    /// The directory `name` of this world (`base` and `tree` exist, and nothing is in them).
    fn dir(&self, name: &str) -> PathBuf;
    /// The log every run writes.
    fn log(&self) -> PathBuf;
    /// Gets the agent ready to write `file` in the directory it works in, with a tool call, on
    /// its next turn; returns the prompt that asks for it.
    fn next_turn_writes(&self, file: &str) -> String;
    /// Gets the agent's provider ready to refuse the next turn for a rate limit (with `quota`:
    /// a used-up quota); returns the prompt that meets the refusal.
    fn next_turn_refused(&self, quota: bool) -> String;
    /// An id in this agent's format that no session has.
    fn unknown_id(&self) -> SessionId;
}

/// One test per check for the subject `$make` (a `fn() -> Option<impl World>`), in module
/// `$name`.
// Used by the real-agent targets only (`runner` finds the fakes through the table).
#[allow(unused_macros)]
macro_rules! suite {
    ($name:ident, $make:path) => {
        mod $name {
            use crate::conformance as check;

            #[test]
            fn a_session_is_created_forked_run_and_deleted() {
                if let Some(world) = $make() {
                    check::a_session_is_created_forked_run_and_deleted(&world);
                }
            }

            #[test]
            fn a_providers_refusal_ends_the_turn_rate_limited() {
                if let Some(world) = $make() {
                    check::a_providers_refusal_ends_the_turn_rate_limited(&world);
                }
            }

            #[test]
            fn an_unknown_session_is_not_found() {
                if let Some(world) = $make() {
                    check::an_unknown_session_is_not_found(&world);
                }
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use suite;

/// Limits no check should reach: generous, since the machines running the suite are shared.
fn limits() -> RunLimits {
    RunLimits {
        timeout: Duration::from_secs(300),
        idle_timeout: Duration::from_secs(120),
        spend_cap: None,
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// What a run reported: the agent's pid and every event.
#[derive(Default)]
struct Events {
    pid: Option<u32>,
    events: Vec<AgentEvent>,
}

impl EventSink for Events {
    fn spawned(&mut self, pid: u32) {
        self.pid = Some(pid);
    }
    fn event(&mut self, event: &AgentEvent) {
        self.events.push(event.clone());
    }
}

fn run(w: &dyn World, session: &SessionId, dir: &str, file: &str) -> Events {
    let mut events = Events::default();
    let req = RunRequest {
        session: session.clone(),
        dir: w.dir(dir),
        prompt: w.next_turn_writes(file),
        env: AgentEnv::default(),
        limits: limits(),
        log_path: w.log(),
    };
    let report = w.driver().run(&req, &mut events).expect("run");
    assert_eq!(report.outcome, RunOutcome::Completed, "log:\n{}", read(&w.log()));
    assert_eq!(&report.session, session, "a run goes on in the session it was given");
    // What the turn used, from the agent's own reports: the model's tokens, and a cost (what
    // the agent priced them at; 0 for a model it has no price of).
    let usage = report.usage.expect("the turn's usage is reported");
    assert!(usage.tokens.is_some_and(|t| t.input > 0 && t.output > 0), "{usage:?}");
    assert!(usage.cost_usd.is_some(), "{usage:?}");
    events
}

/// A base session made in `base` by a turn that writes `primed.txt` there.
fn prime(w: &dyn World) -> RunReport {
    let create = CreateSessionRequest {
        title: "kugetsu base".into(),
        prompt: w.next_turn_writes("primed.txt"),
        dir: w.dir("base"),
        env: AgentEnv::default(),
        interactive: false,
        limits: limits(),
        log_path: w.log(),
    };
    w.driver().create_session(&create, &mut Vec::new()).expect("create")
}

/// The whole life of an issue's session: a base primed in its directory, forked into another
/// directory (a worktree), where the fork's turns run and its tools work, then deleted.
pub fn a_session_is_created_forked_run_and_deleted(w: &dyn World) {
    let d = w.driver();
    let report = prime(w);
    assert_eq!(report.outcome, RunOutcome::Completed, "log:\n{}", read(&w.log()));
    let base = report.session;
    assert!(w.dir("base").join("primed.txt").exists(), "the priming turn ran in the base's dir");
    assert!(d.session_exists(&base).expect("exists"));
    let listed = d.list_sessions(&w.dir("base")).expect("list");
    assert!(listed.iter().any(|s| s.id == base && s.title == "kugetsu base"), "{listed:?}");

    let fork = d
        .fork_session(&ForkRequest {
            base: base.clone(),
            dir: w.dir("tree"),
            title: "issue 14".into(),
            env: AgentEnv::default(),
        })
        .expect("fork");
    assert_ne!(fork, base);
    let listed = d.list_sessions(&w.dir("tree")).expect("list");
    let entry = listed.iter().find(|s| s.id == fork).expect("the fork is listed in its dir");
    assert_eq!(entry.title, "issue 14");
    assert_eq!(entry.directory, w.dir("tree"));

    let events = run(w, &fork, "tree", "hello.txt");
    assert!(events.pid.is_some(), "the driver reports the agent's pid");
    assert!(
        events.events.iter().any(|e| matches!(e, AgentEvent::ToolUse { .. })),
        "the tool call is reported: {:?}",
        events.events
    );
    assert!(w.dir("tree").join("hello.txt").exists(), "the fork works in its own directory");
    assert!(!w.dir("base").join("hello.txt").exists(), "and not in the base's");
    // The same session goes on.
    run(w, &fork, "tree", "again.txt");
    assert!(w.dir("tree").join("again.txt").exists());

    d.delete_session(&fork).expect("delete");
    assert!(!d.session_exists(&fork).expect("exists"));
    assert!(d.session_exists(&base).expect("exists"), "deleting a fork keeps its base");
}

/// A session the agent does not know: it does not exist, has no info, and deleting it is
/// [`AgentError::SessionNotFound`] (which `destroy` relies on to tell "already gone").
pub fn an_unknown_session_is_not_found(w: &dyn World) {
    let d = w.driver();
    let id = w.unknown_id();
    assert!(!d.session_exists(&id).expect("exists"));
    assert!(matches!(d.session_info(&id), Ok(None)));
    match d.delete_session(&id) {
        Err(AgentError::SessionNotFound { id: missing }) => assert_eq!(missing, id),
        other => panic!("deleting an unknown session: {other:?}"),
    }
}

/// A provider refusing for a limit: the driver reports a rate limit as it happens, stops the
/// turn and ends it `rate_limited` (not failed, not hung), for the provider it says it uses when it
/// knows one; a rate limit may carry a reset time, a used-up quota has none.
pub fn a_providers_refusal_ends_the_turn_rate_limited(w: &dyn World) {
    let d = w.driver();
    let base = prime(w).session;
    for (quota, kind) in [(false, LimitKind::RateLimit), (true, LimitKind::Quota)] {
        let mut events = Events::default();
        let req = RunRequest {
            session: base.clone(),
            dir: w.dir("base"),
            prompt: w.next_turn_refused(quota),
            env: AgentEnv::default(),
            limits: limits(),
            log_path: w.log(),
        };
        let report = d.run(&req, &mut events).expect("run");
        let RunOutcome::RateLimited(limit) = &report.outcome else {
            panic!("{kind:?}: {:?}\nlog:\n{}", report.outcome, read(&w.log()))
        };
        assert_eq!(limit.kind, kind, "{limit:?}");
        if let Some(provider) = d.provider() {
            assert_eq!(limit.provider, provider, "the refusal names the provider it said");
        }
        if kind == LimitKind::Quota {
            assert_eq!(limit.until, None, "a used-up quota has no reset time");
        }
        // A rate limit is retried while the turn runs, so it is told as it happens (a used-up
        // quota may simply end the turn: opencode 2 fails it at once).
        if kind == LimitKind::RateLimit {
            assert!(
                events
                    .events
                    .iter()
                    .any(|e| matches!(e, AgentEvent::ProviderLimited(l) if l == limit)),
                "the refusal is reported as it happens: {:?}",
                events.events
            );
        }
    }
}
