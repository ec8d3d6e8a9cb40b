//! Time as a dependency, so that output showing times can be pinned in tests, and the one place
//! that writes a time as text (in file names, and for people).

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// `20261129T171301Z`: sorts as text, safe in a file name.
const COMPACT: &[BorrowedFormatItem<'_>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");
/// [`COMPACT`] with nanoseconds, for names that must not collide within a second.
const COMPACT_NANOS: &[BorrowedFormatItem<'_>] =
    format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:9]Z");
/// `2026-11-29 17:13:01 UTC`.
const HUMAN: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");

fn utc_with(t: OffsetDateTime, format: &[BorrowedFormatItem<'_>]) -> String {
    // Formatting fails only for years outside -9999..=9999, which no clock here reports.
    t.to_offset(UtcOffset::UTC).format(format).unwrap_or_default()
}

/// `YYYYMMDDTHHMMSSZ` of `t` in UTC (run logs, log file names).
pub fn compact(t: OffsetDateTime) -> String {
    utc_with(t, COMPACT)
}

/// `YYYYMMDDTHHMMSS.nnnnnnnnnZ` of `t` in UTC (names of files kept aside).
pub fn compact_nanos(t: OffsetDateTime) -> String {
    utc_with(t, COMPACT_NANOS)
}

/// `YYYY-MM-DD HH:MM:SS UTC`: a time as people read it.
pub fn human(t: OffsetDateTime) -> String {
    utc_with(t, HUMAN)
}

/// A source of "now".
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock, in UTC.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that always says the same time (tests, snapshots).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_of_one_instant() {
        let t = time::macros::datetime!(2026-11-29 18:13:01.000000042 +01:00);
        assert_eq!(compact(t), "20261129T171301Z");
        assert_eq!(compact_nanos(t), "20261129T171301.000000042Z");
        assert_eq!(human(t), "2026-11-29 17:13:01 UTC");
    }
}
