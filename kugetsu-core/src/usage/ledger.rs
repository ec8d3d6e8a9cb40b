//! The spending ledger (`usage.json`): each UTC day's totals of this state directory's turns,
//! so `status` and the daily budget read one small file instead of every session. Days older
//! than [`KEEP_DAYS`] go. Several processes add to it, so every change is a locked
//! read-modify-write.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, UtcOffset};

use super::{TurnUsage, UsageTotals};
use crate::state::StateDir;
use crate::storage::{self, StorageError};

/// Days kept (a little over a year: this month and the same month last year).
pub const KEEP_DAYS: i64 = 400;

#[derive(Debug, Default, Serialize, Deserialize)]
struct LedgerFile {
    /// `YYYY-MM-DD` (UTC) → that day's totals.
    #[serde(default)]
    days: BTreeMap<String, UsageTotals>,
}

/// The ledger of a state directory.
#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
    lock: PathBuf,
}

/// The UTC day `at` falls on: budgets and totals are per UTC day, whatever the host's zone.
pub fn utc_day(at: OffsetDateTime) -> Date {
    at.to_offset(UtcOffset::UTC).date()
}

fn key(day: Date) -> String {
    format!("{:04}-{:02}-{:02}", day.year(), u8::from(day.month()), day.day())
}

impl Ledger {
    /// The ledger of `state`.
    pub fn new(state: &StateDir) -> Self {
        Ledger { path: state.root().join("usage.json"), lock: state.lock_path("usage") }
    }

    /// `usage.json`.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Counts a turn that ended at `at` having used `usage` (`None`: nothing reported).
    pub fn record(
        &self,
        at: OffsetDateTime,
        usage: Option<&TurnUsage>,
    ) -> Result<(), StorageError> {
        let day = utc_day(at);
        storage::update_json(
            &self.path,
            &self.lock,
            LedgerFile::default,
            |file: &mut LedgerFile| {
                file.days.entry(key(day)).or_default().add_turn(usage);
                let oldest = key(day - time::Duration::days(KEEP_DAYS));
                file.days.retain(|k, _| *k >= oldest);
                Ok::<_, StorageError>(())
            },
        )
    }

    fn read(&self) -> Result<LedgerFile, StorageError> {
        Ok(storage::read_json(&self.path)?.unwrap_or_default())
    }

    /// The totals of UTC day `day`.
    pub fn day(&self, day: Date) -> Result<UsageTotals, StorageError> {
        Ok(self.read()?.days.get(&key(day)).copied().unwrap_or_default())
    }

    /// The totals of the UTC month `day` falls in.
    pub fn month(&self, day: Date) -> Result<UsageTotals, StorageError> {
        let prefix = format!("{:04}-{:02}-", day.year(), u8::from(day.month()));
        let mut sum = UsageTotals::default();
        for (_, totals) in self.read()?.days.iter().filter(|(k, _)| k.starts_with(&prefix)) {
            sum.merge(totals);
        }
        Ok(sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Usd;

    #[test]
    fn days_and_months_are_utc_and_old_days_go() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        state.ensure().unwrap();
        let ledger = Ledger::new(&state);
        let usage = TurnUsage { cost_usd: Usd::new(1.5), tokens: None };
        // 23:30 at UTC-2 is the next UTC day.
        let late = time::macros::datetime!(2026-12-06 23:30 -2);
        ledger.record(late, Some(&usage)).unwrap();
        ledger.record(time::macros::datetime!(2026-12-01 08:00 UTC), None).unwrap();
        let old = time::macros::datetime!(2025-01-01 08:00 UTC);
        ledger.record(old, Some(&usage)).unwrap();
        let dec7 = time::macros::date!(2026 - 12 - 07);
        assert_eq!(ledger.day(dec7).unwrap().cost_usd, Usd::new(1.5));
        assert_eq!(ledger.day(time::macros::date!(2026 - 12 - 06)).unwrap().turns, 0);
        let month = ledger.month(dec7).unwrap();
        assert_eq!((month.turns, month.unknown_turns, month.cost_usd), (2, 1, Usd::new(1.5)));
        // Recording 2025-01-01 after December 2026 kept it (it was the newest write's own day),
        // but a later write drops what is older than a year and a bit.
        ledger.record(late, None).unwrap();
        assert_eq!(ledger.day(time::macros::date!(2025 - 01 - 01)).unwrap().turns, 0);
    }
}
