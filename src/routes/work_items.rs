use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use uuid::Uuid;

use super::extract::{AuthUser, JsonBody, require_session};
use crate::domain::WorkItemId;
use crate::error::ApiError;
use crate::service::AppState;
use crate::service::work_items::{self, CreateWorkItem, PatchWorkItem};

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/work-items")
            .wrap(from_fn(require_session))
            .route(web::post().to(create))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/api/work-items/{id}")
            .wrap(from_fn(require_session))
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete))
            .default_service(web::to(super::method_not_allowed)),
    );
}

fn parse_id(raw: &str) -> Result<WorkItemId, ApiError> {
    // Clients may hold the feed's "work-item-<uuid>" form; accept it too.
    let raw = raw.strip_prefix("work-item-").unwrap_or(raw);
    Uuid::parse_str(raw)
        .map(WorkItemId)
        .map_err(|_| ApiError::invalid("id", "must be a UUID"))
}

async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: JsonBody<CreateWorkItem>,
) -> Result<HttpResponse, ApiError> {
    let item = work_items::create(&state, user.0.user_id, body.0).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/work-items/{}", item.id)))
        .json(item))
}

async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let item = work_items::get(&state, user.0.user_id, id).await?;
    Ok(HttpResponse::Ok().json(item))
}

async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    body: JsonBody<PatchWorkItem>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let item = work_items::update(&state, user.0.user_id, id, body.0).await?;
    Ok(HttpResponse::Ok().json(item))
}

async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    work_items::delete(&state, user.0.user_id, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
