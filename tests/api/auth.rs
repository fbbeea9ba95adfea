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

#[tokio::test]
async fn failed_logins_are_throttled_per_username_across_instances() {
    let app = spawn_app_with(|s| s.auth.login_max_failures_per_user = 3).await;
    let other = spawn_sibling_with(&app, |s| s.auth.login_max_failures_per_user = 3).await;
    let user = app.new_user().await;
    let bystander = app.new_user().await;
    for _ in 0..3 {
        assert_eq!(app.login(&user.username, "wrong password").await.status(), StatusCode::UNAUTHORIZED);
    }
    // Now even the right password is refused, on every instance, with 429.
    for instance in [&app, &other] {
        let res = instance.login(&user.username, &user.password).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(res.headers().get("retry-after").is_some());
        assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "rate_limited");
    }
    // Another user is not affected, and existing sessions keep working.
    assert_eq!(app.login(&bystander.username, &bystander.password).await.status(), StatusCode::OK);
    assert_eq!(app.get("/api/me", Some(&user.token)).await.status(), StatusCode::OK);
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
