//! Per-user limits (issue 14.1 and the decompression bound of 14.6): the
//! feed fill budget, the caps on items per owner, assignments per user and
//! events per answer, against the real PostgreSQL and Redis.

use std::sync::Arc;

use calcache::cache::FeedParams;
use calcache::domain::{TimeRange, Timestamp, UserId};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{OCT, TestApp, TestUser, closed_port, item, spawn_app_with, spawn_sibling_with};

/// A distinct October day as a feed range (`day` 1..=30).
fn day_range(day: u32) -> String {
    format!("start=2026-10-{day:02}T00:00:00Z&end=2026-10-{:02}T00:00:00Z", day + 1)
}

fn assert_no_store(headers: &reqwest::header::HeaderMap) {
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store, no-cache, must-revalidate, max-age=0, private")
    );
}

async fn owned_in_db(app: &TestApp, user: &TestUser) -> usize {
    app.sql_strings(&format!("SELECT id::text AS value FROM work_items WHERE owner_id = {}", user.id)).await.len()
}

async fn fills_key_exists(app: &TestApp, user: i64) -> bool {
    let mut redis = app.redis().await;
    let n: i64 = redis::cmd("EXISTS").arg(app.keys().feed_fills(UserId(user))).query_async(&mut redis).await.unwrap();
    n == 1
}

/// Past `limits.feed_fills_per_user` fills in a window a user's new ranges
/// are 429 naming the limit, with `Retry-After` and the header guard; its
/// cached ranges still answer, other users are not affected, and another
/// process counts against the same budget.
#[tokio::test]
async fn feed_fills_past_the_budget_are_429_naming_the_limit() {
    let limit = |s: &mut calcache::config::Settings| {
        s.limits.feed_fills_per_user = 3;
        s.limits.feed_fill_window_secs = std::num::NonZeroU64::new(60).unwrap();
    };
    let app = spawn_app_with(limit).await;
    let sibling = spawn_sibling_with(&app, limit).await;
    let user = app.new_user().await;
    for day in 1..=3 {
        let feed = app.feed(&user, &day_range(day)).await;
        assert_eq!((feed.status, feed.x_cache.as_str()), (StatusCode::OK, "MISS"), "day {day}");
    }
    let refused = app.feed(&user, &day_range(4)).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", refused.body);
    assert_eq!(refused.body["error"]["code"], "rate_limited");
    assert_eq!(refused.body["error"]["limit"], json!({"name": "limits.feed_fills_per_user", "max": 3}));
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("limits.feed_fills_per_user"));
    let retry: u64 = refused.headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    assert_no_store(&refused.headers);

    // What is cached is still served; hits cost nothing.
    for _ in 0..5 {
        let hit = app.feed(&user, &day_range(2)).await;
        assert_eq!((hit.status, hit.x_cache.as_str()), (StatusCode::OK, "HIT"));
    }
    // One budget for every process.
    let elsewhere = sibling.feed(&user, &day_range(5)).await;
    assert_eq!(elsewhere.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", elsewhere.body);
    // Another user has a budget of their own.
    let other = app.new_user().await;
    assert_eq!(app.feed(&other, &day_range(4)).await.status, StatusCode::OK);

    // The counter is the user's, in their hash slot, and expires with the window.
    let mut redis = app.redis().await;
    let key = app.keys().feed_fills(UserId(user.id));
    assert!(key.contains(&format!("{{u{}}}", user.id)), "{key}");
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut redis).await.unwrap();
    assert!((1..=60).contains(&ttl), "TTL {ttl}");
    let count: u64 = redis::cmd("GET").arg(&key).query_async(&mut redis).await.unwrap();
    assert_eq!(count, 5, "three fills and two refusals counted, no hit");

    // A new window opens the budget again (the window ended early here).
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut redis).await.unwrap();
    assert_eq!(app.feed(&user, &day_range(4)).await.status, StatusCode::OK);
}

