//! The `bucketed` strategy's own promises: a write invalidates only the
//! weeks its item covers (before and after), never less — moved items,
//! long items, changed assignees, lost bucket versions, the longest range
//! the contract allows. (The freshness, fault, stampede, soak and cluster
//! tests run for `bucketed` too: `each_versioned_strategy!`.)

use calcache::cache::Buckets;
use calcache::config::CacheStrategy;
use calcache::domain::{TimeRange, Timestamp, UserId};
use serde_json::json;

use crate::helpers::{TestApp, item, spawn_app_with, spawn_sibling_with};

const JAN: &str = "start=2026-01-01T00:00:00Z&end=2026-02-01T00:00:00Z";
const MAR: &str = "start=2026-03-01T00:00:00Z&end=2026-04-01T00:00:00Z";
/// Four hundred days, the longest range the contract allows.
const LONG: &str = "start=2026-01-01T00:00:00Z&end=2027-02-05T00:00:00Z";

/// Week buckets: these tests are about items and ranges across weeks (the
/// default width, a day, runs every freshness test through
/// `each_versioned_strategy!`).
async fn bucketed() -> TestApp {
    spawn_app_with(|s| {
        s.cache.strategy = CacheStrategy::Bucketed;
        s.cache.bucket_days = calcache::cache::Buckets::WEEKS;
    })
    .await
}

/// Another process on the same strategy. (A `versioned` reader beside a
/// `bucketed` writer would not see bucket bumps: docs/operations.md says how
/// to switch strategies safely.)
async fn sibling(app: &TestApp) -> TestApp {
    spawn_sibling_with(app, |s| {
        s.cache.strategy = CacheStrategy::Bucketed;
        s.cache.bucket_days = calcache::cache::Buckets::WEEKS;
    })
    .await
}

fn id(created: &serde_json::Value) -> String {
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_change_in_march_leaves_january_warm_and_moving_an_item_invalidates_both_months() {
    let app = bucketed().await;
    let reader = sibling(&app).await;
    let user = app.new_user().await;
    let jan = app.create_item(&user, item("jan", "2026-01-12T09:00:00Z", "2026-01-12T10:00:00Z")).await;
    app.create_item(&user, item("mar", "2026-03-10T09:00:00Z", "2026-03-10T10:00:00Z")).await;
    for view in [JAN, MAR] {
        reader.feed(&user, view).await;
        assert_eq!(reader.feed(&user, view).await.x_cache, "HIT");
    }

    // A change in March: January stays cached, March is refilled.
    app.create_item(&user, item("mar2", "2026-03-11T09:00:00Z", "2026-03-11T10:00:00Z")).await;
    let january = reader.feed(&user, JAN).await;
    assert_eq!((january.x_cache.as_str(), january.titles()), ("HIT", vec!["jan".to_owned()]));
    let march = reader.feed(&user, MAR).await;
    assert_eq!((march.x_cache.as_str(), march.titles()), ("MISS", vec!["mar".to_owned(), "mar2".to_owned()]));

    // Moved from January to March: both views change, through the other process.
    let res = app
        .patch_json(
            &format!("/api/work-items/{}", id(&jan)),
            &user.token,
            &json!({"start": "2026-03-20T09:00:00Z", "end": "2026-03-20T10:00:00Z"}),
        )
        .await;
    assert!(res.status().is_success());
    assert!(reader.feed(&user, JAN).await.titles().is_empty(), "the moved item stayed in January");
    assert_eq!(reader.feed(&user, MAR).await.titles(), ["mar", "mar2", "jan"]);
}

#[tokio::test]
async fn a_long_item_invalidates_every_view_of_the_user() {
    let app = bucketed().await;
    let user = app.new_user().await;
    app.create_item(&user, item("jan", "2026-01-12T09:00:00Z", "2026-01-12T10:00:00Z")).await;
    for view in [JAN, MAR] {
        app.feed(&user, view).await;
        assert_eq!(app.feed(&user, view).await.x_cache, "HIT");
    }
    // Half a year: more buckets than a bump names, so the user-wide version moves.
    app.create_item(&user, item("long", "2026-01-20T00:00:00Z", "2026-07-20T00:00:00Z")).await;
    for view in [JAN, MAR] {
        let feed = app.feed(&user, view).await;
        assert_eq!(feed.x_cache, "MISS", "{view}");
        assert!(feed.titles().contains(&"long".to_owned()), "{view}: {:?}", feed.titles());
    }
}

#[tokio::test]
async fn assignees_changed_across_weeks_see_the_item_leave_and_arrive() {
    let app = bucketed().await;
    let reader = sibling(&app).await;
    let owner = app.new_user().await;
    let (x, y) = (app.new_user().await, app.new_user().await);
    let created = app
        .create_item(
            &owner,
            json!({"title": "shared", "work_type": "task", "start": "2026-01-12T09:00:00Z",
                "end": "2026-01-12T10:00:00Z", "assignee_ids": [x.id]}),
        )
        .await;
    assert_eq!(reader.feed(&x, JAN).await.titles(), ["shared"]);
    assert!(reader.feed(&y, MAR).await.titles().is_empty());
    assert_eq!(reader.feed(&x, JAN).await.x_cache, "HIT");
    assert_eq!(reader.feed(&y, MAR).await.x_cache, "HIT");
    let res = app
        .patch_json(
            &format!("/api/work-items/{}", id(&created)),
            &owner.token,
            &json!({"start": "2026-03-10T09:00:00Z", "end": "2026-03-10T10:00:00Z", "assignee_ids": [y.id]}),
        )
        .await;
    assert!(res.status().is_success());
    assert!(reader.feed(&x, JAN).await.titles().is_empty(), "x still sees the item it was taken off");
    assert_eq!(reader.feed(&y, MAR).await.titles(), ["shared"]);
}

#[tokio::test]
async fn a_lost_bucket_version_never_brings_back_an_old_entry_and_starts_from_redis_clock() {
    let app = bucketed().await;
    let user = app.new_user().await;
    let doomed = app.create_item(&user, item("doomed", "2026-01-12T09:00:00Z", "2026-01-12T10:00:00Z")).await;
    assert_eq!(app.feed(&user, JAN).await.titles(), ["doomed"]);
    assert_eq!(app.feed(&user, JAN).await.x_cache, "HIT");

    let ts = |s: &str| Timestamp::parse(s).unwrap();
    let week = Buckets::WEEKS.of_range(&TimeRange::new(ts("2026-01-12"), ts("2026-01-13")).unwrap());
    let key = app.keys().bucket(UserId(user.id), 7, *week.start());
    let mut redis = app.redis().await;
    let before: u64 = redis::cmd("GET").arg(&key).query_async(&mut redis).await.unwrap();
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut redis).await.unwrap();
    assert!(ttl > 0, "bucket versions expire (ttl {ttl})");

    // The bucket version lost, then the item deleted, then lost again.
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut redis).await.unwrap();
    assert_eq!(app.feed(&user, JAN).await.x_cache, "MISS");
    app.delete(&format!("/api/work-items/{}", id(&doomed)), &user.token).await;
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut redis).await.unwrap();
    let feed = app.feed(&user, JAN).await;
    assert_eq!(feed.x_cache, "MISS");
    assert!(feed.titles().is_empty(), "a deleted item came back: {:?}", feed.titles());

    // Re-created from Redis' clock (µs), never from a process's: larger than
    // every earlier value, and within a second of Redis' TIME.
    let after: u64 = redis::cmd("GET").arg(&key).query_async(&mut redis).await.unwrap();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut redis).await.unwrap();
    let now = secs * 1_000_000 + micros;
    assert!(after > before, "{after} <= {before}");
    assert!(now >= after && now - after < 1_000_000, "bucket version {after} is not Redis' clock {now}");
}

