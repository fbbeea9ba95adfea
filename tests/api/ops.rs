use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{OCT, closed_port, item, metric, spawn_app, spawn_app_with};

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["postgres"], "up");
    assert_eq!(body["redis"], "up");
}

#[tokio::test]
async fn readiness_names_the_dependency_that_is_down() {
    let app = spawn_app_with(|s| {
        s.redis.mode = calcache::config::RedisMode::Single;
        s.redis.url = format!("redis://127.0.0.1:{}", closed_port()).into();
    })
    .await;
    let res = app.get("/readyz", None).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(body["error"]["message"], "unavailable: redis");
    // The process itself is fine.
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_count_hits_misses_bypasses_and_invalidations() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let created = app.create_item(&user, item("m", "2026-10-05", "2026-10-06")).await;
    app.feed(&user, OCT).await; // miss
    app.feed(&user, OCT).await; // hit
    app.feed(&user, OCT).await; // hit
    app.delete(&format!("/api/work-items/{}", created["id"].as_str().unwrap()), &user.token).await;
    app.feed(&user, OCT).await; // miss

    let res = app.get("/metrics", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("content-type").unwrap().to_str().unwrap().contains("text"));
    let text = res.text().await.unwrap();
    assert_eq!(metric(&text, "calcache_feed_cache_requests_total{outcome=\"hit\"}"), 2.0, "{text}");
    assert_eq!(metric(&text, "calcache_feed_cache_requests_total{outcome=\"miss\"}"), 2.0);
    assert_eq!(metric(&text, "calcache_feed_db_queries_total"), 2.0);
    assert_eq!(metric(&text, "calcache_feed_cache_invalidations_total{cause=\"create\",result=\"applied\"}"), 1.0);
    assert_eq!(metric(&text, "calcache_feed_cache_invalidations_total{cause=\"delete\",result=\"applied\"}"), 1.0);
    assert!(
        metric(
            &text,
            "calcache_http_request_duration_seconds_count{method=\"GET\",route=\"/api/calendar/feed\",status=\"2xx\"}"
        ) >= 4.0,
        "{text}"
    );
}

