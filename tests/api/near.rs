//! The near cache (`cache::near`): each process's copy of the entries it
//! served, which a hit uses only after reading the versions from Redis.

use std::io::Read as _;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    OCT, TestApp, TestUser, each_versioned_strategy, item, metric, spawn_app_with, spawn_sibling, spawn_sibling_with,
};
use crate::proxy::RedisServer;

/// Hits this app answered from its own copy.
async fn local_hits(app: &TestApp) -> f64 {
    metric(&app.metrics_text().await, "calcache_near_cache_hits_total")
}

/// The feed as a gzip client gets it: X-Cache and the titles.
async fn gzip_feed(app: &TestApp, user: &TestUser, query: &str) -> (String, Vec<String>) {
    let res = app
        .client
        .get(app.url(&format!("/api/calendar/feed?{query}")))
        .bearer_auth(&user.token)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers().get("content-encoding").and_then(|v| v.to_str().ok()), Some("gzip"));
    let x_cache = res.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let gz = res.bytes().await.unwrap();
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut json).unwrap();
    let body: Vec<Value> = serde_json::from_slice(&json).unwrap();
    (x_cache, body.iter().map(|e| e["title"].as_str().unwrap_or("").to_owned()).collect())
}

fn sorted(mut titles: Vec<String>) -> Vec<String> {
    titles.sort();
    titles
}

each_versioned_strategy! {
/// Two processes, each answering from its own copy whenever it can, and
/// each round a write on one of them: the other's next answer (gzip or
/// identity client alike) is the new truth, never its copy.
#[tokio::test]
async fn a_bump_on_another_process_is_never_answered_from_the_local_copy() {
    let a = spawn_app_with(|_| {}).await;
    let b = spawn_sibling(&a).await;
    let user = a.new_user().await;
    // (id, title) of the user's items: the truth each answer must match.
    let mut items: Vec<(String, String)> = Vec::new();
    let truth = |items: &[(String, String)]| sorted(items.iter().map(|(_, t)| t.clone()).collect());
    for round in 0..24 {
        let (writer, reader) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let expected = truth(&items);
        // Warm both copies, and check both are right before the write.
        for app in [&a, &b] {
            for _ in 0..2 {
                assert_eq!(sorted(app.feed(&user, OCT).await.titles()), expected, "round {round}: before the write");
                assert_eq!(sorted(gzip_feed(app, &user, OCT).await.1), expected, "round {round}: gzip, before");
            }
        }
        match round % 3 {
            0 | 1 if items.len() < 6 => {
                let title = format!("item {round}");
                let day = 5 + round % 20;
                let (start, end) = (format!("2026-10-{day:02}"), format!("2026-10-{:02}", day + 1));
                let created = writer.create_item(&user, item(&title, &start, &end)).await;
                items.push((created["id"].as_str().unwrap().to_owned(), title));
            }
            1 => {
                let at = round % items.len();
                let title = format!("renamed {round}");
                let path = format!("/api/work-items/{}", items[at].0);
                let res = writer.patch_json(&path, &user.token, &json!({"title": title})).await;
                assert_eq!(res.status(), StatusCode::OK);
                items[at].1 = title;
            }
            _ => {
                let (id, _) = items.remove(round % items.len());
                let res = writer.delete(&format!("/api/work-items/{id}"), &user.token).await;
                assert_eq!(res.status(), StatusCode::NO_CONTENT);
            }
        }
        let expected = truth(&items);
        let seen = sorted(reader.feed(&user, OCT).await.titles());
        assert_eq!(seen, expected, "round {round}: identity client on the other process");
        let seen = sorted(gzip_feed(reader, &user, OCT).await.1);
        assert_eq!(seen, expected, "round {round}: gzip client on the other process");
    }
    // The copies were used: otherwise this proved nothing.
    assert!(local_hits(&a).await > 20.0 && local_hits(&b).await > 20.0);
}
}

