//! The driver conformance suite against the real Claude Code (installed from npm into the target
//! directory, with a stand-in of the Messages API on loopback). Without npm or the registry the
//! checks say why and pass as skipped, unless `KUGETSU_REAL_CLAUDE=1` makes that a failure.

mod conformance;

conformance::suite!(claude_real, crate::conformance::claude::real);
