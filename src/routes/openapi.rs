//! `GET /api/openapi.json`: the contract, generated from the code
//! (`crate::openapi`). Public: clients and tools read it before signing in.

use std::sync::OnceLock;

use actix_web::{HttpResponse, web};

use crate::error::ApiError;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/openapi.json").route(web::get().to(openapi_json)).default_service(super::allow("GET")),
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
    static JSON: OnceLock<Result<String, String>> = OnceLock::new();
    let json = JSON.get_or_init(|| crate::openapi::document().to_json().map_err(|e| e.to_string()));
    match json {
        Ok(json) => Ok(HttpResponse::Ok().content_type("application/json").body(json.clone())),
        Err(e) => Err(ApiError::Internal(format!("OpenAPI document: {e}").into())),
    }
}
