//! Cross-cutting HTTP behaviour: the feed's header guard, JSON bodies for
//! every error actix produces itself, request metrics, HEAD as GET, the JSON
//! 408 for a slow request head (`slow_head`).

pub mod slow_head;

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, Next};
use actix_web::{Error, web};

use crate::error::{ErrorCode, error_response};
use crate::metrics::RequestLabels;
use crate::service::AppState;

/// The header guard of the feed: no browser, proxy or CDN keeps a copy of
/// any answer of the feed route, success or error. (The origin's last 40 %:
/// a correct server cache is useless if the browser replays its own copy.)
pub async fn no_store(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    // Kept so an error raised below can still become a response we stamp.
    let http_req = req.request().clone();
    let mut res = match next.call(req).await {
        Ok(res) => res.map_into_boxed_body(),
        Err(err) => ServiceResponse::from_err(err, http_req),
    };
    let h = res.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0, private"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::EXPIRES, HeaderValue::from_static("0"));
    h.insert(header::VARY, HeaderValue::from_static("Cookie, Authorization"));
    // Validators would invite conditional requests; the feed has none.
    h.remove(header::ETAG);
    h.remove(header::LAST_MODIFIED);
    Ok(res)
}

/// What the request head settles before routing, in one layer (each
/// middleware layer costs the hit path a boxed future):
/// - the connection's watch for a slow first head ends (`slow_head`);
/// - `HEAD` wherever `GET` works (RFC 9110 §9.3.2): a HEAD request is routed
///   as the GET it stands for, so it gets the same status and headers (the
///   header guard, `Content-Length`, `X-Cache`) from the same handler;
///   actix-http, which remembers that the request line said HEAD, sends no
///   body. A path without GET answers HEAD with its JSON 405, and so does
///   the change stream (a GET that never ends).
///
/// Innermost of the app's middleware, so metrics and logs still say HEAD.
pub async fn request_head(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    slow_head::head_arrived(&req);
    // Not for the change stream: its GET never ends, so there is no
    // finished answer whose head a HEAD could get (it answers 405, Allow: GET).
    if req.method() == actix_web::http::Method::HEAD && req.path() != crate::routes::changes::PATH {
        req.head_mut().method = actix_web::http::Method::GET;
    }
    next.call(req).await
}

/// Safety net: an error response whose body is not JSON (actix's own 404s,
/// 405s, 413s, payload and extractor errors) is replaced by the contract's
/// error body for its status, so no plain-text or HTML error leaves.
pub fn json_errors<B: MessageBody + 'static>(res: ServiceResponse<B>) -> Result<ErrorHandlerResponse<B>, Error> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let message = status.canonical_reason().unwrap_or("error").to_owned();
    let (req, old) = res.into_parts();
    // actix's status stays (411, 414, 431 have no code of their own).
    let mut new = error_response(ErrorCode::for_status(status), message);
    *new.status_mut() = status;
    // Keep headers set upstream (the header guard, Allow, Retry-After).
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, new).map_into_right_body()))
}

/// Records request latency by method, route pattern and status class.
pub async fn record_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().clone();
    let res = next.call(req).await;
    if let Some(state) = state {
        let (route, status) = match &res {
            Ok(r) => (r.request().match_pattern().unwrap_or_else(|| "unmatched".into()), r.status().as_u16()),
            Err(e) => ("unmatched".to_owned(), e.as_response_error().status_code().as_u16()),
        };
        let labels = RequestLabels::new(&method, route, status);
        state.metrics.http_requests.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    }
    res
}