#[tokio::test]
async fn a_400_day_range_is_cached_and_invalidated_by_a_change_anywhere_in_it() {
    let app = bucketed().await;
    let user = app.new_user().await;
    app.create_item(&user, item("first", "2026-01-02T09:00:00Z", "2026-01-02T10:00:00Z")).await;
    app.feed(&user, LONG).await;
    assert_eq!(app.feed(&user, LONG).await.x_cache, "HIT");
    // The last week of the range.
    app.create_item(&user, item("last", "2027-02-04T09:00:00Z", "2027-02-04T10:00:00Z")).await;
    let feed = app.feed(&user, LONG).await;
    assert_eq!((feed.x_cache.as_str(), feed.titles()), ("MISS", vec!["first".to_owned(), "last".to_owned()]));
    assert_eq!(app.feed(&user, LONG).await.x_cache, "HIT");
}

#[tokio::test]
async fn all_day_items_invalidate_the_days_they_cover_in_every_zone() {
    let app = bucketed().await;
    let user = app.new_user().await;
    // Day buckets: an all-day item on Monday must reach a range that only
    // touches its day at the edge.
    let day = spawn_app_with(|s| {
        s.cache.strategy = CacheStrategy::Bucketed;
        s.cache.bucket_days = calcache::cache::Buckets::DAYS;
    })
    .await;
    let user_d = day.new_user().await;
    for (a, u) in [(&app, &user), (&day, &user_d)] {
        let edge = "start=2026-01-12T23:00:00Z&end=2026-01-13T01:00:00Z";
        a.feed(u, edge).await;
        assert_eq!(a.feed(u, edge).await.x_cache, "HIT");
        a.create_item(
            u,
            json!({"title": "holiday", "work_type": "task", "start": "2026-01-12T00:00:00Z",
            "end": "2026-01-12T00:00:00Z", "all_day": true}),
        )
        .await;
        assert_eq!(a.feed(u, edge).await.titles(), ["holiday"]);
    }
}
