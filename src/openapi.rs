//! The HTTP contract as an OpenAPI 3.1 document, served at
//! `GET /api/openapi.json`. It is generated from the code — each routes
//! module's `Docs` (its handlers' `#[utoipa::path]` annotations) and the
//! schemas of the request and response types, whose limits come from the
//! domain types' own constants — so it cannot drift from what the server
//! does. `fuzz/run.sh` fuzzes the running server against it (schemathesis).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

/// The name of the bearer-token security scheme.
pub const BEARER: &str = "bearer";
/// The name of the session-cookie security scheme.
pub const SESSION_COOKIE: &str = "session_cookie";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "calcache",
        description = "Calendar feeds from PostgreSQL through a shared, versioned Redis cache. \
            Every 4xx/5xx answers `{\"error\": {\"code\", \"message\"}}`. Routes that name a \
            security requirement need a session: `Authorization: Bearer <token>` or the \
            `session` cookie, both from `POST /api/login`."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "work items", description = "Projects, activities and tasks (PostgreSQL is the source of truth)"),
        (name = "calendar", description = "FullCalendar's events feed, served through the shared cache"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
struct Base;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The `token` from `POST /api/login`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            SESSION_COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "session",
                "The cookie `POST /api/login` sets",
            ))),
        );
    }
}

/// The whole document: every routes module's part, merged.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Base::openapi();
    for part in [
        routes::auth::Docs::openapi(),
        routes::work_items::Docs::openapi(),
        routes::feed::Docs::openapi(),
        routes::changes::Docs::openapi(),
        routes::health::Docs::openapi(),
        routes::openapi::Docs::openapi(),
    ] {
        doc.merge(part);
    }
    no_null_in_request_bodies(doc)
}

/// Request bodies refuse `null` in every field (`routes::extract`), while
/// utoipa documents an `Option` field as `T | null`: drop the `null` from
/// the top-level properties of every schema a request body names, so the
/// document tells clients what the server accepts. Done on the JSON form;
/// should it ever fail to convert back, the document is left as it was.
fn no_null_in_request_bodies(doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use serde_json::Value;
    let Ok(mut json) = serde_json::to_value(&doc) else {
        return doc;
    };
    let mut bodies: Vec<String> = Vec::new();
    for item in json["paths"].as_object().into_iter().flat_map(|paths| paths.values()) {
        for op in item.as_object().into_iter().flat_map(|ops| ops.values()) {
            for content in op["requestBody"]["content"].as_object().into_iter().flat_map(|c| c.values()) {
                if let Some(name) =
                    content["schema"]["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/"))
                {
                    bodies.push(name.to_owned());
                }
            }
        }
    }
    for name in bodies {
        let Some(properties) = json["components"]["schemas"][&name]["properties"].as_object_mut() else {
            continue;
        };
        for prop in properties.values_mut() {
            let is_null = |v: &Value| v.get("type").and_then(Value::as_str) == Some("null");
            if let Some(branches) = prop.get_mut("oneOf").and_then(Value::as_array_mut) {
                branches.retain(|b| !is_null(b));
                if let [only] = branches.as_slice() {
                    let only = only.clone();
                    if let Some(obj) = prop.as_object_mut() {
                        obj.remove("oneOf");
                        if let Some(only) = only.as_object() {
                            obj.extend(only.clone());
                        }
                    }
                }
            }
            if let Some(types) = prop.get_mut("type").and_then(Value::as_array_mut) {
                types.retain(|t| t.as_str() != Some("null"));
                if let [only] = types.as_slice() {
                    prop["type"] = only.clone();
                }
            }
        }
    }
    serde_json::from_value(json).unwrap_or(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_body_fields_are_never_nullable() {
        let json = serde_json::to_value(document()).unwrap_or_default();
        for schema in ["CreateWorkItem", "PatchWorkItem", "SignupRequest", "LoginRequest"] {
            let properties =
                json["components"]["schemas"][schema]["properties"].as_object().cloned().unwrap_or_default();
            assert!(!properties.is_empty(), "{schema}");
            for (field, prop) in properties {
                let text = prop.to_string();
                assert!(!text.contains(r#""null""#), "{schema}.{field} is nullable: {text}");
            }
        }
        // Responses keep theirs.
        assert!(json["components"]["schemas"].is_object());
    }

    #[test]
    fn every_security_requirement_names_a_scheme() {
        let doc = document();
        let schemes = doc.components.as_ref().map(|c| c.security_schemes.clone()).unwrap_or_default();
        let json = serde_json::to_value(&doc).unwrap_or_default();
        let paths = json["paths"].as_object().cloned().unwrap_or_default();
        assert!(!paths.is_empty());
        for (path, item) in paths {
            for (method, op) in item.as_object().cloned().unwrap_or_default() {
                for requirement in op["security"].as_array().cloned().unwrap_or_default() {
                    for name in requirement.as_object().cloned().unwrap_or_default().keys() {
                        assert!(schemes.contains_key(name), "{method} {path}: unknown scheme {name}");
                    }
                }
            }
        }
    }
}
