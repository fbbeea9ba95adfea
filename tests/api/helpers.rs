//! `spawn_app()`: the production `Application` on port 0, against a fresh
//! PostgreSQL database (dropped when the `TestApp` is dropped) and a fresh
//! Redis key prefix. Set `TEST_LOG=1` to see the app's logs.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use calcache::config::Settings;
use calcache::service::AppState;
use calcache::startup::Application;
use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::{Client, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use uuid::Uuid;

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        let mut log = base_settings().log;
        log.filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".into());
        calcache::telemetry::init(&log);
    }
});

pub fn base_settings() -> Settings {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut settings = Settings::load_from(&dir, "test").expect("config/test.toml loads");
    if let Ok(strategy) = STRATEGY.try_with(|s| *s) {
        settings.cache.strategy = strategy;
    }
    // The suites' users miss far more often than a person can (a write and
    // a read many times a second): the fill budget stays on, counting, but
    // out of reach. `limits.rs` tests it at its own small values.
    settings.limits.feed_fills_per_user = 1_000_000_000;
    settings
}

tokio::task_local! {
    /// The cache strategy every app a test spawns uses (see `with_strategy`).
    static STRATEGY: calcache::config::CacheStrategy;
}

/// Runs `test` with every app it spawns (and their siblings) on `strategy`,
/// unless the test sets one itself.
pub async fn with_strategy(strategy: calcache::config::CacheStrategy, test: impl std::future::Future<Output = ()>) {
    STRATEGY.scope(strategy, test).await;
}

/// The strategy the running test's apps use.
pub fn strategy() -> calcache::config::CacheStrategy {
    STRATEGY.try_with(|s| *s).unwrap_or(calcache::config::CacheStrategy::Versioned)
}

/// Declares a test that runs once per strategy with versions, as
/// `<name>::versioned` and `<name>::bucketed`: every freshness, fault and
/// stampede test holds for both (parametrized, not copied).
macro_rules! each_versioned_strategy {
    ($(#[$attr:meta])* async fn $name:ident() $body:block) => {
        mod $name {
            #[allow(unused_imports, reason = "the test body sees what its module sees")]
            use super::*;

            async fn body() $body

            $(#[$attr])*
            async fn versioned() {
                crate::helpers::with_strategy(calcache::config::CacheStrategy::Versioned, body()).await
            }

            $(#[$attr])*
            async fn bucketed() {
                crate::helpers::with_strategy(calcache::config::CacheStrategy::Bucketed, body()).await
            }
        }
    };
}
pub(crate) use each_versioned_strategy;

/// `postgres://…/<db>` with the database name replaced.
pub fn with_database(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) => format!("{}/{}", &url[..i], db),
        None => format!("{url}/{db}"),
    }
}

fn admin_url(settings: &Settings) -> String {
    with_database(settings.database.url.expose_secret(), "postgres")
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub db_name: String,
    pub db_url: String,
    pub prefix: String,
    pub redis_url: String,
    /// Seed nodes when the suite runs against Redis Cluster
    /// (`CALCACHE__REDIS__MODE=cluster`, see scripts/cluster-test.sh).
    pub cluster_nodes: Option<Vec<String>>,
    pub state: Arc<AppState>,
    pub client: Client,
    handle: actix_web::dev::ServerHandle,
    owns_db: bool,
}

#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub username: String,
    pub password: String,
    pub token: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A fresh app whose settings `customize` may change before it starts.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    LazyLock::force(&TRACING);
    let mut settings = base_settings();
    let db_name = format!("calcache_test_{}", Uuid::new_v4().simple());
    let admin = admin_url(&settings);
    let create = format!(r#"CREATE DATABASE "{db_name}""#);
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&admin).expect("connect to postgres");
        diesel::sql_query(create).execute(&mut conn).expect("create test database");
    })
    .await
    .unwrap();
    let db_url = with_database(settings.database.url.expose_secret(), &db_name);
    settings.database.url = SecretString::from(db_url.clone());
    settings.redis.key_prefix = format!("calcache-test-{}", Uuid::new_v4().simple()).try_into().unwrap();
    settings.server.port = 0;
    customize(&mut settings);
    start(settings, db_name, db_url, true).await
}

/// A second process-like instance sharing `other`'s database and Redis
/// prefix (own pools, own workers, own process-local state).
pub async fn spawn_sibling(other: &TestApp) -> TestApp {
    spawn_sibling_with(other, |_| {}).await
}