each_versioned_strategy! {
/// A session revoked on one process is refused on the other, whose copy of
/// the feed stays unused.
#[tokio::test]
async fn a_session_revoked_elsewhere_is_never_served_from_the_local_copy() {
    let a = spawn_app_with(|_| {}).await;
    let b = spawn_sibling(&a).await;
    let user = a.new_user().await;
    a.create_item(&user, item("mine", "2026-10-05", "2026-10-06")).await;
    for _ in 0..3 {
        assert_eq!(a.feed(&user, OCT).await.titles(), ["mine"]);
    }
    let before = local_hits(&a).await;
    assert!(before >= 1.0, "the feed was answered from a's copy");
    let res = b.client.post(b.url("/api/logout")).bearer_auth(&user.token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for _ in 0..3 {
        assert_eq!(a.feed(&user, OCT).await.status, StatusCode::UNAUTHORIZED);
        let res = a
            .client
            .get(a.url(&format!("/api/calendar/feed?{OCT}")))
            .bearer_auth(&user.token)
            .header("Accept-Encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(local_hits(&a).await, before, "nothing was served from the copy after the logout");
}
}

/// Hundreds of distinct entries through a small near cache: the bytes it
/// holds never pass its bound, and it evicts to stay there.
#[tokio::test]
async fn the_near_cache_stays_under_its_byte_bound() {
    let bound = 48 * 1024;
    let app = spawn_app_with(|s| s.cache.near_bytes = bound).await;
    let user = app.new_user().await;
    for day in 1..=28 {
        let (start, end) = (format!("2026-10-{day:02}"), format!("2026-10-{:02}", day + 1));
        app.create_item(&user, item(&format!("item {day} {}", "x".repeat(150)), &start, &end)).await;
    }
    for i in 0..400u32 {
        // A distinct range each time: a new entry (and copy) each time.
        let query =
            format!("start=2026-09-{:02}T00:{:02}:{:02}Z&end=2026-11-01", 1 + i / 3600 % 28, i / 60 % 60, i % 60);
        assert_eq!(app.feed(&user, &query).await.status, StatusCode::OK);
        if i % 50 == 49 {
            let held = metric(&app.metrics_text().await, "calcache_near_cache_bytes");
            assert!(held <= bound as f64, "{held} bytes held after {i} entries");
            assert!(held > 0.0);
        }
    }
    assert!(metric(&app.metrics_text().await, "calcache_near_cache_evictions_total") > 100.0);
}

/// Bytes Redis sent since the last call (`INFO stats`; the INFO replies
/// themselves are a few hundred bytes each and counted).
async fn redis_output_bytes(redis: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query_async(&mut redis.admin().await).await.unwrap();
    info.lines().find_map(|l| l.strip_prefix("total_net_output_bytes:")).and_then(|v| v.trim().parse().ok()).unwrap()
}

/// With the near cache, a hit takes only the session, the fence and the
/// version out of Redis — a few dozen bytes, whatever the feed's size;
/// without it, the whole stored entry.
#[tokio::test]
async fn a_local_hit_takes_a_few_dozen_bytes_out_of_redis_whatever_the_feed_size() {
    let redis = RedisServer::start().await;
    let near = spawn_app_with(|s| s.redis.url = redis.url().into()).await;
    let far = spawn_sibling_with(&near, |s| s.cache.near_bytes = 0).await;
    let user = near.new_user().await;
    for i in 0..120 {
        let day = 1 + i % 30;
        let (start, end) = (format!("2026-10-{day:02}"), format!("2026-10-{:02}", day + 1));
        near.create_item(&user, item(&format!("meeting number {i}"), &start, &end)).await;
    }
    const HITS: u64 = 100;
    let mut per_hit = Vec::new();
    for app in [&near, &far] {
        for _ in 0..2 {
            gzip_feed(app, &user, OCT).await;
        }
        let before = redis_output_bytes(&redis).await;
        for _ in 0..HITS {
            assert_eq!(gzip_feed(app, &user, OCT).await.0, "HIT");
        }
        per_hit.push((redis_output_bytes(&redis).await - before) / HITS);
    }
    let (near_bytes, far_bytes) = (per_hit[0], per_hit[1]);
    assert!(near_bytes < 300, "{near_bytes} bytes out of Redis per local hit");
    assert!(far_bytes > 2_000, "{far_bytes} bytes per hit without the near cache (the entry)");
}
