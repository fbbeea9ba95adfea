//! The one HTTP error type, and the error policy of every layer.
//!
//! Every error a client can see is an [`ApiError`], answered as the
//! contract's `{"error": {"code", "message"}}` body. [`ErrorCode`] is the
//! one list of codes: the body's `code`, the HTTP status and the OpenAPI
//! document's enum all come from it. 5xx bodies stay generic; the cause
//! chain goes to the log, printed by [`Chain`].
//!
//! What each layer returns, and who converts it:
//!
//! - **domain** (`domain/`): parsers return typed reasons
//!   ([`crate::domain::InvalidValue`]) and know no field names; the edge
//!   that knows the field (serde through `try_from`, the feed's query in
//!   `routes::feed`) makes a [`ValidationError`] `{ field, reason }` of it.
//! - **db** (`db/`): [`DbError`] from every [`crate::db::run`]: Diesel and
//!   r2d2 errors classified once (unavailable, outcome unknown, unique and
//!   foreign-key violations, query, unreadable row, migration), with the
//!   underlying error kept as the source.
//! - **cache** (`cache/`): `CacheError` for every Redis failure. What can
//!   do without Redis (the feed's read-through, throttles, session caching)
//!   does not pass it on: it answers from PostgreSQL and logs. What cannot
//!   (a write fence, a logout tombstone, a change stream) returns it.
//! - **service** (`service/`): [`ServiceError`], the use cases' outcomes:
//!   `Validation`, `NotFound`, `Conflict`, the auth and limit refusals, `Db`
//!   and `Cache` passed through with their sources (`#[from]`),
//!   `Overloaded` for a bounded resource that stayed busy, and
//!   `Internal { what, source }` for a library that should not fail
//!   (serialization, hashing, the blocking pool, the OS's randomness), its
//!   error kept. A service turns the `DbError`s it expects into its own
//!   variants (a unique violation on sign-up is a taken name); the rest
//!   pass through.
//! - **routes** (`routes/`, `middleware/`): [`ApiError`], converted `From` a
//!   `ServiceError`, `DbError` or `ValidationError` here and nowhere else;
//!   extractor failures (body, query, path, payload limits) are built
//!   directly. Outages (PostgreSQL, or a Redis that cannot be bypassed, not
//!   answering; every hashing slot busy) are 503 `unavailable`, never 400
//!   or 500; anything else on the server's side is 500 `internal`. Every
//!   5xx is logged once, with its whole chain, when it becomes a response.
//!   Answers that are no `ApiError` (`/readyz`, a refused change stream,
//!   actix's own errors through `middleware::json_errors`) use
//!   [`error_response`] with an `ErrorCode`.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::db::DbError;
use crate::domain::{Reason, ValidationError};
use crate::service::ServiceError;
use crate::service::limits::LimitHit;

/// Declares [`ErrorCode`] from one table: variant, wire text, status.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $text:literal, $status:ident;)+) => {
        /// Every `code` an error body can carry: the one list. The body's
        /// `code`, the HTTP status and the OpenAPI enum come from it, and
        /// `docs/api.md`'s table is checked against it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[$doc])* $variant),+
        }

        impl ErrorCode {
            /// Every code, in the order the OpenAPI document lists them.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The text in the body (what serde writes).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text),+
                }
            }

            /// The HTTP status answered with this code.
            pub const fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status),+
                }
            }
        }
    };
}

error_codes! {
    InvalidInput => "invalid_input", BAD_REQUEST;
    Unauthenticated => "unauthenticated", UNAUTHORIZED;
    NotFound => "not_found", NOT_FOUND;
    MethodNotAllowed => "method_not_allowed", METHOD_NOT_ALLOWED;
    RequestTimeout => "request_timeout", REQUEST_TIMEOUT;
    Conflict => "conflict", CONFLICT;
    /// Shares 409 with `conflict`, after it: a bare 409 is `conflict`.
    LimitExceeded => "limit_exceeded", CONFLICT;
    PayloadTooLarge => "payload_too_large", PAYLOAD_TOO_LARGE;
    UnsupportedMediaType => "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    RateLimited => "rate_limited", TOO_MANY_REQUESTS;
    Unavailable => "unavailable", SERVICE_UNAVAILABLE;
    /// Shares 503 with `unavailable`, after it: a bare 503 is `unavailable`.
    OutcomeUnknown => "outcome_unknown", SERVICE_UNAVAILABLE;
    Internal => "internal", INTERNAL_SERVER_ERROR;
}

