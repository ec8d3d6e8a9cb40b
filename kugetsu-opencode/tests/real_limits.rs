//! The real opencode 1.18.33 against a provider that refuses (429 with `Retry-After: 30`, and
//! a used-up quota) and one that never answers while opencode installs its plugin packages in
//! a fresh HOME (README of the opencode facts, §7 and §8).

use kugetsu_core::agent::{AgentDriver, AgentEvent, RunOutcome};
use kugetsu_core::pause::LimitKind;

use crate::Real;
use crate::support::real::opencode;
use crate::support::{Sink, assert_group_gone, limits, read};

/// opencode retries a refusal forever with nothing on stdout; its `--print-logs` lines tell
/// the driver, which cuts the turn long before any limit: rate limited, not hung.
#[test]
fn real_refusals_for_a_limit_end_the_turn_as_rate_limited() {
    let Some(bin) = opencode() else { return };
    let r = Real::new(bin);
    let s = r.create();
    for (prompt, kind) in
        [("please RATELIMIT", LimitKind::RateLimit), ("QUOTA now", LimitKind::Quota)]
    {
        let mut req = r.sb.run_req(&s, "base", prompt);
        // Only the refusal can end the turn before these.
        req.limits = limits(900, 600);
        let mut sink = Sink::default();
        let report = r.driver.run(&req, &mut sink).expect("run");
        let RunOutcome::RateLimited(limit) = &report.outcome else {
            panic!("{prompt}: {:?}; log:\n{}", report.outcome, read(&r.sb.log()))
        };
        assert_eq!((limit.provider.as_str(), limit.kind), ("mock", kind), "{limit:?}");
        assert!(sink.events.iter().any(|e| matches!(e, AgentEvent::ProviderLimited(_))));
        assert_group_gone(sink.pid.expect("pid"));
    }
}

/// A provider that takes the request and never answers, in a HOME where opencode has not yet
/// installed its plugin packages: the install (tens of MB of its own I/O) must not keep the
/// turn alive past the idle limit and one window. The wall-clock limit sits between that and
/// what the install alone would have made of it.
#[test]
fn real_a_stalled_provider_in_a_fresh_home_is_hung_despite_the_install() {
    let Some(bin) = opencode() else { return };
    let r = Real::new(bin);
    let s = r.create();
    // Where the install puts the packages, and npm's cache.
    let plugins = r.sb.path("config").join("opencode").join("node_modules");
    let npm_cache = r.sb.path("home").join(".npm");
    let _ = std::fs::remove_dir_all(&plugins);
    let _ = std::fs::remove_dir_all(&npm_cache);
    let mut req = r.sb.run_req(&s, "base", "HANG");
    // The sandbox's base env keeps npm offline; this turn installs, as a user's first does.
    req.env.0.insert("npm_config_offline".into(), "false".into());
    req.limits = limits(13, 8);
    let mut sink = Sink::default();
    let report = r.driver.run(&req, &mut sink).expect("run");
    let installed = dir_size(&plugins) + dir_size(&npm_cache);
    assert!(
        matches!(report.outcome, RunOutcome::Hung { .. }),
        "{:?} ({installed} bytes installed); log:\n{}",
        report.outcome,
        read(&r.sb.log())
    );
    assert!(installed > 1 << 20, "the install ran during the turn: {installed} bytes");
    assert_group_gone(sink.pid.expect("pid"));
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}
