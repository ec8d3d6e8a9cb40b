#![doc = include_str!("../README.md")]

mod command;
pub mod driver;
pub mod events;
mod export_cache;
#[cfg(feature = "fake")]
pub mod fake;
pub mod fork;
pub mod outcome;
pub mod serve;

pub use driver::{OpencodeDriver, OpencodeOptions};
