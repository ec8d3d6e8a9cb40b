//! The end-to-end suites that need nothing real: the crates composed as an embedding program
//! would, and the driver conformance suite against every driver's fake. One test binary.

mod compose;
mod conformance;

// Every driver's fake: one line each.
conformance::suite!(opencode_fake, crate::conformance::opencode::fake);
