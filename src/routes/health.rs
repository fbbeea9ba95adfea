use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::db;
use crate::error::{ApiError, ErrorBody};
use crate::service::AppState;

/// This module's part of the OpenAPI document (`crate::openapi` merges it).
#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz, metrics))]
pub struct Docs;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)).default_service(super::allow("GET, HEAD")))
        .service(web::resource("/readyz").route(web::get().to(readyz)).default_service(super::allow("GET, HEAD")))
        .service(web::resource("/metrics").route(web::get().to(metrics)).default_service(super::allow("GET, HEAD")));
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses(
    (status = 200, description = "Up", body = Object, example = json!({"status": "ok"})),
))]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Both dependencies answer, and the process has not been asked to stop. A
/// 503 names what is wrong (`draining`, the dependencies that do not
/// answer), so an operator knows where to look.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "PostgreSQL and Redis answer", body = Object,
        example = json!({"status": "ready", "postgres": "up", "redis": "up"})),
    (status = 503, description = "`unavailable`: stopping (`unavailable: draining`), or naming the dependencies that do not answer", body = ErrorBody),
))]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return unavailable("unavailable: draining".to_owned());
    }
    let (pg, redis) = tokio::join!(db::run(&state.pool, db::ping), state.cache.ping());
    let down: Vec<&str> =
        [pg.is_err().then_some("postgres"), redis.is_err().then_some("redis")].into_iter().flatten().collect();
    if down.is_empty() {
        HttpResponse::Ok().json(json!({"status": "ready", "postgres": "up", "redis": "up"}))
    } else {
        unavailable(format!("unavailable: {}", down.join(", ")))
    }
}

fn unavailable(message: String) -> HttpResponse {
    let mut res = crate::error::error_response(crate::error::ErrorCode::Unavailable, message);
    res.headers_mut()
        .insert(actix_web::http::header::RETRY_AFTER, actix_web::http::header::HeaderValue::from_static("1"));
    res
}

/// Prometheus / OpenMetrics text: feed cache outcomes, invalidations,
/// request latency histograms.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "The metrics", body = String, content_type = "application/openmetrics-text"),
))]
async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state.metrics.render().map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(HttpResponse::Ok().content_type("application/openmetrics-text; version=1.0.0; charset=utf-8").body(text))
}
