//! The end-to-end suites that need nothing real: the crates composed as an embedding program
//! would, the driver conformance suite against every driver's bundled fake, and the whole flow
//! through the `kugetsu` program with each of those fakes. One test binary.

mod compose;
mod conformance;
mod fakes;
mod flow;
