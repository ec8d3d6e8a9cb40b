//! The claude driver's tests that need no real Claude Code: the parser and the classifier on
//! recorded lines, and (with `--features fake`) the driver against the fake.

mod events;
#[cfg(feature = "fake")]
mod fake_driver;
#[cfg(feature = "fake")]
mod fake_transfer;
