//! The only door to PostgreSQL. Diesel is synchronous, so every query runs
//! on actix's blocking pool through [`run`], never on an async worker.

mod models;
pub mod outbox;
pub mod schema;
pub mod sessions;
mod types;
pub mod users;
pub mod work_items;

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use secrecy::ExposeSecret;

use crate::config::DatabaseSettings;

pub use models::*;
pub use types::UnknownValue;

/// The connection pool, with the deadline every [`run`] gets.
#[derive(Clone)]
pub struct PgPool {
    inner: Pool<ConnectionManager<PgConnection>>,
    deadline: Duration,
    /// How long each [`run`] took, as its caller waited for it.
    query_seconds: prometheus_client::metrics::histogram::Histogram,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool").field("deadline", &self.deadline).finish_non_exhaustive()
    }
}

impl PgPool {
    /// Open and idle connections.
    pub fn state(&self) -> diesel::r2d2::State {
        self.inner.state()
    }

    /// The bound on one [`run`]: checkout, queries and commit.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}

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
    /// A value PostgreSQL holds does not map to its domain type (an enum
    /// text none of its variants has, see [`UnknownValue`]): data written
    /// around calcache, answered as 500 with the value in the logged cause.
    #[error("a value read from PostgreSQL does not map to its domain type")]
    Unreadable(#[source] DieselError),
    #[error("migration failed")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The deadline passed (or the connection broke) after COMMIT was sent:
    /// the change may or may not have been saved.
    #[error("database did not confirm the commit")]
    OutcomeUnknown(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// PostgreSQL did not answer within the deadline.
#[derive(Debug, thiserror::Error)]
#[error("no answer from PostgreSQL within {0:?}")]
pub struct DeadlinePassed(Duration);

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
            DieselError::DeserializationError(_) => Self::Unreadable(e),
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
struct StatementTimeout(Duration);

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for StatementTimeout {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!("SET statement_timeout = {}", self.0.as_millis()))
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Reports the pool's life to metrics: how long checkouts wait, checkouts
/// that time out, and connections that cannot be opened (PostgreSQL down).
#[derive(Debug, Clone)]
pub struct PoolObserver {
    pub wait_seconds: prometheus_client::metrics::histogram::Histogram,
    pub errors: prometheus_client::metrics::counter::Counter,
    /// Observed by [`run`]: the whole unit of work, checkout included.
    pub query_seconds: prometheus_client::metrics::histogram::Histogram,
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
        tracing::warn!(error = %crate::error::Chain(&error), "cannot open a PostgreSQL connection");
    }
}

/// libpq parameters that bound a connection on a network that drops packets
/// (no reset, no FIN), where the server-side `statement_timeout` never
/// fires: connecting gives up after `connect_timeout`, and an established
/// connection is closed by the kernel once sent data stays unacknowledged
/// for `tcp_user_timeout` or the peer stops answering keepalive probes. The
/// request itself is bounded by [`run`]'s deadline; these free the blocked
/// thread and the pooled connection soon after. Parameters the URL already
/// sets are left as they are.
pub fn with_network_bounds(url: &str, settings: &DatabaseSettings) -> String {
    // Whole seconds, and libpq reads 1 as 2 anyway.
    let connect_secs = settings.connect_timeout.as_millis().div_ceil(1000).max(2);
    // Not below a second: a short request deadline must not make the
    // kernel give up on a connection that is merely slow.
    let user_timeout_ms = settings.request_timeout.as_millis().max(1000);
    let params = [
        ("connect_timeout", connect_secs.to_string()),
        ("keepalives", "1".to_string()),
        ("keepalives_idle", "5".to_string()),
        ("keepalives_interval", "2".to_string()),
        ("keepalives_count", "2".to_string()),
        ("tcp_user_timeout", user_timeout_ms.to_string()),
    ];
    let mut out = url.to_string();
    for (name, value) in params {
        let set = url.split(['?', '&']).skip(1).any(|p| p.split('=').next() == Some(name));
        if !set {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(name);
            out.push('=');
            out.push_str(&value);
        }
    }
    out
}

/// Builds the pool without connecting: the first checkout connects, so a
/// process can start (and answer /healthz, /readyz) while PostgreSQL is down.
pub fn build_pool(settings: &DatabaseSettings, observer: PoolObserver) -> PgPool {
    let query_seconds = observer.query_seconds.clone();
    let manager = ConnectionManager::<PgConnection>::new(with_network_bounds(settings.url.expose_secret(), settings));
    let inner = Pool::builder()
        .error_handler(Box::new(observer.clone()))
        .event_handler(Box::new(observer))
        .max_size(settings.pool_max_size.get())
        .min_idle(Some(settings.pool_min_idle))
        .connection_timeout(settings.connect_timeout)
        .connection_customizer(Box::new(StatementTimeout(settings.statement_timeout)))
        .build_unchecked(manager);
    PgPool { inner, deadline: settings.request_timeout, query_seconds }
}

/// Where a [`run`] stands, so that its deadline and its commit cannot both
/// win: either the deadline cancels the run before COMMIT is sent (and the
/// transaction rolls back, whenever PostgreSQL hears of it), or COMMIT is
/// sent first (and a deadline passing after that means the outcome is
/// unknown, which is what the caller is told).
#[derive(Debug, Default)]
struct CommitGuard(AtomicU8);

const RUNNING: u8 = 0;
const COMMITTING: u8 = 1;
const CANCELLED: u8 = 2;

impl CommitGuard {
    fn try_commit(&self) -> bool {
        self.0.compare_exchange(RUNNING, COMMITTING, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }

    fn cancel(&self) -> bool {
        self.0.compare_exchange(RUNNING, CANCELLED, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }
}

thread_local! {
    /// The guard of the [`run`] this blocking thread is executing.
    static GUARD: RefCell<Option<Arc<CommitGuard>>> = const { RefCell::new(None) };
}

/// Runs `f` with a pooled connection on the blocking thread pool. The
/// connection is checked out inside the closure, so a slow checkout never
/// blocks an async worker, and the caller's tracing span is kept.
///
/// The caller gets an answer within the pool's deadline whatever the network
/// does: past it, `DbError::Unavailable` if no transaction of `f` had sent
/// COMMIT (and none will: see [`CommitGuard`]), `DbError::OutcomeUnknown` if
/// one had. The blocking thread may go on until the connection gives up
/// (see [`with_network_bounds`]).
pub async fn run<T, E, F>(pool: &PgPool, f: F) -> Result<T, E>
where
    F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    let inner = pool.inner.clone();
    let span = tracing::Span::current();
    let guard = Arc::new(CommitGuard::default());
    let theirs = guard.clone();
    let blocking = actix_web::web::block(move || {
        let _entered = span.enter();
        GUARD.with(|g| *g.borrow_mut() = Some(theirs));
        let result = inner.get().map_err(DbError::from).map_err(E::from).and_then(|mut conn| f(&mut conn));
        GUARD.with(|g| *g.borrow_mut() = None);
        result
    });
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(pool.deadline, blocking).await;
    pool.query_seconds.observe(started.elapsed().as_secs_f64());
    match outcome {
        Ok(Ok(result)) => result,
        // The blocking task was cancelled (runtime shutting down).
        Ok(Err(e)) => Err(DbError::Unavailable(Box::new(e)).into()),
        Err(_) if guard.cancel() => {
            tracing::warn!(deadline = ?pool.deadline, "PostgreSQL did not answer in time");
            Err(DbError::Unavailable(Box::new(DeadlinePassed(pool.deadline))).into())
        }
        Err(_) => {
            tracing::error!(deadline = ?pool.deadline, "PostgreSQL did not confirm a commit in time; outcome unknown");
            Err(DbError::OutcomeUnknown(Box::new(DeadlinePassed(pool.deadline))).into())
        }
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

/// Runs `f` in a transaction: committed if it returns `Ok`, rolled back
/// otherwise — also when the [`run`] it belongs to has passed its deadline
/// by the time `f` is done (the caller was told nothing changed). A COMMIT
/// that fails on a broken connection is `DbError::OutcomeUnknown`.
pub fn transaction<T, E, F>(conn: &mut PgConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut PgConnection) -> Result<T, E>,
    E: From<DieselError> + From<DbError>,
{
    use diesel::connection::TransactionManager as _;
    type Manager = <PgConnection as diesel::Connection>::TransactionManager;
    let guard = GUARD.with(|g| g.borrow().clone());
    Manager::begin_transaction(conn)?;
    let value = match f(conn) {
        Ok(value) => value,
        Err(e) => {
            let _ = Manager::rollback_transaction(conn);
            return Err(e);
        }
    };
    if let Some(guard) = &guard
        && !guard.try_commit()
    {
        // Too late: the caller was already told that nothing changed.
        let _ = Manager::rollback_transaction(conn);
        return Err(DbError::Unavailable(Box::new(DeadlinePassed(Duration::ZERO))).into());
    }
    match Manager::commit_transaction(conn) {
        Ok(()) => Ok(value),
        // PostgreSQL answered, and its answer was no: nothing was saved.
        Err(e @ DieselError::DatabaseError(kind, _))
            if !matches!(kind, DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand) =>
        {
            Err(e.into())
        }
        // No answer to COMMIT: it may have been applied.
        Err(e) => Err(DbError::OutcomeUnknown(Box::new(e)).into()),
    }
}

/// One cheap round trip, for /readyz.
pub fn ping(conn: &mut PgConnection) -> Result<(), DbError> {
    conn.batch_execute("SELECT 1").map_err(DbError::from)
}
