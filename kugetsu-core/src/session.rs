//! Session files (`sessions/*.json`) and the index (`index.json`) that maps refs to them.
//!
//! Both keep the spec's JSON shapes and carry every unknown field through a rewrite, so files
//! written by the original kugetsu or by a newer version are never stripped.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::agent::RunOutcome;

/// The `type` of a session file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// The primed base session that issues fork from.
    Base,
    /// The PM agent coordinator.
    PmAgent,
    /// One issue's session.
    Forked,
}

impl fmt::Display for SessionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SessionKind {
    /// The spec's word (`base`, `pm_agent`, `forked`).
    pub fn as_str(&self) -> &'static str {
        match self {
            SessionKind::Base => "base",
            SessionKind::PmAgent => "pm_agent",
            SessionKind::Forked => "forked",
        }
    }
}

/// The `state` of a session. Unknown words from other versions are kept as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum SessionState {
    /// Nothing running.
    Idle,
    /// An agent turn is running.
    Running,
    /// The last turn failed (error, timeout, hang).
    Failed,
    /// The last turn hit a rejected permission.
    Blocked,
    /// The last turn was stopped by a signal to kugetsu (Ctrl-C, SIGTERM, a hang-up).
    Interrupted,
    /// Anything else, kept verbatim.
    Other(String),
}

impl From<String> for SessionState {
    fn from(s: String) -> Self {
        match s.as_str() {
            "idle" => SessionState::Idle,
            "running" => SessionState::Running,
            "failed" => SessionState::Failed,
            "blocked" => SessionState::Blocked,
            "interrupted" => SessionState::Interrupted,
            _ => SessionState::Other(s),
        }
    }
}

impl From<SessionState> for String {
    fn from(s: SessionState) -> Self {
        s.to_string()
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionState::Idle => "idle",
            SessionState::Running => "running",
            SessionState::Failed => "failed",
            SessionState::Blocked => "blocked",
            SessionState::Interrupted => "interrupted",
            SessionState::Other(s) => s,
        })
    }
}

impl SessionState {
    /// The state a finished run leaves the session in.
    pub fn after(outcome: &RunOutcome) -> Self {
        match outcome {
            RunOutcome::Completed => SessionState::Idle,
            RunOutcome::Blocked { .. } => SessionState::Blocked,
            RunOutcome::Interrupted { .. } => SessionState::Interrupted,
            _ => SessionState::Failed,
        }
    }
}

/// The record of the last run of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// How it ended.
    #[serde(flatten)]
    pub outcome: RunOutcome,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it ended.
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// The agent's exit code, if it exited by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// A session file. Unknown fields are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionFile {
    /// Base, PM agent or forked.
    #[serde(rename = "type")]
    pub kind: SessionKind,
    /// The issue, for forked sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_ref: Option<String>,
    /// The agent's session id.
    pub opencode_session_id: String,
    /// The issue's worktree, for forked sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree_path: Option<PathBuf>,
    /// When it was created (RFC 3339 with offset).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// What it is doing.
    pub state: SessionState,
    /// The directory the agent session lives in when it has no worktree (base, PM agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<PathBuf>,
    /// The branch of its worktree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Pid of the agent process while `running`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_pid: Option<u32>,
    /// The last run's outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    /// Fields written by other versions, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `index.json`: the base and PM agent session ids and the issue → session-file map.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Base session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// PM agent session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pm_agent: Option<String>,
    /// Issue ref → session file name (`github.com-shoko-kugetsu-14.json`).
    #[serde(default)]
    pub issues: BTreeMap<String, String>,
    /// Fields written by other versions, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod float_round_trip {
    #![allow(clippy::unwrap_used)]
    use super::Index;

    /// Found by the fuzzer: a number with more digits than an f64 holds, in a field kept for
    /// another version, must read back unchanged after kugetsu rewrites the file.
    #[test]
    fn unknown_numbers_survive_a_rewrite() {
        let text = r#"{"{":{"9/\\r/2)" :10.15111111110555555555555555556}}"#;
        let first: Index = serde_json::from_str(text).unwrap();
        let again: Index = serde_json::from_slice(&serde_json::to_vec(&first).unwrap()).unwrap();
        assert_eq!(again, first);
    }
}
