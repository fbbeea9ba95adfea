//! Faults injected for real: a TCP proxy that cuts connections, a Redis
//! server of the test's own that is killed and restarted. Recovery is polled
//! for with deadlines.

use std::time::{Duration, Instant};

use calcache::domain::UserId;
use futures_util::future::join_all;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::helpers::{
    OCT, authority, eventually, item, metric, spawn_app_with, spawn_sibling, spawn_sibling_with, with_authority,
};
use crate::proxy::{Proxy, RedisServer};

fn redis_upstream() -> String {
    authority(crate::helpers::base_settings().redis.url.expose_secret())
}

fn pg_upstream() -> String {
    authority(crate::helpers::base_settings().database.url.expose_secret())
}

#[tokio::test]
async fn an_invalidation_lost_after_commit_is_applied_when_redis_returns() {
    let proxy = Proxy::start(redis_upstream()).await;
    let writer = spawn_app_with(|s| {
        s.redis.url = with_authority(s.redis.url.expose_secret(), &format!("127.0.0.1:{}", proxy.port)).into();
        s.redis.breaker_cooldown_ms = 200;
    })
    .await;
    // The reader talks to Redis directly: it never sees the outage. Its
    // drainer is held off, or it could apply the deferred row (due at once,
    // for every process) before the test has looked at the outbox; the
    // writer's drainer applies it once Redis is back.
    let reader = spawn_sibling_with(&writer, |s| {
        s.redis.url = format!("redis://{}", redis_upstream()).into();
        s.cache.outbox_interval_ms = 3_600_000;
    })
    .await;
    let user = writer.new_user().await;
    let created = writer.create_item(&user, item("doomed", "2026-10-05", "2026-10-06")).await;
    reader.feed(&user, OCT).await;
    assert_eq!(reader.feed(&user, OCT).await.x_cache, "HIT");

    // Redis goes away between the commit and the INCR.
    proxy.cut().await;
    let path = format!("/api/work-items/{}", created["id"].as_str().unwrap());
    assert_eq!(writer.delete(&path, &user.token).await.status(), StatusCode::NO_CONTENT, "the write is not lost");
    assert_eq!(writer.outbox_depth().await, 1, "the invalidation waits in the outbox");
    // The writing process reads its own write.
    let own = writer.feed(&user, OCT).await;
    assert_eq!(own.x_cache, "BYPASS");
    assert!(own.ids().is_empty());

    proxy.heal();
    let healed = Instant::now();
    eventually(Duration::from_secs(2), "the reader sees the delete after Redis heals", || async {
        reader.feed(&user, OCT).await.ids().is_empty()
    })
    .await;
    tracing::info!(after = ?healed.elapsed(), "fresh again");
    for _ in 0..20 {
        let feed = reader.feed(&user, OCT).await;
        assert!(feed.ids().is_empty(), "stale read after recovery");
        assert!(writer.feed(&user, OCT).await.ids().is_empty(), "stale read after recovery");
    }
    eventually(Duration::from_secs(2), "outbox drained", || async { writer.outbox_depth().await == 0 }).await;
    let text = writer.metrics_text().await;
    assert_eq!(metric(&text, "calcache_feed_cache_invalidations_total{cause=\"delete\",result=\"deferred\"}"), 1.0);
    assert_eq!(metric(&text, "calcache_feed_cache_invalidations_total{cause=\"outbox\",result=\"applied\"}"), 1.0);
}

#[tokio::test]
async fn redis_down_then_restarted_empty_degrades_and_resurrects_nothing() {
    let mut redis = RedisServer::start().await;
    let app = spawn_app_with(|s| {
        s.redis.url = redis.url().into();
        s.redis.breaker_cooldown_ms = 100;
    })
    .await;
    let user = app.new_user().await;
    let keep = app.create_item(&user, item("keep", "2026-10-05", "2026-10-06")).await;
    let doomed = app.create_item(&user, item("doomed", "2026-10-07", "2026-10-08")).await;
    app.feed(&user, OCT).await;
    assert_eq!(app.feed(&user, OCT).await.x_cache, "HIT");

    redis.kill();
    let res = app.get("/readyz", None).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["message"], "unavailable: redis");
    for _ in 0..5 {
        let feed = app.feed(&user, OCT).await;
        assert_eq!((feed.status, feed.x_cache.as_str()), (StatusCode::OK, "BYPASS"));
        assert_eq!(feed.titles(), ["keep", "doomed"]);
    }
    let path = format!("/api/work-items/{}", doomed["id"].as_str().unwrap());
    assert_eq!(app.delete(&path, &user.token).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.feed(&user, OCT).await.titles(), ["keep"]);
    // Sessions still work: they live in PostgreSQL.
    let token = app.token_for(&user.username, &user.password).await;
    assert_eq!(app.get("/api/me", Some(&token)).await.status(), StatusCode::OK);

    redis.restart().await;
    eventually(Duration::from_secs(5), "the cache is used again", || async {
        app.feed(&user, OCT).await.x_cache != "BYPASS"
    })
    .await;
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
    for _ in 0..5 {
        assert_eq!(app.feed(&user, OCT).await.titles(), ["keep"], "nothing comes back");
    }
    assert_eq!(app.feed(&user, OCT).await.x_cache, "HIT");
    assert!(keep["id"].is_string());
}

