//! The control plane and housekeeping (issue 14): readiness while stopping,
//! start-up checks, `config check`, `demo` in production, session pruning.

use std::process::{Command, Output};
use std::time::Duration;

use calcache::startup::Application;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::helpers::{TestApp, base_settings, closed_port, eventually, spawn_app, spawn_app_with};

/// Runs the real binary with `args` in `env` (CALCACHE_ENV and more),
/// against `app`'s database and key prefix when given.
fn calcache(args: &[&str], app: Option<&TestApp>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_calcache"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR")).env("CALCACHE_ENV", "test");
    for var in ["DATABASE_URL", "REDIS_URL", "RUST_LOG"] {
        cmd.env_remove(var);
    }
    if let Some(app) = app {
        cmd.env("DATABASE_URL", &app.db_url)
            .env("REDIS_URL", &app.redis_url)
            .env("CALCACHE__REDIS__KEY_PREFIX", &app.prefix);
    }
    cmd.envs(env.iter().copied()).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn readiness_fails_once_the_process_is_draining() {
    let app = spawn_app().await;
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
    app.state.draining.store(true, std::sync::atomic::Ordering::SeqCst);
    let res = app.get("/readyz", None).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["message"], "unavailable: draining");
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_redis_pool_the_workers_would_starve_is_refused_at_start() {
    let mut settings = base_settings();
    settings.server.workers = 4;
    settings.redis.mode = calcache::config::RedisMode::Single;
    settings.redis.pool_max_size = calcache::config::PoolSize::from(4);
    let err = Application::build(settings.clone()).await.map(drop).unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default());
    assert!(chain.contains("redis.pool_max_size") && chain.contains("at least 6"), "{chain}");
    // 0 sizes it from the workers, again whenever they change.
    settings.redis.pool_max_size = calcache::config::PoolSize::from(0);
    settings.check().unwrap();
    assert_eq!(settings.redis_pool_size(), 4 + calcache::config::PoolSize::HEADROOM);
    settings.server.workers = 16;
    settings.check().unwrap();
    assert_eq!(settings.redis_pool_size(), 16 + calcache::config::PoolSize::HEADROOM);
}

#[tokio::test]
async fn the_real_redis_passes_the_version_check() {
    let app = spawn_app().await;
    let version = app.state.cache.check_server().await.unwrap();
    assert!(version >= calcache::cache::server::MIN_REDIS_VERSION, "{version}");
    // What the check reads is what this server says.
    let mut redis = app.redis().await;
    let info: redis::Value = redis::cmd("INFO").arg("server").query_async(&mut redis).await.unwrap();
    // One text from one server, or (Redis Cluster) one per master.
    let texts: Vec<String> = match info {
        redis::Value::Map(nodes) => nodes.into_iter().map(|(_, v)| redis::from_redis_value(v).unwrap()).collect(),
        one => vec![redis::from_redis_value(one).unwrap()],
    };
    let oldest = texts.iter().map(|t| calcache::cache::server::parse_redis_version(t).unwrap()).min();
    assert_eq!(oldest, Some(version));
}

