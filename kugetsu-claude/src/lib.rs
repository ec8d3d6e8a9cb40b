#![doc = include_str!("../README.md")]

pub mod args;
mod driver;
pub mod events;
#[cfg(feature = "fake")]
pub mod fake;
pub mod outcome;
mod store;

pub use driver::{ClaudeDriver, ClaudeOptions, MIN_IDLE};
