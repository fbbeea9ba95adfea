//! `GET /api/calendar/changes`: the caller's live change stream (SSE).

use std::convert::Infallible;

use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};

use super::extract::Claimed;
use crate::domain::Reason;
use crate::error::{ApiError, Chain, ErrorBody, ErrorCode, error_response};
use crate::middleware::no_store;
use crate::service::changes::{self, OpenError};
use crate::service::{self, AppState};

/// This module's part of the OpenAPI document (`crate::openapi` merges it).
#[derive(utoipa::OpenApi)]
#[openapi(paths(changes))]
pub struct Docs;

/// The stream's path (HEAD is not routed as GET here: see `middleware`).
pub const PATH: &str = "/api/calendar/changes";

pub fn config(cfg: &mut web::ServiceConfig) {
    // The feed's header guard: no proxy or browser keeps any answer of it.
    cfg.service(
        web::resource(PATH).wrap(from_fn(no_store)).route(web::get().to(changes)).default_service(super::allow("GET")),
    );
}

/// The version the client saw last: the `Last-Event-ID` header (what
/// `EventSource` sends when it reconnects), else the `last_event_id` query
/// parameter (for a client that opens a new `EventSource` after backing
/// off, which cannot set headers). Empty means none.
fn last_event_id(req: &HttpRequest) -> Result<Option<u64>, ApiError> {
    let (field, raw) = match req.headers().get("last-event-id") {
        Some(v) => ("Last-Event-ID", v.to_str().map(str::to_owned).unwrap_or_else(|_| "\u{fffd}".into())),
        None => {
            let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
                .map_err(|e| super::query_error(&e))?;
            match query.into_inner().into_iter().find(|(k, _)| k == "last_event_id") {
                Some((_, v)) => ("last_event_id", v),
                None => return Ok(None),
            }
        }
    };
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<u64>().map(Some).map_err(|_| ApiError::invalid(field, Reason::NotAnEventId))
}

/// The caller's live change stream (Server-Sent Events).
///
/// Events carry no item data: `ready` (the stream is live; its id is the
/// current version), `change` (refetch the feed; its id is the new version),
/// `end` (`{"reason": "logout" | "session_ended" | "session_expired"}`: do
/// not reconnect), and `: keep-alive` comments. A client reconnecting with
/// `Last-Event-ID` (or `?last_event_id=`) that missed a change gets `change`
/// at once. A stream that ends without `end` should be reconnected.
#[utoipa::path(get, path = "/api/calendar/changes", tag = "calendar",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received (a version)"),
        ("last_event_id" = Option<String>, Query, description = "The same, for clients that cannot set headers"),
    ),
    security(("bearer" = []), ("session_cookie" = [])), responses(
    (status = 200, description = "The stream", content_type = "text/event-stream", body = String),
    (status = 400, description = "`invalid_input`: `Last-Event-ID` is not a version", body = ErrorBody),
    (status = 401, description = "`unauthenticated`: no live session", body = ErrorBody),
    (status = 429, description = "`rate_limited`: the user has `stream.max_per_user` streams open here", body = ErrorBody),
    (status = 503, description = "`unavailable`: Redis or PostgreSQL unavailable, this server's stream limit \
        reached, or the server is stopping (another replica may answer)", body = ErrorBody),
))]
async fn changes(state: web::Data<AppState>, claimed: Claimed, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let last = match last_event_id(&req) {
        Ok(last) => last,
        Err(e) => {
            // 401 before 400, as on every other route.
            service::auth::confirm_uncached(&state, claimed.0).await?;
            return Err(e);
        }
    };
    let stream = match changes::open(state.into_inner(), claimed.0, last).await {
        Ok(stream) => stream,
        Err(e) => return Ok(refused(e)),
    };
    let body = futures_util::stream::unfold(stream, |mut stream| async move {
        stream.next_chunk().await.map(|chunk| (Ok::<_, Infallible>(chunk), stream))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")))
        // nginx: pass each event on at once, whatever `proxy_buffering` says.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

fn refused(e: OpenError) -> HttpResponse {
    let message = e.to_string();
    let (code, retry_after) = match e {
        // The session's and PostgreSQL's answers, as on every route.
        OpenError::Service(s) => return ApiError::from(s).error_response(),
        OpenError::UserLimit { .. } => (ErrorCode::RateLimited, 5u32),
        OpenError::Unavailable(cause) => {
            tracing::warn!(error = %Chain(&cause), "change stream refused: redis unavailable");
            (ErrorCode::Unavailable, 1)
        }
        OpenError::ProcessLimit { .. } | OpenError::ShuttingDown => (ErrorCode::Unavailable, 1),
    };
    let mut res = error_response(code, message);
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    res
}