#[tokio::test]
async fn a_redis_that_is_down_at_start_does_not_stop_the_start() {
    let app = spawn_app_with(|s| {
        s.redis.mode = calcache::config::RedisMode::Single;
        s.redis.url = format!("redis://127.0.0.1:{}", closed_port()).into();
    })
    .await;
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn config_check_validates_without_starting() {
    let ok = calcache(&["config", "check"], None, &[]);
    assert!(ok.status.success(), "{}", text(&ok));
    let out = text(&ok);
    assert!(out.contains("environment: test") && out.contains("configuration ok"), "{out}");
    let secret = base_settings().database.url.expose_secret().to_owned();
    assert!(!out.contains(&secret), "no URL (secret) is printed: {out}");

    for (env, names) in [
        // (The pool check is single mode's: cluster mode has no pool.)
        (vec![("CALCACHE__REDIS__MODE", "single"), ("CALCACHE__REDIS__POOL_MAX_SIZE", "3")], "redis.pool_max_size"),
        (vec![("CALCACHE__AUTH__TRUST_FORWARDED_FOR", "true")], "auth.trusted_proxies"),
        (vec![("CALCACHE__AUTH__MAX_CONCURRENT_HASHES", "0")], "max_concurrent_hashes"),
        (
            vec![
                ("CALCACHE__AUTH__TRUST_FORWARDED_FOR", "true"),
                ("CALCACHE__AUTH__TRUSTED_PROXIES", "10.0.0.1,nginx"),
            ],
            "auth.trusted_proxies[1]",
        ),
        (vec![("CALCACHE__SERVER__WORKERZ", "4")], "workerz"),
    ] {
        let bad = calcache(&["config", "check"], None, &env);
        assert_eq!(bad.status.code(), Some(2), "{env:?}: {}", text(&bad));
        assert!(text(&bad).contains(names), "{env:?}: {}", text(&bad));
    }

    // Proxies from the environment: a list of networks or single addresses.
    let proxies = calcache(
        &["config", "check"],
        None,
        &[("CALCACHE__AUTH__TRUST_FORWARDED_FOR", "true"), ("CALCACHE__AUTH__TRUSTED_PROXIES", "10.0.0.1,fd00::/8")],
    );
    assert!(proxies.status.success(), "{}", text(&proxies));
    assert!(text(&proxies).contains("X-Forwarded-For of 10.0.0.1/32, fd00::/8"), "{}", text(&proxies));

    // Production as shipped needs its own MAC key; with one it is valid,
    // and warned about nothing it sets itself.
    let shipped = calcache(&["config", "check"], None, &[("CALCACHE_ENV", "production")]);
    assert_eq!(shipped.status.code(), Some(2), "{}", text(&shipped));
    assert!(text(&shipped).contains("redis.mac_key") && text(&shipped).contains("development default"));
    let short = calcache(&["config", "check"], None, &[("CALCACHE__REDIS__MAC_KEY", "too short")]);
    assert!(text(&short).contains("redis.mac_key") && text(&short).contains("32"), "{}", text(&short));
    let prod = calcache(&["config", "check"], None, &[("CALCACHE_ENV", "production"), PRODUCTION_MAC_KEY]);
    assert!(prod.status.success(), "{}", text(&prod));
    assert!(!text(&prod).contains("warning"), "{}", text(&prod));
    let risky = calcache(
        &["config", "check"],
        None,
        &[("CALCACHE_ENV", "production"), PRODUCTION_MAC_KEY, ("CALCACHE__AUTH__SIGNUP_ENABLED", "true")],
    );
    assert!(risky.status.success() && text(&risky).contains("warning: auth.signup_enabled"), "{}", text(&risky));
}

#[tokio::test]
async fn config_check_connect_reaches_both_servers() {
    let app = spawn_app().await;
    let ok = calcache(&["config", "check", "--connect"], Some(&app), &[]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("version supported"), "{}", text(&ok));
    let down = format!("redis://127.0.0.1:{}", closed_port());
    let bad = calcache(
        &["config", "check", "--connect"],
        Some(&app),
        &[("CALCACHE__REDIS__MODE", "single"), ("REDIS_URL", &down)],
    );
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(text(&bad).contains("redis"), "{}", text(&bad));
}

/// What a production deployment sets (the shipped default is refused there).
const PRODUCTION_MAC_KEY: (&str, &str) = ("CALCACHE__REDIS__MAC_KEY", "0123456789abcdef0123456789abcdef-test-only");

#[tokio::test]
async fn demo_refuses_the_production_environment_unless_forced() {
    let app = spawn_app().await;
    let refused = calcache(&["demo"], Some(&app), &[("CALCACHE_ENV", "production"), PRODUCTION_MAC_KEY]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("--force"), "{}", text(&refused));
    let users = app.sql_strings("SELECT username AS value FROM users WHERE username LIKE 'demo%'").await;
    assert!(users.is_empty(), "no demo account was created: {users:?}");

    let forced = calcache(&["demo", "--force"], Some(&app), &[("CALCACHE_ENV", "production"), PRODUCTION_MAC_KEY]);
    assert!(forced.status.success(), "{}", text(&forced));
    let users = app.sql_strings("SELECT username AS value FROM users WHERE username LIKE 'demo%' ORDER BY 1").await;
    assert_eq!(users, ["demo", "demo2"]);
}

async fn session_count(app: &TestApp) -> (i64, i64) {
    let rows = app
        .sql_strings(
            "SELECT (count(*) FILTER (WHERE expires_at <= now()))::text || ',' || \
             (count(*) FILTER (WHERE expires_at > now()))::text AS value FROM sessions",
        )
        .await;
    let (expired, live) = rows[0].split_once(',').unwrap();
    (expired.parse().unwrap(), live.parse().unwrap())
}

/// Logs `user` in `n` more times and expires all but its first session.
async fn expire_sessions(app: &TestApp, user: &crate::helpers::TestUser, n: usize) {
    for _ in 0..n {
        app.token_for(&user.username, &user.password).await;
    }
    app.sql(&format!(
        "UPDATE sessions SET expires_at = now() - interval '1 minute' \
         WHERE user_id = {} AND created_at > (SELECT min(created_at) FROM sessions WHERE user_id = {})",
        user.id, user.id
    ))
    .await;
}

#[tokio::test]
async fn expired_sessions_are_pruned_and_live_ones_kept() {
    let app = spawn_app_with(|s| s.auth.session_prune_interval = None).await;
    let user = app.new_user().await;
    expire_sessions(&app, &user, 3).await;
    let (expired, live) = session_count(&app).await;
    assert!(expired >= 1 && live >= 1, "{expired} expired, {live} live");
    let deleted = calcache::service::housekeeping::prune_expired_sessions(&app.state).await.unwrap();
    assert_eq!(deleted as i64, expired);
    let text = app.metrics_text().await;
    assert_eq!(crate::helpers::metric(&text, "calcache_sessions_pruned_total"), expired as f64, "{text}");
    assert_eq!(session_count(&app).await, (0, live));
    assert_eq!(app.get("/api/me", Some(&user.token)).await.status(), StatusCode::OK, "the live session works");
    // Nothing left: a second pass deletes nothing.
    assert_eq!(calcache::service::housekeeping::prune_expired_sessions(&app.state).await.unwrap(), 0);
}

#[tokio::test]
async fn sessions_are_pruned_in_the_background() {
    let app = spawn_app_with(|s| s.auth.session_prune_interval = Some(std::time::Duration::from_secs(1))).await;
    let user = app.new_user().await;
    expire_sessions(&app, &user, 2).await;
    let app = &app;
    eventually(Duration::from_secs(15), "the pruner deletes the expired sessions", || async move {
        session_count(app).await.0 == 0
    })
    .await;
    assert!(session_count(app).await.1 >= 1, "live sessions stay");
}

#[tokio::test]
async fn sessions_prune_from_the_command_line() {
    let app = spawn_app_with(|s| s.auth.session_prune_interval = None).await;
    let user = app.new_user().await;
    expire_sessions(&app, &user, 2).await;
    let (expired, live) = session_count(&app).await;
    let out = calcache(&["sessions", "prune"], Some(&app), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("{expired} expired session(s) deleted")), "{}", text(&out));
    assert_eq!(session_count(&app).await, (0, live));
}
