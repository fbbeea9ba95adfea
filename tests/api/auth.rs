use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with, spawn_sibling, spawn_sibling_with, unique_name};

#[tokio::test]
async fn signup_creates_a_user_and_rejects_duplicates_and_bad_input() {
    let app = spawn_app().await;
    let name = unique_name("alice");
    let res = app.signup(&name, "long enough pw").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["username"], name.as_str());
    assert!(body["id"].as_i64().unwrap() > 0);
    assert!(body.get("password").is_none() && body.get("password_hash").is_none());

    let dup = app.signup(&name, "another password").await;
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    assert_eq!(dup.json::<Value>().await.unwrap()["error"]["code"], "conflict");

    for (body, field) in [
        (json!({"username": "ab", "password": "long enough"}), "username"),
        (json!({"username": "bad name!", "password": "long enough"}), "username"),
        (json!({"username": "a".repeat(65), "password": "long enough"}), "username"),
        (json!({"username": "okname", "password": "short"}), "password"),
        (json!({"username": "okname", "password": "p".repeat(129)}), "password"),
        (json!({"username": "okname"}), "password"),
        (json!({"username": "okname", "password": "long enough", "admin": true}), "admin"),
        (json!({"username": 42, "password": "long enough"}), "username"),
    ] {
        let res = app.post_json("/api/signup", None, &body).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"]["code"], "invalid_input", "{body}");
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
        assert!(err["error"]["message"].as_str().unwrap().contains(field), "{err}");
    }
}

#[tokio::test]
async fn signup_can_be_switched_off() {
    let app = spawn_app_with(|s| s.auth.signup_enabled = false).await;
    let res = app.signup(&unique_name("bob"), "long enough pw").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "not_found");
}

#[tokio::test]
async fn login_returns_a_token_and_a_session_cookie() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let res = app.login(&user.username, &user.password).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert_eq!(body["user"]["id"], user.id);
    assert_eq!(body["user"]["username"], user.username.as_str());
    assert!(cookie.starts_with(&format!("session={token}")), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains("Secure"), "Secure is off in test config: {cookie}");
}

#[tokio::test]
async fn secure_cookies_when_configured() {
    let app = spawn_app_with(|s| s.auth.cookie_secure = true).await;
    let user = app.new_user().await;
    let res = app.login(&user.username, &user.password).await;
    let cookie = res.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn wrong_name_and_wrong_password_get_the_same_answer() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let wrong_pw = app.login(&user.username, "not the password").await;
    let wrong_name = app.login(&unique_name("nobody"), "not the password").await;
    assert_eq!(wrong_pw.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_name.status(), StatusCode::UNAUTHORIZED);
    let a: Value = wrong_pw.json().await.unwrap();
    let b: Value = wrong_name.json().await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a["error"]["code"], "unauthenticated");
}

