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
}

pub struct Application {
    port: u16,
    server: Server,
    state: Arc<AppState>,
    shutdown: Arc<Notify>,
    drainer: tokio::task::JoinHandle<()>,
}

/// Builds the shared state: pools (not yet connected), metrics, cache.
pub fn build_state(settings: &Settings) -> Result<Arc<AppState>, StartupError> {
    build_parts(settings).map(|(state, _)| state)
}

type AuditSamples = tokio::sync::mpsc::Receiver<crate::cache::AuditSample>;

fn build_parts(settings: &Settings) -> Result<(Arc<AppState>, Option<AuditSamples>), StartupError> {
    let metrics = Arc::new(Metrics::new());
    let pool = db::build_pool(&settings.database, metrics.pool_observer());
    let mut cache = Cache::new(&settings.redis, &settings.cache, metrics.clone())?;
    let audit = (settings.cache.audit_sample_rate > 0.0).then(|| cache.enable_audit(settings.cache.audit_sample_rate));
    let state = Arc::new(AppState {
        pool,
        cache,
        metrics,
        auth: settings.auth.clone(),
        outbox: invalidation::OutboxSignal::default(),
        outbox_interval: Duration::from_millis(settings.cache.outbox_interval_ms.max(10)),
    });
    Ok((state, audit))
}

/// Applies pending migrations (blocking pool).
pub async fn run_migrations(pool: &PgPool) -> Result<usize, DbError> {
    db::run(pool, db::migrate).await
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let (state, audit) = build_parts(&settings)?;
        let applied = run_migrations(&state.pool).await?;
        if applied > 0 {
            tracing::info!(applied, "migrations applied");
        }

        let addr = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&addr).map_err(|source| StartupError::Bind { addr: addr.clone(), source })?;
        let port = listener.local_addr()?.port();

        let body = BodyConfig { limit: BODY_LIMIT, timeout: Duration::from_millis(settings.server.client_timeout_ms) };
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
        .on_connect(crate::middleware::slow_head::on_connect(Duration::from_millis(settings.server.client_timeout_ms)))
        .client_request_timeout(Duration::from_millis(settings.server.client_timeout_ms.saturating_mul(2)))
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        .listen(listener)?
        .run();

        let shutdown = Arc::new(Notify::new());
        let drainer = tokio::spawn(invalidation::run_drainer(state.clone(), state.outbox_interval, shutdown.clone()));
        if let Some(samples) = audit {
            tokio::spawn(crate::service::audit::run_auditor(state.clone(), samples));
        }
        tracing::info!(%addr, port, workers = settings.server.worker_count(), "calcache listening");
        Ok(Self { port, server, state, shutdown, drainer })
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
        self.shutdown.notify_one();
        if let Err(e) = self.drainer.await {
            tracing::warn!(error = %e, "outbox drainer ended abnormally");
        }
        tracing::info!("calcache stopped");
        result
    }
}
