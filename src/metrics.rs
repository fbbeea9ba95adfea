//! Prometheus metrics. One registry per `Application` (not a process-global
//! recorder), so each in-process test app counts only its own traffic.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

// Feed outcomes are `cache::FeedOutcome`, the type `X-Cache` is written
// from: one enum for the header and the label.
use crate::cache::FeedOutcome;

/// Label values are written in snake_case (`hit`, `deferred`), the
/// Prometheus convention, from each enum's `Debug` name.
macro_rules! snake_label {
    ($t:ty) => {
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                use std::fmt::Write as _;
                let name = format!("{self:?}");
                for (i, c) in name.chars().enumerate() {
                    if c.is_ascii_uppercase() {
                        if i > 0 {
                            encoder.write_char('_')?;
                        }
                        encoder.write_char(c.to_ascii_lowercase())?;
                    } else {
                        encoder.write_char(c)?;
                    }
                }
                Ok(())
            }
        }
    };
}

/// Every value of a label enum, so each series can be exported at zero
/// from start-up (rates and alerts then work before the first event).
trait AllValues: Sized + 'static {
    const ALL: &'static [Self];
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: FeedOutcome,
}

/// Why a user's cached feeds were invalidated.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum InvalidationCause {
    Create,
    Update,
    Delete,
    Logout,
    /// Applied later by the outbox drainer.
    Outbox,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum InvalidationResult {
    /// Reached Redis right after the commit.
    Applied,
    /// Redis failed; left in the outbox for the drainer.
    Deferred,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvalidationLabels {
    pub cause: InvalidationCause,
    pub result: InvalidationResult,
}

snake_label!(FeedOutcome);
snake_label!(InvalidationCause);
snake_label!(InvalidationResult);

impl AllValues for FeedOutcome {
    const ALL: &'static [Self] = &[Self::Hit, Self::Miss, Self::Bypass];
}
impl AllValues for InvalidationCause {
    const ALL: &'static [Self] = &[Self::Create, Self::Update, Self::Delete, Self::Logout, Self::Outbox];
}
impl AllValues for InvalidationResult {
    const ALL: &'static [Self] = &[Self::Applied, Self::Deferred];
}

/// A miss that waited for another request's fill instead of querying.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum StampedeWait {
    /// For a request of this process (single-flight).
    Process,
    /// For another process holding the fill lease.
    Lease,
}
snake_label!(StampedeWait);
impl AllValues for StampedeWait {
    const ALL: &'static [Self] = &[Self::Process, Self::Lease];
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StampedeLabels {
    pub waited_for: StampedeWait,
}

/// What the freshness auditor concluded about one sampled hit.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum AuditResult {
    Match,
    Mismatch,
    /// The version moved (or a dependency failed): the sample proves nothing.
    Skipped,
}
snake_label!(AuditResult);
impl AllValues for AuditResult {
    const ALL: &'static [Self] = &[Self::Match, Self::Mismatch, Self::Skipped];
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditLabels {
    pub result: AuditResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    /// The route pattern (`/api/work-items/{id}`), never the raw path, so
    /// the label set stays bounded.
    pub route: String,
    /// `2xx`, `4xx`, …
    pub status: &'static str,
}

impl RequestLabels {
    /// Label values without allocating: the methods the API has, and the
    /// status classes. Anything else (a client's invented method) is `other`,
    /// so the label set stays bounded.
    pub fn new(method: &actix_web::http::Method, route: String, status: u16) -> Self {
        use actix_web::http::Method;
        let method = match *method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            Method::PUT => "PUT",
            Method::HEAD => "HEAD",
            Method::OPTIONS => "OPTIONS",
            _ => "other",
        };
        let status = match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        Self { method, route, status }
    }
}