/// A request whose session is not confirmed writes nothing to Redis: a
/// forged token naming a user neither spends nor creates their budget.
#[tokio::test]
async fn unconfirmed_sessions_spend_no_budget() {
    let app = spawn_app_with(|s| s.limits.feed_fills_per_user = 2).await;
    let user = app.new_user().await;
    let forged = format!("{}.{}", user.id, "A".repeat(43));
    for day in 1..=5 {
        let res = app.get(&format!("/api/calendar/feed?{}", day_range(day)), Some(&forged)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(!fills_key_exists(&app, user.id).await, "a forged token created the fill counter");
    // The real owner still has the whole budget.
    for day in 1..=2 {
        assert_eq!(app.feed(&user, &day_range(day)).await.status, StatusCode::OK);
    }
}

/// With Redis unreachable nothing can be counted: the budget is open and
/// every feed is answered from PostgreSQL.
#[tokio::test]
async fn the_budget_is_open_while_redis_is_unavailable() {
    let app = spawn_app_with(|s| {
        s.limits.feed_fills_per_user = 1;
        // One unreachable Redis (the cluster suite would otherwise reach
        // its cluster through the seed nodes).
        s.redis.mode = calcache::config::RedisMode::Single;
        s.redis.url = format!("redis://127.0.0.1:{}", closed_port()).into();
    })
    .await;
    // No sign-up through the API without Redis' sign-up throttle? It is open too.
    let user = app.new_user().await;
    for day in 1..=4 {
        let feed = app.feed(&user, &day_range(day)).await;
        assert_eq!((feed.status, feed.x_cache.as_str()), (StatusCode::OK, "BYPASS"), "day {day}");
    }
}

/// Past `limits.max_items_per_owner` a create is 409 `limit_exceeded`
/// naming the limit, and writes nothing; deleting one makes room again.
#[tokio::test]
async fn creating_past_the_owned_items_cap_is_409_and_writes_nothing() {
    let app = spawn_app_with(|s| s.limits.max_items_per_owner = std::num::NonZeroU64::new(3).unwrap()).await;
    let user = app.new_user().await;
    let other = app.new_user().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let created =
            app.create_item(&user, item(&format!("t{i}"), "2026-10-06T09:00:00Z", "2026-10-06T10:00:00Z")).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let body = json!({"title": "one too many", "work_type": "task", "start": "2026-10-07T09:00:00Z",
        "assignee_ids": [other.id]});
    let res = app.post_json("/api/work-items", Some(&user.token), &body).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "limit_exceeded", "{err}");
    assert_eq!(err["error"]["limit"], json!({"name": "limits.max_items_per_owner", "max": 3}));
    assert!(err["error"].get("field").is_none(), "{err}");
    assert_eq!(owned_in_db(&app, &user).await, 3);
    assert_eq!(app.feed(&other, OCT).await.ids(), Vec::<String>::new(), "nothing reached the assignee either");
    // Being assigned by others does not count against one's own items.
    app.create_item(
        &other,
        json!({"title": "for user", "work_type": "task", "start": "2026-10-08T09:00:00Z",
        "assignee_ids": [user.id]}),
    )
    .await;
    let res = app.delete(&format!("/api/work-items/{}", ids[0]), &user.token).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    app.create_item(&user, item("room again", "2026-10-07T09:00:00Z", "2026-10-07T10:00:00Z")).await;
    assert_eq!(owned_in_db(&app, &user).await, 3);
}

/// A burst of concurrent creates cannot pass the cap: the owner's row is
/// locked while the transaction counts. Several rounds, each with a fresh
/// user and many creates in flight at once.
#[tokio::test]
async fn concurrent_creates_stop_exactly_at_the_owned_items_cap() {
    const CAP: u64 = 5;
    const BURST: usize = 40;
    let app = Arc::new(
        spawn_app_with(|s| {
            s.limits.max_items_per_owner = std::num::NonZeroU64::new(CAP).unwrap();
            s.database.pool_max_size = std::num::NonZeroU32::new(16).unwrap();
        })
        .await,
    );
    for round in 0..3 {
        let user = Arc::new(app.new_user().await);
        let mut tasks = Vec::new();
        for i in 0..BURST {
            let (app, user) = (app.clone(), user.clone());
            tasks.push(tokio::spawn(async move {
                let body = item(&format!("burst {i}"), "2026-10-06T09:00:00Z", "2026-10-06T10:00:00Z");
                app.post_json("/api/work-items", Some(&user.token), &body).await.status()
            }));
        }
        let mut created = 0;
        for t in tasks {
            match t.await.unwrap() {
                StatusCode::CREATED => created += 1,
                StatusCode::CONFLICT => {}
                other => panic!("round {round}: unexpected {other}"),
            }
        }
        assert_eq!(created, CAP, "round {round}");
        assert_eq!(owned_in_db(&app, &user).await as u64, CAP, "round {round}");
        assert_eq!(app.feed(&user, OCT).await.ids().len() as u64, CAP, "round {round}");
    }
}

/// `limits.max_assignments_per_user` bounds what strangers can put in
/// somebody's feed: past it a create or a change naming that user is 409
/// naming `assignee_ids` and the limit, and writes nothing. The user's own
/// items, an owner assigning themselves, and re-saving an assignment that
/// already exists do not count.
#[tokio::test]
async fn assigning_past_the_assignment_cap_is_409_naming_assignee_ids() {
    let app = spawn_app_with(|s| s.limits.max_assignments_per_user = std::num::NonZeroU64::new(2).unwrap()).await;
    let victim = app.new_user().await;
    let stranger = app.new_user().await;
    let colleague = app.new_user().await;
    // Own items, self-assigned: not assignments by others.
    for i in 0..3 {
        app.create_item(
            &victim,
            json!({"title": format!("own {i}"), "work_type": "task",
            "start": "2026-10-05T09:00:00Z", "assignee_ids": [victim.id]}),
        )
        .await;
    }
    let assign = |title: &str| {
        json!({"title": title, "work_type": "task", "start": "2026-10-06T09:00:00Z",
            "assignee_ids": [victim.id, colleague.id]})
    };
    let first = app.create_item(&stranger, assign("a")).await;
    app.create_item(&stranger, assign("b")).await;
    let res = app.post_json("/api/work-items", Some(&stranger.token), &assign("c")).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "limit_exceeded", "{err}");
    assert_eq!(err["error"]["field"], "assignee_ids");
    assert_eq!(err["error"]["limit"], json!({"name": "limits.max_assignments_per_user", "max": 2}));
    assert_eq!(owned_in_db(&app, &stranger).await, 2, "the refused create wrote nothing");
    assert_eq!(app.feed(&victim, OCT).await.ids().len(), 5);
    assert_eq!(app.feed(&colleague, OCT).await.ids().len(), 2, "nor its other assignee");

    // A change that adds the victim to another item: refused, unchanged.
    let plain = app.create_item(&stranger, item("plain", "2026-10-07T09:00:00Z", "2026-10-07T10:00:00Z")).await;
    let plain_id = plain["id"].as_str().unwrap();
    let res = app
        .patch_json(
            &format!("/api/work-items/{plain_id}"),
            &stranger.token,
            &json!({"title": "renamed", "assignee_ids": [victim.id]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["field"], "assignee_ids", "{err}");
    let unchanged: Value =
        app.get(&format!("/api/work-items/{plain_id}"), Some(&stranger.token)).await.json().await.unwrap();
    assert_eq!((unchanged["title"].as_str(), unchanged["assignee_ids"].clone()), (Some("plain"), json!([])));
    // Changing an item the victim is already on is no new assignment.
    let first_id = first["id"].as_str().unwrap();
    let res = app
        .patch_json(
            &format!("/api/work-items/{first_id}"),
            &stranger.token,
            &json!({"title": "still assigned", "assignee_ids": [victim.id]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "{:?}", res.text().await);
    // Unassigning makes room.
    let res =
        app.patch_json(&format!("/api/work-items/{first_id}"), &stranger.token, &json!({"assignee_ids": []})).await;
    assert_eq!(res.status(), StatusCode::OK);
    app.create_item(&stranger, assign("c")).await;
}

/// Many strangers assigning one user at once stop exactly at the cap: the
/// assignee's row is locked while each transaction counts.
#[tokio::test]
async fn concurrent_assignments_stop_exactly_at_the_assignment_cap() {
    const CAP: u64 = 6;
    let app = Arc::new(
        spawn_app_with(|s| {
            s.limits.max_assignments_per_user = std::num::NonZeroU64::new(CAP).unwrap();
            s.database.pool_max_size = std::num::NonZeroU32::new(16).unwrap();
        })
        .await,
    );
    for round in 0..3 {
        let victim = app.new_user().await;
        let mut strangers = Vec::new();
        for _ in 0..6 {
            strangers.push(Arc::new(app.new_user().await));
        }
        let mut tasks = Vec::new();
        for (n, stranger) in strangers.iter().enumerate() {
            for i in 0..5 {
                let (app, stranger) = (app.clone(), stranger.clone());
                // Some also assign another stranger: overlapping lock sets.
                let other = strangers[(n + 1) % strangers.len()].id;
                let body = json!({"title": format!("s{n} {i}"), "work_type": "task",
                    "start": "2026-10-06T09:00:00Z", "assignee_ids": [victim.id, other]});
                tasks.push(tokio::spawn(async move {
                    app.post_json("/api/work-items", Some(&stranger.token), &body).await.status()
                }));
            }
        }
        let mut created = 0;
        for t in tasks {
            match t.await.unwrap() {
                StatusCode::CREATED => created += 1,
                StatusCode::CONFLICT => {}
                other => panic!("round {round}: unexpected {other}"),
            }
        }
        assert_eq!(created, CAP, "round {round}");
        let assigned = app
            .sql_strings(&format!(
                "SELECT count(*)::text AS value FROM work_item_assignees WHERE user_id = {}",
                victim.id
            ))
            .await;
        assert_eq!(assigned, vec![CAP.to_string()], "round {round}");
        assert_eq!(app.feed(&victim, OCT).await.ids().len() as u64, CAP, "round {round}");
    }
}

/// A range holding more than `limits.max_items_per_feed` items is refused
/// with 409 naming `end` and the limit (a 200 carries every item of its
/// range, so it is never truncated); a shorter range answers. All-day items
/// just outside the range, which the query finds with a day's margin, do
/// not count.
#[tokio::test]
async fn a_feed_over_the_answer_cap_is_409_naming_end() {
    let app = spawn_app_with(|s| s.limits.max_items_per_feed = std::num::NonZeroUsize::new(3).unwrap()).await;
    let user = app.new_user().await;
    // Two all-day items on 30 September: before a range starting 1 October.
    for i in 0..2 {
        app.create_item(
            &user,
            json!({"title": format!("sep {i}"), "work_type": "task",
            "start": "2026-09-30T00:00:00Z", "end": "2026-10-01T00:00:00Z", "all_day": true}),
        )
        .await;
    }
    for day in [6, 7, 8] {
        app.create_item(
            &user,
            item("oct", &format!("2026-10-{day:02}T09:00:00Z"), &format!("2026-10-{day:02}T10:00:00Z")),
        )
        .await;
    }
    let feed = app.feed(&user, OCT).await;
    assert_eq!(feed.status, StatusCode::OK, "{:?}", feed.body);
    assert_eq!(feed.titles(), ["oct", "oct", "oct"], "exactly the three in range");
    app.create_item(&user, item("fourth", "2026-10-20T09:00:00Z", "2026-10-20T10:00:00Z")).await;
    let over = app.feed(&user, OCT).await;
    assert_eq!(over.status, StatusCode::CONFLICT, "{:?}", over.body);
    assert_eq!(over.body["error"]["code"], "limit_exceeded");
    assert_eq!(over.body["error"]["field"], "end");
    assert_eq!(over.body["error"]["limit"], json!({"name": "limits.max_items_per_feed", "max": 3}));
    assert_no_store(&over.headers);
    let shorter = app.feed(&user, "start=2026-10-01T00:00:00Z&end=2026-10-15T00:00:00Z").await;
    assert_eq!((shorter.status, shorter.ids().len()), (StatusCode::OK, 3));
}

/// A big feed (3 000 events, ~700 KB of JSON) is serialized on the blocking
/// pool and answered whole, as gzip and as plain JSON (inflated on the
/// blocking pool too), from PostgreSQL and then from the cache.
#[tokio::test]
async fn a_big_feed_is_answered_whole_both_encodings() {
    let app = spawn_app_with(|_| {}).await;
    let user = app.new_user().await;
    app.sql(&format!(
        "INSERT INTO work_items (id, owner_id, title, work_type, status, start_at, end_at) \
         SELECT gen_random_uuid(), {}, 'bulk item ' || n, 'task', 'not_started', \
                '2026-10-01T00:00:00Z'::timestamptz + n * interval '10 minutes', \
                '2026-10-01T00:00:00Z'::timestamptz + n * interval '10 minutes' + interval '1 hour' \
         FROM generate_series(1, 3000) AS n",
        user.id
    ))
    .await;
    let first = app.feed(&user, OCT).await;
    assert_eq!((first.status, first.x_cache.as_str()), (StatusCode::OK, "MISS"));
    assert_eq!(first.ids().len(), 3000);
    let plain = app.feed(&user, OCT).await;
    assert_eq!((plain.status, plain.x_cache.as_str()), (StatusCode::OK, "HIT"));
    assert_eq!(plain.body, first.body);
    let res = app
        .client
        .get(app.url(&format!("/api/calendar/feed?{OCT}")))
        .bearer_auth(&user.token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers().get("content-encoding").and_then(|v| v.to_str().ok()), Some("gzip"));
    let gz = res.bytes().await.unwrap();
    let mut json = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz.as_ref()), &mut json).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&json).unwrap(), first.body);
}

