//! The real binary as a child process: graceful shutdown on SIGTERM, and
//! what it writes to its logs.

use std::process::{Child, Command};
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::helpers::{base_settings, eventually, spawn_app};

struct Served {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

/// Runs `calcache serve` against the database and prefix of `app` (whose
/// own server is only used to create the database).
async fn serve(app: &crate::helpers::TestApp) -> Served {
    serve_with(app, &[]).await
}

/// [`serve`] with more environment variables.
async fn serve_with(app: &crate::helpers::TestApp, env: &[(&str, &str)]) -> Served {
    let log = std::env::temp_dir().join(format!("calcache-{}.log", uuid::Uuid::new_v4()));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_calcache"))
        // Port 0: the OS picks a free port and the binary logs it. (A port
        // picked here and released could be taken by another test first.)
        .args(["serve", "--port", "0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CALCACHE_ENV", "test")
        .env("DATABASE_URL", &app.db_url)
        .env("REDIS_URL", base_settings().redis.url.expose_secret())
        .env("CALCACHE__REDIS__KEY_PREFIX", &app.prefix)
        .env("CALCACHE__SERVER__SHUTDOWN_TIMEOUT_SECS", "20")
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut port = 0;
    eventually(Duration::from_secs(20), "the binary logs its port", || {
        port = listening_port(&log).unwrap_or(0);
        async move { port != 0 }
    })
    .await;
    let res = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    Served { child, port, log }
}

/// The port in the "calcache listening … port=N" log line.
fn listening_port(log: &std::path::Path) -> Option<u16> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("calcache listening"))?;
    let plain: String = line.split('\u{1b}').map(|part| part.split_once('m').map_or(part, |(_, rest)| rest)).collect();
    let after = plain.split("port=").nth(1)?;
    after.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn sigterm(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("server log kept at {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_drains_the_outbox_and_exits_zero() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let mut served = serve(&app).await;

    // An invalidation left in the outbox, scheduled far in the future: only
    // the shutdown drain (which ignores schedules) applies it.
    app.sql(&format!(
        "INSERT INTO cache_invalidations (user_id, attempt_after) VALUES ({}, now() + interval '1 hour')",
        user.id
    ))
    .await;

    // A request in flight: headers sent, body still coming when SIGTERM lands.
    let body = json!({"title": "in flight", "work_type": "task", "start": "2026-10-06"}).to_string();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", served.port)).await.unwrap();
    let head = format!(
        "POST /api/work-items HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        user.token,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..5]).await.unwrap();
    stream.flush().await.unwrap();
    // The request is in flight once the server has authenticated it: that
    // caches the session in Redis (the token was never used before).
    let session_key = {
        use sha2::Digest;
        app.keys().session(calcache::domain::UserId(user.id), &sha2::Sha256::digest(user.token.as_bytes()))
    };
    let mut redis = app.redis().await;
    eventually(Duration::from_secs(10), "the server is processing the request", || {
        let mut r = redis.clone();
        let k = session_key.clone();
        async move { redis::cmd("EXISTS").arg(&k).query_async::<bool>(&mut r).await.unwrap_or(false) }
    })
    .await;
    let _ = &mut redis;

    served.sigterm();
    // New connections are refused once it stops accepting.
    let client = reqwest::Client::new();
    let url = served.url("/healthz");
    eventually(Duration::from_secs(10), "the listener closes", || {
        let (c, u) = (client.clone(), url.clone());
        async move { c.get(u).send().await.is_err() }
    })
    .await;

    stream.write_all(&body.as_bytes()[5..]).await.unwrap();
    let mut response = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "the in-flight request completes: {response}");

    let (status, served) = tokio::task::spawn_blocking(move || (served.child.wait().unwrap(), served)).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(app.outbox_depth().await, 0, "the outbox was drained before exit");
    drop(served);
}

#[tokio::test]
async fn sigterm_first_drains_readiness_while_requests_are_still_served() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    // A drain far longer than the test: the second signal ends it.
    let mut served = serve_with(&app, &[("CALCACHE__SERVER__DRAIN_SECS", "600")]).await;
    let client = reqwest::Client::new();
    assert_eq!(client.get(served.url("/readyz")).send().await.unwrap().status(), StatusCode::OK);

    served.sigterm();
    let url = served.url("/readyz");
    eventually(Duration::from_secs(10), "/readyz answers 503", || {
        let (c, u) = (client.clone(), url.clone());
        async move { c.get(u).send().await.is_ok_and(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE) }
    })
    .await;
    let res = client.get(served.url("/readyz")).send().await.unwrap();
    assert_eq!(res.headers()["retry-after"], "1");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(body["error"]["message"], "unavailable: draining");
    // Everything else is still served while the balancer takes it out.
    assert_eq!(client.get(served.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
    let me = client.get(served.url("/api/me")).bearer_auth(&user.token).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    // A second signal cuts the drain short: the listener closes, exit 0.
    served.sigterm();
    let (status, served) = tokio::task::spawn_blocking(move || (served.child.wait().unwrap(), served)).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    let logs = std::fs::read_to_string(&served.log).unwrap();
    assert!(logs.contains("stop requested"), "the drain is logged");
    drop(served);
}

#[tokio::test]
async fn no_password_or_token_ever_reaches_the_logs() {
    let app = spawn_app().await;
    let served = serve(&app).await;
    let client = reqwest::Client::new();
    let username = crate::helpers::unique_name("logged");
    let password = "very-secret-password-123";
    let res = client
        .post(served.url("/api/signup"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let wrong = client
        .post(served.url("/api/login"))
        .json(&json!({"username": username, "password": "wrong-secret-456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let res = client
        .post(served.url("/api/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let token = res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    for path in ["/api/me", "/api/calendar/feed?start=2026-10-01&end=2026-10-02", "/api/calendar/feed?start=bad"] {
        client.get(served.url(path)).bearer_auth(&token).send().await.unwrap();
    }
    client.get(served.url("/api/me")).header("cookie", format!("session={token}")).send().await.unwrap();
    client.post(served.url("/api/logout")).bearer_auth(&token).send().await.unwrap();
    served.sigterm();
    let mut served = served;
    let served = tokio::task::spawn_blocking(move || {
        served.child.wait().unwrap();
        served
    })
    .await
    .unwrap();
    let logs = std::fs::read_to_string(&served.log).unwrap();
    assert!(logs.contains("logged in"), "debug logs were captured: {} bytes", logs.len());
    let secret_part = token.split('.').nth(1).unwrap();
    for secret in [password, "wrong-secret-456", secret_part] {
        assert!(!logs.contains(secret), "a secret reached the logs: {secret}");
    }
}

/// SIGTERM ends the binary's change streams at once (no `end` event, so
/// browsers reconnect elsewhere) instead of letting them hold the graceful
/// stop for `server.shutdown_timeout_secs` (20 s here), and the process
/// exits 0.
#[tokio::test]
async fn sigterm_ends_change_streams_at_once_and_exits_zero() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let mut served = serve(&app).await;
    let res =
        reqwest::Client::new().get(served.url("/api/calendar/changes")).bearer_auth(&user.token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut sse = crate::changes::Sse::new(res);
    assert_eq!(sse.next(Duration::from_secs(5)).await.unwrap().event, "ready");
    served.sigterm();
    // Well within the 20 s shutdown timeout, which the stream would
    // otherwise have held.
    assert_eq!(sse.next(Duration::from_secs(10)).await, None, "the stream ended without an end event");
    let (status, served) = tokio::task::spawn_blocking(move || (served.child.wait().unwrap(), served)).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    drop(served);
}

/// libfaketime (Debian's `faketime`, installed by scripts/test.sh).
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

crate::helpers::each_versioned_strategy! {
/// Version loss with the processes' clocks a day apart: the process whose
/// clock is behind re-creates the user's version (and, under `bucketed`,
/// the bucket versions) above every value already used, because the value
/// comes from Redis' clock, not its own; and it serves nothing old.
#[tokio::test]
async fn a_process_whose_clock_is_a_day_behind_re_creates_versions_above_every_used_one() {
    assert!(
        std::path::Path::new(FAKETIME_LIB).exists(),
        "{FAKETIME_LIB} is missing: apt-get install faketime (scripts/test.sh does)"
    );
    let app = crate::helpers::spawn_app().await;
    let strategy = match crate::helpers::strategy() {
        calcache::config::CacheStrategy::Bucketed => "bucketed",
        _ => "versioned",
    };
    let behind = serve_with(
        &app,
        &[
            ("LD_PRELOAD", FAKETIME_LIB),
            ("FAKETIME", "-1d"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("CALCACHE__CACHE__STRATEGY", strategy),
        ],
    )
    .await;
    let user = app.new_user().await;
    let client = reqwest::Client::new();
    let feed = async |base: String| {
        let res = client.get(format!("{base}/api/calendar/feed?{}", crate::helpers::OCT)).bearer_auth(&user.token);
        let res = res.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let x_cache = res.headers()["x-cache"].to_str().unwrap().to_owned();
        let body: Vec<Value> = res.json().await.unwrap();
        (x_cache, body.iter().map(|e| e["title"].as_str().unwrap().to_owned()).collect::<Vec<_>>())
    };
    let item = app.create_item(&user, crate::helpers::item("before", "2026-10-05", "2026-10-06")).await;
    // Versions created by the process with the right clock, entries stored.
    assert_eq!(feed(app.address.clone()).await.1, ["before"]);
    assert_eq!(feed(app.address.clone()).await.0, "HIT");
    let mut redis = app.redis().await;
    let user_tag = format!("{{u{}}}", user.id);
    let versions = async |redis: &mut crate::helpers::TestRedis| {
        let pattern = format!("{}:calendar_*{user_tag}*", app.prefix);
        let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(redis).await.unwrap();
        let mut values = Vec::new();
        for k in keys.iter().filter(|k| k.contains(":calendar_version:") || k.contains(":calendar_bucket:")) {
            values.push((k.clone(), redis::cmd("GET").arg(k).query_async::<u64>(redis).await.unwrap()));
        }
        values
    };
    let used = versions(&mut redis).await;
    assert!(!used.is_empty());
    let highest = used.iter().map(|(_, v)| *v).max().unwrap();

    // Every version key lost (evicted, flushed): the process that is a day
    // behind reads first, re-creating the versions; then it writes.
    for (k, _) in &used {
        let _: () = redis::cmd("DEL").arg(k).query_async(&mut redis).await.unwrap();
    }
    let (x_cache, titles) = feed(behind.url("")).await;
    assert_eq!((x_cache.as_str(), &titles[..]), ("MISS", &["before".to_owned()][..]));
    let re_created = versions(&mut redis).await;
    assert!(!re_created.is_empty());
    for (k, v) in &re_created {
        assert!(*v > highest, "{k} re-created at {v}, not above {highest}, the highest value already used");
    }
    let patch = format!("/api/work-items/{}", item["id"].as_str().unwrap());
    let res = client
        .patch(behind.url(&patch))
        .bearer_auth(&user.token)
        .json(&json!({"title": "after"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(feed(behind.url("")).await.1, ["after"]);
    // And both processes agree on the truth.
    assert_eq!(feed(app.address.clone()).await.1, ["after"]);
    assert_eq!(feed(behind.url("")).await.1, ["after"]);
}
}
