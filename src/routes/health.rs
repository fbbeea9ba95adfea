use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::db;
use crate::error::ApiError;
use crate::service::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// The process is up.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Both dependencies answer. A 503 names the ones that do not, so an
/// operator knows where to look.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (pg, redis) = tokio::join!(db::run(&state.pool, db::ping), state.cache.ping());
    let down: Vec<&str> = [
        pg.is_err().then_some("postgres"),
        redis.is_err().then_some("redis"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if down.is_empty() {
        HttpResponse::Ok().json(json!({"status": "ready", "postgres": "up", "redis": "up"}))
    } else {
        let message = format!("unavailable: {}", down.join(", "));
        let mut res = crate::error::error_response(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            message,
            None,
        );
        res.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from_static("1"),
        );
        res
    }
}

async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text))
}
