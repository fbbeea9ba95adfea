//! Faults injected for real: a TCP proxy that cuts connections, a Redis
//! server of the test's own that is killed and restarted. Recovery is polled
//! for with deadlines.

use crate::helpers::each_versioned_strategy;
use std::time::Duration;

use calcache::domain::UserId;
use futures_util::future::join_all;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::helpers::{OCT, authority, eventually, item, metric, spawn_app_with, spawn_sibling, with_authority};
use crate::proxy::{Proxy, RedisServer};

fn pg_upstream() -> String {
    authority(crate::helpers::base_settings().database.url.expose_secret())
}

each_versioned_strategy! {
#[tokio::test]
async fn redis_down_then_restarted_empty_degrades_and_resurrects_nothing() {
    let mut redis = RedisServer::start().await;
    let app = spawn_app_with(|s| {
        s.redis.url = redis.url().into();
        s.redis.breaker_cooldown = std::time::Duration::from_millis(100);
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
    // Writes need their fence in Redis (see cache/fence.rs): refused, and
    // nothing changed.
    let path = format!("/api/work-items/{}", doomed["id"].as_str().unwrap());
    let refused = app.delete(&path, &user.token).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "unavailable");
    assert_eq!(app.feed(&user, OCT).await.titles(), ["keep", "doomed"]);
    // Sessions still work: they live in PostgreSQL.
    let token = app.token_for(&user.username, &user.password).await;
    assert_eq!(app.get("/api/me", Some(&token)).await.status(), StatusCode::OK);

    redis.restart().await;
    eventually(Duration::from_secs(5), "writes work again", || async {
        app.delete(&path, &user.token).await.status() == StatusCode::NO_CONTENT
    })
    .await;
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
}

each_versioned_strategy! {
#[tokio::test]
async fn postgres_down_serves_cached_feeds_and_503_for_the_rest() {
    let proxy = Proxy::start(pg_upstream()).await;
    let app = spawn_app_with(|s| {
        s.database.url = with_authority(s.database.url.expose_secret(), &format!("127.0.0.1:{}", proxy.port)).into();
        s.database.connect_timeout = std::time::Duration::from_millis(300);
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
}

each_versioned_strategy! {
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
}
