//! Garbage in, a 4xx out: invalid UTF-8, deep nesting, huge numbers, NUL
//! bytes, timestamps out of range, 10 MB bodies, clients that send slowly,
//! and a feed range with 10 000 items. Every answer is the contract's JSON
//! error (never a 5xx), and the server keeps serving afterwards.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, raw_exchange, spawn_app, spawn_app_with};

/// Asserts a contract error: `status`, `{"error": {"code", "message"}}`,
/// and (when given) the field at fault.
async fn assert_error(res: Response, status: StatusCode, code: &str, field: Option<&str>, what: &str) {
    let got = res.status();
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{what}: {body}");
    assert!(ct.starts_with("application/json"), "{what}: content-type {ct}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
    if let Some(field) = field {
        assert_eq!(body["error"]["field"], field, "{what}: {body}");
    }
}

async fn post_raw(app: &TestApp, path: &str, token: Option<&str>, body: Vec<u8>) -> Response {
    let mut req = app.client.post(app.url(path)).header("content-type", "application/json").body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("request sent")
}

async fn assert_still_serving(app: &TestApp) {
    let res = app.get("/healthz", None).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn invalid_utf8_is_a_400() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let mut body = br#"{"title":""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    body.extend_from_slice(br#"","work_type":"task","start":"2026-10-06"}"#);

    let res = post_raw(&app, "/api/work-items", Some(&user.token), body.clone()).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some("body"), "create").await;
    let res = post_raw(&app, "/api/login", None, b"{\"username\":\"\xff\xff\",\"password\":\"x\"}".to_vec()).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some("body"), "login").await;
    let res =
        post_raw(&app, "/api/signup", None, b"{\"username\":\"ab\xc0\xafcd\",\"password\":\"12345678\"}".to_vec())
            .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some("body"), "signup").await;

    // Percent-encoded invalid UTF-8 in the query string and the path.
    let res = app.get("/api/calendar/feed?start=%ff%fe&end=2026-11-01", Some(&user.token)).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", None, "feed query").await;
    let res = app.get("/api/work-items/%ff%fe", Some(&user.token)).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some("id"), "item path").await;
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn deeply_nested_json_is_a_400() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    // Deep, but under the 64 KiB body limit.
    let depth = 30_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(depth / 3), "}".repeat(depth / 3));
    let cases = [
        ("top-level arrays", arrays.clone(), "body"),
        ("arrays in a field", format!(r#"{{"title":{arrays},"work_type":"task","start":"2026-10-06"}}"#), "title"),
        ("objects in a field", format!(r#"{{"description":{objects},"title":"x"}}"#), "description"),
        ("unterminated", "[{".repeat(depth), "body"),
    ];
    for (what, body, field) in cases {
        let res = post_raw(&app, "/api/work-items", Some(&user.token), body.into_bytes()).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some(field), what).await;
    }
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn huge_numbers_are_a_400() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let base = r#""title":"x","work_type":"task","start":"2026-10-06""#;
    let cases = [
        (format!(r#"{{{base},"assignee_ids":[1e400]}}"#), "body"),
        (format!(r#"{{{base},"assignee_ids":[99999999999999999999999999]}}"#), "assignee_ids[0]"),
        (format!(r#"{{{base},"assignee_ids":[9223372036854775808]}}"#), "assignee_ids[0]"),
        (format!(r#"{{{base},"assignee_ids":[-9223372036854775809]}}"#), "assignee_ids[0]"),
        (format!(r#"{{{base},"assignee_ids":[{}]}}"#, "9".repeat(20_000)), "body"),
        // A valid i64 that names no user.
        (format!(r#"{{{base},"assignee_ids":[9223372036854775807]}}"#), "assignee_ids"),
        (format!(r#"{{{base},"assignee_ids":[-1]}}"#), "assignee_ids"),
        (format!(r#"{{{base},"all_day":1e999}}"#), "body"),
        (format!(r#"{{{base},"all_day":123456789012345678901234567890}}"#), "all_day"),
        (r#"{"title":"x","work_type":"task","start":1e400}"#.to_owned(), "body"),
        (r#"{"title":"x","work_type":"task","start":20261006}"#.to_owned(), "start"),
    ];
    for (body, field) in cases {
        let what = body.chars().take(120).collect::<String>();
        let res = post_raw(&app, "/api/work-items", Some(&user.token), body.into_bytes()).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some(field), &what).await;
    }
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn nul_bytes_are_a_4xx_never_a_500() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let cases = [
        ("/api/work-items", json!({"title": "a\u{0}b", "work_type": "task", "start": "2026-10-06"}), "title"),
        (
            "/api/work-items",
            json!({"title": "x", "description": "\u{0}", "work_type": "task", "start": "2026-10-06"}),
            "description",
        ),
        ("/api/work-items", json!({"title": "x", "work_type": "task\u{0}", "start": "2026-10-06"}), "work_type"),
        ("/api/work-items", json!({"title": "x", "work_type": "task", "start": "2026-10-06\u{0}"}), "start"),
        ("/api/signup", json!({"username": "nul\u{0}name", "password": "long enough"}), "username"),
        ("/api/signup", json!({"username": "nulpassword", "password": "long\u{0}enough"}), "password"),
        // Regression: the login lookup sent the NUL to PostgreSQL, which
        // refused it, and the client got a 500.
        ("/api/login", json!({"username": "nul\u{0}name", "password": "whatever it is"}), "username"),
    ];
    for (path, body, field) in cases {
        let res = app.post_json(path, Some(&user.token), &body).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some(field), &format!("{path} {body}")).await;
    }
    // A NUL in a password is only ever hashed: a wrong password, not an error.
    let res = app.post_json("/api/login", None, &json!({"username": user.username, "password": "x\u{0}y"})).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "unauthenticated", None, "login password").await;

    let res = app.get("/api/calendar/feed?start=2026-10-01&end=2026-11-01&work_type=%00", Some(&user.token)).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some("work_type"), "feed filter").await;
    let res = app.get("/api/calendar/feed?start=2026-10-01%00&end=2026-11-01", Some(&user.token)).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some("start"), "feed start").await;
    let res = app.get("/api/work-items/%00", Some(&user.token)).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some("id"), "item path").await;
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn timestamps_out_of_range_are_a_400() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for start in [
        // Regression: year 10000 in UTC was stored and answered as
        // "+10000-01-01T04:00:00Z", which no RFC 3339 parser (ours
        // included) reads back.
        "9999-12-31T23:00:00-05:00",
        "0001-01-01T00:00:00+05:00",
        "0000-01-01",
        "+10000-01-01",
        "-0001-01-01",
        "262143-12-31",
        "2026-02-30",
        "2026-10-06T24:00:00Z",
        "2026-10-06T12:00:00+24:00",
        "2026-10-06T12:00:00Z trailing",
        "",
    ] {
        let res = app
            .post_json(
                "/api/work-items",
                Some(&user.token),
                &json!({"title": "x", "work_type": "task", "start": start}),
            )
            .await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some("start"), start).await;
    }

    // The edges of the range are fine, and round-trip.
    let first = app
        .create_item(&user, json!({"title": "first", "work_type": "task", "start": "0001-01-01", "end": "0001-01-02"}))
        .await;
    assert_eq!(first["start"], "0001-01-01T00:00:00Z");
    let last = app
        .create_item(
            &user,
            json!({"title": "last", "work_type": "task", "start": "9999-12-31T00:00:00+00:00",
                   "end": "9999-12-31T23:59:59.999999Z"}),
        )
        .await;
    assert_eq!(last["end"], "9999-12-31T23:59:59.999999Z");
    let res = app
        .patch_json(
            &format!("/api/work-items/{}", last["id"].as_str().unwrap()),
            &user.token,
            &json!({"end": "+10000-01-01"}),
        )
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some("end"), "patch end").await;

    let feed = app.feed(&user, "start=9999-12-01&end=9999-12-31T23:59:59.999999Z").await;
    assert_eq!(feed.status, StatusCode::OK, "{}", feed.body);
    assert_eq!(feed.titles(), ["last"]);
    for query in [
        "start=9999-12-01&end=9999-12-31T23:00:00-05:00",
        "start=0000-12-01&end=0001-01-02",
        "start=2026-10-01&end=2027-11-06",
        "start=2026-10-01&end=2026-10-01",
    ] {
        let res = app.get(&format!("/api/calendar/feed?{query}"), Some(&user.token)).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", None, query).await;
    }
}

/// A 10 MB body, sent with its length or chunked without one, is refused
/// with 413 as soon as it passes 64 KiB.
#[tokio::test]
async fn ten_megabyte_bodies_are_a_413() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let big = {
        let mut b = br#"{"title":"x","work_type":"task","start":"2026-10-06","description":""#.to_vec();
        b.resize(10 * 1024 * 1024, b'a');
        b.extend_from_slice(br#""}"#);
        b
    };
    for (path, token) in [("/api/work-items", Some(user.token.as_str())), ("/api/login", None)] {
        let res = post_raw(&app, path, token, big.clone()).await;
        assert_error(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None, path).await;
    }

    // Chunked: no Content-Length to refuse up front; the reader stops at
    // the limit.
    let (answer, closed) = chunked_upload(app.port, "/api/login", big).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"payload_too_large""#), "{answer}");
    assert!(closed.is_some(), "the server kept the connection open after refusing the body");
    assert_still_serving(&app).await;
}

/// Sends `body` chunked while reading the answer on the same connection.
async fn chunked_upload(port: u16, path: &str, body: Vec<u8>) -> (String, Option<Duration>) {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let started = std::time::Instant::now();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let sender = std::thread::spawn(move || {
            writer.write_all(head.as_bytes())?;
            for chunk in body.chunks(64 * 1024) {
                writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                writer.write_all(chunk)?;
                writer.write_all(b"\r\n")?;
            }
            writer.write_all(b"0\r\n\r\n")
        });
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 8192];
        let closed = loop {
            match stream.read(&mut buf) {
                Ok(0) => break Some(started.elapsed()),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    break None;
                }
                Err(_) => break Some(started.elapsed()),
            }
        };
        // The server may close while we still write: the sender then fails,
        // which is the point.
        let _ = sender.join();
        (String::from_utf8_lossy(&answer).into_owned(), closed)
    })
    .await
    .unwrap()
}

/// No field of the API is nullable: a JSON `null` is a 400 naming the field,
/// never read as "absent" (a PATCH that silently changes nothing), and
/// nothing is written.
#[tokio::test]
async fn a_null_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let item =
        app.create_item(&user, crate::helpers::item("keep", "2026-10-06T09:00:00Z", "2026-10-06T10:00:00Z")).await;
    let path = format!("/api/work-items/{}", item["id"].as_str().unwrap());
    for field in ["title", "description", "work_type", "status", "start", "end", "all_day", "assignee_ids"] {
        let res = app.patch_json(&path, &user.token, &json!({ field: null })).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some(field), &format!("PATCH {field}: null")).await;
    }
    // Mixed with valid fields: still refused, and nothing changed.
    let res = app.patch_json(&path, &user.token, &json!({"title": "changed", "end": null})).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some("end"), "PATCH title + end: null").await;
    let now: Value = app.get(&path, Some(&user.token)).await.json().await.unwrap();
    assert_eq!((&now["title"], &now["end"]), (&json!("keep"), &item["end"]));

    let create = json!({"title": "x", "work_type": "task", "start": "2026-10-06", "status": null});
    let res = app.post_json("/api/work-items", Some(&user.token), &create).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some("status"), "POST status: null").await;
    let res = app.post_json("/api/login", None, &json!({"username": null, "password": "x"})).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_input", Some("username"), "login username: null").await;
    assert_eq!(app.feed(&user, "start=2026-10-01&end=2026-11-01").await.titles(), ["keep"]);
}

/// A client that sends its head or body too slowly is cut off after
/// `server.client_timeout_ms` instead of holding a connection forever.
#[tokio::test]
async fn slow_clients_are_cut_off() {
    let app = spawn_app_with(|s| s.server.client_timeout = std::time::Duration::from_millis(500)).await;
    let deadline = Duration::from_secs(5);

    // The body: the head arrives, then 10 of the 100 announced bytes, then
    // nothing. The JSON reader gives up with 408.
    let raw = b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n{\"username"
        .to_vec();
    let (answer, took) = raw_exchange(app.port, raw, deadline).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    let took = took.expect("the server kept the slow connection open");
    assert!(took >= Duration::from_millis(400), "cut off too early: {took:?}");

    // The head: half of it, then nothing. The same JSON 408, then the
    // connection is closed (actix's own, empty 408 would come only at four times
    // the timeout).
    let (answer, took) = raw_exchange(app.port, b"POST /api/login HTTP/1.1\r\nHost: 127".to_vec(), deadline).await;
    let took = took.unwrap_or_else(|| panic!("the server kept a half-sent head open: {answer:?}"));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("content-type: application/json"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap_or(Value::Null);
    assert_eq!(body["error"]["code"], "request_timeout", "{answer}");
    assert!(took >= Duration::from_millis(400), "cut off too early: {took:?}");
    // Nothing at all (a connection opened and left idle): the same.
    let (answer, _) = raw_exchange(app.port, Vec::new(), deadline).await;
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout"), "{answer:?}");
    // A connection whose first request came in time is not cut at the
    // deadline: its second request, after the timeout, is answered.
    let (answer, _) = raw_exchange(
        app.port,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
        Duration::from_millis(800),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200") && !answer.contains("408"), "{answer:?}");

    assert_still_serving(&app).await;
}

/// 10 000 items in one range (seeded with SQL): all of them, in order, when
/// `limits.max_items_per_feed` allows that many (the default, 5 000, refuses
/// the range with 409 naming `end`: see tests/api/limits.rs).
#[tokio::test]
async fn a_feed_range_with_ten_thousand_items() {
    let app =
        crate::helpers::spawn_app_with(|s| s.limits.max_items_per_feed = std::num::NonZeroUsize::new(10_000).unwrap())
            .await;
    let user = app.new_user().await;
    // Two items per minute from 2026-10-01: ties on start are broken by id.
    app.sql(&format!(
        "INSERT INTO work_items (id, owner_id, title, work_type, status, start_at, end_at)
         SELECT gen_random_uuid(), {uid}, 'item ' || g, 'task', 'not_started',
                TIMESTAMPTZ '2026-10-01 00:00:00+00' + (g / 2) * INTERVAL '1 minute',
                TIMESTAMPTZ '2026-10-01 00:00:00+00' + (g / 2) * INTERVAL '1 minute' + INTERVAL '30 minutes'
         FROM generate_series(0, 9999) AS g",
        uid = user.id
    ))
    .await;
    let expected = app
        .sql_strings(&format!(
            "SELECT id::text AS value FROM work_items WHERE owner_id = {} ORDER BY start_at, id",
            user.id
        ))
        .await;
    assert_eq!(expected.len(), 10_000);

    let query = "start=2026-10-01T00:00:00Z&end=2026-10-05T00:00:00Z";
    let first = app.feed(&user, query).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.ids(), expected, "the feed is missing items or out of order");
    let starts: Vec<&str> = first.body.as_array().unwrap().iter().map(|e| e["start"].as_str().unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "not ordered by start");

    // The second answer (from the cache when it took the entry) is the same.
    let second = app.feed(&user, query).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.ids(), expected);

    // With the default cap such a range is refused, not truncated (another
    // range: the cap applies when an answer is loaded, and this one is cached).
    let default_cap = crate::helpers::spawn_sibling(&app).await;
    let refused = default_cap.feed(&user, "start=2026-10-01T00:00:00Z&end=2026-10-05T00:00:01Z").await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "X-Cache: {}", refused.x_cache);
    assert_eq!(refused.body["error"]["code"], "limit_exceeded");
}
