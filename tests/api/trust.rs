//! Trust in Redis, bounded (`cache::mac`): values calcache did not write
//! itself — a forged session check, a planted or copied feed entry — are
//! never believed, whoever wrote them to Redis.

use calcache::domain::UserId;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::helpers::{OCT, each_versioned_strategy, item, spawn_app};

/// A token of the right shape for user `id` that no login ever issued.
fn forged_token(id: i64) -> String {
    format!("{id}.{}", "A".repeat(43))
}

#[tokio::test]
async fn a_session_check_forged_in_redis_lets_no_one_in() {
    let app = spawn_app().await;
    let victim = app.new_user().await;
    app.create_item(&victim, item("private", "2026-10-05", "2026-10-06")).await;
    let token = forged_token(victim.id);
    let key = app.keys().session(UserId(victim.id), &Sha256::digest(token.as_bytes()));
    let mut redis = app.redis().await;
    // What an older release stored for a valid session, and what a forger
    // would write: the marker alone, or with a tag made up.
    for value in [b"1".to_vec(), [b"1".as_slice(), &[7u8; 32]].concat()] {
        let _: () = redis::cmd("SET").arg(&key).arg(&value).arg("EX").arg(60).query_async(&mut redis).await.unwrap();
        let res = app.get(&format!("/api/calendar/feed?{OCT}"), Some(&token)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "forged {value:?}");
        let res = app.get("/api/work-items", Some(&token)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "forged {value:?}");
    }
    // The real session still works, through its own checked value.
    assert_eq!(app.feed(&victim, OCT).await.titles(), ["private"]);
    assert_eq!(app.feed(&victim, OCT).await.x_cache, "HIT");
}

each_versioned_strategy! {
/// An entry planted under a user's key (a gzip bomb, another user's
/// entry copied over) is a miss, and the answer is the truth.
#[tokio::test]
async fn a_planted_or_copied_entry_is_never_served() {
    let app = spawn_app().await;
    let (alice, bob) = (app.new_user().await, app.new_user().await);
    app.create_item(&alice, item("alice's", "2026-10-05", "2026-10-06")).await;
    app.create_item(&bob, item("bob's", "2026-10-07", "2026-10-08")).await;
    for user in [&alice, &bob] {
        app.feed(user, OCT).await;
        assert_eq!(app.feed(user, OCT).await.x_cache, "HIT");
    }
    let mut redis = app.redis().await;
    let entry_key = async |redis: &mut crate::helpers::TestRedis, id: i64| -> String {
        let pattern = format!("{}:calendar_feed:{{u{id}}}:*", app.prefix);
        let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(redis).await.unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        keys[0].clone()
    };
    let (alice_key, bob_key) = (entry_key(&mut redis, alice.id).await, entry_key(&mut redis, bob.id).await);
    // Bob's entry, byte for byte, under Alice's key.
    let bobs: Vec<u8> = redis::cmd("GET").arg(&bob_key).query_async(&mut redis).await.unwrap();
    let _: () = redis::cmd("SET").arg(&alice_key).arg(&bobs).query_async(&mut redis).await.unwrap();
    // A fresh process (no copy of its own to fall back on) reads it.
    let fresh = crate::helpers::spawn_sibling(&app).await;
    let feed = fresh.feed(&alice, OCT).await;
    assert_eq!((feed.x_cache.as_str(), feed.titles()), ("MISS", vec!["alice's".to_owned()]));
    // A gzip bomb behind a made-up tag: 32 MB of zeros, about 32 KB stored.
    let mut bomb = vec![0u8; 32 + 8 * 16];
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &vec![0u8; 32 << 20]).unwrap();
    bomb.extend(enc.finish().unwrap());
    let _: () = redis::cmd("SET").arg(&alice_key).arg(&bomb).query_async(&mut redis).await.unwrap();
    let third = crate::helpers::spawn_sibling(&app).await;
    let feed = third.feed(&alice, OCT).await;
    assert_eq!((feed.x_cache.as_str(), feed.titles()), ("MISS", vec!["alice's".to_owned()]));
    // And the fills put back entries that verify.
    assert_eq!(third.feed(&alice, OCT).await.x_cache, "HIT");
}
}