#[tokio::test]
async fn bearer_and_cookie_both_authenticate() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let bearer = app.get("/api/me", Some(&user.token)).await;
    assert_eq!(bearer.status(), StatusCode::OK);
    assert_eq!(bearer.json::<Value>().await.unwrap()["id"], user.id);

    let browser = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let res = browser
        .post(app.url("/api/login"))
        .json(&json!({"username": user.username, "password": user.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let me = browser.get(app.url("/api/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let feed = browser.get(app.url("/api/calendar/feed?start=2026-10-01&end=2026-10-02")).send().await.unwrap();
    assert_eq!(feed.status(), StatusCode::OK);
}

#[tokio::test]
async fn protected_routes_need_a_session() {
    let app = spawn_app().await;
    let some_id = uuid::Uuid::new_v4();
    for (method, path) in [
        ("GET", "/api/me".to_owned()),
        ("GET", "/api/users".to_owned()),
        ("POST", "/api/work-items".to_owned()),
        ("GET", format!("/api/work-items/{some_id}")),
        ("PATCH", format!("/api/work-items/{some_id}")),
        ("DELETE", format!("/api/work-items/{some_id}")),
        ("GET", "/api/calendar/feed?start=2026-10-01&end=2026-10-02".to_owned()),
        ("POST", "/api/logout".to_owned()),
    ] {
        for token in [None, Some("1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), Some("garbage")] {
            let mut req = app.client.request(method.parse().unwrap(), app.url(&path)).json(&json!({}));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path} with {token:?}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthenticated");
        }
    }
}

#[tokio::test]
async fn logout_revokes_the_token_on_every_instance() {
    let app = spawn_app().await;
    let other = spawn_sibling(&app).await;
    let user = app.new_user().await;
    // Both instances have seen (and cached) the session.
    assert_eq!(app.get("/api/me", Some(&user.token)).await.status(), StatusCode::OK);
    assert_eq!(other.get("/api/me", Some(&user.token)).await.status(), StatusCode::OK);
    let second_token = app.token_for(&user.username, &user.password).await;

    let res = app.client.post(app.url("/api/logout")).bearer_auth(&user.token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let cleared = res.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cleared.starts_with("session=;"), "{cleared}");

    for instance in [&app, &other] {
        let res = instance.get("/api/me", Some(&user.token)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // Only that session ended.
    assert_eq!(other.get("/api/me", Some(&second_token)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_login_on_one_instance_works_on_another() {
    let app = spawn_app().await;
    let other = spawn_sibling(&app).await;
    let user = app.new_user().await;
    assert_eq!(other.get("/api/me", Some(&user.token)).await.status(), StatusCode::OK);
}

/// An app that takes the client from `X-Forwarded-For` when the peer is
/// loopback (the test client), so one test can be many clients.
fn behind_proxy(s: &mut calcache::config::Settings) {
    s.auth.trust_forwarded_for = true;
    s.auth.trusted_proxies = vec!["127.0.0.1".to_owned().try_into().unwrap()];
}

async fn login_from(app: &crate::helpers::TestApp, client: &str, username: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/login"))
        .header("x-forwarded-for", client)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn failed_logins_are_throttled_per_username_and_client_across_instances() {
    let limit = |s: &mut calcache::config::Settings| s.auth.login_max_failures_per_user_and_client = 3;
    let app = spawn_app_with(limit).await;
    let other = spawn_sibling_with(&app, limit).await;
    let user = app.new_user().await;
    let bystander = app.new_user().await;
    for _ in 0..3 {
        assert_eq!(app.login(&user.username, "wrong password").await.status(), StatusCode::UNAUTHORIZED);
    }
    // Now this client gets 429 for this name, even with the right password,
    // on every instance.
    for instance in [&app, &other] {
        let res = instance.login(&user.username, &user.password).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=300).contains(&retry), "Retry-After is what is left of the window: {retry}");
        assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "rate_limited");
    }
    // Another user is not affected, and existing sessions keep working.
    assert_eq!(app.login(&bystander.username, &bystander.password).await.status(), StatusCode::OK);
    assert_eq!(app.get("/api/me", Some(&user.token)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_stranger_cannot_lock_the_owner_out() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.auth.login_max_failures_per_user_and_client = 3;
    })
    .await;
    let user = app.new_user().await;
    // The attacker (who read the name in /api/users) fails far past the limit.
    for _ in 0..6 {
        let res = login_from(&app, "203.0.113.9", &user.username, "guess").await;
        assert!(matches!(res.status().as_u16(), 401 | 429), "{}", res.status());
    }
    let res = login_from(&app, "203.0.113.9", &user.username, &user.password).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "the guesser stays throttled, right password or not");
    // The owner, from their own address, logs in.
    let res = login_from(&app, "198.51.100.20", &user.username, &user.password).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn concurrent_guesses_are_counted_before_any_is_verified() {
    let app = spawn_app_with(|s| {
        s.auth.login_max_failures_per_user_and_client = 5;
        s.auth.max_concurrent_hashes = std::num::NonZeroUsize::new(2).unwrap();
        s.auth.hash_wait = std::time::Duration::from_millis(60_000);
    })
    .await;
    let user = app.new_user().await;
    let guesses = (0..20).map(|i| {
        let app = &app;
        let name = user.username.clone();
        async move { app.login(&name, &format!("guess number {i}")).await.status() }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let evaluated = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((evaluated, refused), (5, 15), "{statuses:?}");
    // The right password from this client is refused too; the counter kept its window.
    assert_eq!(app.login(&user.username, &user.password).await.status(), StatusCode::TOO_MANY_REQUESTS);
    let mut redis = app.redis().await;
    let client = calcache::domain::ClientAddr::from_ip("127.0.0.1".parse().unwrap());
    let key = app.keys().login_attempts_user_client(&user.username, &client);
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut redis).await.unwrap();
    assert!((1..=300).contains(&ttl), "the counter expires: TTL {ttl}");
    let text = app.metrics_text().await;
    assert_eq!(
        crate::helpers::metric(&text, "calcache_auth_refusals_total{reason=\"login_throttled\"}"),
        16.0,
        "{text}"
    );
}

#[tokio::test]
async fn right_passwords_do_not_use_up_a_shared_address() {
    // An office behind one address: many people log in, a few mistype.
    let app = spawn_app_with(|s| s.auth.login_max_failures_per_client = 3).await;
    let user = app.new_user().await;
    for _ in 0..6 {
        assert_eq!(app.login(&user.username, &user.password).await.status(), StatusCode::OK);
    }
    assert_eq!(app.login(&user.username, "typo").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(&user.username, &user.password).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn password_hashing_is_bounded_and_a_full_bound_answers_503() {
    let app = spawn_app_with(|s| {
        s.auth.max_concurrent_hashes = std::num::NonZeroUsize::new(2).unwrap();
        s.auth.hash_wait = std::time::Duration::from_millis(200);
    })
    .await;
    let user = app.new_user().await;
    // Every slot taken (as by two slow hashes): the next login waits its
    // hash_wait_ms, then answers 503 without touching the password.
    let held = app.state.hashing.permits().acquire_many(2).await.unwrap();
    let res = app.login(&user.username, &user.password).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().get("retry-after").is_some());
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "unavailable");
    let res = app.signup(&unique_name("late"), "long enough pw").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // One slot free again: a login queued behind it goes through.
    drop(held);
    let one = app.state.hashing.permits().acquire().await.unwrap();
    assert_eq!(app.login(&user.username, &user.password).await.status(), StatusCode::OK);
    drop(one);
    assert_eq!(app.state.hashing.permits().available_permits(), 2, "every slot is given back");
    let text = app.metrics_text().await;
    assert_eq!(crate::helpers::metric(&text, "calcache_auth_refusals_total{reason=\"hashing_busy\"}"), 2.0, "{text}");
}

#[tokio::test]
async fn failed_logins_are_throttled_per_client_address() {
    let app = spawn_app_with(|s| s.auth.login_max_failures_per_client = 4).await;
    let user = app.new_user().await.username;
    for i in 0..4 {
        let res = app.login(&unique_name(&format!("guess{i}")), "wrong password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = app.login(&user, "correct horse battery").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "this address has used up its failures");
}

#[tokio::test]
async fn ipv6_clients_are_throttled_by_their_64() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.auth.login_max_failures_per_client = 3;
    })
    .await;
    for i in 1..=3 {
        let res = login_from(&app, &format!("2001:db8:7:7::{i:x}"), &unique_name("nobody"), "wrong password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // A fresh address in the same /64 is the same client.
    let res = login_from(&app, "2001:db8:7:7:ffff::1", &unique_name("nobody"), "wrong password").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // The next /64 is not.
    let res = login_from(&app, "2001:db8:7:8::1", &unique_name("nobody"), "wrong password").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    // Trusting X-Forwarded-For, but only from 10.0.0.0/8: the test client
    // (127.0.0.1) is not a proxy, so every spoofed address is still it.
    let app = spawn_app_with(|s| {
        s.auth.trust_forwarded_for = true;
        s.auth.trusted_proxies = vec!["10.0.0.0/8".to_owned().try_into().unwrap()];
        s.auth.login_max_failures_per_client = 3;
    })
    .await;
    for i in 1..=3 {
        let res = login_from(&app, &format!("203.0.113.{i}"), &unique_name("nobody"), "wrong password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = login_from(&app, "203.0.113.99", &unique_name("nobody"), "wrong password").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn only_the_proxys_own_entry_of_forwarded_for_counts() {
    // A client prepends its own entries; the proxy appends the address it saw.
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.auth.login_max_failures_per_client = 2;
    })
    .await;
    for i in 1..=2 {
        let res =
            login_from(&app, &format!("192.0.2.{i}, 203.0.113.5"), &unique_name("nobody"), "wrong password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = login_from(&app, "192.0.2.77, 203.0.113.5", &unique_name("nobody"), "wrong password").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn signups_are_throttled_per_client_address() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.auth.signup_max_per_client = 2;
    })
    .await;
    let signup_from = |client: &'static str, name: String| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/signup"))
                .header("x-forwarded-for", client)
                .json(&json!({"username": name, "password": "long enough pw"}))
                .send()
                .await
                .unwrap()
        }
    };
    let taken = unique_name("first");
    assert_eq!(signup_from("198.51.100.1", taken.clone()).await.status(), StatusCode::CREATED);
    // A conflict counts too: sign-up is no free oracle for taken names.
    assert_eq!(signup_from("198.51.100.1", taken).await.status(), StatusCode::CONFLICT);
    let refused_name = unique_name("third");
    let res = signup_from("198.51.100.1", refused_name.clone()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("retry-after").is_some());
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "rate_limited");
    // Nothing was written for the refused sign-up.
    let rows = app.sql_strings(&format!("SELECT username AS value FROM users WHERE username = '{refused_name}'")).await;
    assert!(rows.is_empty(), "{rows:?}");
    let text = app.metrics_text().await;
    assert_eq!(crate::helpers::metric(&text, "calcache_auth_refusals_total{reason=\"signup_throttled\"}"), 1.0);
    // Another address signs up.
    assert_eq!(signup_from("198.51.100.2", unique_name("other")).await.status(), StatusCode::CREATED);
}
