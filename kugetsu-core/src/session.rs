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

use crate::agent::{InvalidSessionId, RunOutcome, SessionId};
use crate::config::DEFAULT_DRIVER;
use crate::usage::{TurnUsage, UsageTotals};

/// An agent session id as a state file records it. A valid id reads as a [`SessionId`];
/// anything else is kept exactly as written, so a hand-edited or foreign file still loads,
/// lists, checks and can be destroyed, and only handing the id to the agent is refused (by
/// [`RecordedSessionId::valid`], with the offending text). Written back as the same string, so
/// the JSON on disk is unchanged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum RecordedSessionId {
    /// A well-formed id.
    Valid(SessionId),
    /// Text that is not a session id, as the file has it.
    Invalid(String),
}

impl RecordedSessionId {
    /// The id as recorded.
    pub fn as_str(&self) -> &str {
        match self {
            RecordedSessionId::Valid(id) => id.as_str(),
            RecordedSessionId::Invalid(text) => text,
        }
    }

    /// The id, if it is one the agent may be handed.
    pub fn valid(&self) -> Result<&SessionId, InvalidSessionId> {
        match self {
            RecordedSessionId::Valid(id) => Ok(id),
            RecordedSessionId::Invalid(text) => Err(InvalidSessionId { id: text.clone() }),
        }
    }
}

impl From<String> for RecordedSessionId {
    fn from(text: String) -> Self {
        match SessionId::new(text) {
            Ok(id) => RecordedSessionId::Valid(id),
            Err(e) => RecordedSessionId::Invalid(e.id),
        }
    }
}

impl From<SessionId> for RecordedSessionId {
    fn from(id: SessionId) -> Self {
        RecordedSessionId::Valid(id)
    }
}

impl From<RecordedSessionId> for String {
    fn from(id: RecordedSessionId) -> Self {
        match id {
            RecordedSessionId::Valid(id) => id.into(),
            RecordedSessionId::Invalid(text) => text,
        }
    }
}

impl fmt::Display for RecordedSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RecordedSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordedSessionId::Valid(id) => write!(f, "{id:?}"),
            RecordedSessionId::Invalid(text) => write!(f, "Invalid({text:?})"),
        }
    }
}

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
    /// The last turn was stopped because the model's provider refused for a limit: not
    /// failed; it runs again once the provider's pause ends.
    Paused,
}

impl From<String> for SessionState {
    fn from(s: String) -> Self {
        match s.as_str() {
            "idle" => SessionState::Idle,
            "running" => SessionState::Running,
            "failed" => SessionState::Failed,
            "blocked" => SessionState::Blocked,
            "interrupted" => SessionState::Interrupted,
            "paused" => SessionState::Paused,
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
            SessionState::Paused => "paused",
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
            // Stopped as on Ctrl-C, at a budget: nothing failed, `continue` goes on.
            RunOutcome::Interrupted { .. } | RunOutcome::OverBudget { .. } => {
                SessionState::Interrupted
            }
            RunOutcome::RateLimited(_) => SessionState::Paused,
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
    /// What the turn used, as the agent reported it; absent when it reported nothing (and
    /// from records written before kugetsu kept it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TurnUsage>,
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
    /// The agent's session id. The key on disk keeps the original kugetsu's name, whatever the
    /// agent, so its files read and are written back the same.
    #[serde(rename = "opencode_session_id")]
    pub agent_session_id: RecordedSessionId,
    /// The driver (its `KUGETSU_AGENT` name) that made the session, whose ids these are; files
    /// of the original kugetsu name none: see [`SessionFile::agent`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The major version of the agent that last ran the session, when above 1 (see
    /// [`SessionFile::agent_major`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_major: Option<u32>,
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
    /// What every turn of the session used so far (absent before its first turn, and from
    /// files written before kugetsu kept it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageTotals>,
    /// Fields written by other versions, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl SessionFile {
    /// The driver that made the session: the recorded one, or for a file that records none
    /// (the original kugetsu's), [`DEFAULT_DRIVER`], the only agent it knew.
    pub fn agent(&self) -> &str {
        self.agent.as_deref().unwrap_or(DEFAULT_DRIVER)
    }

    /// The major version of the agent that last ran the session: the recorded one, else 1
    /// (files written before drivers of a second major existed).
    pub fn agent_major(&self) -> u32 {
        self.agent_major.unwrap_or(1)
    }

    /// Notes that an agent of major `major` ran the session (a file keeps its highest).
    pub fn ran_with_major(&mut self, major: u32) {
        if major > self.agent_major() {
            self.agent_major = Some(major);
        }
    }
}

/// `index.json`: the base and PM agent session ids and the issue → session-file map.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Base session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<RecordedSessionId>,
    /// PM agent session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pm_agent: Option<RecordedSessionId>,
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
