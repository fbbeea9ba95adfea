use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::extract::{AuthUser, JsonBody, require_session};
use crate::domain::{Password, UserId, Username};
use crate::error::ApiError;
use crate::service::{AppState, auth};

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/signup")
            .route(web::post().to(signup))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/api/login")
            .route(web::post().to(login))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/api/logout")
            .wrap(from_fn(require_session))
            .route(web::post().to(logout))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/api/me")
            .wrap(from_fn(require_session))
            .route(web::get().to(me))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/api/users")
            .wrap(from_fn(require_session))
            .route(web::get().to(users))
            .default_service(web::to(super::method_not_allowed)),
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignupRequest {
    username: Username,
    password: Password,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: SecretString,
}

#[derive(Debug, Serialize)]
struct UserBody {
    id: UserId,
    username: String,
}

impl From<auth::User> for UserBody {
    fn from(u: auth::User) -> Self {
        Self {
            id: u.id,
            username: u.username,
        }
    }
}

#[derive(Serialize)]
struct LoginBody {
    token: String,
    user: UserBody,
}

async fn signup(
    state: web::Data<AppState>,
    body: JsonBody<SignupRequest>,
) -> Result<HttpResponse, ApiError> {
    let JsonBody(req) = body;
    let user = auth::signup(&state, req.username, req.password).await?;
    Ok(HttpResponse::Created().json(UserBody::from(user)))
}

fn session_cookie(token: String, state: &AppState) -> Cookie<'static> {
    let hours = i64::try_from(state.auth.session_lifetime_hours).unwrap_or(168);
    Cookie::build("session", token)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(state.auth.cookie_secure)
        .max_age(CookieDuration::hours(hours))
        .finish()
}

async fn login(
    state: web::Data<AppState>,
    body: JsonBody<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let JsonBody(req) = body;
    let (token, user) = auth::login(&state, &req.username, req.password.expose_secret()).await?;
    let cookie = session_cookie(token.0.clone(), &state);
    Ok(HttpResponse::Ok().cookie(cookie).json(LoginBody {
        token: token.0,
        user: user.into(),
    }))
}

async fn logout(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    auth::logout(&state, &user.0).await?;
    let mut gone = session_cookie(String::new(), &state);
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

/// Who am I (the page asks this to decide between sign-in and calendar).
async fn me(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let found = auth::find_user(&state, user.0.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    Ok(HttpResponse::Ok().json(UserBody::from(found)))
}

/// Everybody's id and name, for the assignee picker.
async fn users(state: web::Data<AppState>, _user: AuthUser) -> Result<HttpResponse, ApiError> {
    let all: Vec<UserBody> = auth::list_users(&state)
        .await?
        .into_iter()
        .map(UserBody::from)
        .collect();
    Ok(HttpResponse::Ok().json(all))
}
