//! The only door to PostgreSQL. Diesel is synchronous, so every query runs
//! on actix's blocking pool through [`run`], never on an async worker.

mod models;
pub mod outbox;
pub mod schema;
pub mod sessions;
pub mod users;
pub mod work_items;

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use secrecy::ExposeSecret;

use crate::config::DatabaseSettings;

pub use models::*;

pub type PgPool = Pool<ConnectionManager<PgConnection>>;
pub type PgConn = PooledConnection<ConnectionManager<PgConnection>>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had in time, or the connection broke: the
    /// database is down or overloaded. Answered as 503.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("unique constraint violated")]
    UniqueViolation(#[source] DieselError),
    #[error("foreign key constraint violated")]
    ForeignKeyViolation(#[source] DieselError),
    #[error("database query failed")]
    Query(#[source] DieselError),
    #[error("migration failed")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<DieselError> for DbError {
    fn from(e: DieselError) -> Self {
        match &e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => Self::UniqueViolation(e),
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => Self::ForeignKeyViolation(e),
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            ) => Self::Unavailable(Box::new(e)),
            // "canceling statement due to statement timeout" / "terminating
            // connection due to administrator command": an overloaded or
            // restarting server, not a bug in the query.
            DieselError::DatabaseError(_, info)
                if info.message().contains("statement timeout")
                    || info.message().contains("terminating connection") =>
            {
                Self::Unavailable(Box::new(e))
            }
            _ => Self::Query(e),
        }
    }
}

impl From<diesel::r2d2::PoolError> for DbError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

/// Sets the per-connection statement timeout when r2d2 opens a connection, so
/// one slow query cannot hold a pooled connection (and a request) forever.
#[derive(Debug)]
struct StatementTimeout(u64);

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for StatementTimeout {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!("SET statement_timeout = {}", self.0)).map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Reports the pool's life to metrics: how long checkouts wait, checkouts
/// that time out, and connections that cannot be opened (PostgreSQL down).
#[derive(Debug, Clone)]
pub struct PoolObserver {
    pub wait_seconds: prometheus_client::metrics::histogram::Histogram,
    pub errors: prometheus_client::metrics::counter::Counter,
}

impl diesel::r2d2::HandleEvent for PoolObserver {
    fn handle_checkout(&self, event: diesel::r2d2::event::CheckoutEvent) {
        self.wait_seconds.observe(event.duration().as_secs_f64());
    }

    fn handle_timeout(&self, event: diesel::r2d2::event::TimeoutEvent) {
        self.wait_seconds.observe(event.timeout().as_secs_f64());
        self.errors.inc();
    }
}

impl diesel::r2d2::HandleError<diesel::r2d2::Error> for PoolObserver {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        self.errors.inc();
        tracing::warn!(error = %error, "cannot open a PostgreSQL connection");
    }
}

/// Builds the pool without connecting: the first checkout connects, so a
/// process can start (and answer /healthz, /readyz) while PostgreSQL is down.
pub fn build_pool(settings: &DatabaseSettings, observer: PoolObserver) -> PgPool {
    let manager = ConnectionManager::<PgConnection>::new(settings.url.expose_secret());
    Pool::builder()
        .error_handler(Box::new(observer.clone()))
        .event_handler(Box::new(observer))
        .max_size(settings.pool_max_size)
        .min_idle(Some(settings.pool_min_idle.min(settings.pool_max_size)))
        .connection_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .connection_customizer(Box::new(StatementTimeout(settings.statement_timeout_ms)))
        .build_unchecked(manager)
}

/// Runs `f` with a pooled connection on the blocking thread pool. The
/// connection is checked out inside the closure, so a slow checkout never
/// blocks an async worker, and the caller's tracing span is kept.
pub async fn run<T, E, F>(pool: &PgPool, f: F) -> Result<T, E>
where
    F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    let pool = pool.clone();
    let span = tracing::Span::current();
    let joined = actix_web::web::block(move || {
        let _entered = span.enter();
        let mut conn = pool.get().map_err(DbError::from)?;
        f(&mut conn)
    })
    .await;
    match joined {
        Ok(result) => result,
        // The blocking task was cancelled (runtime shutting down).
        Err(e) => Err(DbError::Unavailable(Box::new(e)).into()),
    }
}

/// Applies pending migrations. Several processes starting together are safe:
/// an advisory lock makes them take turns, and the later ones find nothing to do.
pub fn migrate(conn: &mut PgConnection) -> Result<usize, DbError> {
    const LOCK_KEY: i64 = 0x6361_6c63_6163_6865; // "calcache"
    conn.batch_execute(&format!("SELECT pg_advisory_lock({LOCK_KEY})"))?;
    let applied = conn.run_pending_migrations(MIGRATIONS).map(|v| v.len()).map_err(DbError::Migration);
    conn.batch_execute(&format!("SELECT pg_advisory_unlock({LOCK_KEY})"))?;
    applied
}

/// Runs `f` in a transaction: committed if it returns `Ok`, rolled back otherwise.
pub fn transaction<T, E, F>(conn: &mut PgConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut PgConnection) -> Result<T, E>,
    E: From<DieselError>,
{
    use diesel::Connection as _;
    conn.transaction(f)
}

/// One cheap round trip, for /readyz.
pub fn ping(conn: &mut PgConnection) -> Result<(), DbError> {
    conn.batch_execute("SELECT 1").map_err(DbError::from)
}
