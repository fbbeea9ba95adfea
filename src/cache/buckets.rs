//! Time buckets, for the `bucketed` strategy.
//!
//! Besides the user-wide `calendar_version:{u<id>}`, a user has a version per
//! time bucket (`cache.bucket_days` wide, a UTC day by default),
//! `calendar_bucket:{u<id>}:d<days>:<index>`. A feed entry is stored with the
//! versions of every bucket its range covers (`Stamp`, in the entry itself)
//! and is served only while all of them, and the user-wide version in its
//! key, are unchanged. A write bumps the buckets its item covers before and
//! after the change, so a change in March leaves January's views warm.
//!
//! Why this is never stale:
//! - *Coverage.* An item is in a feed when its extent overlaps the range
//!   (`db::work_items::feed`); the overlap has a point, that point lies in
//!   one bucket, and that bucket is both one the range covers and one the
//!   item's bump covers. Both sides round outwards (whole seconds, all-day
//!   items as the UTC days they cover), so the mapping only ever covers more.
//! - *Long items.* An extent covering more than [`MAX_ITEM_BUCKETS`] buckets
//!   bumps the user-wide version instead: one `INCR` rather than many, and
//!   every entry of the user is orphaned, as under `versioned`.
//! - *No collisions.* The entry holds the bucket versions themselves, not a
//!   hash of them, and a hit compares every one of them.
//! - *Lost versions.* A bucket key that is missing (never set, expired,
//!   evicted) is re-created from Redis' clock in microseconds, like the
//!   user-wide version (`version.rs`): larger than any value an older
//!   generation of the key had, so no old entry matches again. That is what
//!   lets bucket keys expire ([`Buckets::ttl`]) — weeks nobody looks at cost
//!   no memory — and a bump of a missing bucket does nothing at all: no
//!   entry can match a bucket that has to be re-created.

use std::ops::RangeInclusive;

use chrono::{DateTime, NaiveTime, Utc};

use crate::domain::{TimeRange, all_day_span};

/// An item extent covering more buckets than this bumps the user-wide
/// version instead of its buckets (16 weeks with week buckets).
pub const MAX_ITEM_BUCKETS: usize = 16;

/// Monday 1970-01-05 00:00 UTC, in seconds: where bucket 0 starts, so week
/// buckets are ISO weeks.
const ORIGIN: i64 = 4 * 86_400;

/// The closed interval of time an item occupies in feeds, in whole seconds
/// (rounded outwards). What the outbox stores for a bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub start: i64,
    pub end: i64,
}

impl Extent {
    /// The extent of an item as feeds match it: its instants, or the UTC
    /// days it covers when it is all-day (`domain::all_day_span`).
    pub fn of_item(start: DateTime<Utc>, end: DateTime<Utc>, all_day: bool) -> Self {
        if all_day {
            let (first, after_last) = all_day_span(start, end);
            let midnight = |d: chrono::NaiveDate| d.and_time(NaiveTime::MIN).and_utc().timestamp();
            return Self { start: midnight(first), end: midnight(after_last) };
        }
        let ceil = |t: DateTime<Utc>| t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0);
        Self { start: start.timestamp(), end: ceil(end).max(start.timestamp()) }
    }

    /// Flattened for the outbox: `[start, end, start, end, …]`.
    pub fn flatten(extents: &[Extent]) -> Vec<i64> {
        extents.iter().flat_map(|e| [e.start, e.end]).collect()
    }

    /// The inverse of [`Extent::flatten`]; `None` for an odd count.
    pub fn unflatten(flat: &[i64]) -> Option<Vec<Extent>> {
        if !flat.len().is_multiple_of(2) {
            return None;
        }
        Some(flat.chunks_exact(2).map(|p| Extent { start: p[0], end: p[1].max(p[0]) }).collect())
    }
}

/// The bucket width (`cache.bucket_days`: 1 to 31 days, a UTC day by
/// default), and the arithmetic on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "u32")]
pub struct Buckets {
    days: u32,
}

impl TryFrom<u32> for Buckets {
    type Error = &'static str;
    fn try_from(days: u32) -> Result<Self, Self::Error> {
        if (1..=31).contains(&days) { Ok(Self { days }) } else { Err("must be 1 to 31 days") }
    }
}

impl Buckets {
    /// UTC days.
    pub const DAYS: Self = Self { days: 1 };

    /// ISO weeks (from Monday 00:00 UTC).
    pub const WEEKS: Self = Self { days: 7 };

    pub fn days(self) -> u32 {
        self.days
    }

    fn secs(self) -> i64 {
        i64::from(self.days) * 86_400
    }

    fn index(self, unix_secs: i64) -> i64 {
        (unix_secs - ORIGIN).div_euclid(self.secs())
    }

    /// The buckets a feed range `[start, end)` covers.
    pub fn of_range(self, range: &TimeRange) -> RangeInclusive<i64> {
        let width_us = self.secs() * 1_000_000;
        let index_us = |us: i64| (us - ORIGIN * 1_000_000).div_euclid(width_us);
        let start = range.start().as_utc().timestamp_micros();
        let end = range.end().as_utc().timestamp_micros();
        let first = index_us(start);
        // The end is exclusive: a range ending at a bucket's first instant
        // does not cover that bucket.
        first..=index_us(end - 1).max(first)
    }

