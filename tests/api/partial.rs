//! The freshness promise under partial failures: one process cut from Redis
//! while the others keep it, Redis answering reads but refusing writes, a
//! bump refused after the commit, PostgreSQL partitioned (packets dropped,
//! no reset) or slow to commit, a slow or half-dead Redis, and forged
//! tokens. Every fault is real: a redis-server of the test's own, a TCP
//! proxy that drops, delays or stalls, Redis' own ACLs and replication.

use crate::helpers::each_versioned_strategy;
use std::time::{Duration, Instant};

use calcache::config::RedisMode;
use calcache::db::outbox::Due;
use futures_util::future::join_all;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{OCT, TestApp, TestUser, eventually, item, metric, spawn_app_with, spawn_sibling_with};
use crate::proxy::{Mode, Proxy, RedisServer};

/// Single-mode settings on `url`, whatever mode the suite runs in.
fn on_redis(s: &mut calcache::config::Settings, url: String) {
    s.redis.mode = RedisMode::Single;
    s.redis.url = url.into();
    s.redis.breaker_cooldown = std::time::Duration::from_millis(100);
}

fn path(item: &Value) -> String {
    format!("/api/work-items/{}", item["id"].as_str().unwrap())
}

async fn code(res: reqwest::Response) -> (StatusCode, String) {
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().unwrap_or("").to_owned())
}

async fn titles_in_db(app: &TestApp, user: &TestUser) -> Vec<String> {
    app.sql_strings(&format!("SELECT title AS value FROM work_items WHERE owner_id = {} ORDER BY start_at", user.id))
        .await
}

async fn me(app: &TestApp, token: &str) -> StatusCode {
    app.get("/api/me", Some(token)).await.status()
}

each_versioned_strategy! {
#[tokio::test]
async fn a_process_cut_from_redis_refuses_writes_and_logouts_and_no_process_serves_stale() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(format!("127.0.0.1:{}", redis.port)).await;
    let writer = spawn_app_with(|s| on_redis(s, format!("redis://127.0.0.1:{}", proxy.port))).await;
    let reader = spawn_sibling_with(&writer, |s| on_redis(s, redis.url())).await;
    let user = writer.new_user().await;
    let kept = writer.create_item(&user, item("old title", "2026-10-05", "2026-10-06")).await;
    let doomed = writer.create_item(&user, item("doomed", "2026-10-07", "2026-10-08")).await;
    reader.feed(&user, OCT).await;
    assert_eq!(reader.feed(&user, OCT).await.x_cache, "HIT");

    // The writer cannot reach Redis: it could not stop the reader from
    // serving what it would change, so it changes nothing and says so.
    proxy.cut().await;
    let patch = writer.patch_json(&path(&kept), &user.token, &json!({"title": "new title"})).await;
    assert_eq!(code(patch).await, (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into()));
    assert_eq!(code(writer.delete(&path(&doomed), &user.token).await).await.0, StatusCode::SERVICE_UNAVAILABLE);
    let create = writer.post_json("/api/work-items", Some(&user.token), &item("new", "2026-10-09", "2026-10-10")).await;
    assert_eq!(create.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(titles_in_db(&writer, &user).await, ["old title", "doomed"], "a refused write changed PostgreSQL");
    assert_eq!(writer.outbox_depth().await, 0);
    for _ in 0..10 {
        let feed = reader.feed(&user, OCT).await;
        assert_eq!(feed.titles(), ["old title", "doomed"]);
    }
    // A logout it cannot tombstone in Redis is refused too: the token goes
    // on working everywhere, as the 503 said, instead of only on some.
    let logout = writer.post_json("/api/logout", Some(&user.token), &json!({})).await;
    assert_eq!(logout.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(me(&reader, &user.token).await, StatusCode::OK);

    proxy.heal();
    eventually(Duration::from_secs(5), "writes work again through the healed process", || async {
        writer.patch_json(&path(&kept), &user.token, &json!({"title": "new title"})).await.status() == StatusCode::OK
    })
    .await;
    // The first read on the other process after the 2xx reflects it.
    assert_eq!(reader.feed(&user, OCT).await.titles(), ["new title", "doomed"]);
    assert_eq!(writer.delete(&path(&doomed), &user.token).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(reader.feed(&user, OCT).await.titles(), ["new title"]);
    let logout = writer.post_json("/api/logout", Some(&user.token), &json!({})).await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&reader, &user.token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&writer, &user.token).await, StatusCode::UNAUTHORIZED);
    let text = writer.metrics_text().await;
    assert!(metric(&text, "calcache_writes_refused_fence_total") >= 4.0, "refusals not counted");
}
}

