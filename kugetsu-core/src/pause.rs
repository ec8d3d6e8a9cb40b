//! Provider pauses (`pause.json`): dispatch held back because the model's provider refuses for
//! a limit.
//!
//! A provider that answers "rate limited" or "quota used up" refuses every turn alike, so a
//! turn it refused is not a failure of that turn: it ends as [`ProviderLimit`] (outcome
//! `rate_limited`), and the provider is paused for everyone until its reset time (a quota error
//! without one: until a person resumes it). While a pause holds, nothing is started with that
//! provider: the queue daemon claims no item, a foreground `start`/`continue` waits as it
//! waits for a slot. A pause ends by itself once its time has come; whoever first sees that
//! removes it, and only that one says "resumed" ([`Pauses::resume`] returns what it removed).
//!
//! The provider is the name the agent reports with its refusal (opencode's provider id). A
//! turn whose provider kugetsu cannot tell in advance (no model configured) waits on every
//! pause: it would most likely use the provider that refused.
//!
//! [`FilePauses`] keeps them in the state directory, under a lock; a shared queue keeps them
//! in its server, so every host sees them (the queue crate's backend).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::state::StateDir;
use crate::storage::{self, StorageError};

/// Why a provider refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Too many requests for now (HTTP 429 and the like): it passes by itself.
    RateLimit,
    /// The account's quota or credit is used up: it passes when a person acts.
    Quota,
}

impl LimitKind {
    /// As people read it.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::RateLimit => "rate limit",
            LimitKind::Quota => "quota",
        }
    }
}

/// A provider's refusal of a turn, as a driver reports it (an event while the turn runs, and
/// the turn's outcome).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderLimit {
    /// The provider, as the agent names it (`anthropic`, `openai`, ...).
    pub provider: String,
    /// Rate limit or quota.
    pub kind: LimitKind,
    /// When the provider said it takes requests again, when it said so.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub until: Option<OffsetDateTime>,
    /// The provider's message.
    pub message: String,
}

impl ProviderLimit {
    /// One line: `rate limited by mock until 14:05 UTC: <message>`.
    pub fn describe(&self) -> String {
        let what = match self.kind {
            LimitKind::RateLimit => "rate limited",
            LimitKind::Quota => "quota used up",
        };
        let until = self.until.map(|t| format!(" until {}", hh_mm(t))).unwrap_or_default();
        format!("{what} by {}{until}: {}", self.provider, self.message)
    }
}

/// A paused provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// What refused, and until when (`None`: until `kugetsu queue resume`).
    #[serde(flatten)]
    pub limit: ProviderLimit,
    /// When the pause began (the first refusal).
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

impl Pause {
    /// Whether the pause has ended by itself at `now`.
    pub fn is_over(&self, now: OffsetDateTime) -> bool {
        self.limit.until.is_some_and(|t| t <= now)
    }

    /// Whether it holds back a turn with `provider` (`None`: not known in advance, so every
    /// pause does).
    pub fn holds(&self, provider: Option<&str>, now: OffsetDateTime) -> bool {
        !self.is_over(now) && provider.is_none_or(|p| p == self.limit.provider)
    }

    /// `paused until 14:05 UTC (mock: rate limit)`, or `paused until kugetsu queue resume
    /// (mock: quota)`.
    pub fn describe(&self) -> String {
        let until = match self.limit.until {
            Some(t) => hh_mm(t),
            None => "`kugetsu queue resume`".into(),
        };
        format!("paused until {until} ({}: {})", self.limit.provider, self.limit.kind.as_str())
    }
}

/// `HH:MM UTC`: resets are minutes to hours away, so the time alone says it.
fn hh_mm(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:02}:{:02} UTC", t.hour(), t.minute())
}

/// Why the pauses could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    /// The state file.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A shared queue's server.
    #[error("provider pauses on the shared queue: {message}")]
    Backend {
        /// What went wrong.
        message: String,
    },
}

/// Where pauses are kept.
pub trait Pauses: Send + Sync {
    /// Every pause recorded (ended ones too, until someone resumes them).
    fn list(&self) -> Result<Vec<Pause>, PauseError>;

    /// Pauses `limit.provider`, or extends its pause to the later end. Returns whether the
    /// provider was not paused before (so only the first refusal is told).
    fn pause(&self, limit: &ProviderLimit, now: OffsetDateTime) -> Result<bool, PauseError>;

    /// Removes the pauses of `provider` (every provider when `None`): with `only_over`, those
    /// ended by `now` only. Returns what it removed, which only the one caller that removed it
    /// sees.
    fn resume(
        &self,
        provider: Option<&str>,
        now: OffsetDateTime,
        only_over: bool,
    ) -> Result<Vec<Pause>, PauseError>;
}

/// The pause of `pauses` that holds back a turn with `provider` at `now`, the latest-ending
/// first (one without an end before all).
pub fn holding<'a>(
    pauses: &'a [Pause],
    provider: Option<&str>,
    now: OffsetDateTime,
) -> Option<&'a Pause> {
    pauses
        .iter()
        .filter(|p| p.holds(provider, now))
        .max_by_key(|p| p.limit.until.map_or((1, OffsetDateTime::UNIX_EPOCH), |t| (0, t)))
}

/// How long a rate limit whose reset time the provider did not tell pauses its provider
/// (opencode 1.x never shows the `Retry-After`): a quota error without one waits for a person
/// instead.
pub const RATE_LIMIT_PAUSE: time::Duration = time::Duration::minutes(5);