pub async fn spawn_sibling_with(other: &TestApp, customize: impl FnOnce(&mut Settings)) -> TestApp {
    try_spawn_sibling_with(other, customize).await.expect("application builds")
}

/// [`spawn_sibling_with`], answering why the application did not build
/// (PostgreSQL unreachable at start, the port taken) instead of panicking.
pub async fn try_spawn_sibling_with(
    other: &TestApp,
    customize: impl FnOnce(&mut Settings),
) -> Result<TestApp, calcache::startup::StartupError> {
    let mut settings = base_settings();
    settings.database.url = SecretString::from(other.db_url.clone());
    settings.redis.key_prefix = other.prefix.clone().try_into().unwrap();
    settings.redis.url = SecretString::from(other.redis_url.clone());
    settings.server.port = 0;
    customize(&mut settings);
    try_start(settings, other.db_name.clone(), other.db_url.clone(), false).await
}

async fn start(settings: Settings, db_name: String, db_url: String, owns_db: bool) -> TestApp {
    try_start(settings, db_name, db_url, owns_db).await.expect("application builds")
}

async fn try_start(
    settings: Settings,
    db_name: String,
    db_url: String,
    owns_db: bool,
) -> Result<TestApp, calcache::startup::StartupError> {
    let prefix = settings.redis.key_prefix.to_string();
    let redis_url = settings.redis.url.expose_secret().to_owned();
    let cluster_nodes = (settings.redis.mode == calcache::config::RedisMode::Cluster)
        .then(|| settings.redis.cluster_nodes.iter().map(|n| n.expose_secret().to_owned()).collect());
    let app = Application::build(settings).await?;
    let port = app.port();
    let state = app.state();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    Ok(TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db_name,
        db_url,
        prefix,
        redis_url,
        cluster_nodes,
        state,
        client: Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        handle,
        owns_db,
    })
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Sends the stop command at once; workers wind down on their own.
        drop(self.handle.stop(false));
        if self.owns_db {
            let admin = with_database(&self.db_url, "postgres");
            let drop_sql = format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.db_name);
            // A plain thread: Drop may run inside the async runtime.
            let _ = std::thread::spawn(move || {
                if let Ok(mut conn) = PgConnection::establish(&admin) {
                    let _ = diesel::sql_query(drop_sql).execute(&mut conn);
                }
            })
            .join();
        }
    }
}

pub fn unique_name(stem: &str) -> String {
    format!("{stem}_{}", &Uuid::new_v4().simple().to_string()[..10])
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    pub async fn patch_json(&self, path: &str, token: &str, body: &Value) -> Response {
        self.client.patch(self.url(path)).bearer_auth(token).json(body).send().await.expect("request sent")
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.client.delete(self.url(path)).bearer_auth(token).send().await.expect("request sent")
    }

    pub async fn signup(&self, username: &str, password: &str) -> Response {
        self.post_json("/api/signup", None, &json!({"username": username, "password": password})).await
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.post_json("/api/login", None, &json!({"username": username, "password": password})).await
    }

    /// Signs up and logs in a new user.
    pub async fn new_user(&self) -> TestUser {
        let username = unique_name("user");
        let password = "correct horse battery".to_owned();
        let res = self.signup(&username, &password).await;
        assert_eq!(res.status(), StatusCode::CREATED, "signup");
        let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        let token = self.token_for(&username, &password).await;
        TestUser { id, username, password, token }
    }

    pub async fn token_for(&self, username: &str, password: &str) -> String {
        let res = self.login(username, password).await;
        assert_eq!(res.status(), StatusCode::OK, "login");
        res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    }

    /// Creates a work item and returns it (asserting 201).
    pub async fn create_item(&self, user: &TestUser, body: Value) -> Value {
        let res = self.post_json("/api/work-items", Some(&user.token), &body).await;
        let status = res.status();
        let json: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "create: {json}");
        json
    }

    /// GET the feed; returns status, X-Cache and the parsed body.
    pub async fn feed(&self, user: &TestUser, query: &str) -> Feed {
        let res = self.get(&format!("/api/calendar/feed?{query}"), Some(&user.token)).await;
        Feed::read(res).await
    }

    /// A Redis connection for inspecting or sabotaging this app's keys
    /// (a cluster connection when the app runs on Redis Cluster).
    pub async fn redis(&self) -> TestRedis {
        match &self.cluster_nodes {
            Some(nodes) => {
                let client = redis::cluster::ClusterClient::new(nodes.clone()).unwrap();
                TestRedis::cluster(client.get_async_connection().await.unwrap())
            }
            None => {
                let client = redis::Client::open(self.redis_url.as_str()).unwrap();
                TestRedis::single(client.get_multiplexed_async_connection().await.unwrap())
            }
        }
    }

    pub fn keys(&self) -> calcache::cache::Keys {
        calcache::cache::Keys::new(self.prefix.clone())
    }

    /// Runs SQL against this app's database, as an operator would.
    pub async fn sql(&self, sql: &str) {
        let url = self.db_url.clone();
        let sql = sql.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut conn = PgConnection::establish(&url).unwrap();
            diesel::connection::SimpleConnection::batch_execute(&mut conn, &sql).unwrap();
        })
        .await
        .unwrap();
    }

    /// Invalidations waiting in this app's outbox.
    pub async fn outbox_depth(&self) -> i64 {
        let url = self.db_url.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = PgConnection::establish(&url).unwrap();
            calcache::db::outbox::backlog(&mut conn).unwrap().rows
        })
        .await
        .unwrap()
    }

    pub async fn metrics_text(&self) -> String {
        self.get("/metrics", None).await.text().await.unwrap()
    }
}

