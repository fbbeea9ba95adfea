//! Request extractors: the authenticated caller and JSON bodies. Both turn
//! every failure into the contract's error body and name the field at fault.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::HttpMessage as _;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpRequest, web};
use bytes::BytesMut;
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

use crate::domain::Reason;
use crate::error::ApiError;
use crate::service::auth::{self, Session};
use crate::service::{AppState, ServiceError};

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// The contract's body limit.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Limits for reading request bodies, set once in `startup`.
#[derive(Debug, Clone, Copy)]
pub struct BodyConfig {
    pub limit: usize,
    /// A client that trickles its body slower than this is cut off (408).
    pub timeout: Duration,
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("application state is not configured".into()))
}

/// The session token from `Authorization: Bearer` or the `session` cookie.
pub fn session_token(req: &HttpRequest) -> Option<String> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let mut parts = value.splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next())
            && scheme.eq_ignore_ascii_case("bearer")
            && !token.trim().is_empty()
        {
            return Some(token.trim().to_owned());
        }
    }
    req.cookie("session").map(|c| c.value().to_owned()).filter(|v| !v.is_empty())
}

/// A caller with a live session. The session is resolved by the
/// [`require_session`] middleware before any extractor runs, so an
/// unauthenticated request is a 401 whatever else is wrong with it.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Session);

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(req.extensions().get::<Session>().cloned().map(AuthUser).ok_or(ApiError::Unauthenticated))
    }
}

/// What the request's token claims, not yet confirmed: for a handler that
/// confirms it itself (the feed folds the session check into its own Redis
/// round trip). No token, or one that is not ours, is a 401 at once.
#[derive(Debug, Clone)]
pub struct Claimed(pub auth::Claim);

impl FromRequest for Claimed {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let claim = session_token(req).as_deref().and_then(auth::Claim::parse);
        std::future::ready(claim.map(Claimed).ok_or(ApiError::Unauthenticated))
    }
}

/// Authenticates the request (bearer token or `session` cookie) and puts the
/// session in the request's extensions; answers 401 (or 503 when neither
/// Redis nor PostgreSQL can vouch for the session) otherwise.
pub async fn require_session(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(token) = session_token(req.request()) else {
        return Ok(req.error_response(ApiError::Unauthenticated));
    };
    let state = match state(req.request()) {
        Ok(s) => s,
        Err(e) => return Ok(req.error_response(e)),
    };
    match auth::authenticate(&state, &token).await {
        Ok(session) => {
            req.extensions_mut().insert(session);
            next.call(req).await.map(ServiceResponse::map_into_boxed_body)
        }
        Err(ServiceError::Unauthenticated) => Ok(req.error_response(ApiError::Unauthenticated)),
        Err(e) => Ok(req.error_response(ApiError::from(e))),
    }
}

/// A JSON body parsed into `T`. Errors name the offending field (by its JSON
/// path) so clients know what to fix, and every one is a 4xx.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

