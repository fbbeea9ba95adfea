//! Builds the application: pools, migrations, the HTTP server bound to its
//! listener, and the outbox drainer. `main` and the tests run exactly this.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, HttpServer, web};
use tokio::sync::Notify;
use tracing_actix_web::TracingLogger;

use crate::cache::{Cache, CacheError};
use crate::config::Settings;
use crate::db::{self, DbError, PgPool};
use crate::metrics::Metrics;
use crate::middleware::{json_errors, record_metrics, request_head};
use crate::routes::{self, extract::BODY_LIMIT, extract::BodyConfig};
use crate::service::{AppState, invalidation};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot bind {addr}")]
    Bind { addr: String, source: std::io::Error },
    #[error("database")]
    Db(#[from] DbError),
    #[error("redis")]
    Cache(#[from] CacheError),
    #[error("cannot start the server")]
    Io(#[from] std::io::Error),
    #[error("configuration")]
    Config(#[from] crate::config::ConfigError),
    #[error("redis server")]
    RedisServer(#[from] crate::cache::server::ServerCheckError),
}

pub struct Application {
    port: u16,
    server: Server,
    state: Arc<AppState>,
    shutdown: Arc<Notify>,
    drainer: tokio::task::JoinHandle<()>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// Builds the shared state: pools (not yet connected), metrics, cache.
pub fn build_state(settings: &Settings) -> Result<Arc<AppState>, StartupError> {
    build_parts(settings).map(|(state, _)| state)
}

type AuditSamples = tokio::sync::mpsc::Receiver<crate::service::audit::AuditSample>;

fn build_parts(settings: &Settings) -> Result<(Arc<AppState>, Option<AuditSamples>), StartupError> {
    let metrics = Arc::new(Metrics::new());
    let pool = db::build_pool(&settings.database, metrics.pool_observer());
    let cache = Cache::new(settings, metrics.clone())?;
    let (sampler, samples) = match settings.cache.audit_sample_rate.active() {
        Some(rate) => {
            let (sampler, samples) = crate::service::audit::Sampler::new(rate);
            (Some(sampler), Some(samples))
        }
        None => (None, None),
    };
    let hashing = crate::service::auth::HashLimiter::new(&settings.auth, metrics.clone());
    let changes = crate::service::changes::Hub::new(settings.stream.clone(), metrics.streams.clone());
    let state = Arc::new(AppState {
        pool,
        cache,
        metrics,
        auth: settings.auth.clone(),
        limits: settings.limits.clone(),
        hashing,
        draining: std::sync::atomic::AtomicBool::new(false),
        outbox: invalidation::OutboxSignal::default(),
        outbox_interval: settings.cache.outbox_interval,
        changes,
        audit: sampler,
    });
    Ok((state, samples))
}

/// Refuses a Redis too old for the commands calcache sends. A Redis that
/// does not answer at start is an outage like any other (the cache is
/// bypassed until it answers), so it only warns.
async fn check_redis_server(state: &AppState) -> Result<(), StartupError> {
    use crate::cache::server::ServerCheckError;
    match state.cache.check_server().await {
        Ok(version) => {
            tracing::info!(%version, "redis server version checked");
            Ok(())
        }
        Err(e @ ServerCheckError::TooOld { .. }) => Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %crate::error::Chain(&e), "redis server version not checked");
            Ok(())
        }
    }
}

/// SIGTERM or SIGINT: mark the process as draining (`/readyz` answers 503),
/// keep serving for `drain`, then stop gracefully (in-flight requests get
/// `server.shutdown_timeout_secs`). A second signal skips the rest of the
/// drain.
async fn stop_on_signal(state: Arc<AppState>, server: ServerHandle, drain: Duration) {
    if wait_for_stop_signal().await.is_err() {
        tracing::warn!("cannot listen for stop signals; stop the server through its handle");
        return;
    }
    state.draining.store(true, std::sync::atomic::Ordering::SeqCst);
    tracing::info!(drain_secs = drain.as_secs(), "stop requested: /readyz answers 503, then the listener closes");
    tokio::select! {
        () = tokio::time::sleep(drain) => {}
        _ = wait_for_stop_signal() => tracing::info!("second stop signal: draining cut short"),
    }
    // End the change streams first: actix's graceful stop would otherwise
    // wait out its shutdown timeout for streams that never finish.
    tracing::info!(streams = state.changes.open_streams(), "stopping: closing change streams");
    state.changes.shut_down();
    server.stop(true).await;
}

async fn wait_for_stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => Ok(()),
            r = tokio::signal::ctrl_c() => r,
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// Applies pending migrations (blocking pool).
pub async fn run_migrations(pool: &PgPool) -> Result<usize, DbError> {
    db::run(pool, db::migrate).await
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        // Again: callers (tests, `serve --port`) may have changed settings
        // since they were loaded.
        settings.check()?;
        let (state, audit) = build_parts(&settings)?;
        let applied = run_migrations(&state.pool).await?;
        if applied > 0 {
            tracing::info!(applied, "migrations applied");
        }
        check_redis_server(&state).await?;

        let addr = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&addr).map_err(|source| StartupError::Bind { addr: addr.clone(), source })?;
        let port = listener.local_addr()?.port();

        let body = BodyConfig { limit: BODY_LIMIT, timeout: settings.server.client_timeout };
        let data = web::Data::from(state.clone());
        let web_dir = routes::page::WebDir::new(settings.server.web_dir.clone());
        let missing = routes::page::missing_page_files(&web_dir);
        if !missing.is_empty() {
            // The API works without them; the calendar page does not.
            tracing::warn!(
                web_dir = %settings.server.web_dir.display(),
                missing = ?missing,
                "the calendar page's files are missing: run `npm ci` in web/ (it copies FullCalendar into \
                 web/assets/vendor/), or point server.web_dir at a directory that has them"
            );
        }
        let web_dir = web::Data::new(web_dir);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web_dir.clone())
                .app_data(body)
                .app_data(routes::query_config())
                .app_data(web::PayloadConfig::new(BODY_LIMIT))
                .wrap(from_fn(request_head))
                .wrap(ErrorHandlers::new().default_handler(json_errors))
                .wrap(from_fn(record_metrics))
                .wrap(TracingLogger::<crate::telemetry::RootSpan>::new())
                // The feed first: actix tries resources in order (again for
                // the metrics' route label), and the feed is most requests;
                // ahead of it, `/api/work-items/{id}` would cost a regex
                // match on every feed request.
                .configure(routes::feed::config)
                .configure(routes::changes::config)
                .configure(routes::health::config)
                .configure(routes::auth::config)
                .configure(routes::work_items::config)
                .configure(routes::openapi::config)
                .configure(routes::page::config)
                .default_service(web::to(routes::not_found))
        })
        .workers(settings.server.worker_count())
        // A slow request head gets the contract's JSON 408 from
        // `slow_head`; actix's own (empty) 408 is only the fallback.
        .on_connect(crate::middleware::slow_head::on_connect(settings.server.client_timeout))
        .client_request_timeout(settings.server.client_timeout.saturating_mul(4))
        .shutdown_timeout(settings.server.shutdown_timeout.as_secs())
        // Signals are ours (below): a stop first drains readiness.
        .disable_signals()
        .listen(listener)?
        .run();

        let mut background = vec![tokio::spawn(stop_on_signal(state.clone(), server.handle(), settings.server.drain))];
        if let Some(every) = settings.auth.session_prune_interval {
            background.push(tokio::spawn(crate::service::housekeeping::run_session_pruner(state.clone(), every)));
        }
        crate::service::changes::Hub::start(&state, &settings.redis)?;
        let shutdown = Arc::new(Notify::new());
        let drainer = tokio::spawn(invalidation::run_drainer(state.clone(), state.outbox_interval, shutdown.clone()));
        if let Some(samples) = audit {
            tokio::spawn(crate::service::audit::run_auditor(state.clone(), samples));
        }
        tracing::info!(%addr, port, workers = settings.server.worker_count(), "calcache listening");
        Ok(Self { port, server, state, shutdown, drainer, background })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Stops the server gracefully (what SIGTERM does).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGTERM/SIGINT or the handle), then lets
    /// in-flight requests finish and drains the outbox once more.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        for task in &self.background {
            task.abort();
        }
        self.shutdown.notify_one();
        if let Err(e) = self.drainer.await {
            tracing::warn!(error = %crate::error::Chain(&e), "outbox drainer ended abnormally");
        }
        tracing::info!("calcache stopped");
        result
    }
}

