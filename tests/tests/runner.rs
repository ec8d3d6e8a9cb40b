//! The end-to-end suites that need nothing real: the crates composed as an embedding program
//! would, and the driver conformance suite against every driver's bundled fake. One test binary.

mod compose;
mod conformance;
mod fakes;
