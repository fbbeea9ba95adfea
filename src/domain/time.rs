use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, SecondsFormat, SubsecRound, Timelike, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

use super::{InvalidValue, ValidationError};

/// The widest feed range a client may ask for (contract: at most 400 days).
pub const MAX_FEED_RANGE_DAYS: i64 = 400;

/// An instant, normalized to UTC and to PostgreSQL's microsecond precision,
/// so that what we store, what we answer and what we put in cache keys agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// Accepts RFC 3339 with an offset, or a bare `YYYY-MM-DD` meaning
    /// midnight UTC (the contract's two forms). FullCalendar also sends
    /// `YYYY-MM-DDTHH:MM:SS` without an offset when its time zone is UTC or
    /// named; that form is read as UTC.
    ///
    /// The instant, in UTC, must fall in the years 0001 to 9999: answers
    /// carry RFC 3339's four-digit years, so `9999-12-31T23:00:00-05:00`
    /// (year 10000 in UTC) is refused rather than stored and answered as an
    /// unparseable `+10000-01-01T04:00:00Z`.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        Self::parse_in(s, None)
    }

    /// As [`Timestamp::parse`], but a date-time without an offset
    /// (`2026-10-06T00:00:00`, what FullCalendar sends with a named
    /// `timeZone`) is wall-clock time in `zone` when one is given. A bare date
    /// stays midnight UTC (the contract's meaning) and an offset always wins.
    /// A wall-clock time that a daylight-saving change skips is read with the
    /// offset in force before the change; one that occurs twice, as the
    /// earlier instant.
    pub fn parse_in(s: &str, zone: Option<Zone>) -> Result<Self, InvalidValue> {
        let s = s.trim();
        if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
            return Self::within_years(dt.with_timezone(&Utc));
        }
        // `FromStr` reads exactly `%Y-%m-%d`, without interpreting a format string.
        if let Ok(d) = s.parse::<NaiveDate>()
            && let Some(dt) = d.and_hms_opt(0, 0, 0)
        {
            return Self::within_years(dt.and_utc());
        }
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
            return Self::within_years(match zone {
                None => dt.and_utc(),
                Some(zone) => zone.to_utc(dt),
            });
        }
        Err(InvalidValue::NotATimestamp)
    }

    fn within_years(dt: DateTime<Utc>) -> Result<Self, InvalidValue> {
        if (1..=9999).contains(&dt.year()) { Ok(Self::from_utc(dt)) } else { Err(InvalidValue::YearOutOfRange) }
    }

    pub fn from_utc(dt: DateTime<Utc>) -> Self {
        Self(dt.trunc_subsecs(6))
    }

    pub fn now() -> Self {
        Self::from_utc(Utc::now())
    }

    pub fn as_utc(&self) -> DateTime<Utc> {
        self.0
    }
}

impl Timestamp {
    /// Appends what `Display` writes (`2026-10-06T09:00:00Z`, with `.mmm` or
    /// `.uuuuuu` when there are fractions), digit by digit: feed cache keys
    /// carry two timestamps and are built on every request, and chrono's
    /// general-purpose formatter costs several times more.
    pub fn write_rfc3339(&self, out: &mut String) {
        fn digits(out: &mut String, value: u32, width: u32) {
            for i in (0..width).rev() {
                let d = (value / 10u32.pow(i)) % 10;
                out.push(char::from(b'0' + d as u8));
            }
        }
        let dt = self.0;
        // Years are 0001..=9999 (checked at parse), so four digits suffice.
        digits(out, u32::try_from(dt.year()).unwrap_or(0), 4);
        out.push('-');
        digits(out, dt.month(), 2);
        out.push('-');
        digits(out, dt.day(), 2);
        out.push('T');
        digits(out, dt.hour(), 2);
        out.push(':');
        digits(out, dt.minute(), 2);
        out.push(':');
        digits(out, dt.second(), 2);
        let micros = dt.timestamp_subsec_micros();
        if micros != 0 {
            out.push('.');
            if micros.is_multiple_of(1000) { digits(out, micros / 1000, 3) } else { digits(out, micros, 6) }
        }
        out.push('Z');
    }
}

