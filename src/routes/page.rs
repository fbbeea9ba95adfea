//! The browser calendar: `GET /` (the page) and its static assets under
//! `/assets/`. Files are read at run time from the web directory
//! (`server.web_dir`, default `./web`): `index.html` and `assets/**`, where
//! `npm ci` in `web/` puts FullCalendar (`assets/vendor/`). Nothing else of
//! the directory (package files, `node_modules`) is reachable.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::extract::session_token;
use crate::error::ApiError;
use crate::service::{AppState, auth};

/// The page's security policy. FullCalendar injects its own `<style>`
/// elements, hence `'unsafe-inline'` for styles only; no inline script.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Where the page's files live.
#[derive(Debug, Clone)]
pub struct WebDir {
    root: PathBuf,
}

impl WebDir {
    /// `server.web_dir`; relative to the working directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

/// The page's routes; `startup` provides the [`WebDir`] as app data.
pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(web::get().to(index)).default_service(web::to(super::method_not_allowed)))
        .service(
            web::resource("/favicon.ico")
                .route(web::get().to(favicon))
                .default_service(web::to(super::method_not_allowed)),
        )
        .service(
            web::resource("/assets/{path:.*}")
                .route(web::get().to(asset))
                .default_service(web::to(super::method_not_allowed)),
        );
}

#[derive(Debug, thiserror::Error)]
enum PageError {
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the file reader was cancelled")]
    Cancelled,
}

/// One file as read from disk.
struct StaticFile {
    bytes: Vec<u8>,
    etag: String,
}

/// Reads `path` on the blocking pool; `Ok(None)` when there is no such file.
/// When `confine_to` is given, the file's real path (symlinks resolved) must
/// lie inside it.
async fn read_file(path: PathBuf, confine_to: Option<PathBuf>) -> Result<Option<StaticFile>, PageError> {
    web::block(move || -> Result<Option<StaticFile>, PageError> {
        let not_found =
            |e: &std::io::Error| matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory);
        let real = match path.canonicalize() {
            Ok(real) => real,
            Err(e) if not_found(&e) => return Ok(None),
            Err(source) => return Err(PageError::Read { path, source }),
        };
        if let Some(root) = confine_to {
            let root = root.canonicalize().map_err(|source| PageError::Read { path: root.clone(), source })?;
            if !real.starts_with(&root) {
                return Ok(None);
            }
        }
        let meta = std::fs::metadata(&real).map_err(|source| PageError::Read { path: real.clone(), source })?;
        if !meta.is_file() {
            return Ok(None);
        }
        let bytes = std::fs::read(&real).map_err(|source| PageError::Read { path: real.clone(), source })?;
        let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        let etag = format!("W/\"{:x}-{:x}\"", bytes.len(), modified);
        Ok(Some(StaticFile { bytes, etag }))
    })
    .await
    .map_err(|_| PageError::Cancelled)?
}

fn internal(e: PageError) -> ApiError {
    ApiError::Internal(Box::new(e))
}

/// Whether the request carries a live session. Any failure (no token, a
/// revoked one, an outage) counts as signed out: the sign-in form is the
/// right page then, and signing in will say what is wrong.
async fn signed_in(req: &HttpRequest, state: &AppState) -> bool {
    match session_token(req) {
        Some(token) => auth::authenticate(state, &token).await.is_ok(),
        None => false,
    }
}

