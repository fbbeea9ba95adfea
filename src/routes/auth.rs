use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::middleware::from_fn;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::extract::{AuthUser, JsonBody, require_session};
use crate::domain::{ClientAddr, InvalidValue, Password, UserId, Username};
use crate::error::{ApiError, ErrorBody};
use crate::service::{AppState, auth};

/// This module's part of the OpenAPI document (`crate::openapi` merges it).
#[derive(utoipa::OpenApi)]
#[openapi(paths(signup, login, logout, me, users))]
pub struct Docs;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/signup").route(web::post().to(signup)).default_service(super::allow("POST")))
        .service(web::resource("/api/login").route(web::post().to(login)).default_service(super::allow("POST")))
        .service(
            web::resource("/api/logout")
                .wrap(from_fn(require_session))
                .route(web::post().to(logout))
                .default_service(super::allow("POST")),
        )
        .service(
            web::resource("/api/me")
                .wrap(from_fn(require_session))
                .route(web::get().to(me))
                .default_service(super::allow("GET, HEAD")),
        )
        .service(
            web::resource("/api/users")
                .wrap(from_fn(require_session))
                .route(web::get().to(users))
                .default_service(super::allow("GET, HEAD")),
        );
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SignupRequest {
    username: Username,
    password: Password,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = User)]
struct UserBody {
    id: UserId,
    username: String,
}

impl From<auth::User> for UserBody {
    fn from(u: auth::User) -> Self {
        Self { id: u.id, username: u.username }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct LoginBody {
    token: String,
    user: UserBody,
}

/// Creates an account (when `auth.signup_enabled`).
#[utoipa::path(post, path = "/api/signup", tag = "auth", request_body = SignupRequest, responses(
    (status = 201, description = "Signed up", body = UserBody),
    (status = 400, description = "`invalid_input`: malformed body or a value out of bounds", body = ErrorBody),
    (status = 404, description = "`not_found`: sign-up is switched off", body = ErrorBody),
    (status = 408, description = "`request_timeout`: the body arrived too slowly", body = ErrorBody),
    (status = 409, description = "`conflict`: the username is taken", body = ErrorBody),
    (status = 413, description = "`payload_too_large`: body over 64 KiB", body = ErrorBody),
    (status = 415, description = "`unsupported_media_type`: not JSON", body = ErrorBody),
    (status = 429, description = "`rate_limited`: too many sign-ups from this client address", body = ErrorBody, headers(
        ("Retry-After" = u64, description = "Seconds to wait"),
    )),
    (status = 503, description = "`unavailable`: PostgreSQL is unavailable, or every password hashing slot stayed busy", body = ErrorBody),
))]
async fn signup(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: JsonBody<SignupRequest>,
) -> Result<HttpResponse, ApiError> {
    let client = client_address(&req, &state);
    let JsonBody(body) = body;
    let user = auth::signup(&state, body.username, body.password, &client).await?;
    Ok(HttpResponse::Created().json(UserBody::from(user)))
}

fn session_cookie(token: String, state: &AppState) -> Cookie<'static> {
    let lifetime = state.auth.session_lifetime.get();
    Cookie::build("session", token)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(state.auth.cookie_secure)
        .max_age(CookieDuration::seconds(lifetime.num_seconds()))
        .finish()
}

/// The client throttling counts by: the TCP peer, or — with
/// `auth.trust_forwarded_for`, and only when the peer is one of
/// `auth.trusted_proxies` — the rightmost `X-Forwarded-For` entry (the one
/// the proxy itself wrote; entries left of it are the client's to choose).
/// A forwarded header from any other peer is ignored, with a warning.
fn client_address(req: &HttpRequest, state: &AppState) -> ClientAddr {
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return ClientAddr::unknown();
    };
    if !state.auth.trust_forwarded_for {
        return ClientAddr::from_ip(peer);
    }
    if !state.auth.trusted_proxies.iter().any(|net| net.contains(&peer)) {
        if req.headers().contains_key("x-forwarded-for") {
            warn_untrusted_peer(peer);
        }
        return ClientAddr::from_ip(peer);
    }
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .last()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|entry| entry.trim().parse::<IpAddr>().ok());
    ClientAddr::from_ip(forwarded.unwrap_or(peer))
}

