//! Helpers shared by kugetsu-core's integration tests: a seeded random source for the crash,
//! corruption and hostile-ref tests, and an initialized orchestration over the in-memory fakes.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use kugetsu_core::StateDir;
use kugetsu_core::agent::NoEvents;
use kugetsu_core::clock::FixedClock;
use kugetsu_core::orchestrator::{InitOptions, Orchestrator, Settings};
use kugetsu_core::testing::{FakeAgent, FakeWorktrees, MemorySlots, StaticEnv};
use proptest::prelude::Rng as _;
use proptest::test_runner::{RngAlgorithm, TestRng};

/// A seeded, reproducible random source (proptest's generator, without its shrinking, which
/// 100,000 cases do not need).
pub struct Rng(TestRng);

impl Rng {
    /// A generator whose whole sequence follows from `seed`.
    pub fn seeded(seed: u64) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        bytes[8..].copy_from_slice(&(!seed).to_le_bytes());
        Rng(TestRng::from_seed(RngAlgorithm::XorShift, &bytes))
    }
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.0.fill_bytes(&mut out);
        out
    }
}

/// The orchestration over the in-memory fakes, with the base and PM sessions created.
pub fn initialized_orchestrator(state: &StateDir) -> Orchestrator {
    let orch = Orchestrator::new(
        state.clone(),
        Arc::new(FakeWorktrees::default()),
        Arc::new(FakeAgent::default()),
        Arc::new(MemorySlots::default()),
        Arc::new(StaticEnv::default()),
        Arc::new(FixedClock(time::macros::datetime!(2026-11-23 12:00 UTC))),
        Settings {
            max_agents: 3.into(),
            slot_wait: Duration::from_secs(30),
            ..Settings::new(Arc::new(kugetsu_process::SystemLiveness))
        },
    );
    orch.init(
        &InitOptions {
            force: false,
            interactive: false,
            session_dir: state.root().to_path_buf(),
            base_prompt: "base".into(),
            pm_prompt: "pm".into(),
        },
        &mut NoEvents,
    )
    .expect("init over the fakes");
    orch
}
