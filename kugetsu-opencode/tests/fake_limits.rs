//! A provider refusing for a limit, and a provider that never answers while opencode busies
//! itself, through the fake (which acts out what 1.18.33 does: see the `limited` and `install`
//! modes of the fake's documentation).

use crate::support;
use crate::support_fake::Fake;

use kugetsu_core::agent::{AgentDriver, AgentEvent, RunOutcome};
use kugetsu_core::pause::LimitKind;
use serde_json::json;
use support::Sink;
use support::{assert_group_gone, limits};

/// A 429 makes opencode retry forever with nothing on stdout; the `stream error` lines of its
/// logs tell the driver, which cuts the turn: rate limited, not hung, not failed.
#[test]
fn a_refusal_for_a_limit_cuts_the_turn_as_rate_limited() {
    let f = Fake::new();
    let d = f.driver();
    let s = f.create_base(&d);
    f.script(json!([
        {"mode": "limited", "provider": "mock", "message": "Rate limit reached. Please try again in 20s.", "retry_ms": 200},
        {"mode": "limited", "provider": "mock", "message": "You exceeded your current quota, please check your plan and billing details.", "retry_ms": 200},
    ]));
    for kind in [LimitKind::RateLimit, LimitKind::Quota] {
        let mut req = f.sb.run_req(&s, "base", "go");
        // Long limits: only the refusal can end the turn before them.
        req.limits = limits(600, 300);
        let mut sink = Sink::default();
        let r = d.run(&req, &mut sink).expect("run");
        let RunOutcome::RateLimited(limit) = &r.outcome else {
            panic!("{kind:?}: {:?}", r.outcome)
        };
        assert_eq!((limit.provider.as_str(), limit.kind), ("mock", kind));
        assert_eq!(limit.until.is_some(), kind == LimitKind::RateLimit, "the reset in its words");
        assert!(
            sink.events.iter().any(|e| matches!(e, AgentEvent::ProviderLimited(l) if l == limit)),
            "{:?}",
            sink.events
        );
        assert_group_gone(sink.pid.expect("pid"));
    }
}

/// A provider that never answers while opencode installs its plugin packages (its own I/O,
/// megabytes a second): hung at the idle limit and one window, not kept alive to the
/// wall-clock limit.
#[test]
fn the_agents_own_install_does_not_keep_a_stalled_turn_alive() {
    let f = Fake::new();
    let d = f.driver();
    let s = f.create_base(&d);
    f.script(json!([{"mode": "install"}]));
    let mut req = f.sb.run_req(&s, "base", "go");
    req.limits = limits(40, 2);
    let mut sink = Sink::default();
    let r = d.run(&req, &mut sink).expect("run");
    assert!(matches!(r.outcome, RunOutcome::Hung { .. }), "{:?}", r.outcome);
    assert_group_gone(sink.pid.expect("pid"));
}

/// The same refusals through the fake's 2.x dialect and the 2.x driver: a 429 retried (the
/// retry on the session), a used-up quota failing the turn at once.
#[test]
fn a_refusal_for_a_limit_ends_a_2x_turn_as_rate_limited() {
    let f = Fake::new();
    let mut env = f.base_env();
    env.push(("FAKE_OPENCODE_VERSION".into(), "2.1.2".into()));
    let options = f
        .options()
        .base_env(env)
        .helper_dir(f.sb.path("home"))
        .export_cache(f.sb.path("home").join("kugetsu-cache"));
    let d = kugetsu_opencode::OpencodeV2Driver::new(options);
    let created = d
        .create_session(
            &f.sb.create_req("base", "kugetsu base", "you are the base"),
            &mut Sink::default(),
        )
        .expect("create");
    assert_eq!(created.outcome, RunOutcome::Completed);
    f.script(json!([
        {"mode": "limited", "provider": "mock", "message": "Rate limit reached for requests", "retry_ms": 200},
        {"mode": "limited", "provider": "mock", "message": "You exceeded your current quota", "retry_ms": 200},
    ]));
    for kind in [LimitKind::RateLimit, LimitKind::Quota] {
        let mut req = f.sb.run_req(&created.session, "base", "go");
        req.limits = limits(600, 300);
        let mut sink = Sink::default();
        let r = d.run(&req, &mut sink).expect("run");
        let RunOutcome::RateLimited(limit) = &r.outcome else {
            panic!("{kind:?}: {:?}", r.outcome)
        };
        assert_eq!((limit.provider.as_str(), limit.kind), ("mock", kind));
        assert_eq!(limit.until.is_some(), kind == LimitKind::RateLimit, "the retry's time");
    }
}
