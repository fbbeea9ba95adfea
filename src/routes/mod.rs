//! HTTP routes. Handlers parse the request, call a service, shape the
//! response; none of them touches Redis or Diesel.

pub mod auth;
pub mod changes;
pub mod extract;
pub mod feed;
pub mod health;
pub mod openapi;
pub mod page;
pub mod work_items;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError as _, web};

use crate::domain::Reason;
use crate::error::ApiError;

/// The JSON 404 for paths no route matches.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// The JSON 405 for a known path with the wrong method.
pub async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// A resource's default service: the JSON 405 with `Allow` naming the
/// methods the resource has (`"GET, PATCH"`), which RFC 9110 requires.
pub fn allow(methods: &'static str) -> actix_web::Route {
    web::to(move || async move {
        let mut res = ApiError::MethodNotAllowed.error_response();
        res.headers_mut().insert(header::ALLOW, HeaderValue::from_static(methods));
        res
    })
}

/// Maps query-string errors (a parameter given twice, a value of the wrong
/// type) into the contract's 400.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| query_error(&err).into())
}

/// The contract's 400 for a query string that does not deserialize, naming
/// the parameter.
pub fn query_error(err: &actix_web::error::QueryPayloadError) -> ApiError {
    let message = err.to_string();
    let field = message.split('`').nth(1).map_or_else(|| "query".to_owned(), str::to_owned);
    ApiError::invalid(field, Reason::Parser(message.replace("Query deserialize error: ", "")))
}