each_versioned_strategy! {
#[tokio::test]
async fn a_bump_refused_after_the_commit_keeps_every_process_off_the_old_entry() {
    // The writer's Redis user may do everything but INCR: its fence goes up,
    // its transaction commits, and its version bump is refused.
    let redis = RedisServer::start().await;
    let mut admin = redis.admin().await;
    let nobump = redis.user_without("nobump", "incr").await;
    let hold_drainer = |s: &mut calcache::config::Settings| s.cache.outbox_interval = std::time::Duration::from_millis(3_600_000);
    let writer = spawn_app_with(|s| {
        on_redis(s, nobump);
        hold_drainer(s);
    })
    .await;
    let reader = spawn_sibling_with(&writer, |s| {
        on_redis(s, redis.url());
        hold_drainer(s);
    })
    .await;
    let user = reader.new_user().await;
    let created = reader.create_item(&user, item("before", "2026-10-05", "2026-10-06")).await;
    reader.feed(&user, OCT).await;
    assert_eq!(reader.feed(&user, OCT).await.x_cache, "HIT");

    let patch = writer.patch_json(&path(&created), &user.token, &json!({"title": "after"})).await;
    assert_eq!(patch.status(), StatusCode::OK, "the change is committed");
    assert_eq!(writer.outbox_depth().await, 1, "its bump waits in the outbox");
    for _ in 0..10 {
        for app in [&reader, &writer] {
            let feed = app.feed(&user, OCT).await;
            assert_eq!(feed.titles(), ["after"], "stale read while the bump was pending");
            assert_eq!(feed.x_cache, "BYPASS");
        }
    }

    // A process that can bump applies it; the fence comes down with it and
    // the cache serves the new state.
    eventually(Duration::from_secs(5), "the reader applies the deferred bump", || async {
        calcache::service::invalidation::drain_once(&reader.state, Due::Any).await.unwrap() > 0
    })
    .await;
    assert_eq!(reader.outbox_depth().await, 0);
    assert_eq!(reader.feed(&user, OCT).await.titles(), ["after"]);
    let again = reader.feed(&user, OCT).await;
    assert_eq!((again.x_cache.as_str(), again.titles()), ("HIT", vec!["after".to_owned()]));
    let fence: i64 = redis::cmd("EXISTS")
        .arg(writer.keys().fence(calcache::domain::UserId(user.id)))
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(fence, 0, "the fence outlived its bump");
}
}