/// A gzip bomb planted in Redis under the user's current entry (100 MB of
/// zeros in ~630 KB): decompressed only up to the bound, then answered from
/// PostgreSQL (as a miss that overwrites it, or a bypass).
#[tokio::test]
async fn a_planted_gzip_bomb_is_answered_from_postgresql() {
    let app = spawn_app_with(|_| {}).await;
    let user = app.new_user().await;
    app.create_item(&user, item("real", "2026-10-06T09:00:00Z", "2026-10-06T10:00:00Z")).await;
    assert_eq!(app.feed(&user, OCT).await.x_cache, "MISS");
    let mut redis = app.redis().await;
    let version: u64 =
        redis::cmd("GET").arg(app.keys().version(UserId(user.id))).query_async(&mut redis).await.unwrap();
    let ts = |s: &str| Timestamp::parse(s).unwrap();
    let params = FeedParams {
        range: TimeRange::new(ts("2026-10-01T00:00:00Z"), ts("2026-11-01T00:00:00Z")).unwrap(),
        work_type: None,
        status: None,
    };
    let key = app.keys().feed(UserId(user.id), calcache::cache::EntryKey::Versioned(version), &params);
    let bomb = calcache::loadgen::zeros_gzip(100_000_000);
    let _: () = redis::cmd("SET").arg(&key).arg(bomb).arg("EX").arg(300).query_async(&mut redis).await.unwrap();
    // Another process: this one keeps its own copy of the real entry.
    let other = crate::helpers::spawn_sibling(&app).await;
    let started = std::time::Instant::now();
    let feed = other.feed(&user, OCT).await;
    assert_eq!(feed.status, StatusCode::OK, "{:?}", feed.body);
    assert!(["MISS", "BYPASS"].contains(&feed.x_cache.as_str()), "X-Cache: {}", feed.x_cache);
    assert_eq!(feed.titles(), ["real"]);
    // No bound on time here (a debug build on busy cores inflates 32 MiB
    // slowly); the bound on memory is `cache::body`'s unit test.
    println!("answered past a planted bomb in {:?}", started.elapsed());
}

