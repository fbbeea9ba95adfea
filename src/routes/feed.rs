use actix_web::http::header::{
    AcceptEncoding, CONTENT_ENCODING, CONTENT_TYPE, Encoding, Header as _, HeaderValue, Preference, Quality,
};
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::extract::Claimed;
use crate::cache::{self, FeedOutcome, FeedParams};
use crate::domain::{Reason, Status, TimeRange, Timestamp, ValidationError, WorkType, Zone};
use crate::error::{ApiError, Chain, ErrorBody};
use crate::middleware::no_store;
use crate::service::feed::FeedEvent;
use crate::service::{self, AppState};

/// This module's part of the OpenAPI document (`crate::openapi` merges it).
#[derive(utoipa::OpenApi)]
#[openapi(paths(feed))]
pub struct Docs;

/// A filter: one of `values`, or empty for "all" (what a select showing
/// "all" submits).
fn filter_schema(values: impl Iterator<Item = &'static str>) -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(std::iter::once("").chain(values)))
        .build()
}

fn work_type_filter() -> utoipa::openapi::schema::Object {
    filter_schema(WorkType::ALL.iter().map(|t| t.as_str()))
}

fn status_filter() -> utoipa::openapi::schema::Object {
    filter_schema(Status::ALL.iter().map(|s| s.as_str()))
}

pub fn config(cfg: &mut web::ServiceConfig) {
    // The header guard wraps the whole resource (outermost: the last `wrap`),
    // so every answer — the handler's, the session check's 401, extractor
    // errors, a 405 — carries it.
    //
    // No `require_session` here: the handler confirms the session itself,
    // with the session's cached validity read in the same Redis round trip
    // as the feed (see `cache::feed`).
    cfg.service(
        web::resource("/api/calendar/feed")
            .wrap(from_fn(no_store))
            .route(web::get().to(feed))
            .default_service(super::allow("GET, HEAD")),
    );
}

/// The query string as sent. Unknown parameters (FullCalendar's `_`) are
/// ignored. `timeZone` says in which zone a `start` or `end` without an
/// offset is meant (FullCalendar sends such times for a named `timeZone`);
/// the answer is the same for every zone (timed events in UTC with their
/// offset, all-day events as dates), so it only moves the range.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RawFeedQuery {
    /// Inclusive start of the range.
    #[param(required = true, value_type = Timestamp, example = "2026-10-01T00:00:00Z")]
    start: Option<String>,
    /// Exclusive end of the range: after `start`, at most 400 days later.
    #[param(required = true, value_type = Timestamp, example = "2026-11-01")]
    end: Option<String>,
    /// Only items of this type (empty: all).
    #[param(schema_with = work_type_filter)]
    work_type: Option<String>,
    /// Only items with this status (empty: all).
    #[param(schema_with = status_filter)]
    status: Option<String>,
    /// The zone of a `start` or `end` written without an offset
    /// (`2026-10-01T00:00:00`, as FullCalendar sends them for a named time
    /// zone): an IANA name or `UTC`. Bare dates stay midnight UTC; times with
    /// an offset are unaffected. Empty: none.
    #[serde(rename = "timeZone")]
    #[param(example = "America/Los_Angeles")]
    time_zone: Option<String>,
}

impl TryFrom<RawFeedQuery> for FeedParams {
    type Error = ValidationError;

    fn try_from(q: RawFeedQuery) -> Result<Self, ValidationError> {
        let zone = q
            .time_zone
            .filter(|s| !s.is_empty())
            .map(|s| Zone::parse(&s))
            .transpose()
            .map_err(|reason| ValidationError::new("timeZone", reason))?;
        let ts = |name: &'static str, v: Option<String>| -> Result<Timestamp, ValidationError> {
            let v = v.filter(|s| !s.is_empty()).ok_or_else(|| ValidationError::new(name, Reason::Required))?;
            Timestamp::parse_in(&v, zone).map_err(|reason| ValidationError::new(name, reason))
        };
        let range = TimeRange::new(ts("start", q.start)?, ts("end", q.end)?)?;
        // An empty filter (a select showing "all") means no filter.
        let work_type = q
            .work_type
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<WorkType>())
            .transpose()
            .map_err(|reason| ValidationError::new("work_type", reason))?;
        let status = q
            .status
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<Status>())
            .transpose()
            .map_err(|reason| ValidationError::new("status", reason))?;
        Ok(FeedParams { range, work_type, status })
    }
}