/// What `calcache config check` prints: the effective settings that shape
/// a deployment (no secrets), then warnings for settings that are valid
/// but probably not meant.
pub fn describe(settings: &Settings) -> String {
    use std::fmt::Write as _;
    let env = crate::config::environment();
    let s = settings;
    let mut out = String::new();
    let _ = writeln!(out, "environment: {env}");
    let _ = writeln!(
        out,
        "server: {}:{}, {} workers, drain {} s, shutdown timeout {} s",
        s.server.host,
        s.server.port,
        s.server.worker_count(),
        s.server.drain.as_secs(),
        s.server.shutdown_timeout.as_secs()
    );
    let _ = writeln!(out, "database: pool {} (min idle {})", s.database.pool_max_size, s.database.pool_min_idle);
    let connections = match s.redis.mode {
        crate::config::RedisMode::Single => format!("single, pool {}", s.redis_pool_size()),
        crate::config::RedisMode::Cluster => format!("cluster, {} seed node(s)", s.redis.cluster_nodes.len()),
    };
    let _ = writeln!(
        out,
        "redis: {connections}, prefix {:?}, timeout {} ms",
        s.redis.key_prefix.as_str(),
        s.redis.timeout.as_millis()
    );
    let _ = writeln!(out, "cache: {:?}, feed ttl {} s", s.cache.strategy, s.cache.feed_ttl.as_secs());
    let proxies: Vec<String> = s.auth.trusted_proxies.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        out,
        "auth: sign-up {}, secure cookies {}, client address from {}",
        if s.auth.signup_enabled { "on" } else { "off" },
        s.auth.cookie_secure,
        if s.auth.trust_forwarded_for {
            format!("X-Forwarded-For of {}", proxies.join(", "))
        } else {
            "the TCP peer".to_owned()
        }
    );
    let mut warn = |w: &str| {
        let _ = writeln!(out, "warning: {w}");
    };
    if env == "production" {
        if !s.auth.cookie_secure {
            warn("auth.cookie_secure is off in production: session cookies travel without TLS");
        }
        if s.auth.signup_enabled {
            warn("auth.signup_enabled is on in production: anyone who reaches the balancer can create accounts");
        }
        if s.server.drain.is_zero() {
            warn("server.drain_secs is 0: a stopping replica closes its listener before a balancer sees /readyz fail");
        }
    }
    if s.auth.session_prune_interval.is_none() {
        warn("auth.session_prune_interval_secs is 0: expired sessions pile up unless `calcache sessions prune` runs");
    }
    out
}

/// `config check --connect`: PostgreSQL answers, and Redis answers with a
/// version calcache supports.
pub async fn check_connections(settings: &Settings) -> Result<(), StartupError> {
    let state = build_state(settings)?;
    db::run(&state.pool, db::ping).await?;
    state.cache.check_server().await?;
    Ok(())
}