impl ErrorCode {
    /// The code for a bare status, for errors actix produces itself: the
    /// first code with that status (the general one where two share it),
    /// else `internal` for a 5xx and `invalid_input` for any other status
    /// (411, 414, 431: the request is at fault).
    pub fn for_status(status: StatusCode) -> Self {
        let fallback = if status.is_server_error() { Self::Internal } else { Self::InvalidInput };
        Self::ALL.iter().copied().find(|c| c.status() == status).unwrap_or(fallback)
    }

    /// The code whose text is `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Prints an error and its sources as `a: b: c`, for logs: `%e` prints only
/// the outermost message, `?e` the Debug form, neither the chain.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

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
    code: ErrorCode,
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

/// `code` in the OpenAPI document: a string enum of [`ErrorCode::ALL`].
fn error_code_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
        .build()
}

impl ApiError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidInput(_) => ErrorCode::InvalidInput,
            Self::Unauthenticated | Self::InvalidCredentials => ErrorCode::Unauthenticated,
            Self::NotFound => ErrorCode::NotFound,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Self::RequestTimeout => ErrorCode::RequestTimeout,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::LimitExceeded(_) => ErrorCode::LimitExceeded,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::OutcomeUnknown(_) => ErrorCode::OutcomeUnknown,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn invalid(field: impl Into<String>, reason: impl Into<Reason>) -> Self {
        Self::InvalidInput(ValidationError::new(field, reason))
    }
}

/// A contract error body with `code`'s status and `message`.
pub fn error_response(code: ErrorCode, message: String) -> HttpResponse {
    body_response(code, message, None, None)
}

