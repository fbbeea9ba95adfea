//! `cache.strategy` (the rollback switch) and the freshness auditor.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{OCT, eventually, item, metric, spawn_app_with};

#[tokio::test]
async fn ttl_strategy_serves_stale_until_expiry_and_none_never_caches() {
    let ttl = spawn_app_with(|s| s.cache.strategy = calcache::config::CacheStrategy::Ttl).await;
    let user = ttl.new_user().await;
    let created = ttl.create_item(&user, item("before", "2026-10-05", "2026-10-06")).await;
    assert_eq!(ttl.feed(&user, OCT).await.x_cache, "MISS");
    ttl.patch_json(
        &format!("/api/work-items/{}", created["id"].as_str().unwrap()),
        &user.token,
        &json!({"title": "after"}),
    )
    .await;
    // The origin's "before": no version in the key, so the old entry is served.
    let stale = ttl.feed(&user, OCT).await;
    assert_eq!((stale.x_cache.as_str(), stale.titles()), ("HIT", vec!["before".to_owned()]));

    let none = spawn_app_with(|s| s.cache.strategy = calcache::config::CacheStrategy::None).await;
    let user = none.new_user().await;
    none.create_item(&user, item("x", "2026-10-05", "2026-10-06")).await;
    for _ in 0..3 {
        assert_eq!(none.feed(&user, OCT).await.x_cache, "BYPASS");
    }
    let text = none.metrics_text().await;
    assert_eq!(metric(&text, "calcache_feed_db_queries_total"), 3.0);
}

#[tokio::test]
async fn the_auditor_confirms_fresh_hits_and_catches_a_stale_one() {
    let app =
        spawn_app_with(|s| s.cache.audit_sample_rate = calcache::config::SampleRate::try_from(1.0).unwrap()).await;
    let user = app.new_user().await;
    app.create_item(&user, item("one", "2026-10-05", "2026-10-06")).await;
    app.feed(&user, OCT).await;
    assert_eq!(app.feed(&user, OCT).await.x_cache, "HIT");
    eventually(Duration::from_secs(5), "a fresh hit audited as a match", || async {
        metric(&app.metrics_text().await, "calcache_freshness_audits_total{result=\"match\"}") >= 1.0
    })
    .await;

    // A change behind calcache's back (no invalidation): the cached entry is
    // now stale, and the auditor must say so.
    app.sql("UPDATE work_items SET title = 'changed behind the cache'").await;
    assert_eq!(app.feed(&user, OCT).await.titles(), ["one"]);
    eventually(Duration::from_secs(5), "the stale hit audited as a mismatch", || async {
        metric(&app.metrics_text().await, "calcache_freshness_audits_total{result=\"mismatch\"}") >= 1.0
    })
    .await;
}
