#![doc = include_str!("../README.md")]

pub mod args;
mod driver;
pub mod events;
#[cfg(feature = "fake")]
pub mod fake;
pub mod outcome;
mod store;

pub use driver::{ClaudeDriver, ClaudeOptions, MIN_IDLE};

/// The provider a refusal is reported for, and whose pause holds Claude Code's turns: the
/// Anthropic API, whichever base URL reaches it (a proxy passes its limits on). Claude Code
/// routed to Amazon Bedrock or Google Vertex (`CLAUDE_CODE_USE_BEDROCK` / `_VERTEX` in its
/// environment) reports `bedrock` or `vertex` instead (see `ClaudeDriver::provider`).
pub const PROVIDER: &str = "anthropic";
