//! The one HTTP error type. Every error a client can see is one of these,
//! answered as the contract's `{"error": {"code", "message"}}` body. 5xx
//! bodies stay generic; the cause chain goes to the log.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::db::DbError;
use crate::domain::ValidationError;
use crate::service::ServiceError;
use crate::service::limits::LimitHit;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidInput(ValidationError),
    #[error("authentication required")]
    Unauthenticated,
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(&'static str),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    #[error("the request was not received in time")]
    RequestTimeout,
    #[error("{}", .limit.as_ref().map_or("too many attempts; try again later", |l| l.message.as_str()))]
    RateLimited { retry_after_secs: u64, limit: Option<Box<LimitHit>> },
    /// A cap on what one user may have or be sent (`limits.*`).
    #[error("{}", .0.message)]
    LimitExceeded(Box<LimitHit>),
    #[error("a dependency is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A write whose COMMIT PostgreSQL did not confirm in time: it may or
    /// may not have been saved. Never answered as a plain failure, which
    /// would invite a blind retry (a duplicate create) or hide a change.
    #[error(
        "the database did not confirm this change in time: it may or may not have been saved; read it back before repeating it"
    )]
    OutcomeUnknown(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Every 4xx/5xx body: `{"error": {"code", "message", "field"?}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    #[schema(schema_with = error_code_schema)]
    code: &'a str,
    /// For people; clients branch on `code`.
    message: String,
    /// The JSON field or query parameter at fault (`invalid_input`), or the
    /// one to change (`limit_exceeded`, when there is one).
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    /// The limit the request ran into (`limit_exceeded`; `rate_limited`
    /// when the throttle is a configured per-user limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<LimitDetail<'a>>,
}

/// A configured limit, as an error body names it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LimitDetail<'a> {
    /// The setting, e.g. `limits.max_items_per_owner`.
    name: &'a str,
    /// Its value.
    max: u64,
}

/// Every `code` an error body can carry (what [`ApiError::code`] and
/// [`code_for_status`] return); the OpenAPI document lists them.
pub const ERROR_CODES: &[&str] = &[
    "invalid_input",
    "unauthenticated",
    "not_found",
    "method_not_allowed",
    "request_timeout",
    "conflict",
    "limit_exceeded",
    "payload_too_large",
    "unsupported_media_type",
    "rate_limited",
    "unavailable",
    "outcome_unknown",
    "internal",
];

fn error_code_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(ERROR_CODES.iter().copied()))
        .build()
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "invalid_input",
            Self::Unauthenticated | Self::InvalidCredentials => "unauthenticated",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RequestTimeout => "request_timeout",
            Self::RateLimited { .. } => "rate_limited",
            Self::LimitExceeded(_) => "limit_exceeded",
            Self::Unavailable(_) => "unavailable",
            Self::OutcomeUnknown(_) => "outcome_unknown",
            Self::Internal(_) => "internal",
        }
    }

    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidInput(ValidationError::new(field, reason))
    }
}

/// The contract's code for a bare status, for errors actix produces itself.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_input",
        401 => "unauthenticated",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        409 => "conflict",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        429 => "rate_limited",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "invalid_input",
    }
}

/// A contract error body for `status` with `message`.
pub fn error_response(status: StatusCode, code: &str, message: String, field: Option<&str>) -> HttpResponse {
    error_response_naming(status, code, message, field, None)
}

/// [`error_response`], naming the limit the request ran into.
fn error_response_naming(
    status: StatusCode,
    code: &str,
    message: String,
    field: Option<&str>,
    limit: Option<&LimitHit>,
) -> HttpResponse {
    let limit = limit.map(|l| LimitDetail { name: l.name, max: l.max });
    let body = ErrorBody { error: ErrorDetail { code, message, field, limit } };
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
    match serde_json::to_vec(&body) {
        Ok(bytes) => res.body(bytes),
        Err(_) => res.body(r#"{"error":{"code":"internal","message":"internal error"}}"#),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidInput(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) | Self::LimitExceeded(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::OutcomeUnknown(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            // Full cause chain to the log; nothing of it to the client.
            let mut chain = String::new();
            let mut source = std::error::Error::source(self);
            while let Some(s) = source {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                source = s.source();
            }
            tracing::error!(code = self.code(), cause = %chain, "request failed");
        }
        let (field, limit) = match self {
            Self::InvalidInput(v) => (Some(v.field.as_str()), None),
            Self::LimitExceeded(hit) => (hit.field, Some(hit.as_ref())),
            Self::RateLimited { limit, .. } => (None, limit.as_deref()),
            _ => (None, None),
        };
        let mut res = error_response_naming(status, self.code(), self.to_string(), field, limit);
        let retry_after = match self {
            Self::Unavailable(_) => Some(1),
            Self::RateLimited { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        };
        if let Some(secs) = retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::InvalidInput(e)
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(_) => Self::Unavailable(Box::new(e)),
            DbError::OutcomeUnknown(_) => Self::OutcomeUnknown(Box::new(e)),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Validation(v) => Self::InvalidInput(v),
            ServiceError::NotFound => Self::NotFound,
            ServiceError::Conflict(m) => Self::Conflict(m),
            ServiceError::Unauthenticated => Self::Unauthenticated,
            ServiceError::InvalidCredentials => Self::InvalidCredentials,
            ServiceError::RateLimited { retry_after_secs, limit } => Self::RateLimited { retry_after_secs, limit },
            ServiceError::LimitExceeded(hit) => Self::LimitExceeded(hit),
            ServiceError::Db(db) => db.into(),
            ServiceError::Cache(c) => Self::Unavailable(Box::new(c)),
            e @ ServiceError::Internal(_) => Self::Internal(Box::new(e)),
            e @ ServiceError::Overloaded(_) => Self::Unavailable(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod code_tests {
    use super::*;

    #[test]
    fn every_code_is_documented() {
        let errors = [
            ApiError::invalid("f", "r"),
            ApiError::Unauthenticated,
            ApiError::InvalidCredentials,
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::Conflict("c"),
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::UnsupportedMediaType,
            ApiError::RequestTimeout,
            ApiError::RateLimited { retry_after_secs: 1, limit: None },
            ApiError::LimitExceeded(Box::new(LimitHit { name: "n", max: 1, field: None, message: "m".into() })),
            ApiError::Unavailable("u".into()),
            ApiError::OutcomeUnknown("o".into()),
            ApiError::Internal("i".into()),
        ];
        for e in &errors {
            assert!(ERROR_CODES.contains(&e.code()), "{} is not in ERROR_CODES", e.code());
        }
        for status in 400..600 {
            if let Ok(status) = StatusCode::from_u16(status) {
                let code = code_for_status(status);
                assert!(ERROR_CODES.contains(&code), "{code} is not in ERROR_CODES");
            }
        }
    }
}
