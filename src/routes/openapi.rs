//! `GET /api/openapi.json`: the contract, generated from the code
//! (`crate::openapi`). Public: clients and tools read it before signing in.

use std::sync::OnceLock;

use actix_web::{HttpResponse, web};

use crate::error::ApiError;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/openapi.json")
            .route(web::get().to(openapi_json))
            .default_service(super::allow("GET, HEAD")),
    );
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(openapi_json))]
pub struct Docs;

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations", responses(
    (status = 200, description = "The OpenAPI document", body = Object),
))]
async fn openapi_json() -> Result<HttpResponse, ApiError> {
    // Rendered once per process; the document is fixed at compile time.
    static JSON: OnceLock<String> = OnceLock::new();
    let json = match JSON.get() {
        Some(json) => json,
        None => {
            let rendered = crate::openapi::document().to_json().map_err(|e| ApiError::Internal(Box::new(e)))?;
            JSON.get_or_init(|| rendered)
        }
    };
    Ok(HttpResponse::Ok().content_type("application/json").body(json.clone()))
}