/// Why a login or sign-up was turned away before its password was hashed.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum AuthRefusal {
    /// A login over a (username, client) or per-client limit: 429.
    LoginThrottled,
    /// A sign-up over the per-client limit: 429.
    SignupThrottled,
    /// Every password hashing slot stayed busy: 503.
    HashingBusy,
}
snake_label!(AuthRefusal);
impl AllValues for AuthRefusal {
    const ALL: &'static [Self] = &[Self::LoginThrottled, Self::SignupThrottled, Self::HashingBusy];
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthRefusalLabels {
    pub reason: AuthRefusal,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabels {
    pub dependency: &'static str,
}

/// The dependencies `calcache_dependency_errors_total` counts.
pub const DEPENDENCIES: [&str; 2] = ["redis", "postgres"];

/// How a Redis call (`Cache::run`) ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    Error,
    Timeout,
}
snake_label!(CallOutcome);
impl AllValues for CallOutcome {
    const ALL: &'static [Self] = &[Self::Ok, Self::Error, Self::Timeout];
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub outcome: CallOutcome,
}

/// `calcache_build_info`'s labels: the crate version, and the git commit
/// when the build set `CALCACHE_GIT_SHA` (else `unknown`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub revision: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn redis_call_histogram() -> Histogram {
    // 100 µs .. ~1.6 s (the call timeout bounds the top).
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

/// The Redis call histograms, one per outcome, taken once so that
/// `Cache::run` observes without a family look-up.
#[derive(Debug, Clone)]
pub struct RedisCallSeconds {
    pub ok: Histogram,
    pub error: Histogram,
    pub timeout: Histogram,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~6.5 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub feed_requests: Family<OutcomeLabels, Counter>,
    pub invalidations: Family<InvalidationLabels, Counter>,
    /// Feed queries sent to PostgreSQL (cache misses and bypasses).
    pub feed_db_queries: Counter,
    /// Commands and pipelines sent to Redis (each one round trip).
    pub redis_round_trips: Counter,
    pub dependency_errors: Family<DependencyLabels, Counter>,
    pub outbox_depth: Gauge,
    /// Age of the oldest invalidation waiting in the outbox (0 when empty).
    pub outbox_oldest_seconds: Gauge,
    /// Writes refused before their transaction because their fence could not
    /// be raised in Redis (nothing was changed; the client got 503).
    pub writes_refused: Counter,
    pub stampede_waits: Family<StampedeLabels, Counter>,
    pub audits: Family<AuditLabels, Counter>,
    /// PostgreSQL pool: connections open and idle (sampled by the drainer).
    pub db_pool_connections: Gauge,
    pub db_pool_idle: Gauge,
    pub db_pool_wait: Histogram,
    pub http_requests: HistogramFamily<RequestLabels>,
    pub auth_refusals: Family<AuthRefusalLabels, Counter>,
    pub sessions_pruned: Counter,
    /// Live change streams (`service::changes`).
    pub streams: crate::service::changes::StreamMetrics,
    /// 1 while the Redis circuit breaker is open (calls refused locally).
    pub redis_circuit_open: Gauge,
    /// Latency of each Redis call (`Cache::run`), by outcome.
    pub redis_call_seconds: RedisCallSeconds,
    /// Latency of each PostgreSQL unit of work (`db::run`): checkout,
    /// queries and commit.
    pub db_query_seconds: Histogram,
    /// The near cache (`cache::near`).
    pub near: crate::cache::NearMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("calcache");
        let feed_requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "feed_cache_requests",
            "Feed requests by cache outcome (hit, miss, bypass)",
            feed_requests.clone(),
        );
        let invalidations = Family::<InvalidationLabels, Counter>::default();
        registry.register(
            "feed_cache_invalidations",
            "Per-user invalidations (version bumps, session revocations) by cause and result",
            invalidations.clone(),
        );
        let feed_db_queries = Counter::default();
        registry.register("feed_db_queries", "Feed queries sent to PostgreSQL", feed_db_queries.clone());
        let redis_round_trips = Counter::default();
        registry.register(
            "redis_round_trips",
            "Commands and pipelines sent to Redis, each one round trip (a cached feed costs one)",
            redis_round_trips.clone(),
        );
        let dependency_errors = Family::<DependencyLabels, Counter>::default();
        registry.register(
            "dependency_errors",
            "Failed calls to Redis or PostgreSQL (timeouts, refused connections, errors)",
            dependency_errors.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            "invalidation_outbox_depth",
            "Invalidations waiting in the outbox (as last seen by this process)",
            outbox_depth.clone(),
        );
        let outbox_oldest_seconds = Gauge::default();
        registry.register(
            "invalidation_outbox_oldest_seconds",
            "Age of the oldest invalidation waiting in the outbox (0 when empty); growing means nobody can apply it",
            outbox_oldest_seconds.clone(),
        );
        let writes_refused = Counter::default();
        registry.register(
            "writes_refused_fence",
            "Writes answered 503 before their transaction because their write fence could not be raised in Redis",
            writes_refused.clone(),
        );
        let stampede_waits = Family::<StampedeLabels, Counter>::default();
        registry.register(
            "feed_cache_stampede_waits",
            "Misses that waited for another request's fill (process single-flight or cross-process lease)",
            stampede_waits.clone(),
        );
        let audits = Family::<AuditLabels, Counter>::default();
        registry.register(
            "freshness_audits",
            "Sampled cache hits re-checked against PostgreSQL, by result (a mismatch is a stale hit)",
            audits.clone(),
        );
        let db_pool_connections = Gauge::default();
        registry.register("db_pool_connections", "PostgreSQL pool connections open", db_pool_connections.clone());
        let db_pool_idle = Gauge::default();
        registry.register("db_pool_idle_connections", "PostgreSQL pool connections idle", db_pool_idle.clone());
        let db_pool_wait = Histogram::new(exponential_buckets(0.00001, 4.0, 10));
        registry.register(
            "db_pool_wait_seconds",
            "Time requests waited to check a PostgreSQL connection out of the pool",
            db_pool_wait.clone(),
        );
        let http_requests: HistogramFamily<RequestLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Request latency by method, route and status class",
            http_requests.clone(),
        );
        let auth_refusals = Family::<AuthRefusalLabels, Counter>::default();
        registry.register(
            "auth_refusals",
            "Logins and sign-ups turned away before hashing: throttled (429) or no hashing slot (503)",
            auth_refusals.clone(),
        );
        let sessions_pruned = Counter::default();
        registry.register("sessions_pruned", "Expired sessions deleted by housekeeping", sessions_pruned.clone());
        let streams = crate::service::changes::StreamMetrics::register(&mut registry);
        let near = crate::cache::NearMetrics::register(&mut registry);
        let redis_circuit_open = Gauge::default();
        registry.register(
            "redis_circuit_open",
            "1 while the Redis circuit breaker is open and Redis calls are refused without trying, else 0",
            redis_circuit_open.clone(),
        );
        let redis_calls: HistogramFamily<CallLabels> = Family::new_with_constructor(redis_call_histogram);
        registry.register(
            "redis_call_duration_seconds",
            "Latency of Redis calls (one command or pipeline, connection included) by outcome: ok, error, timeout",
            redis_calls.clone(),
        );
        let redis_call = |outcome| redis_calls.get_or_create(&CallLabels { outcome }).clone();
        let redis_call_seconds = RedisCallSeconds {
            ok: redis_call(CallOutcome::Ok),
            error: redis_call(CallOutcome::Error),
            timeout: redis_call(CallOutcome::Timeout),
        };
        // 1 ms .. ~4.1 s, then +Inf (the request deadline bounds the top).
        let db_query_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 13));
        registry.register(
            "db_query_duration_seconds",
            "Latency of PostgreSQL work units (pool checkout, queries, commit), as the caller waited for them",
            db_query_seconds.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register("build_info", "Build of this process (always 1)", build_info.clone());
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                revision: option_env!("CALCACHE_GIT_SHA").unwrap_or("unknown"),
            })
            .set(1);

        // Every series with known label values, at zero from start-up.
        for &outcome in FeedOutcome::ALL {
            let _ = feed_requests.get_or_create(&OutcomeLabels { outcome });
        }
        for &cause in InvalidationCause::ALL {
            for &result in InvalidationResult::ALL {
                let _ = invalidations.get_or_create(&InvalidationLabels { cause, result });
            }
        }
        for dependency in DEPENDENCIES {
            let _ = dependency_errors.get_or_create(&DependencyLabels { dependency });
        }
        for &waited_for in StampedeWait::ALL {
            let _ = stampede_waits.get_or_create(&StampedeLabels { waited_for });
        }
        for &result in AuditResult::ALL {
            let _ = audits.get_or_create(&AuditLabels { result });
        }
        for &reason in AuthRefusal::ALL {
            let _ = auth_refusals.get_or_create(&AuthRefusalLabels { reason });
        }
        Self {
            registry,
            feed_requests,
            invalidations,
            feed_db_queries,
            redis_round_trips,
            dependency_errors,
            outbox_depth,
            outbox_oldest_seconds,
            writes_refused,
            stampede_waits,
            audits,
            db_pool_connections,
            db_pool_idle,
            db_pool_wait,
            http_requests,
            auth_refusals,
            sessions_pruned,
            streams,
            redis_circuit_open,
            redis_call_seconds,
            db_query_seconds,
            near,
        }
    }

    pub fn auth_refused(&self, reason: AuthRefusal) {
        self.auth_refusals.get_or_create(&AuthRefusalLabels { reason }).inc();
    }

    pub fn feed_outcome(&self, outcome: FeedOutcome) {
        self.feed_requests.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn invalidated(&self, cause: InvalidationCause, result: InvalidationResult, users: usize) {
        self.invalidations.get_or_create(&InvalidationLabels { cause, result }).inc_by(users as u64);
    }

    pub fn audited(&self, result: AuditResult) {
        self.audits.get_or_create(&AuditLabels { result }).inc();
    }

    pub fn stampede_wait(&self, waited_for: StampedeWait) {
        self.stampede_waits.get_or_create(&StampedeLabels { waited_for }).inc();
    }

    /// What the PostgreSQL pool reports to.
    pub fn pool_observer(&self) -> crate::db::PoolObserver {
        crate::db::PoolObserver {
            wait_seconds: self.db_pool_wait.clone(),
            errors: self.dependency_errors.get_or_create(&DependencyLabels { dependency: "postgres" }).clone(),
            query_seconds: self.db_query_seconds.clone(),
        }
    }

    pub fn dependency_error(&self, dependency: &'static str) {
        self.dependency_errors.get_or_create(&DependencyLabels { dependency }).inc();
    }

    /// OpenMetrics text (what Prometheus scrapes).
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
