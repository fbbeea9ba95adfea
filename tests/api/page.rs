//! The calendar page's static files, through actix-files: validators,
//! conditional requests, ranges, HEAD, and caching by kind (versioned vendor
//! files immutable, the page's own revalidated). A web directory of its own,
//! so the test needs no `npm ci`.

use reqwest::StatusCode;

use crate::helpers::spawn_app_with;

fn web_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("calcache-web-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("assets/vendor/lib-1.2.3")).unwrap();
    std::fs::write(dir.join("index.html"), r#"<html data-session="unknown"><script src="/assets/app.js"></script>"#)
        .unwrap();
    std::fs::write(dir.join("assets/app.js"), "console.log('calendar');\n".repeat(100)).unwrap();
    std::fs::write(dir.join("assets/vendor/lib-1.2.3/lib.js"), "window.lib = 1;\n").unwrap();
    std::fs::write(dir.join("secret.txt"), "not served").unwrap();
    dir
}

#[tokio::test]
async fn assets_have_validators_ranges_and_the_right_caching() {
    let dir = web_dir();
    let app = spawn_app_with(|s| s.server.web_dir = dir.clone()).await;
    let get = |path: &str| app.client.get(app.url(path));

    let res = get("/assets/app.js").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["accept-ranges"], "bytes");
    let etag = h["etag"].to_str().unwrap().to_owned();
    let modified = h["last-modified"].to_str().unwrap().to_owned();
    let full = res.bytes().await.unwrap();
    assert_eq!(full.len(), 2500);

    // Conditional requests: 304 on either validator.
    let res = get("/assets/app.js").header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    let res = get("/assets/app.js").header("if-modified-since", &modified).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    // A range.
    let res = get("/assets/app.js").header("range", "bytes=8-10").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.headers()["content-range"], "bytes 8-10/2500");
    assert_eq!(res.bytes().await.unwrap(), full.slice(8..11));

    // HEAD: the headers, no body.
    let res = app.client.head(app.url("/assets/app.js")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-length"], "2500");
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    assert!(res.bytes().await.unwrap().is_empty());

    // Versioned vendor files: immutable for a year.
    let res = get("/assets/vendor/lib-1.2.3/lib.js").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "public, max-age=31536000, immutable");

    // Nothing outside assets/, no traversal, JSON 404s.
    for path in ["/assets/../secret.txt", "/assets/%2e%2e/secret.txt", "/assets/nope.js", "/assets/vendor"] {
        let res = get(path).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    let _cleanup = std::fs::remove_dir_all(&dir);
}
