//! The browser calendar: `GET /` (the page) and its static assets under
//! `/assets/`. Files are read at run time from the web directory
//! (`server.web_dir`, default `./web`): `index.html` and `assets/**`, where
//! `npm ci` in `web/` puts FullCalendar (`assets/vendor/<name>-<version>/`).
//! Nothing else of the directory (package files, `node_modules`) is reachable.
//!
//! Assets are served by actix-files (`NamedFile`: `ETag`, `Last-Modified`,
//! conditional requests, `Range`), after this module has checked the path.
//! Files under `vendor/` have the version in their path, so they are cached
//! for a year as `immutable`; the page's own files are revalidated
//! (`no-cache`). [`missing_page_files`] tells at start-up which files the
//! page loads are missing (say, `npm ci` was never run in `web/`).

use std::path::{Path, PathBuf};

use actix_files::NamedFile;

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
    Cancelled(#[from] actix_web::error::BlockingError),
    #[error("bad content type")]
    ContentType(#[from] mime::FromStrError),
}

/// Reads `index.html` on the blocking pool.
async fn read_index(path: PathBuf) -> Result<Vec<u8>, PageError> {
    web::block(move || std::fs::read(&path).map_err(|source| PageError::Read { path, source }))
        .await
        .map_err(PageError::Cancelled)?
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
    let bytes = read_index(dir.root.join("index.html")).await.map_err(internal)?;
    let html = String::from_utf8_lossy(&bytes);
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
    let (file, real) = open_file(root.join(&relative), root).await.map_err(internal)?.ok_or(ApiError::NotFound)?;
    let mime: mime::Mime = content_type(&relative).parse().map_err(|e: mime::FromStrError| internal(e.into()))?;
    let named = NamedFile::from_file(file, &real)
        .map_err(|source| internal(PageError::Read { path: real.clone(), source }))?
        .set_content_type(mime)
        .disable_content_disposition()
        .use_etag(true)
        .use_last_modified(true);
    let mut res = named.into_response(req);
    let cache = if relative.starts_with("vendor") { IMMUTABLE } else { "no-cache" };
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(res)
}

/// For files whose path names their version (`vendor/fullcalendar-6.1.21/…`):
/// a new version is a new URL, so browsers may keep this one for a year
/// without asking again.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Opens `path` on the blocking pool, with its real path; `Ok(None)` when
/// there is no such regular file or its real path (symlinks resolved) lies
/// outside `confine_to`.
async fn open_file(path: PathBuf, confine_to: PathBuf) -> Result<Option<(std::fs::File, PathBuf)>, PageError> {
    web::block(move || -> Result<Option<(std::fs::File, PathBuf)>, PageError> {
        let not_found =
            |e: &std::io::Error| matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory);
        let real = match path.canonicalize() {
            Ok(real) => real,
            Err(e) if not_found(&e) => return Ok(None),
            Err(source) => return Err(PageError::Read { path, source }),
        };
        let root = confine_to.canonicalize().map_err(|source| PageError::Read { path: confine_to.clone(), source })?;
        if !real.starts_with(&root) || !real.is_file() {
            return Ok(None);
        }
        let file = std::fs::File::open(&real).map_err(|source| PageError::Read { path: real.clone(), source })?;
        Ok(Some((file, real)))
    })
    .await
    .map_err(PageError::Cancelled)?
}

/// The files `index.html` loads from `/assets/` (its `src` and `href`
/// attributes) that are not in the web directory, or `index.html` itself
/// when that is missing: what start-up warns about, so a page without its
/// vendor files is a clear message in the log instead of a silent 404 in
/// the browser.
pub fn missing_page_files(dir: &WebDir) -> Vec<PathBuf> {
    let index = dir.root.join("index.html");
    let Ok(html) = std::fs::read_to_string(&index) else {
        return vec![index];
    };
    html.split(['"', '\''])
        .filter_map(|part| part.strip_prefix("/assets/"))
        .filter_map(safe_relative_path)
        .map(|relative| dir.root.join("assets").join(relative))
        .filter(|path| !path.is_file())
        .collect()
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
            safe_relative_path("vendor/fullcalendar-6.1.21/index.global.min.js"),
            Some(PathBuf::from("vendor/fullcalendar-6.1.21/index.global.min.js"))
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

    #[test]
    fn missing_page_files_names_what_index_html_loads_and_is_not_there() {
        let dir = std::env::temp_dir().join(format!("calcache-page-{}", uuid::Uuid::new_v4()));
        let web = WebDir::new(&dir);
        assert_eq!(missing_page_files(&web), vec![dir.join("index.html")]);
        let made = std::fs::create_dir_all(dir.join("assets")).and_then(|()| {
            std::fs::write(
                dir.join("index.html"),
                r#"<link href="/assets/app.css"><script src='/assets/vendor/lib-1.0/lib.js'></script><a href="/other">"#,
            )?;
            std::fs::write(dir.join("assets/app.css"), "body{}")
        });
        assert!(made.is_ok());
        assert_eq!(missing_page_files(&web), vec![dir.join("assets/vendor/lib-1.0/lib.js")]);
        let _cleanup = std::fs::remove_dir_all(&dir);
    }

    #[actix_web::test]
    async fn a_missing_file_is_none_and_a_file_outside_the_root_is_refused() {
        let dir = std::env::temp_dir().join(format!("calcache-page-{}", uuid::Uuid::new_v4()));
        let assets = dir.join("assets");
        let made = std::fs::create_dir_all(&assets).and_then(|()| std::fs::write(dir.join("secret.txt"), "no"));
        assert!(made.is_ok());
        let missing = open_file(assets.join("nope.js"), assets.clone()).await;
        assert!(matches!(missing, Ok(None)));
        let outside = open_file(assets.join("..").join("secret.txt"), assets.clone()).await;
        assert!(matches!(outside, Ok(None)));
        let _cleanup = std::fs::remove_dir_all(&dir);
    }
}