fn is_json(req: &HttpRequest) -> bool {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Which field a serde error is about: the path where it happened, or the
/// field named in "missing field `x`" / "unknown field `x`" messages.
fn field_of(path: &str, message: &str) -> String {
    if path != "." && !path.is_empty() {
        return path.to_owned();
    }
    for marker in ["missing field `", "unknown field `", "duplicate field `"] {
        if let Some(rest) = message.split(marker).nth(1)
            && let Some(name) = rest.split('`').next()
        {
            return name.to_owned();
        }
    }
    "body".to_owned()
}

/// serde's message without the " at line 1 column 5" suffix.
fn clean_message(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// The first field of a JSON object whose value is `null`. No field of the
/// API is nullable: serde would read `null` as "absent" for an optional one
/// and silently ignore it (a PATCH of `{"end": null}` would change nothing),
/// so a `null` is refused instead, naming the field. (The OpenAPI document
/// says so too: `crate::openapi` drops `null` from request bodies' fields.)
/// Checked once the typed parse has succeeded.
fn null_field(bytes: &[u8]) -> Option<String> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes).ok()?;
    object.into_iter().find(|(_, v)| v.is_null()).map(|(k, _)| k)
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would read a struct from an array by position; the API speaks
    // objects only.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid("body", Reason::NotAnObject));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::invalid("body", Reason::NotJson(clean_message(&message)));
        }
        ApiError::invalid(field_of(&path, &message), Reason::Parser(clean_message(&message)))
    })?;
    de.end().map_err(|_| ApiError::invalid("body", Reason::TrailingCharacters))?;
    // After the typed parse, so its errors (unknown fields, wrong types)
    // come first; what is left is a `null` it read as "absent".
    if let Some(field) = null_field(bytes) {
        return Err(ApiError::invalid(field, Reason::Null));
    }
    Ok(value)
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let config = req
            .app_data::<BodyConfig>()
            .copied()
            .unwrap_or(BodyConfig { limit: BODY_LIMIT, timeout: Duration::from_secs(10) });
        let json = is_json(req);
        let declared =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|n| n > config.limit as u64) {
                return Err(ApiError::PayloadTooLarge { limit: config.limit });
            }
            if !json {
                return Err(ApiError::UnsupportedMediaType);
            }
            let read = async {
                let mut body = BytesMut::with_capacity(declared.map_or(1024, |n| n as usize).min(config.limit));
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk.map_err(|e| match e {
                        PayloadError::Overflow => ApiError::PayloadTooLarge { limit: config.limit },
                        _ => ApiError::invalid("body", Reason::Incomplete),
                    })?;
                    if body.len() + chunk.len() > config.limit {
                        return Err(ApiError::PayloadTooLarge { limit: config.limit });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(body)
            };
            let body = tokio::time::timeout(config.timeout, read).await.map_err(|_| ApiError::RequestTimeout)??;
            parse_json(&body).map(JsonBody)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::work_items::CreateWorkItem;

    fn field(body: &str) -> String {
        match parse_json::<CreateWorkItem>(body.as_bytes()) {
            Err(ApiError::InvalidInput(v)) => v.field,
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field(r#"{"work_type":"task","start":"2026-10-06"}"#), "title");
        assert_eq!(field(r#"{"title":"x","work_type":"task","start":"2026-10-06","colour":1}"#), "colour");
        assert_eq!(field(r#"{"title":5,"work_type":"task","start":"2026-10-06"}"#), "title");
        assert_eq!(field(r#"{"title":"x","work_type":"chore","start":"2026-10-06"}"#), "work_type");
        assert_eq!(field(r#"{"title":"x","work_type":"task","start":"soon"}"#), "start");
        assert_eq!(
            field(r#"{"title":"x","work_type":"task","start":"2026-10-06","assignee_ids":[1,"2"]}"#),
            "assignee_ids[1]"
        );
        assert_eq!(field(r#"{"title":"x""#), "body");
        assert_eq!(field(r#"{"title":"x","work_type":"task","start":"2026-10-06"} trailing"#), "body");
        assert_eq!(field(&"[".repeat(10_000)), "body");
    }

    #[test]
    fn a_null_is_refused_naming_the_field() {
        assert_eq!(field(r#"{"title":"x","work_type":"task","start":"2026-10-06","end":null}"#), "end");
        assert_eq!(field(r#"{"title":null,"work_type":"task","start":"2026-10-06"}"#), "title");
        let patch = parse_json::<crate::service::work_items::PatchWorkItem>(br#"{"all_day":null}"#);
        assert!(
            matches!(&patch, Err(ApiError::InvalidInput(v)) if v.field == "all_day" && v.reason == Reason::Null),
            "{patch:?}"
        );
        // Nested nulls are the typed parse's business (a null id is no id).
        assert_eq!(
            field(r#"{"title":"x","work_type":"task","start":"2026-10-06","assignee_ids":[null]}"#),
            "assignee_ids[0]"
        );
    }
}