/// The days an all-day item covers, FullCalendar's way: the first day, and
/// the day after the last (exclusive). Items are stored as instants; an
/// all-day item's days are its UTC dates (the page and the API store UTC
/// midnights), an end inside a day includes that day, and every item covers
/// at least its first day (so `end == start` is a one-day event).
pub fn all_day_span(start: DateTime<Utc>, end: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
    // Dates stay in the years 0001 to 9999, as timestamps do.
    let next = |d: NaiveDate| d.succ_opt().filter(|n| n.year() <= 9999).unwrap_or(d);
    let first = start.date_naive();
    let mut after_last = end.date_naive();
    if end.time() != NaiveTime::MIN {
        after_last = next(after_last);
    }
    if after_last <= first {
        after_last = next(first);
    }
    (first, after_last)
}

/// A feed request's `timeZone`: an IANA time zone name (`America/Chicago`)
/// or `UTC`, as FullCalendar sends it for a calendar whose `timeZone` is not
/// `local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone(chrono_tz::Tz);

impl Zone {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        s.parse::<chrono_tz::Tz>().map(Self).map_err(|_| InvalidValue::NotATimeZone)
    }

    /// The instant of a wall-clock time in this zone.
    fn to_utc(self, local: chrono::NaiveDateTime) -> DateTime<Utc> {
        use chrono::{LocalResult, Offset, TimeZone};
        match self.0.from_local_datetime(&local) {
            LocalResult::Single(dt) | LocalResult::Ambiguous(dt, _) => dt.with_timezone(&Utc),
            // Skipped by a daylight-saving change: the offset before it.
            LocalResult::None => {
                let before = self.0.offset_from_utc_datetime(&(local - chrono::Duration::days(1))).fix();
                (local - before).and_utc()
            }
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl TryFrom<String> for Timestamp {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, InvalidValue> {
        Self::parse(&s)
    }
}

impl From<Timestamp> for String {
    fn from(t: Timestamp) -> String {
        t.to_string()
    }
}

/// What a client may send: an RFC 3339 timestamp or a bare date. (Answers
/// always carry the full RFC 3339 form in UTC; response types say so with
/// `format = DateTime` on their fields.)
impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        date_time_or_date_schema(
            "An RFC 3339 timestamp with an offset (2026-10-06T09:00:00Z), or a date (2026-10-06) meaning \
             midnight UTC. Years 0001 to 9999 (in UTC).",
        )
        .into()
    }
}

/// The OpenAPI schema of a string that is an RFC 3339 timestamp or a date.
pub fn date_time_or_date_schema(description: &str) -> AnyOfBuilder {
    let string =
        |format| ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(format)));
    AnyOfBuilder::new()
        .item(string(KnownFormat::DateTime))
        .item(string(KnownFormat::Date))
        .description(Some(description))
}
impl ToSchema for Timestamp {}

/// A half-open feed range `[start, end)`: end after start, at most
/// [`MAX_FEED_RANGE_DAYS`] long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeRange {
    start: Timestamp,
    end: Timestamp,
}

impl TimeRange {
    pub fn new(start: Timestamp, end: Timestamp) -> Result<Self, ValidationError> {
        if end <= start {
            return Err(ValidationError::new("end", InvalidValue::EndNotAfterStart));
        }
        if end.as_utc() - start.as_utc() > chrono::Duration::days(MAX_FEED_RANGE_DAYS) {
            return Err(ValidationError::new("end", InvalidValue::RangeTooLong { max_days: MAX_FEED_RANGE_DAYS }));
        }
        Ok(Self { start, end })
    }

    pub fn start(&self) -> Timestamp {
        self.start
    }

