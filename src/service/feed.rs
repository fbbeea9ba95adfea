//! The calendar feed: FullCalendar's "events JSON feed" for one user.

use bytes::Bytes;
use chrono::NaiveDate;
use serde::Serialize;

use super::auth::{self, Claim};
use super::{AppState, ServiceError};
use crate::cache::{Encoding, FeedBody, FeedOutcome, FeedParams};
use crate::db::work_items::{self as items, FeedFilter};
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
            async || load_feed(state, user, &params).await,
        )
        .await?;
    state.metrics.feed_outcome(served.outcome.metric());
    if let (Some(sampler), Some(versions)) = (&state.audit, &served.versions) {
        sampler.offer(user, &params, versions, &served.body);
    }
    Ok((served.outcome, served.body))
}

/// The feed's JSON straight from PostgreSQL.
pub async fn load_feed(state: &AppState, user: UserId, params: &FeedParams) -> Result<Bytes, ServiceError> {
    state.metrics.feed_db_queries.inc();
    let params = *params;
    let rows = db::run(&state.pool, move |c| {
        items::feed(
            c,
            FeedFilter {
                user,
                start: params.range.start().as_utc(),
                end: params.range.end().as_utc(),
                work_type: params.work_type,
                status: params.status,
            },
        )
    })
    .await?;
    serialize_feed(&rows).map_err(|_| ServiceError::Internal("feed serialization failed"))
}