/// What the fill budget costs: one Redis round trip per fill (the atomic
/// `INCR` / `EXPIRE NX` / `TTL`), none per hit.
#[tokio::test]
async fn the_budget_costs_one_round_trip_per_fill_and_none_per_hit() {
    async fn trips(app: &TestApp) -> f64 {
        crate::helpers::metric(&app.metrics_text().await, "calcache_redis_round_trips_total")
    }
    let mut costs = Vec::new();
    for budget in [0, 1000] {
        let app = spawn_app_with(|s| s.limits.feed_fills_per_user = budget).await;
        let user = app.new_user().await;
        // Version set and session cached: the next ranges are plain misses.
        app.feed(&user, &day_range(1)).await;
        let before = trips(&app).await;
        for day in 2..=6 {
            assert_eq!(app.feed(&user, &day_range(day)).await.x_cache, "MISS");
        }
        let misses = trips(&app).await;
        for day in 2..=6 {
            assert_eq!(app.feed(&user, &day_range(day)).await.x_cache, "HIT");
        }
        let hits = trips(&app).await;
        costs.push(((misses - before) / 5.0, (hits - misses) / 5.0));
    }
    let [(miss_off, hit_off), (miss_on, hit_on)] = costs[..] else { unreachable!() };
    println!("round trips per miss: {miss_off} without the budget, {miss_on} with it; per hit: {hit_off}, {hit_on}");
    assert_eq!(miss_on, miss_off + 1.0);
    assert_eq!(hit_on, hit_off);
}