#[tokio::test]
async fn postgres_down_serves_cached_feeds_and_503_for_the_rest() {
    let proxy = Proxy::start(pg_upstream()).await;
    let app = spawn_app_with(|s| {
        s.database.url = with_authority(s.database.url.expose_secret(), &format!("127.0.0.1:{}", proxy.port)).into();
        s.database.connect_timeout_ms = 300;
    })
    .await;
    let user = app.new_user().await;
    app.create_item(&user, item("cached", "2026-10-05", "2026-10-06")).await;
    app.feed(&user, OCT).await;
    assert_eq!(app.feed(&user, OCT).await.x_cache, "HIT");

    proxy.cut().await;
    let hit = app.feed(&user, OCT).await;
    assert_eq!((hit.status, hit.x_cache.as_str()), (StatusCode::OK, "HIT"));
    assert_eq!(hit.titles(), ["cached"]);

    let miss = app.feed(&user, "start=2026-11-01&end=2026-12-01").await;
    assert_eq!(miss.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(miss.body["error"]["code"], "unavailable");
    assert_eq!(miss.headers.get("cache-control").unwrap(), "no-store, no-cache, must-revalidate, max-age=0, private");
    let write = app.post_json("/api/work-items", Some(&user.token), &item("x", "2026-10-05", "2026-10-06")).await;
    assert_eq!(write.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(write.json::<Value>().await.unwrap()["error"]["code"], "unavailable");
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.json::<Value>().await.unwrap()["error"]["message"], "unavailable: postgres");

    proxy.heal();
    eventually(Duration::from_secs(5), "writes work again", || async {
        app.post_json("/api/work-items", Some(&user.token), &item("after", "2026-10-09", "2026-10-10")).await.status()
            == StatusCode::CREATED
    })
    .await;
    let feed = app.feed(&user, OCT).await;
    assert_eq!(feed.titles(), ["cached", "after"]);
}

#[tokio::test]
async fn a_stampede_after_invalidation_queries_postgres_about_once() {
    let a = spawn_app_with(|s| s.server.workers = 2).await;
    let b = spawn_sibling(&a).await;
    let user = a.new_user().await;
    for d in 1..=20 {
        a.create_item(&user, item(&format!("i{d}"), &format!("2026-10-{d:02}"), &format!("2026-10-{d:02}"))).await;
    }
    let feed = |app: &crate::helpers::TestApp| {
        let req = app.client.get(app.url(&format!("/api/calendar/feed?{OCT}"))).bearer_auth(&user.token);
        async move { req.send().await.unwrap().status() }
    };
    // Sessions cached on both, so only feed queries touch PostgreSQL.
    assert_eq!(feed(&a).await, StatusCode::OK);
    assert_eq!(feed(&b).await, StatusCode::OK);
    a.create_item(&user, item("invalidate", "2026-10-21", "2026-10-21")).await;
    let before = |t: &str| metric(t, "calcache_feed_db_queries_total");
    let (qa0, qb0) = (before(&a.metrics_text().await), before(&b.metrics_text().await));

    let requests: Vec<_> = (0..200).map(|i| feed(if i % 2 == 0 { &a } else { &b })).collect();
    let statuses = join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");

    let (ta, tb) = (a.metrics_text().await, b.metrics_text().await);
    let (qa, qb) = (before(&ta) - qa0, before(&tb) - qb0);
    let outcomes = |t: &str| {
        ["hit", "miss", "bypass"].map(|o| metric(t, &format!("calcache_feed_cache_requests_total{{outcome=\"{o}\"}}")))
    };
    let errors = |t: &str| metric(t, "calcache_dependency_errors_total{dependency=\"redis\"}");
    assert!(
        qa <= 1.0 && qb <= 1.0,
        "feed queries per process: a={qa} b={qb}; outcomes a={:?} b={:?}; redis errors a={} b={}",
        outcomes(&ta),
        outcomes(&tb),
        errors(&ta),
        errors(&tb)
    );
    assert!(qa + qb >= 1.0 && qa + qb <= 2.0, "feed queries across processes: {}", qa + qb);
    let waits = metric(&ta, "calcache_feed_cache_stampede_waits_total{waited_for=\"process\"}")
        + metric(&tb, "calcache_feed_cache_stampede_waits_total{waited_for=\"process\"}");
    tracing::info!(qa, qb, waits, "stampede");
    // Sanity: the answer is right.
    let check = a.feed(&crate::helpers::TestUser { ..user.clone() }, OCT).await;
    assert_eq!(check.ids().len(), 21);
    let _ = UserId(user.id);
}