/// The contract's error body, naming the field at fault and the limit the
/// request ran into when there are ones.
fn body_response(code: ErrorCode, message: String, field: Option<&str>, limit: Option<&LimitHit>) -> HttpResponse {
    let limit = limit.map(|l| LimitDetail { name: l.name, max: l.max });
    let body = ErrorBody { error: ErrorDetail { code, message, field, limit } };
    let mut res = HttpResponse::build(code.status());
    res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
    match serde_json::to_vec(&body) {
        Ok(bytes) => res.body(bytes),
        Err(_) => res.body(r#"{"error":{"code":"internal","message":"internal error"}}"#),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        let code = self.code();
        if code.status().is_server_error() {
            // The whole cause chain to the log; nothing of it to the client.
            tracing::error!(code = code.as_str(), error = %Chain(self), "request failed");
        }
        let (field, limit) = match self {
            Self::InvalidInput(v) => (Some(v.field.as_str()), None),
            Self::LimitExceeded(hit) => (hit.field, Some(hit.as_ref())),
            Self::RateLimited { limit, .. } => (None, limit.as_deref()),
            _ => (None, None),
        };
        let mut res = body_response(code, self.to_string(), field, limit);
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
            e @ ServiceError::Internal { .. } => Self::Internal(Box::new(e)),
            e @ ServiceError::Overloaded(_) => Self::Unavailable(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod code_tests {
    use futures_util::FutureExt as _;

    use super::*;

    /// One of every `ApiError` variant. `ordinal`'s match is exhaustive, so a
    /// new variant does not compile until it is numbered, and the test
    /// below fails until it is also in this list.
    fn one_of_each() -> Vec<ApiError> {
        vec![
            ApiError::invalid("f", Reason::Required),
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
        ]
    }

    const VARIANTS: usize = 14;

    fn ordinal(e: &ApiError) -> usize {
        match e {
            ApiError::InvalidInput(_) => 0,
            ApiError::Unauthenticated => 1,
            ApiError::InvalidCredentials => 2,
            ApiError::NotFound => 3,
            ApiError::MethodNotAllowed => 4,
            ApiError::Conflict(_) => 5,
            ApiError::PayloadTooLarge { .. } => 6,
            ApiError::UnsupportedMediaType => 7,
            ApiError::RequestTimeout => 8,
            ApiError::RateLimited { .. } => 9,
            ApiError::LimitExceeded(_) => 10,
            ApiError::Unavailable(_) => 11,
            ApiError::OutcomeUnknown(_) => 12,
            ApiError::Internal(_) => 13,
        }
    }

    /// `docs/api.md`'s error table: code and status per row.
    fn documented_codes() -> Vec<(String, u16)> {
        let text = include_str!("../docs/api.md");
        let section = text.split("## Errors").nth(1).unwrap_or_default();
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .filter_map(|l| {
                let mut cells = l.trim_matches('|').split('|').map(|c| c.trim().trim_matches('`'));
                Some((cells.next()?.to_owned(), cells.next()?.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn every_variant_has_a_code_and_every_code_is_documented() {
        let errors = one_of_each();
        let mut seen: Vec<usize> = errors.iter().map(ordinal).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, (0..VARIANTS).collect::<Vec<_>>(), "one_of_each() misses a variant");

        let mut produced: Vec<ErrorCode> = errors.iter().map(ApiError::code).collect();
        for e in &errors {
            assert_eq!(e.status_code(), e.code().status(), "{e:?}");
        }
        // The codes that only bare statuses produce (none today) count too.
        for status in 400..600 {
            if let Ok(status) = StatusCode::from_u16(status) {
                produced.push(ErrorCode::for_status(status));
            }
        }
        for code in ErrorCode::ALL {
            assert!(produced.contains(code), "{code} is never answered: drop it");
        }

        let documented = documented_codes();
        let mut listed: Vec<&str> = documented.iter().map(|(c, _)| c.as_str()).collect();
        let mut all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        listed.sort_unstable();
        all.sort_unstable();
        assert_eq!(listed, all, "docs/api.md's error table lists other codes than ErrorCode::ALL");
        for (text, status) in &documented {
            let code = ErrorCode::parse(text).map(ErrorCode::status);
            assert_eq!(code.map(|s| s.as_u16()), Some(*status), "docs/api.md: {text}");
        }
    }

    #[test]
    fn codes_serialize_as_their_text() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).ok(), Some(serde_json::Value::from(code.as_str())));
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
        }
    }

    #[test]
    fn bare_statuses_map_to_the_general_code() {
        let of = |s: u16| StatusCode::from_u16(s).map(ErrorCode::for_status).ok();
        assert_eq!(of(409), Some(ErrorCode::Conflict));
        assert_eq!(of(503), Some(ErrorCode::Unavailable));
        assert_eq!(of(500), Some(ErrorCode::Internal));
        assert_eq!(of(502), Some(ErrorCode::Internal));
        assert_eq!(of(411), Some(ErrorCode::InvalidInput));
        assert_eq!(of(431), Some(ErrorCode::InvalidInput));
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::for_status(code.status()).status(), code.status(), "{code}");
        }
    }

    #[test]
    fn the_chain_prints_every_source() {
        let inner = std::io::Error::other("connection reset");
        let e = ApiError::Internal(Box::new(ServiceError::internal("feed serialization failed", inner)));
        assert_eq!(Chain(&e).to_string(), "internal error: feed serialization failed: connection reset");
    }

    /// A `Write` into a shared buffer, for capturing log lines.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_5xx_logs_its_whole_chain_and_answers_a_generic_body() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber =
            tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).without_time().finish();
        let e =
            ApiError::from(ServiceError::internal("password hashing failed", std::io::Error::other("out of memory")));
        let res = tracing::subscriber::with_default(subscriber, || e.error_response());
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let log = captured.0.lock().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        assert!(log.contains("error=internal error: password hashing failed: out of memory"), "{log}");
        assert!(log.contains("code=\"internal\""), "{log}");
        let body = actix_web::body::to_bytes(res.into_body()).now_or_never();
        let body = body.and_then(Result::ok).unwrap_or_default();
        assert_eq!(&body[..], br#"{"error":{"code":"internal","message":"internal error"}}"#);
    }
}
