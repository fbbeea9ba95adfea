use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use uuid::Uuid;

use super::extract::{AuthUser, JsonBody, require_session};
use crate::domain::{Reason, WorkItemId};
use crate::error::{ApiError, ErrorBody};
use crate::service::AppState;
use crate::service::work_items::{self, CreateWorkItem, PatchWorkItem, WorkItem};

/// This module's part of the OpenAPI document (`crate::openapi` merges it).
#[derive(utoipa::OpenApi)]
#[openapi(paths(create, get, update, delete))]
pub struct Docs;

/// The `{id}` path parameter.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(dead_code, reason = "documentation only: handlers take the raw string and `parse_id` it")]
struct ItemPath {
    /// The work item's UUID, or the feed's `work-item-<uuid>` form.
    #[param(pattern = "^(work-item-)?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")]
    id: String,
}

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/work-items")
            .wrap(from_fn(require_session))
            .route(web::post().to(create))
            .default_service(super::allow("POST")),
    )
    .service(
        web::resource("/api/work-items/{id}")
            .wrap(from_fn(require_session))
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete))
            .default_service(super::allow("GET, HEAD, PATCH, DELETE")),
    );
}

fn parse_id(raw: &str) -> Result<WorkItemId, ApiError> {
    // Clients may hold the feed's "work-item-<uuid>" form; accept it too.
    let raw = raw.strip_prefix("work-item-").unwrap_or(raw);
    Uuid::parse_str(raw).map(WorkItemId).map_err(|_| ApiError::invalid("id", Reason::NotAUuid))
}

/// Creates a work item owned by the caller.
#[utoipa::path(post, path = "/api/work-items", tag = "work items", request_body = CreateWorkItem,
    security(("bearer" = []), ("session_cookie" = [])), responses(
    (status = 201, description = "Created", body = WorkItem, headers(
        ("Location" = String, description = "`/api/work-items/<uuid>`"),
    )),
    (status = 400, description = "`invalid_input`, naming the field", body = ErrorBody),
    (status = 401, description = "`unauthenticated`: no live session", body = ErrorBody),
    (status = 408, description = "`request_timeout`: the body arrived too slowly", body = ErrorBody),
    (status = 409, description = "`limit_exceeded`, naming the limit (`limit.name`, `limit.max`); nothing was \
        written: the caller owns `limits.max_items_per_owner` items already, or an assignee is assigned to \
        `limits.max_assignments_per_user` items of other users (then `field` is `assignee_ids`)", body = ErrorBody),
    (status = 413, description = "`payload_too_large`: body over 64 KiB", body = ErrorBody),
    (status = 415, description = "`unsupported_media_type`: not JSON", body = ErrorBody),
    (status = 503, description = "`unavailable`: PostgreSQL is unavailable, or this replica cannot write its \
        write fence to Redis; nothing was changed. `outcome_unknown`: PostgreSQL did not confirm the commit in \
        time; the change may have been saved", body = ErrorBody),
))]
async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: JsonBody<CreateWorkItem>,
) -> Result<HttpResponse, ApiError> {
    let item = work_items::create(&state, user.0.user_id, body.0).await?;
    Ok(HttpResponse::Created().insert_header(("Location", format!("/api/work-items/{}", item.id))).json(item))
}

/// One work item the caller owns or is assigned to.
#[utoipa::path(get, path = "/api/work-items/{id}", tag = "work items", params(ItemPath),
    security(("bearer" = []), ("session_cookie" = [])), responses(
    (status = 200, description = "The item", body = WorkItem),
    (status = 400, description = "`invalid_input`: the id is not a UUID", body = ErrorBody),
    (status = 401, description = "`unauthenticated`: no live session", body = ErrorBody),
    (status = 404, description = "`not_found`: no such item, or not the caller's", body = ErrorBody),
    (status = 503, description = "`unavailable`: PostgreSQL is unavailable", body = ErrorBody),
))]
async fn get(state: web::Data<AppState>, user: AuthUser, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let item = work_items::get(&state, user.0.user_id, id).await?;
    Ok(HttpResponse::Ok().json(item))
}

/// Changes any subset of the writable fields (owner only).
#[utoipa::path(patch, path = "/api/work-items/{id}", tag = "work items", params(ItemPath), request_body = PatchWorkItem,
    security(("bearer" = []), ("session_cookie" = [])), responses(
    (status = 200, description = "The changed item", body = WorkItem),
    (status = 400, description = "`invalid_input`, naming the field", body = ErrorBody),
    (status = 401, description = "`unauthenticated`: no live session", body = ErrorBody),
    (status = 404, description = "`not_found`: no such item, or the caller is not its owner", body = ErrorBody),
    (status = 408, description = "`request_timeout`: the body arrived too slowly", body = ErrorBody),
    (status = 409, description = "`limit_exceeded`, naming the limit and `field` `assignee_ids`: a newly added \
        assignee is assigned to `limits.max_assignments_per_user` items of other users; nothing was written. \
        `conflict`: the item's assignees kept changing while this change was tried", body = ErrorBody),
    (status = 413, description = "`payload_too_large`: body over 64 KiB", body = ErrorBody),
    (status = 415, description = "`unsupported_media_type`: not JSON", body = ErrorBody),
    (status = 503, description = "`unavailable`: PostgreSQL is unavailable, or this replica cannot write its \
        write fence to Redis; nothing was changed. `outcome_unknown`: PostgreSQL did not confirm the commit in \
        time; the change may have been saved", body = ErrorBody),
))]
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

/// Deletes a work item (owner only).
#[utoipa::path(delete, path = "/api/work-items/{id}", tag = "work items", params(ItemPath),
    security(("bearer" = []), ("session_cookie" = [])), responses(
    (status = 204, description = "Deleted"),
    (status = 400, description = "`invalid_input`: the id is not a UUID", body = ErrorBody),
    (status = 401, description = "`unauthenticated`: no live session", body = ErrorBody),
    (status = 404, description = "`not_found`: no such item, or the caller is not its owner", body = ErrorBody),
    (status = 409, description = "`conflict`: the item's assignees kept changing while the delete was tried \
        (each change needs their feeds fenced first); nothing was deleted, try again", body = ErrorBody),
    (status = 503, description = "`unavailable`: PostgreSQL is unavailable, or this replica cannot write its \
        write fence to Redis; nothing was changed. `outcome_unknown`: PostgreSQL did not confirm the commit in \
        time; the change may have been saved", body = ErrorBody),
))]
async fn delete(state: web::Data<AppState>, user: AuthUser, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    work_items::delete(&state, user.0.user_id, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