    pub fn end(&self) -> Timestamp {
        self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn offsets_normalize_to_utc() {
        assert_eq!(ts("2026-10-06T11:00:00+02:00"), ts("2026-10-06T09:00:00Z"));
        assert_eq!(ts("2026-10-06T09:00:00Z").to_string(), "2026-10-06T09:00:00Z");
    }

    #[test]
    fn bare_date_is_midnight_utc() {
        assert_eq!(ts("2026-10-06"), ts("2026-10-06T00:00:00Z"));
    }

    #[test]
    fn naive_datetime_is_utc() {
        assert_eq!(ts("2026-10-06T09:30:00"), ts("2026-10-06T09:30:00Z"));
    }

    #[test]
    fn naive_datetime_is_wall_clock_time_in_the_zone() {
        let la = Some(Zone::parse("America/Los_Angeles").unwrap());
        let at = |s: &str, zone| Timestamp::parse_in(s, zone).unwrap().to_string();
        assert_eq!(at("2026-10-06T00:00:00", la), "2026-10-06T07:00:00Z"); // PDT
        assert_eq!(at("2026-12-06T00:00:00", la), "2026-12-06T08:00:00Z"); // PST
        assert_eq!(at("2026-10-06T00:00:00", Some(Zone::parse("UTC").unwrap())), "2026-10-06T00:00:00Z");
        // An offset wins over the zone, and a bare date stays midnight UTC.
        assert_eq!(at("2026-10-06T00:00:00+02:00", la), "2026-10-05T22:00:00Z");
        assert_eq!(at("2026-10-06", la), "2026-10-06T00:00:00Z");
        // 02:30 does not exist on 2026-03-08 in Los Angeles; 01:30 on 2026-11-01 occurs twice.
        assert_eq!(at("2026-03-08T02:30:00", la), "2026-03-08T10:30:00Z");
        assert_eq!(at("2026-11-01T01:30:00", la), "2026-11-01T08:30:00Z");
        // Santiago skips midnight (to 01:00) on 2026-09-06.
        let santiago = Some(Zone::parse("America/Santiago").unwrap());
        assert_eq!(at("2026-09-06T00:00:00", santiago), "2026-09-06T04:00:00Z");
    }

    #[test]
    fn zones_are_iana_names() {
        for good in ["UTC", "Europe/Berlin", "America/Los_Angeles", "Asia/Kolkata"] {
            assert!(Zone::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "local", "Mars/Olympus", "+02:00", "europe/berlin "] {
            assert!(Zone::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn precision_is_truncated_to_microseconds() {
        assert_eq!(ts("2026-10-06T09:00:00.123456789Z").to_string(), "2026-10-06T09:00:00.123456Z");
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in ["", "yesterday", "2026-13-01", "2026-10-06T25:00:00Z", "99999-01-01", "2026-10-06 09:00"] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn years_outside_0001_to_9999_in_utc_are_rejected() {
        for bad in [
            "9999-12-31T23:00:00-05:00",
            "0001-01-01T00:00:00+05:00",
            "0000-06-01",
            "0000-06-01T00:00:00Z",
            "+10000-01-01",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(ts("9999-12-31T23:59:59.999999Z").to_string(), "9999-12-31T23:59:59.999999Z");
        assert_eq!(ts("0001-01-01").to_string(), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn the_key_writer_writes_what_display_does() {
        for s in [
            "2026-10-06T09:00:00Z",
            "2026-10-06T09:00:00.5Z",
            "2026-10-06T09:00:00.123Z",
            "2026-10-06T09:00:00.123456Z",
            "2026-10-06T09:00:00.000001Z",
            "2026-10-06T09:00:00.120000Z",
            "0001-01-01",
            "9999-12-31T23:59:59.999999Z",
        ] {
            let t = ts(s);
            let mut written = String::new();
            t.write_rfc3339(&mut written);
            assert_eq!(written, t.to_string(), "{s}");
        }
    }

    #[test]
    fn range_must_be_ordered_and_bounded() {
        let a = ts("2026-01-01");
        assert!(TimeRange::new(a, a).is_err());
        assert!(TimeRange::new(ts("2026-01-02"), a).is_err());
        assert!(TimeRange::new(a, ts("2027-02-05")).is_ok()); // 400 days
        let too_long = TimeRange::new(a, ts("2027-02-05T00:00:01Z")).map(|_| ()).unwrap_err();
        assert_eq!(too_long.field, "end");
    }

    fn span(start: &str, end: &str) -> (String, String) {
        let (a, b) = all_day_span(ts(start).as_utc(), ts(end).as_utc());
        (a.to_string(), b.to_string())
    }

    #[test]
    fn all_day_items_cover_their_utc_dates_end_exclusive() {
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(span("2026-10-06", "2026-10-07"), s("2026-10-06", "2026-10-07"));
        assert_eq!(span("2026-12-24", "2026-12-27"), s("2026-12-24", "2026-12-27"));
        // end == start: one day; an end inside a day includes that day.
        assert_eq!(span("2026-10-06", "2026-10-06"), s("2026-10-06", "2026-10-07"));
        assert_eq!(span("2026-10-06T09:00:00Z", "2026-10-06T17:00:00Z"), s("2026-10-06", "2026-10-07"));
        assert_eq!(span("2026-10-06T09:00:00Z", "2026-10-08T00:00:01Z"), s("2026-10-06", "2026-10-09"));
        // The last representable day does not overflow.
        assert_eq!(span("9999-12-31", "9999-12-31T12:00:00Z"), s("9999-12-31", "9999-12-31"));
    }
}
