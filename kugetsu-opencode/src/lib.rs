#![doc = include_str!("../README.md")]

mod command;
pub mod driver;
pub mod events;
mod export_cache;
#[cfg(feature = "fake")]
pub mod fake;
pub mod fork;
pub mod limits;
pub mod outcome;
mod pick;
pub mod serve;
pub mod v2;
pub mod version;

pub use driver::{OpencodeDriver, OpencodeOptions};
pub use pick::{Picked, driver_for};
pub use v2::OpencodeV2Driver;
