//! Use cases. Services own transactions and the order of effects (commit,
//! then invalidate); they talk to PostgreSQL through `db` and to Redis
//! through `cache`, and know nothing of HTTP.

pub mod audit;
pub mod auth;
pub mod changes;
pub mod feed;
pub mod housekeeping;
pub mod invalidation;
pub mod limits;
pub mod work_items;

use std::sync::Arc;

use crate::cache::{Cache, CacheError};
use crate::config::{AuthSettings, LimitsSettings};
use crate::db::{DbError, PgPool};
use crate::domain::ValidationError;
use crate::metrics::Metrics;

/// Everything a request handler needs, shared by all workers of a process.
#[derive(Debug)]
pub struct AppState {
    pub pool: PgPool,
    pub cache: Cache,
    pub metrics: Arc<Metrics>,
    pub auth: AuthSettings,
    /// Per-user limits (`[limits]`, see `limits`).
    pub limits: LimitsSettings,
    /// Bounds the password hashes running at once.
    pub hashing: auth::HashLimiter,
    /// Set when the process has been asked to stop: `/readyz` answers 503
    /// while requests are still served (`server.drain_secs`).
    pub draining: std::sync::atomic::AtomicBool,
    pub outbox: invalidation::OutboxSignal,
    /// The drainer's base interval (also the base of its backoff).
    pub outbox_interval: std::time::Duration,
    /// Open live change streams of this process.
    pub changes: changes::Hub,
    /// The freshness auditor's sampling of hits (`cache.audit_sample_rate`).
    pub audit: Option<audit::Sampler>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(&'static str),
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("wrong username or password")]
    InvalidCredentials,
    /// A throttle said no; `limit` names it when the answer should.
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64, limit: Option<Box<limits::LimitHit>> },
    /// A cap on what one user may have or be sent (409 `limit_exceeded`).
    #[error("limit exceeded: {}", .0.name)]
    LimitExceeded(Box<limits::LimitHit>),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A library that should not fail did (serialization, password
    /// hashing, the blocking pool, the OS's randomness): 500, with `source`
    /// in the logged chain.
    #[error("{what}")]
    Internal {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A bounded resource (password hashing slots) stayed busy: 503.
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
}

impl AppState {
    pub fn cache_timeout(&self) -> std::time::Duration {
        self.cache.timeout()
    }
}

impl ServiceError {
    /// [`ServiceError::Internal`]: `what` failed, because of `source`.
    pub fn internal(what: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal { what, source: source.into() }
    }
}

impl From<diesel::result::Error> for ServiceError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}