/// At most one warning a minute: any client can send the header, and the
/// log must not be theirs to flood.
fn warn_untrusted_peer(peer: IpAddr) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 60 && LAST.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        tracing::warn!(
            %peer,
            "X-Forwarded-For from a peer that is not in auth.trusted_proxies: ignored, throttling by the peer address"
        );
    }
}

/// Opens a session: the token is in the body and in the `session` cookie.
#[utoipa::path(post, path = "/api/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, description = "Logged in", body = LoginBody, headers(
        ("Set-Cookie" = String, description = "`session=<token>; HttpOnly; SameSite=Lax; Path=/`"),
    )),
    (status = 400, description = "`invalid_input`: malformed body", body = ErrorBody),
    (status = 401, description = "`unauthenticated`: wrong username or password", body = ErrorBody),
    (status = 408, description = "`request_timeout`: the body arrived too slowly", body = ErrorBody),
    (status = 413, description = "`payload_too_large`: body over 64 KiB", body = ErrorBody),
    (status = 415, description = "`unsupported_media_type`: not JSON", body = ErrorBody),
    (status = 429, description = "`rate_limited`: too many failed attempts for this username from this client address, or from this address", body = ErrorBody, headers(
        ("Retry-After" = u64, description = "Seconds to wait"),
    )),
    (status = 503, description = "`unavailable`: PostgreSQL is unavailable, or every password hashing slot stayed busy", body = ErrorBody),
))]
async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: JsonBody<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let client = client_address(&req, &state);
    let JsonBody(body) = body;
    // No username holds a NUL, and PostgreSQL text cannot carry one (the
    // lookup would fail with a 500): refuse it here.
    if body.username.contains('\0') {
        return Err(ApiError::invalid("username", InvalidValue::Nul));
    }
    let (token, user) = auth::login(&state, &body.username, body.password.expose_secret(), &client).await?;
    let cookie = session_cookie(token.0.clone(), &state);
    Ok(HttpResponse::Ok().cookie(cookie).json(LoginBody { token: token.0, user: user.into() }))
}

/// Ends this session on every process at once.
#[utoipa::path(post, path = "/api/logout", tag = "auth", security(("bearer" = []), ("session_cookie" = [])), responses(
    (status = 204, description = "Logged out; the cookie is cleared"),
    (status = 401, description = "`unauthenticated`: no live session", body = ErrorBody),
    (status = 503, description = "`unavailable`: PostgreSQL is unavailable", body = ErrorBody),
))]
async fn logout(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    auth::logout(&state, &user.0).await?;
    let mut gone = session_cookie(String::new(), &state);
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

/// Who am I (the page asks this to decide between sign-in and calendar).
#[utoipa::path(get, path = "/api/me", tag = "auth", security(("bearer" = []), ("session_cookie" = [])), responses(
    (status = 200, description = "The caller", body = UserBody),
    (status = 401, description = "`unauthenticated`: no live session", body = ErrorBody),
    (status = 503, description = "`unavailable`: PostgreSQL is unavailable", body = ErrorBody),
))]
async fn me(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let found = auth::find_user(&state, user.0.user_id).await?.ok_or(ApiError::Unauthenticated)?;
    Ok(HttpResponse::Ok().json(UserBody::from(found)))
}

/// Everybody's id and name, for the assignee picker.
#[utoipa::path(get, path = "/api/users", tag = "auth", security(("bearer" = []), ("session_cookie" = [])), responses(
    (status = 200, description = "Every user", body = Vec<UserBody>),
    (status = 401, description = "`unauthenticated`: no live session", body = ErrorBody),
    (status = 503, description = "`unavailable`: PostgreSQL is unavailable", body = ErrorBody),
))]
async fn users(state: web::Data<AppState>, _user: AuthUser) -> Result<HttpResponse, ApiError> {
    let all: Vec<UserBody> = auth::list_users(&state).await?.into_iter().map(UserBody::from).collect();
    Ok(HttpResponse::Ok().json(all))
}
