//! The driver conformance suite against the real opencode 1.x and 2.x (installed from npm into the target
//! directory, with a mock model on loopback). Without npm or the registry the checks say why and
//! pass as skipped, unless `KUGETSU_REAL_OPENCODE=1` makes that a failure.

mod conformance;

conformance::suite!(opencode_real, crate::conformance::opencode::real);
conformance::suite!(opencode2_real, crate::conformance::opencode::real2);