    /// The buckets an extent covers, or `None` when they are more than
    /// [`MAX_ITEM_BUCKETS`] (bump the user-wide version instead).
    pub fn of_extent(self, e: Extent) -> Option<RangeInclusive<i64>> {
        let (first, last) = (self.index(e.start), self.index(e.end.max(e.start)));
        (last - first < MAX_ITEM_BUCKETS as i64).then_some(first..=last)
    }

    /// The buckets a write with these extents bumps, sorted and without
    /// repeats; `None` when one extent is too long (user-wide bump).
    pub fn of_extents(self, extents: &[Extent]) -> Option<Vec<i64>> {
        let mut all = Vec::new();
        for e in extents {
            all.extend(self.of_extent(*e)?);
        }
        all.sort_unstable();
        all.dedup();
        Some(all)
    }

    /// How long a bucket version lives after it is created (writes keep its
    /// expiry): several entry lifetimes, so entries seldom outlive the
    /// bucket versions they were stored under.
    pub fn ttl(feed_ttl_secs: u64) -> u64 {
        feed_ttl_secs.saturating_mul(4).max(60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;

    fn ts(s: &str) -> DateTime<Utc> {
        Timestamp::parse(s).unwrap_or_else(|e| panic!("{e}")).as_utc()
    }

    fn range(a: &str, b: &str) -> TimeRange {
        TimeRange::new(Timestamp::from_utc(ts(a)), Timestamp::from_utc(ts(b))).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn week_buckets_start_on_monday_utc() {
        let w = Buckets::WEEKS;
        // 2026-11-30 is a Monday.
        let monday = w.of_range(&range("2026-11-30", "2026-12-01"));
        assert_eq!(w.of_range(&range("2026-12-06T23:59:59Z", "2026-12-07")), monday);
        assert_eq!(*w.of_range(&range("2026-12-07", "2026-12-08")).start(), monday.start() + 1);
        // An exclusive end on a boundary does not reach the next week.
        assert_eq!(w.of_range(&range("2026-11-30", "2026-12-07")), monday);
        // A month grid: six weeks.
        assert_eq!(w.of_range(&range("2026-11-30", "2027-01-11")).count(), 6);
        // Before 1970 too.
        let old = w.of_range(&range("1969-12-29", "1969-12-30"));
        assert_eq!(*old.start(), -1);
    }

    #[test]
    fn widths_are_1_to_31_days() {
        assert_eq!(Buckets::try_from(1), Ok(Buckets::DAYS));
        assert_eq!(Buckets::try_from(31).map(Buckets::days), Ok(31));
        assert!(Buckets::try_from(0).is_err());
        assert!(Buckets::try_from(32).is_err());
    }

    #[test]
    fn an_item_and_every_range_it_appears_in_share_a_bucket() {
        for days in [1, 7, 30] {
            let b = Buckets::try_from(days).unwrap_or_else(|e| panic!("{e}"));
            let item = Extent::of_item(ts("2026-10-06T23:30:00Z"), ts("2026-10-07T00:30:00Z"), false);
            let covered = b.of_extent(item).unwrap_or_else(|| panic!("short item"));
            for r in [range("2026-10-07T00:00:00Z", "2026-10-08"), range("2026-10-01", "2026-10-07T00:00:01Z")] {
                let of_range = b.of_range(&r);
                assert!(covered.clone().any(|x| of_range.contains(&x)), "{days} days: {r:?}");
            }
        }
    }

    #[test]
    fn all_day_items_cover_their_days_and_long_items_go_user_wide() {
        let w = Buckets::DAYS;
        let e = Extent::of_item(ts("2026-10-06T09:00:00Z"), ts("2026-10-06T17:00:00Z"), true);
        assert_eq!(e, Extent { start: ts("2026-10-06").timestamp(), end: ts("2026-10-07").timestamp() });
        assert_eq!(w.of_extent(e).map(|r| r.count()), Some(2));
        let long = Extent::of_item(ts("2026-01-01"), ts("2026-12-31"), false);
        assert_eq!(Buckets::WEEKS.of_extent(long), None);
        assert_eq!(Buckets::WEEKS.of_extents(&[e, long]), None);
    }

    #[test]
    fn moving_an_item_bumps_both_weeks_once() {
        let w = Buckets::WEEKS;
        let jan = Extent::of_item(ts("2026-01-05T10:00:00Z"), ts("2026-01-05T11:00:00Z"), false);
        let mar = Extent::of_item(ts("2026-03-02T10:00:00Z"), ts("2026-03-02T11:00:00Z"), false);
        let bumped = w.of_extents(&[jan, mar, jan]).unwrap_or_default();
        assert_eq!(bumped.len(), 2);
        assert_eq!(Extent::unflatten(&Extent::flatten(&[jan, mar])), Some(vec![jan, mar]));
        assert_eq!(Extent::unflatten(&[1, 2, 3]), None);
    }
}
