#![doc = include_str!("../README.md")]

pub mod activity;
pub mod command;
mod ended;
pub mod host;
pub mod identity;
mod pre_exec;
pub mod procfs;
pub mod supervise;
mod tree;

pub use activity::activity_is_watched;
pub use command::{CommandSpec, Io, build_command, detach};
pub use procfs::SystemLiveness;
pub use supervise::{Ended, Limits, Seen, Stream};
