use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::extract::{AuthUser, require_session};
use crate::cache::FeedParams;
use crate::domain::{Status, TimeRange, Timestamp, ValidationError, WorkType};
use crate::error::ApiError;
use crate::middleware::no_store;
use crate::service::{self, AppState};

pub fn config(cfg: &mut web::ServiceConfig) {
    // The header guard wraps the whole resource (outermost: the last `wrap`),
    // so every answer — the handler's, the session check's 401, extractor
    // errors, a 405 — carries it.
    cfg.service(
        web::resource("/api/calendar/feed")
            .wrap(from_fn(require_session))
            .wrap(from_fn(no_store))
            .route(web::get().to(feed))
            .default_service(web::to(super::method_not_allowed)),
    );
}

/// The query string as sent. Unknown parameters (FullCalendar's `_`) are
/// ignored; `timeZone` is accepted and has no effect, since every time in
/// the answer carries its offset (UTC).
#[derive(Debug, Deserialize)]
pub struct RawFeedQuery {
    start: Option<String>,
    end: Option<String>,
    work_type: Option<String>,
    status: Option<String>,
    #[serde(rename = "timeZone")]
    #[allow(dead_code, reason = "accepted for FullCalendar; answers are in UTC")]
    time_zone: Option<String>,
}

impl TryFrom<RawFeedQuery> for FeedParams {
    type Error = ValidationError;

    fn try_from(q: RawFeedQuery) -> Result<Self, ValidationError> {
        let ts = |name: &'static str, v: Option<String>| -> Result<Timestamp, ValidationError> {
            let v = v
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ValidationError::new(name, "is required"))?;
            Timestamp::parse(&v).map_err(|reason| ValidationError::new(name, reason))
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
        Ok(FeedParams {
            range,
            work_type,
            status,
        })
    }
}

async fn feed(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<RawFeedQuery>,
) -> Result<HttpResponse, ApiError> {
    let params = FeedParams::try_from(query.into_inner())?;
    let (outcome, body) = service::feed::feed(&state, user.0.user_id, params).await?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .insert_header(("X-Cache", outcome.as_str()))
        .body(body))
}
