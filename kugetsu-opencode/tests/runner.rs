//! kugetsu-opencode's integration tests against the bundled fake, one module per file, linked as
//! one test binary. The suite against the real opencode is its own target, `real_opencode`.

mod echoed_secrets;
mod support;

// Both drive the `fake-opencode` binary, built only with the `fake` feature.
#[cfg(feature = "fake")]
mod fake_conformance;
#[cfg(feature = "fake")]
mod fake_driver;
#[cfg(feature = "fake")]
mod fake_export;
#[cfg(feature = "fake")]
mod fake_forks;
#[cfg(feature = "fake")]
mod fake_limits;
#[cfg(feature = "fake")]
mod support_fake;
// The opencode 2 contract on the fake's 2.x dialect (the same checks run on the real 2.1.2 in
// `real_opencode`), and what only the fake can show.
#[cfg(feature = "fake")]
mod v2_contract;
#[cfg(feature = "fake")]
mod v2_fake;
#[cfg(feature = "fake")]
mod v2_transfer;
