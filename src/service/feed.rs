//! The calendar feed: FullCalendar's "events JSON feed" for one user.

use bytes::Bytes;
use chrono::NaiveDate;
use serde::Serialize;

use super::auth::{self, Claim};
use super::{AppState, ServiceError};
use crate::cache::{Encoding, FeedBody, FeedOutcome, FeedParams};
use crate::db::work_items::{self as items, Capped, FeedFilter};
use crate::db::{self, FeedRow};
use crate::domain::{Status, Timestamp, UserId, WorkItemId, WorkType, all_day_span};

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtendedProps {
    work_item_id: WorkItemId,
    work_type: WorkType,
    status: Status,
}

/// An event's start or end as FullCalendar reads it: an RFC 3339 instant for
/// a timed event, a date (`2026-10-06`) for an all-day one, so that a page in
/// any time zone shows it on the days it covers (contract v1.1).
#[derive(Serialize)]
#[serde(untagged)]
enum EventTime {
    At(Timestamp),
    Day(NaiveDate),
}

fn event_time_schema() -> utoipa::openapi::schema::Schema {
    crate::domain::date_time_or_date_schema(
        "An RFC 3339 timestamp in UTC for a timed event; a date for an all-day event (`allDay: true`), \
         the end exclusive.",
    )
    .build()
    .into()
}

/// One event as FullCalendar reads it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedEvent<'a> {
    /// `work-item-<uuid>`.
    #[schema(pattern = "^work-item-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    id: String,
    title: &'a str,
    #[schema(schema_with = event_time_schema)]
    start: EventTime,
    #[schema(schema_with = event_time_schema)]
    end: EventTime,
    all_day: bool,
    extended_props: ExtendedProps,
}

impl<'a> From<&'a FeedRow> for FeedEvent<'a> {
    fn from(r: &'a FeedRow) -> Self {
        let (start, end) = if r.all_day {
            let (first, after_last) = all_day_span(r.start_at, r.end_at);
            (EventTime::Day(first), EventTime::Day(after_last))
        } else {
            (EventTime::At(Timestamp::from_utc(r.start_at)), EventTime::At(Timestamp::from_utc(r.end_at)))
        };
        Self {
            id: format!("work-item-{}", r.id),
            title: &r.title,
            start,
            end,
            all_day: r.all_day,
            extended_props: ExtendedProps { work_item_id: r.id, work_type: r.work_type, status: r.status },
        }
    }
}

/// The most JSON one event can take: a 200-character title of characters
/// JSON escapes as `\u00XX` (6 bytes each), the longest timestamps and
/// enum values, and the fixed names. `config::LimitsSettings` derives the
/// ceiling of `limits.max_items_per_feed` from it; a test checks it.
pub const MAX_EVENT_JSON_BYTES: usize = 1600;

/// Serializes feed rows into the JSON array FullCalendar reads.
pub fn serialize_feed(rows: &[FeedRow]) -> Result<Bytes, serde_json::Error> {
    let events: Vec<FeedEvent<'_>> = rows.iter().map(FeedEvent::from).collect();
    serde_json::to_vec(&events).map(Bytes::from)
}

#[tracing::instrument(level = "debug", skip_all, fields(user_id = %claim.user_id))]
/// `want`: what the client takes, so that a hit from this process's copy
/// needs neither a fetch nor a decompression.
pub async fn feed(
    state: &AppState,
    claim: Claim,
    params: FeedParams,
    want: Encoding,
) -> Result<(FeedOutcome, FeedBody), ServiceError> {
    let (user, token_hash) = (claim.user_id, claim.token_hash);
    let served = state
        .cache
        .feed_read_through(
            user,
            &token_hash,
            &params,
            want,
            async |cached| auth::confirm(state, claim, cached).await.map(drop),
            async || fill_feed(state, user, &params).await,
        )
        .await?;
    state.metrics.feed_outcome(served.outcome);
    if let (Some(sampler), Some(versions)) = (&state.audit, &served.versions) {
        sampler.offer(user, &params, versions, &served.body);
    }
    Ok((served.outcome, served.body))
}

/// A fill: the feed's JSON from PostgreSQL on a miss or bypass, for a
/// confirmed session, charged to the user's fill budget
/// (`limits.feed_fills_per_user`) first.
pub async fn fill_feed(state: &AppState, user: UserId, params: &FeedParams) -> Result<Bytes, ServiceError> {
    super::limits::charge_feed_fill(state, user).await?;
    load_feed(state, user, params).await
}

/// The feed's JSON straight from PostgreSQL (not charged: the auditor's
/// re-checks use it too). Refused past `limits.max_items_per_feed`. The
/// rows are serialized on the blocking thread that queried them, not on an
/// async worker: a big feed's JSON takes milliseconds.
pub async fn load_feed(state: &AppState, user: UserId, params: &FeedParams) -> Result<Bytes, ServiceError> {
    state.metrics.feed_db_queries.inc();
    let params = *params;
    let max = state.limits.max_items_per_feed.get();
    db::run(&state.pool, move |c| {
        let filter = FeedFilter {
            user,
            start: params.range.start().as_utc(),
            end: params.range.end().as_utc(),
            work_type: params.work_type,
            status: params.status,
        };
        match items::feed_capped(c, filter, max)? {
            Capped::Rows(rows) => {
                serialize_feed(&rows).map_err(|e| ServiceError::internal("feed serialization failed", e))
            }
            Capped::Over => Err(super::limits::feed_too_large(max)),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest event there can be stays within `MAX_EVENT_JSON_BYTES`.
    #[test]
    fn the_largest_event_fits_its_bound() {
        let far = chrono::DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999Z")
            .unwrap_or_else(|e| panic!("{e}"))
            .to_utc();
        let worst = |all_day| FeedRow {
            id: WorkItemId(uuid::Uuid::new_v4()),
            title: "\u{1}".repeat(crate::domain::Title::MAX_CHARS),
            work_type: WorkType::Activity,
            status: Status::NotStarted,
            start_at: far,
            end_at: far,
            all_day,
        };
        for all_day in [false, true] {
            let json = serialize_feed(&[worst(all_day)]).unwrap_or_else(|e| panic!("{e}"));
            // Minus the array's brackets, plus the comma between events.
            assert!(json.len() - 1 <= MAX_EVENT_JSON_BYTES, "{} bytes", json.len());
        }
    }
}