/// The page. Whether the caller has a live session is stamped on `<html>`
/// (`data-session`), so a signed-out visitor gets the sign-in form without
/// a 401 round trip, as the contract's `GET /` promises.
async fn index(req: HttpRequest, dir: web::Data<WebDir>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let path = dir.root.join("index.html");
    let file = read_file(path.clone(), None)
        .await
        .map_err(internal)?
        .ok_or_else(|| internal(PageError::Read { path, source: std::io::ErrorKind::NotFound.into() }))?;
    let html = String::from_utf8_lossy(&file.bytes);
    let session = if signed_in(&req, &state).await { "signed-in" } else { "signed-out" };
    let html = html.replacen("data-session=\"unknown\"", &format!("data-session=\"{session}\""), 1);
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // Revalidated on every visit (its content depends on the cookie),
        // but not `no-store`: the page may enter the back/forward cache, and
        // it refetches its events on `pageshow` when restored from there.
        .insert_header((header::CACHE_CONTROL, "no-cache, private"))
        .insert_header((header::VARY, "Cookie"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .body(html))
}

/// A static asset from `<web dir>/assets/`.
async fn asset(req: HttpRequest, dir: web::Data<WebDir>) -> Result<HttpResponse, ApiError> {
    let tail = req.match_info().get("path").unwrap_or_default();
    let relative = safe_relative_path(tail).ok_or(ApiError::NotFound)?;
    serve_asset(&req, &dir, relative).await
}

/// Browsers ask for `/favicon.ico` on pages that name no icon (the JSON
/// ones); answer with the page's icon rather than a 404.
async fn favicon(req: HttpRequest, dir: web::Data<WebDir>) -> Result<HttpResponse, ApiError> {
    serve_asset(&req, &dir, PathBuf::from("favicon.svg")).await
}

async fn serve_asset(req: &HttpRequest, dir: &WebDir, relative: PathBuf) -> Result<HttpResponse, ApiError> {
    let root = dir.root.join("assets");
    let file = read_file(root.join(&relative), Some(root)).await.map_err(internal)?.ok_or(ApiError::NotFound)?;

    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == file.etag || tag.trim() == "*"));
    let mut res = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    res.insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, file.etag.as_str()))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if fresh {
        return Ok(res.finish());
    }
    Ok(res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type(&relative)))).body(file.bytes))
}

/// The request's asset path as a relative path of plain names, or `None`
/// for anything that could step outside the assets directory or name a
/// hidden file: `..`, `.`, empty segments, absolute paths, backslashes,
/// drive letters, NUL, still-encoded `%` sequences, dot-files.
fn safe_relative_path(tail: &str) -> Option<PathBuf> {
    if tail.is_empty() || tail.len() > 512 {
        return None;
    }
    let mut path = PathBuf::new();
    for segment in tail.split('/') {
        let bad_char = segment.chars().any(|c| matches!(c, '\\' | '\0' | ':' | '%') || c.is_control());
        if segment.is_empty() || segment.starts_with('.') || bad_char {
            return None;
        }
        path.push(segment);
    }
    let plain = path.components().all(|c| matches!(c, std::path::Component::Normal(_)));
    plain.then_some(path)
}

fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_asset_paths_are_accepted() {
        assert_eq!(safe_relative_path("app.js"), Some(PathBuf::from("app.js")));
        assert_eq!(
            safe_relative_path("vendor/fullcalendar/index.global.min.js"),
            Some(PathBuf::from("vendor/fullcalendar/index.global.min.js"))
        );
    }

    #[test]
    fn traversal_and_odd_paths_are_rejected() {
        for bad in [
            "",
            "..",
            "../Cargo.toml",
            "vendor/../../index.html",
            "./app.js",
            "/etc/passwd",
            "vendor//app.js",
            "app.js/",
            "..\\Cargo.toml",
            "%2e%2e/Cargo.toml",
            "C:/windows",
            ".hidden",
            "vendor/.git/config",
            "a\0b",
        ] {
            assert_eq!(safe_relative_path(bad), None, "{bad:?} must be rejected");
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type(Path::new("app.js")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("app.CSS")), "text/css; charset=utf-8");
        assert_eq!(content_type(Path::new("shot.png")), "image/png");
        assert_eq!(content_type(Path::new("LICENSE")), "application/octet-stream");
    }

    #[actix_web::test]
    async fn a_missing_file_is_none_and_a_file_outside_the_root_is_refused() {
        let dir = std::env::temp_dir().join(format!("calcache-page-{}", uuid::Uuid::new_v4()));
        let assets = dir.join("assets");
        let made = std::fs::create_dir_all(&assets).and_then(|()| std::fs::write(dir.join("secret.txt"), "no"));
        assert!(made.is_ok());
        let missing = read_file(assets.join("nope.js"), Some(assets.clone())).await;
        assert!(matches!(missing, Ok(None)));
        let outside = read_file(assets.join("..").join("secret.txt"), Some(assets.clone())).await;
        assert!(matches!(outside, Ok(None)));
        let _cleanup = std::fs::remove_dir_all(&dir);
    }
}