#[tokio::test]
async fn metrics_count_bypasses_and_redis_errors() {
    let app = spawn_app_with(|s| {
        s.redis.mode = calcache::config::RedisMode::Single;
        s.redis.url = format!("redis://127.0.0.1:{}", closed_port()).into();
    })
    .await;
    let user = app.new_user().await;
    let refused = app.post_json("/api/work-items", Some(&user.token), &item("m", "2026-10-05", "2026-10-06")).await;
    assert_eq!(refused.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    app.feed(&user, OCT).await;
    let text = app.metrics_text().await;
    assert_eq!(metric(&text, "calcache_feed_cache_requests_total{outcome=\"bypass\"}"), 1.0, "{text}");
    assert!(metric(&text, "calcache_dependency_errors_total{dependency=\"redis\"}") >= 1.0);
    assert_eq!(metric(&text, "calcache_writes_refused_fence_total"), 1.0, "{text}");
}

#[tokio::test]
async fn metrics_count_postgres_errors_and_pool_waits() {
    use secrecy::ExposeSecret;
    let upstream = crate::helpers::authority(crate::helpers::base_settings().database.url.expose_secret());
    let proxy = crate::proxy::Proxy::start(upstream).await;
    let app = spawn_app_with(|s| {
        s.database.url =
            crate::helpers::with_authority(s.database.url.expose_secret(), &format!("127.0.0.1:{}", proxy.port)).into();
        s.database.connect_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let user = app.new_user().await;
    app.feed(&user, OCT).await;
    let text = app.metrics_text().await;
    assert!(metric(&text, "calcache_db_pool_wait_seconds_count") >= 1.0, "{text}");
    assert_eq!(metric(&text, "calcache_dependency_errors_total{dependency=\"postgres\"}"), 0.0);

    proxy.cut().await;
    let res = app.get("/api/me", Some(&user.token)).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = app.metrics_text().await;
    assert!(metric(&text, "calcache_dependency_errors_total{dependency=\"postgres\"}") >= 1.0, "{text}");
    assert!(metric(&text, "calcache_db_pool_connections") >= 0.0);
}

#[tokio::test]
async fn metrics_export_known_series_at_zero_from_start() {
    let app = spawn_app().await;
    let text = app.metrics_text().await;
    let series = |name: &str| text.lines().any(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
    for outcome in ["hit", "miss", "bypass"] {
        assert!(series(&format!("calcache_feed_cache_requests_total{{outcome=\"{outcome}\"}}")), "{outcome}\n{text}");
    }
    for cause in ["create", "update", "delete", "logout", "outbox"] {
        for result in ["applied", "deferred"] {
            let name = format!("calcache_feed_cache_invalidations_total{{cause=\"{cause}\",result=\"{result}\"}}");
            assert!(series(&name), "{name}\n{text}");
            assert_eq!(metric(&text, &name), 0.0);
        }
    }
    for name in [
        "calcache_dependency_errors_total{dependency=\"redis\"}",
        "calcache_dependency_errors_total{dependency=\"postgres\"}",
        "calcache_feed_cache_stampede_waits_total{waited_for=\"process\"}",
        "calcache_feed_cache_stampede_waits_total{waited_for=\"lease\"}",
        "calcache_freshness_audits_total{result=\"mismatch\"}",
        "calcache_auth_refusals_total{reason=\"login_throttled\"}",
        "calcache_auth_refusals_total{reason=\"signup_throttled\"}",
        "calcache_auth_refusals_total{reason=\"hashing_busy\"}",
        "calcache_change_events_sent_total{event=\"change\"}",
        "calcache_change_stream_resumes_total{result=\"refetch\"}",
        "calcache_change_streams_rejected_total{reason=\"process_limit\"}",
        "calcache_redis_circuit_open",
        "calcache_redis_call_duration_seconds_count{outcome=\"timeout\"}",
    ] {
        assert!(series(name), "{name}\n{text}");
    }
    assert_eq!(metric(&text, "calcache_redis_circuit_open"), 0.0);
    let build = format!("calcache_build_info{{version=\"{}\",", env!("CARGO_PKG_VERSION"));
    assert!(text.lines().any(|l| l.starts_with(&build) && l.ends_with(" 1")), "{text}");
    // The app's start-up reached both dependencies through the measured paths.
    let _ = app.get("/readyz", None).await;
    app.new_user().await;
    let text = app.metrics_text().await;
    assert!(metric(&text, "calcache_redis_call_duration_seconds_count{outcome=\"ok\"}") >= 1.0, "{text}");
    assert!(metric(&text, "calcache_db_query_duration_seconds_count") >= 1.0, "{text}");
}

#[tokio::test]
async fn metrics_show_the_redis_circuit_open() {
    let app = spawn_app_with(|s| {
        s.redis.mode = calcache::config::RedisMode::Single;
        s.redis.url = format!("redis://127.0.0.1:{}", closed_port()).into();
    })
    .await;
    let user = app.new_user().await;
    for _ in 0..10 {
        app.feed(&user, OCT).await;
    }
    let text = app.metrics_text().await;
    assert_eq!(metric(&text, "calcache_redis_circuit_open"), 1.0, "{text}");
    assert!(metric(&text, "calcache_redis_call_duration_seconds_count{outcome=\"error\"}") >= 1.0, "{text}");
}

/// Every key of `config/default.toml` has its row in the configuration
/// tables of docs/operations.md (one key per row, nothing else) and of the
/// README (which may group keys of one section in a row). The settings
/// struct has no defaults of its own and refuses unknown keys, so
/// config/default.toml, which must load (`config::tests`), holds exactly its
/// keys.
#[test]
fn the_configuration_tables_list_every_setting() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    use config::Source as _;
    let defaults = config::Config::builder()
        .add_source(config::File::from(root.join("config/default.toml")))
        .build()
        .unwrap()
        .collect()
        .unwrap();
    let mut keys: Vec<String> = Vec::new();
    for (section, table) in defaults {
        for key in table.into_table().unwrap().into_keys() {
            keys.push(format!("{section}.{key}"));
        }
    }
    keys.sort();
    let first_cells = |text: &str, heading: &str| -> Vec<String> {
        let section = text.split(heading).nth(1).unwrap_or_else(|| panic!("no {heading:?}"));
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|l| l.trim_matches('|').split('|').next().unwrap_or("").trim().to_owned())
            .collect()
    };
    let ops = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    let mut rows: Vec<String> =
        first_cells(&ops, "\n## Configuration\n").iter().map(|c| c.trim_matches('`').to_owned()).collect();
    rows.sort();
    assert_eq!(rows, keys, "docs/operations.md's configuration table against config/default.toml");

    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let cells = first_cells(&readme, "\n## Configuration\n");
    for key in &keys {
        let (section, name) = key.split_once('.').unwrap();
        let listed = cells.iter().any(|c| {
            c.contains(&format!("`{key}`")) || (c.contains(&format!("`{section}.")) && c.contains(&format!("`{name}`")))
        });
        assert!(listed, "README.md's configuration table does not list {key}");
    }
}