/// FullCalendar's events JSON feed.
///
/// The caller's items (owned or assigned) overlapping `[start, end)`,
/// ordered by start, then id. Every answer of this route, errors too,
/// carries `Cache-Control: no-store, no-cache, must-revalidate, max-age=0,
/// private`, `Pragma: no-cache`, `Expires: 0` and `Vary: Cookie, Authorization`.
#[utoipa::path(get, path = "/api/calendar/feed", tag = "calendar", params(RawFeedQuery),
    security(("bearer" = []), ("session_cookie" = [])), responses(
    (status = 200, description = "The events", body = Vec<FeedEvent>, headers(
        ("X-Cache" = String, description = "`HIT`, `MISS` or `BYPASS`: whether the shared cache answered"),
        ("Cache-Control" = String, description = "`no-store, no-cache, must-revalidate, max-age=0, private`"),
        ("Content-Encoding" = String, description = "`gzip` when the request's `Accept-Encoding` allows it \
            (the bytes the cache stores); absent otherwise"),
    )),
    (status = 400, description = "`invalid_input`: a missing or malformed parameter, end not after start, \
        a range over 400 days, an unknown `timeZone`", body = ErrorBody),
    (status = 401, description = "`unauthenticated`: no live session", body = ErrorBody),
    (status = 409, description = "`limit_exceeded`: the range holds more than `limits.max_items_per_feed` \
        items (`field` is `end`: ask for a shorter range). Refused rather than truncated: a 200 carries every \
        item of the range", body = ErrorBody),
    (status = 429, description = "`rate_limited`: the user loaded `limits.feed_fills_per_user` ranges from \
        PostgreSQL (misses) this window; cached ranges still answer (`Retry-After`)", body = ErrorBody, headers(
        ("Retry-After" = u64, description = "Seconds until the fill budget's window ends"),
    )),
    (status = 503, description = "`unavailable`: PostgreSQL is unavailable and the cache cannot answer", body = ErrorBody),
))]
async fn feed(state: web::Data<AppState>, claimed: Claimed, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let parsed = web::Query::<RawFeedQuery>::from_query(req.query_string())
        .map_err(|e| super::query_error(&e))
        .and_then(|q| FeedParams::try_from(q.into_inner()).map_err(ApiError::from));
    let params = match parsed {
        Ok(params) => params,
        Err(e) => {
            // 401 before 400, as on every other route: a stranger learns
            // nothing about what a well-formed request looks like.
            service::auth::confirm_uncached(&state, claimed.0).await?;
            return Err(e);
        }
    };
    let user = claimed.0.user_id;
    let want = if accepts_gzip(&req) { cache::Encoding::Gzip } else { cache::Encoding::Identity };
    let (outcome, body) = service::feed::feed(&state, claimed.0, params, want).await?;
    let mut res = HttpResponse::Ok();
    res.insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")));
    if let Some(gzip) = body.gzip().filter(|_| want == cache::Encoding::Gzip) {
        // The stored bytes, as Redis returned them.
        res.insert_header(("X-Cache", outcome.as_str()));
        res.insert_header((CONTENT_ENCODING, HeaderValue::from_static("gzip")));
        return Ok(res.body(gzip.clone()));
    }
    // Inflating a big entry takes milliseconds: not on the async worker.
    match body.inflate().await {
        Ok(json) => Ok(res.insert_header(("X-Cache", outcome.as_str())).body(json)),
        // A stored entry that is not what we stored: the session was
        // confirmed, so answer from PostgreSQL (the next fill overwrites it).
        Err(e) => {
            tracing::warn!(user_id = %user, error = %Chain(&e), "stored feed entry does not decompress; answering from PostgreSQL");
            let json = Box::pin(service::feed::fill_feed(&state, user, &params)).await?;
            Ok(res.insert_header(("X-Cache", FeedOutcome::Bypass.as_str())).body(json))
        }
    }
}

/// Whether the client takes gzip (RFC 9110 §12.5.3): `gzip` listed with a
/// non-zero q-value, or `*` with one and `gzip` not listed. Without the
/// header, identity. `Vary` stays `Cookie, Authorization` as the contract has
/// it: every feed answer is `no-store`, so no cache keeps one to vary.
fn accepts_gzip(req: &HttpRequest) -> bool {
    let Ok(accept) = AcceptEncoding::parse(req) else {
        return false;
    };
    let q = |wanted: &Preference<Encoding>| accept.0.iter().find(|i| &i.item == wanted).map(|i| i.quality);
    match q(&Preference::Specific(Encoding::gzip())) {
        Some(quality) => quality > Quality::ZERO,
        None => q(&Preference::Any).is_some_and(|quality| quality > Quality::ZERO),
    }
}
