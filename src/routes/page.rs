//! The browser calendar: `GET /` and its static assets.

use actix_web::{HttpResponse, web};

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index));
}

const INDEX_HTML: &str = include_str!("../../web/index.html");

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .body(INDEX_HTML)
}