each_versioned_strategy! {
#[tokio::test]
async fn redis_answering_reads_but_refusing_writes_refuses_writes_and_serves_nothing_stale() {
    let redis = RedisServer::start().await;
    let a = spawn_app_with(|s| on_redis(s, redis.url())).await;
    let b = spawn_sibling_with(&a, |s| on_redis(s, redis.url())).await;
    let user = a.new_user().await;
    let created = a.create_item(&user, item("before", "2026-10-05", "2026-10-06")).await;
    b.feed(&user, OCT).await;
    assert_eq!(b.feed(&user, OCT).await.x_cache, "HIT");

    // A replica of a master that is not there: it serves what it has and
    // answers every write with READONLY, as after a failover gone wrong.
    let mut admin = redis.admin().await;
    let nowhere = crate::helpers::closed_port();
    redis::cmd("REPLICAOF").arg("127.0.0.1").arg(nowhere).query_async::<()>(&mut admin).await.unwrap();
    let patch = a.patch_json(&path(&created), &user.token, &json!({"title": "after"})).await;
    assert_eq!(code(patch).await, (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into()));
    assert_eq!(titles_in_db(&a, &user).await, ["before"]);
    for _ in 0..10 {
        let feed = b.feed(&user, OCT).await;
        assert_eq!((feed.status, feed.titles()), (StatusCode::OK, vec!["before".to_owned()]));
    }
    let logout = a.post_json("/api/logout", Some(&user.token), &json!({})).await;
    assert_eq!(logout.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(me(&b, &user.token).await, StatusCode::OK, "a refused logout revoked the token");

    redis::cmd("REPLICAOF").arg("NO").arg("ONE").query_async::<()>(&mut admin).await.unwrap();
    eventually(Duration::from_secs(5), "writes work again", || async {
        a.patch_json(&path(&created), &user.token, &json!({"title": "after"})).await.status() == StatusCode::OK
    })
    .await;
    assert_eq!(b.feed(&user, OCT).await.titles(), ["after"]);
    assert_eq!(a.post_json("/api/logout", Some(&user.token), &json!({})).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(&b, &user.token).await, StatusCode::UNAUTHORIZED);
}
}

each_versioned_strategy! {
#[tokio::test]
async fn forged_tokens_leave_no_key_in_redis() {
    let redis = RedisServer::start().await;
    let app = spawn_app_with(|s| on_redis(s, redis.url())).await;
    let forged: Vec<String> = (0..10_000)
        .map(|i| {
            let secret: String =
                uuid::Uuid::new_v4().simple().to_string().chars().chain("abcdefghijk".chars()).collect();
            format!("{}.{secret}", 1_000_000 + i)
        })
        .collect();
    assert_eq!(forged[0].split_once('.').unwrap().1.len(), 43, "tokens of the right shape");
    let url = format!("/api/calendar/feed?{OCT}");
    for chunk in forged.chunks(200) {
        let asks = chunk.iter().map(|token| app.get(&url, Some(token)));
        for res in join_all(asks).await {
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
    }
    let mut admin = redis.admin().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut admin).await.unwrap();
    assert!(keys.is_empty(), "{} keys written for forged tokens, e.g. {:?}", keys.len(), keys.first());
}
}

#[tokio::test]
async fn a_partitioned_postgres_costs_a_request_at_most_the_deadline_and_commits_nothing_it_refused() {
    let pg =
        Proxy::start(crate::helpers::authority(crate::helpers::base_settings().database.url.expose_secret())).await;
    let app = spawn_app_with(|s| {
        s.database.url =
            crate::helpers::with_authority(s.database.url.expose_secret(), &format!("127.0.0.1:{}", pg.port)).into();
        s.database.request_timeout = std::time::Duration::from_millis(1500);
        s.database.statement_timeout = std::time::Duration::from_millis(1000);
        s.database.connect_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    let user = app.new_user().await;
    app.create_item(&user, item("cached", "2026-10-05", "2026-10-06")).await;
    app.feed(&user, OCT).await;
    assert_eq!(app.feed(&user, OCT).await.x_cache, "HIT");

    // Packets dropped: connections stay open, nothing answers.
    pg.set(Mode::Blackhole);
    let hit = app.feed(&user, OCT).await;
    assert_eq!((hit.status, hit.x_cache.as_str(), hit.titles()), (StatusCode::OK, "HIT", vec!["cached".to_owned()]));
    // Liveness, not speed: without a client-side deadline these hang until
    // the partition heals.
    let bound = Duration::from_millis(1500 + 2500);
    let during = item("during", "2026-10-07", "2026-10-08");
    for what in ["create", "miss"] {
        let ask = async {
            match what {
                "create" => app.post_json("/api/work-items", Some(&user.token), &during).await,
                _ => app.get("/api/calendar/feed?start=2026-11-01&end=2026-12-01", Some(&user.token)).await,
            }
        };
        let started = Instant::now();
        let res = tokio::time::timeout(bound, ask).await.unwrap_or_else(|_| panic!("{what} hung past {bound:?}"));
        assert_eq!(code(res).await, (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into()), "{what}");
        tracing::info!(what, took = ?started.elapsed(), "answered during the partition");
    }

    // The partition heals: the create that was refused reaches PostgreSQL
    // now, and must be rolled back, not committed behind its 503.
    pg.heal();
    eventually(Duration::from_secs(10), "writes work again without a restart", || async {
        app.post_json("/api/work-items", Some(&user.token), &item("after", "2026-10-09", "2026-10-10")).await.status()
            == StatusCode::CREATED
    })
    .await;
    let titles = titles_in_db(&app, &user).await;
    assert_eq!(titles.iter().filter(|t| *t == "after").count(), 1, "{titles:?}");
    assert!(!titles.contains(&"during".to_owned()), "a create answered 503 was committed: {titles:?}");
    assert_eq!(app.feed(&user, OCT).await.titles(), ["cached", "after"]);
}

each_versioned_strategy! {
#[tokio::test]
async fn a_commit_postgres_confirms_too_late_is_answered_as_unknown_and_stays_fresh_everywhere() {
    let writer = spawn_app_with(|s| {
        s.database.request_timeout = std::time::Duration::from_millis(1500);
        s.database.statement_timeout = std::time::Duration::from_millis(1500);
    })
    .await;
    let reader = spawn_sibling_with(&writer, |_| {}).await;
    let user = writer.new_user().await;
    writer.create_item(&user, item("first", "2026-10-05", "2026-10-06")).await;
    reader.feed(&user, OCT).await;
    assert_eq!(reader.feed(&user, OCT).await.x_cache, "HIT");
    // Each slower than a statement may be, together slower than a request may
    // be: the insert takes 1 s, the COMMIT (a deferred trigger) 1 s more.
    writer
        .sql(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
             CREATE TRIGGER slow_insert AFTER INSERT ON work_items FOR EACH ROW WHEN (NEW.title = 'slow')
               EXECUTE FUNCTION slow();
             CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON work_items DEFERRABLE INITIALLY DEFERRED
               FOR EACH ROW WHEN (NEW.title = 'slow') EXECUTE FUNCTION slow();",
        )
        .await;
    let res = writer.post_json("/api/work-items", Some(&user.token), &item("slow", "2026-10-07", "2026-10-08")).await;
    let (status, code) = code(res).await;
    assert_eq!((status, code.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown"));
    // It was saved after all: once PostgreSQL shows it, every process shows it.
    eventually(Duration::from_secs(5), "the late commit lands", || async {
        titles_in_db(&writer, &user).await.len() == 2
    })
    .await;
    for _ in 0..5 {
        for app in [&reader, &writer] {
            assert_eq!(app.feed(&user, OCT).await.titles(), ["first", "slow"], "stale after a late commit");
        }
    }
    // Its outbox rows are applied by a drainer, and the cache is used again.
    eventually(Duration::from_secs(10), "the late commit's bump is applied", || async {
        writer.outbox_depth().await == 0 && reader.feed(&user, OCT).await.x_cache == "HIT"
    })
    .await;
    assert_eq!(reader.feed(&user, OCT).await.titles(), ["first", "slow"]);
}
}

each_versioned_strategy! {
#[tokio::test]
async fn a_slow_or_half_dead_redis_costs_bounded_time_serves_nothing_stale_and_is_replaced() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(format!("127.0.0.1:{}", redis.port)).await;
    let app = spawn_app_with(|s| {
        on_redis(s, format!("redis://127.0.0.1:{}", proxy.port));
        s.redis.timeout = std::time::Duration::from_millis(150);
        s.server.workers = 1;
    })
    .await;
    let user = app.new_user().await;
    let created = app.create_item(&user, item("before", "2026-10-05", "2026-10-06")).await;
    app.feed(&user, OCT).await;
    assert_eq!(app.feed(&user, OCT).await.x_cache, "HIT");

    // Every reply 200–600 ms late: past the timeout, so Redis is as good as
    // gone. Feeds come from PostgreSQL, writes are refused, the breaker opens.
    proxy.set(Mode::Slow(200, 600));
    for _ in 0..10 {
        let ask = app.feed(&user, OCT);
        let feed = tokio::time::timeout(Duration::from_secs(3), ask).await.expect("a feed hung on a slow Redis");
        assert_eq!((feed.status, feed.titles()), (StatusCode::OK, vec!["before".to_owned()]));
    }
    assert!(app.state.cache.circuit_open(), "the breaker did not open on a Redis that only times out");
    let patch = app.patch_json(&path(&created), &user.token, &json!({"title": "during"})).await;
    assert_eq!(patch.status(), StatusCode::SERVICE_UNAVAILABLE);

    proxy.heal();
    eventually(Duration::from_secs(5), "served from Redis again", || async {
        app.feed(&user, OCT).await.x_cache == "HIT"
    })
    .await;
    assert_eq!(app.feed(&user, OCT).await.titles(), ["before"]);

    // One half-dead connection (open, silent): it must be replaced, not
    // kept timing out.
    let opened = proxy.connections_opened();
    proxy.stall_open_connections();
    eventually(Duration::from_secs(10), "a fresh connection serves hits again", || async {
        app.feed(&user, OCT).await.x_cache == "HIT"
    })
    .await;
    assert!(proxy.connections_opened() > opened, "no new connection was opened");
    let patch = app.patch_json(&path(&created), &user.token, &json!({"title": "after"})).await;
    assert_eq!(patch.status(), StatusCode::OK);
    assert_eq!(app.feed(&user, OCT).await.titles(), ["after"]);
}
}

#[tokio::test]
async fn stored_entries_that_are_not_ours_are_misses_not_errors() {
    let redis = RedisServer::start().await;
    let app = spawn_app_with(|s| on_redis(s, redis.url())).await;
    let user = app.new_user().await;
    app.create_item(&user, item("real", "2026-10-05", "2026-10-06")).await;
    app.feed(&user, OCT).await;
    assert_eq!(app.feed(&user, OCT).await.x_cache, "HIT");
    let mut admin = redis.admin().await;
    let entries: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}:calendar_feed:*", app.prefix)).query_async(&mut admin).await.unwrap();
    assert!(!entries.is_empty());
    // Not gzip at all: a miss, refilled. Gzip's magic with garbage behind it
    // (only a decompression finds out): answered from PostgreSQL.
    for planted in [&b"[\"planted\"]"[..], &b"\x1f\x8b\x08\x00garbage"[..]] {
        for key in &entries {
            redis::cmd("SET").arg(key).arg(planted).query_async::<()>(&mut admin).await.unwrap();
        }
        let identity = app.client.get(app.url(&format!("/api/calendar/feed?{OCT}"))).bearer_auth(&user.token);
        let res = identity.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body[0]["title"], "real", "{planted:?}");
    }
}

/// A small `maxmemory` under `policy`, filled past the limit with real feed
/// entries while writes go on: no stale read, no 5xx on reads, and a write
/// answered 503 (only under `noeviction`, when Redis refuses its fence)
/// changed nothing.
async fn full_redis_under(policy: &str) {
    let redis = RedisServer::start().await;
    let mut admin = redis.admin().await;
    let a = spawn_app_with(|s| on_redis(s, redis.url())).await;
    let b = spawn_sibling_with(&a, |s| on_redis(s, redis.url())).await;
    let user = a.new_user().await;
    for d in 1..=5 {
        a.create_item(&user, item(&format!("i{d}"), &format!("2026-10-{d:02}"), &format!("2026-10-{:02}", d + 1)))
            .await;
    }
    for app in [&a, &b] {
        app.feed(&user, OCT).await;
    }
    // The limit: what Redis holds now (clients connected, scripts loaded)
    // plus room for a few hundred entries.
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut admin).await.unwrap();
    let used: u64 =
        info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap();
    let limit = used + 300 * 1024;
    redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(limit).query_async::<()>(&mut admin).await.unwrap();
    redis::cmd("CONFIG").arg("SET").arg("maxmemory-policy").arg(policy).query_async::<()>(&mut admin).await.unwrap();
    let truth = || async {
        let mut ids = a
            .sql_strings(&format!(
                "SELECT id::text AS value FROM work_items WHERE owner_id = {} AND start_at < '2026-11-01' AND end_at > '2026-10-01'",
                user.id
            ))
            .await;
        ids.sort();
        ids
    };
    let (mut refused, mut written) = (0, 0);
    for round in 0..60 {
        // Fill: distinct ranges, each a new entry.
        for h in 0..20 {
            let start = 1_000 * round + h;
            let q = format!(
                "start=2026-09-01T00:00:00Z&end={}",
                chrono::DateTime::from_timestamp(1_798_761_600 + start * 60, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ")
            );
            let app = if h % 2 == 0 { &a } else { &b };
            let feed = app.feed(&user, &q).await;
            assert_eq!(feed.status, StatusCode::OK, "{policy}: a read failed with {}", feed.status);
        }
        // A write, then both processes must show it.
        let res = if round % 2 == 0 {
            a.post_json("/api/work-items", Some(&user.token), &item(&format!("r{round}"), "2026-10-10", "2026-10-11"))
                .await
        } else {
            let victim = truth().await.into_iter().next().unwrap();
            a.delete(&format!("/api/work-items/{victim}"), &user.token).await
        };
        match res.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT => written += 1,
            StatusCode::SERVICE_UNAVAILABLE => refused += 1,
            other => panic!("{policy}: a write answered {other}"),
        }
        let want = truth().await;
        for app in [&a, &b] {
            let feed = app.feed(&user, OCT).await;
            assert_eq!(feed.status, StatusCode::OK);
            let mut got = feed.ids();
            got.sort();
            assert_eq!(got, want, "{policy}: stale read in round {round}");
        }
    }
    let info: String = redis::cmd("INFO").arg("stats").query_async(&mut admin).await.unwrap();
    let evicted: u64 =
        info.lines().find_map(|l| l.strip_prefix("evicted_keys:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut admin).await.unwrap();
    tracing::info!(policy, evicted, written, refused, "full redis");
    eprintln!("{policy}: {written} writes, {refused} refused, {evicted} keys evicted");
    assert!(info.contains(&format!("maxmemory_policy:{policy}")));
    match policy {
        // What docs/operations.md recommends: Redis can always make room.
        "allkeys-lru" => {
            assert!(evicted > 0, "{policy}: the cache never filled past maxmemory");
            assert_eq!(refused, 0, "{policy}: writes refused although Redis could evict anything");
        }
        // Only keys with a TTL may go: when they do not free enough (here,
        // a limit barely above Redis' own overhead), writes are refused.
        "volatile-lru" => assert!(evicted > 0, "{policy}: the cache never filled past maxmemory"),
        _ => {}
    }
}

each_versioned_strategy! {
#[tokio::test]
async fn a_full_redis_under_volatile_lru_serves_nothing_stale() {
    full_redis_under("volatile-lru").await;
}
}

each_versioned_strategy! {
#[tokio::test]
async fn a_full_redis_under_allkeys_lru_serves_nothing_stale() {
    full_redis_under("allkeys-lru").await;
}
}

#[tokio::test]
async fn a_full_redis_under_noeviction_serves_nothing_stale() {
    full_redis_under("noeviction").await;
}

#[tokio::test]
async fn a_missing_version_starts_from_redis_clock_not_the_process_clock() {
    // Processes whose clocks disagree must not re-create a version another
    // one already used: the fresh value is Redis' TIME, whatever ours says.
    let redis = RedisServer::start().await;
    let app = spawn_app_with(|s| on_redis(s, redis.url())).await;
    let user = app.new_user().await;
    let mut admin = redis.admin().await;
    let micros = |t: (u64, u64)| t.0 * 1_000_000 + t.1;
    let before: (u64, u64) = redis::cmd("TIME").query_async(&mut admin).await.unwrap();
    app.feed(&user, OCT).await;
    let after: (u64, u64) = redis::cmd("TIME").query_async(&mut admin).await.unwrap();
    let key = app.keys().version(calcache::domain::UserId(user.id));
    let version: u64 = redis::cmd("GET").arg(&key).query_async(&mut admin).await.unwrap();
    assert!((micros(before)..=micros(after)).contains(&version), "{version} not within Redis' TIME");
    // Deleted, it comes back larger, and a write's bump of a missing key
    // starts from the clock too (never from 1).
    redis::cmd("DEL").arg(&key).query_async::<()>(&mut admin).await.unwrap();
    app.create_item(&user, item("x", "2026-10-05", "2026-10-06")).await;
    let bumped: u64 = redis::cmd("GET").arg(&key).query_async(&mut admin).await.unwrap();
    assert!(bumped > version, "{bumped} <= {version}");
}

each_versioned_strategy! {
#[tokio::test]
async fn a_redis_restarted_from_an_old_snapshot_serves_nothing_it_lost() {
    let mut redis = RedisServer::start_persistent().await;
    let short = |s: &mut calcache::config::Settings| {
        on_redis(s, redis.url());
        // Short lifetimes, so the distrust window ends within the test.
        s.cache.feed_ttl = std::time::Duration::from_secs(4);
        s.cache.session_ttl = std::time::Duration::from_secs(4);
        s.cache.fill_wait = std::time::Duration::from_millis(200);
        s.redis.timeout = std::time::Duration::from_millis(300);
    };
    let app = spawn_app_with(short).await;
    let user = app.new_user().await;
    let other = app.token_for(&user.username, &user.password).await;
    let created = app.create_item(&user, item("before", "2026-10-05", "2026-10-06")).await;
    app.feed(&user, OCT).await;
    assert_eq!(app.feed(&user, OCT).await.x_cache, "HIT");
    assert_eq!(me(&app, &other).await, StatusCode::OK);

    // The snapshot; then a change and a logout it does not hold.
    let mut admin = redis.admin().await;
    redis::cmd("SAVE").query_async::<()>(&mut admin).await.unwrap();
    let patch = app.patch_json(&path(&created), &user.token, &json!({"title": "after"})).await;
    assert_eq!(patch.status(), StatusCode::OK);
    assert_eq!(app.post_json("/api/logout", Some(&other), &json!({})).await.status(), StatusCode::NO_CONTENT);

    // Redis crashes and comes back with the snapshot: the old version, the
    // entry stored under it and the session's "valid" are all there again.
    redis.restart().await;
    let mut admin = redis.admin().await;
    let entries: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}:calendar_feed:*", app.prefix)).query_async(&mut admin).await.unwrap();
    assert!(!entries.is_empty(), "the snapshot's entries are back (the hazard is real)");
    for _ in 0..5 {
        let feed = app.feed(&user, OCT).await;
        assert_eq!((feed.status, feed.titles()), (StatusCode::OK, vec!["after".to_owned()]), "a lost change came back");
        assert_eq!(me(&app, &other).await, StatusCode::UNAUTHORIZED, "a lost logout came back");
    }
    // Once whatever the snapshot held has expired, the cache is used again.
    eventually(Duration::from_secs(30), "served from Redis again", || async {
        app.feed(&user, OCT).await.x_cache == "HIT"
    })
    .await;
    assert_eq!(app.feed(&user, OCT).await.titles(), ["after"]);
}
}

each_versioned_strategy! {
#[tokio::test]
async fn a_failover_to_a_lagging_replica_serves_nothing_it_lost() {
    let primary = RedisServer::start().await;
    let replica = RedisServer::start().await;
    let proxy = Proxy::start(format!("127.0.0.1:{}", primary.port)).await;
    let app = spawn_app_with(|s| {
        on_redis(s, format!("redis://127.0.0.1:{}", proxy.port));
        // Entries live seconds, so a test can outlast them.
        s.cache.feed_ttl = std::time::Duration::from_secs(3);
        s.cache.session_ttl = std::time::Duration::from_secs(3);
        s.cache.fill_wait = std::time::Duration::from_millis(200);
        s.redis.timeout = std::time::Duration::from_millis(300);
        s.database.request_timeout = std::time::Duration::from_millis(1000);
        s.database.statement_timeout = std::time::Duration::from_millis(1000);
    })
    .await;
    let user = app.new_user().await;
    let created = app.create_item(&user, item("before", "2026-10-05", "2026-10-06")).await;

    // A replica that has been up longer than anything it copied at its start
    // can live (3 s + a fill's bound + 5 s), so only the promotion gives it
    // away.
    let mut r = replica.admin().await;
    redis::cmd("REPLICAOF").arg("127.0.0.1").arg(primary.port).query_async::<()>(&mut r).await.unwrap();
    eventually(Duration::from_secs(30), "the replica is in sync and old enough", || {
        let mut r = r.clone();
        async move {
            let info: String = redis::cmd("INFO").arg("server").arg("replication").query_async(&mut r).await.unwrap();
            let uptime: u64 = info
                .lines()
                .find_map(|l| l.strip_prefix("uptime_in_seconds:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            info.contains("master_link_status:up") && uptime >= 11
        }
    })
    .await;
    // An entry filled now, replicated; then the replica loses its master
    // (and every bump that follows) and is promoted.
    const HALF: &str = "start=2026-10-01T00:00:00Z&end=2026-10-15T00:00:00Z";
    app.feed(&user, HALF).await;
    assert_eq!(app.feed(&user, HALF).await.x_cache, "HIT");
    eventually(Duration::from_secs(10), "the replica holds the entry", || {
        let (mut r, prefix) = (r.clone(), app.prefix.clone());
        async move {
            let keys: Vec<String> =
                redis::cmd("KEYS").arg(format!("{prefix}:calendar_feed:*")).query_async(&mut r).await.unwrap();
            !keys.is_empty()
        }
    })
    .await;
    redis::cmd("REPLICAOF").arg("NO").arg("ONE").query_async::<()>(&mut r).await.unwrap();
    let patch = app.patch_json(&path(&created), &user.token, &json!({"title": "after"})).await;
    assert_eq!(patch.status(), StatusCode::OK, "the change lands on the old primary only");

    // The failover: clients are sent to the promoted replica.
    proxy.retarget(format!("127.0.0.1:{}", replica.port)).await;
    for _ in 0..5 {
        let feed = app.feed(&user, HALF).await;
        assert_eq!((feed.status, feed.titles()), (StatusCode::OK, vec!["after".to_owned()]), "a lost bump came back");
    }
    eventually(Duration::from_secs(30), "served from Redis again", || async {
        app.feed(&user, HALF).await.x_cache == "HIT"
    })
    .await;
    assert_eq!(app.feed(&user, HALF).await.titles(), ["after"]);
}
}