/// Applies a refusal to a list of pauses (both backends' rule); returns whether it is new.
pub fn apply(list: &mut Vec<Pause>, limit: &ProviderLimit, now: OffsetDateTime) -> bool {
    let mut limit = limit.clone();
    if limit.kind == LimitKind::RateLimit && limit.until.is_none() {
        limit.until = Some(now + RATE_LIMIT_PAUSE);
    }
    let limit = &limit;
    match list.iter_mut().find(|p| p.limit.provider == limit.provider) {
        Some(p) if !p.is_over(now) => {
            // A quota error (no end) outlasts any reset time; otherwise the later end wins.
            let until = match (p.limit.until, limit.until) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            p.limit = ProviderLimit { until, ..limit.clone() };
            false
        }
        Some(p) => {
            *p = Pause { limit: limit.clone(), since: now };
            true
        }
        None => {
            list.push(Pause { limit: limit.clone(), since: now });
            true
        }
    }
}

/// Takes out of `list` what [`Pauses::resume`] removes.
pub fn take(
    list: &mut Vec<Pause>,
    provider: Option<&str>,
    now: OffsetDateTime,
    only_over: bool,
) -> Vec<Pause> {
    let (gone, kept) = std::mem::take(list).into_iter().partition(|p: &Pause| {
        provider.is_none_or(|name| name == p.limit.provider) && (!only_over || p.is_over(now))
    });
    *list = kept;
    gone
}

/// The pauses of one state directory, in `pause.json`.
#[derive(Debug, Clone)]
pub struct FilePauses {
    path: PathBuf,
    lock: PathBuf,
}

impl FilePauses {
    /// The pauses of `state`.
    pub fn new(state: &StateDir) -> Self {
        FilePauses { path: state.root().join("pause.json"), lock: state.lock_path("pause") }
    }

    fn update<R>(&self, f: impl FnOnce(&mut Vec<Pause>) -> R) -> Result<R, PauseError> {
        if let Some(dir) = self.lock.parent() {
            storage::ensure_dir(dir)?;
        }
        let changed = storage::update_json(&self.path, &self.lock, Vec::new, |list| {
            Ok::<_, StorageError>(f(list))
        })?;
        Ok(changed)
    }
}

impl Pauses for FilePauses {
    fn list(&self) -> Result<Vec<Pause>, PauseError> {
        Ok(storage::read_json(&self.path)?.unwrap_or_default())
    }

    fn pause(&self, limit: &ProviderLimit, now: OffsetDateTime) -> Result<bool, PauseError> {
        self.update(|list| apply(list, limit, now))
    }

    fn resume(
        &self,
        provider: Option<&str>,
        now: OffsetDateTime,
        only_over: bool,
    ) -> Result<Vec<Pause>, PauseError> {
        // Nothing to write when nothing is paused: `status` must not create the file.
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        self.update(|list| take(list, provider, now, only_over))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn limit(provider: &str, kind: LimitKind, until: Option<OffsetDateTime>) -> ProviderLimit {
        ProviderLimit { provider: provider.into(), kind, until, message: "slow down".into() }
    }

    #[test]
    fn a_pause_is_told_once_extended_and_ends_by_itself_unless_it_is_a_quota() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        state.ensure().unwrap();
        let pauses = FilePauses::new(&state);
        let t0 = datetime!(2026-12-07 14:00 UTC);
        let t1 = datetime!(2026-12-07 14:05 UTC);
        assert!(pauses.pause(&limit("mock", LimitKind::RateLimit, Some(t1)), t0).unwrap());
        let later = datetime!(2026-12-07 14:09 UTC);
        assert!(!pauses.pause(&limit("mock", LimitKind::RateLimit, Some(later)), t0).unwrap());
        let list = pauses.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].describe(), "paused until 14:09 UTC (mock: rate limit)");
        assert!(holding(&list, Some("mock"), t1).is_some());
        assert!(holding(&list, None, t1).is_some(), "an unknown provider waits on any pause");
        assert!(holding(&list, Some("other"), t1).is_none());
        assert!(holding(&list, Some("mock"), later).is_none(), "over at its time");
        // Not over yet: nothing removed; then the one who sees it over removes it, once.
        assert!(pauses.resume(None, t1, true).unwrap().is_empty());
        assert_eq!(pauses.resume(None, later, true).unwrap().len(), 1);
        assert!(pauses.resume(None, later, true).unwrap().is_empty());
        // A quota error has no end: only a person's resume ends it.
        pauses.pause(&limit("mock", LimitKind::Quota, None), t0).unwrap();
        let far = datetime!(2030-01-01 0:00 UTC);
        assert!(pauses.resume(None, far, true).unwrap().is_empty());
        assert_eq!(pauses.list().unwrap()[0].limit.until, None);
        let list = pauses.list().unwrap();
        assert_eq!(list[0].describe(), "paused until `kugetsu queue resume` (mock: quota)");
        assert!(holding(&list, Some("mock"), far).is_some());
        assert_eq!(pauses.resume(Some("other"), far, false).unwrap().len(), 0);
        assert_eq!(pauses.resume(Some("mock"), far, false).unwrap().len(), 1);
        assert!(pauses.list().unwrap().is_empty());
        // A rate limit without a reset time pauses for a while, not for ever.
        pauses.pause(&limit("mock", LimitKind::RateLimit, None), t0).unwrap();
        assert_eq!(pauses.list().unwrap()[0].limit.until, Some(t0 + RATE_LIMIT_PAUSE));
    }
}