/// A feed answer.
#[derive(Debug)]
pub struct Feed {
    pub status: StatusCode,
    pub x_cache: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Feed {
    pub async fn read(res: Response) -> Self {
        let status = res.status();
        let headers = res.headers().clone();
        let x_cache = headers.get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let body = res.json().await.unwrap_or(Value::Null);
        Self { status, x_cache, headers, body }
    }

    /// Work item ids (uuids) in the feed, in order.
    pub fn ids(&self) -> Vec<String> {
        self.body
            .as_array()
            .map(|a| a.iter().map(|e| e["extendedProps"]["workItemId"].as_str().unwrap_or("").to_owned()).collect())
            .unwrap_or_default()
    }

    pub fn titles(&self) -> Vec<String> {
        self.body
            .as_array()
            .map(|a| a.iter().map(|e| e["title"].as_str().unwrap_or("").to_owned()).collect())
            .unwrap_or_default()
    }
}

/// The value of a counter sample in /metrics text (0 when absent).
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels).and_then(|rest| rest.trim().split(' ').next()?.parse().ok()))
        .unwrap_or(0.0)
}

/// Polls `check` until it returns true or `within` elapses.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
    }
}

pub const OCT: &str = "start=2026-10-01T00:00:00Z&end=2026-11-01T00:00:00Z";

pub fn item(title: &str, start: &str, end: &str) -> Value {
    json!({"title": title, "work_type": "task", "start": start, "end": end})
}

/// `host:port` of a `scheme://[user@]host:port/...` URL.
pub fn authority(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// The URL with its `host:port` replaced.
pub fn with_authority(url: &str, new: &str) -> String {
    url.replacen(&authority(url), new, 1)
}

impl TestApp {
    /// Runs a query against this app's database and returns its one text
    /// column (cast in SQL: `SELECT id::text …`).
    pub async fn sql_strings(&self, sql: &str) -> Vec<String> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            value: String,
        }
        let url = self.db_url.clone();
        let sql = sql.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut conn = PgConnection::establish(&url).unwrap();
            diesel::sql_query(sql).load::<Row>(&mut conn).unwrap().into_iter().map(|r| r.value).collect()
        })
        .await
        .unwrap()
    }
}

/// Sends `raw` bytes over a fresh TCP connection to `port`, then reads what
/// the server answers until it closes the connection or `within` elapses.
/// Returns the answer and how long the server took to end it (`None`: it
/// was still open at the deadline).
pub async fn raw_exchange(port: u16, raw: Vec<u8>, within: Duration) -> (String, Option<Duration>) {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let started = Instant::now();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(&raw).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 8192];
        while started.elapsed() < within {
            match stream.read(&mut buf) {
                Ok(0) => return (String::from_utf8_lossy(&answer).into_owned(), Some(started.elapsed())),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return (String::from_utf8_lossy(&answer).into_owned(), Some(started.elapsed())),
            }
        }
        (String::from_utf8_lossy(&answer).into_owned(), None)
    })
    .await
    .unwrap()
}

/// The Redis Cluster seed nodes when the suite runs against a cluster.
pub fn cluster_nodes() -> Option<Vec<String>> {
    let settings = base_settings();
    (settings.redis.mode == calcache::config::RedisMode::Cluster)
        .then(|| settings.redis.cluster_nodes.iter().map(|n| n.expose_secret().to_owned()).collect())
}

/// A test's own Redis connection: to the single Redis or to the cluster
/// (the application's own connection type).
pub type TestRedis = calcache::cache::Conn;
