//! The shared Redis cache. Nothing outside this module sees a Redis
//! connection: routes and services ask for a feed read-through, a session
//! check or an invalidation, and get an answer that is always correct — from
//! Redis when it can vouch for it, from PostgreSQL (`Bypass`) when it cannot.

mod body;
mod breaker;
pub mod buckets;
pub mod changes;
mod feed;
mod fence;
pub mod keys;
mod ratelimit;
mod restarts;
pub mod server;
mod sessions;
mod version;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use deadpool_redis::{Pool, Runtime};
use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use secrecy::ExposeSecret;

use crate::config::{CacheSettings, CacheStrategy, RedisMode, RedisSettings};
use crate::domain::UserId;
use crate::metrics::Metrics;
pub use body::FeedBody;
pub use breaker::Breaker;
use breaker::Permit;
pub use buckets::{Buckets, Extent};
pub use feed::FeedOutcome;
pub use fence::{Fence, fence_ttl};
pub use keys::{FeedParams, Keys};
pub use ratelimit::{Admission, LoginLimits};
pub use sessions::SessionState;

/// A multiplexed Redis connection (cheap to clone, shared by requests): to
/// one Redis, or to a Redis Cluster. The cluster connection routes each
/// command (and each pipeline, by its first key) to the master owning the
/// slot, follows MOVED/ASK, and refreshes the slot map after a failover.
/// A cluster pipeline must stay within one slot: redis-rs rejects a
/// cross-slot pipeline with `CrossSlot` instead of splitting it, so ops
/// that touch several users send one pipeline per user.
///
/// The application's connections count what they send (one command or one
/// pipeline = one round trip) into `calcache_redis_round_trips_total`: the
/// cost of the hit path, watched in production and asserted in tests.
#[derive(Clone)]
pub struct Conn {
    link: Link,
    trips: Option<prometheus_client::metrics::counter::Counter>,
}

#[derive(Clone)]
enum Link {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    /// An uncounted connection to one Redis (tests, tools).
    pub fn single(c: redis::aio::MultiplexedConnection) -> Self {
        Self { link: Link::Single(c), trips: None }
    }

    /// An uncounted connection to a Redis Cluster (tests, tools).
    pub fn cluster(c: redis::cluster_async::ClusterConnection) -> Self {
        Self { link: Link::Cluster(c), trips: None }
    }

    fn counted(mut self, trips: prometheus_client::metrics::counter::Counter) -> Self {
        self.trips = Some(trips);
        self
    }

    fn count_trip(&self) {
        if let Some(t) = &self.trips {
            t.inc();
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.link {
            Link::Single(_) => "Conn::Single(..)",
            Link::Cluster(_) => "Conn::Cluster(..)",
        })
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.count_trip();
        match &mut self.link {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.count_trip();
        match &mut self.link {
            Link::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

/// Where connections come from. Single Redis: a deadpool pool (health-
/// checked, fresh connections after a failure). Cluster: the cluster client
/// itself, without deadpool — a `ClusterConnection` already multiplexes,
/// keeps one connection per node, reconnects and follows failovers, so a
/// pool of them would add nothing but another layer of retries.
enum Backend {
    Single(Pool),
    Cluster(Box<redis::cluster::ClusterClient>),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "Backend::Single(..)",
            Self::Cluster(_) => "Backend::Cluster(..)",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis circuit is open after recent failures")]
    CircuitOpen,
    #[error("redis did not answer in time")]
    Timeout,
    #[error("no redis connection")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("redis command failed")]
    Redis(#[from] RedisError),
    #[error("cannot create the redis pool")]
    Create(#[from] deadpool_redis::CreatePoolError),
    #[error("version bump acknowledged by {acked} of {wanted} replicas")]
    NotReplicated { acked: u32, wanted: u32 },
}

/// One invalidation to apply: bump a user's feed version (and lower the
/// write's fence, once the bump is in), or tombstone a revoked session's
/// cached validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// `extents`: what the changed item covered before and after the write,
    /// for the `bucketed` strategy; `None` bumps the user-wide version
    /// (which every strategy with versions honours).
    FeedVersion {
        user: UserId,
        fence: Option<Fence>,
        extents: Option<Vec<Extent>>,
    },
    Session {
        user: UserId,
        token_hash: Vec<u8>,
    },
}

impl Invalidation {
    pub fn user(&self) -> UserId {
        match self {
            Self::FeedVersion { user, .. } | Self::Session { user, .. } => *user,
        }
    }
}

thread_local! {
    /// Redis calls of this thread that timed out in a row (see `Cache::run`).
    static TIMEOUT_STREAK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// A pooled connection kept checked out while a thread uses it.
struct Held(deadpool_redis::Connection);

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held(..)")
    }
}

#[derive(Debug)]
pub struct Cache {
    backend: Backend,
    /// Cluster mode: replicas that must acknowledge a bump (`WAIT`), and
    /// how long to wait for them.
    wait_replicas: u32,
    keys: Keys,
    timeout: Duration,
    strategy: CacheStrategy,
    /// `bucketed` strategy: the bucket width.
    buckets: Option<Buckets>,
    feed_ttl_secs: u64,
    session_ttl_secs: u64,
    /// How long a write fence outlives its latest write (see `fence.rs`).
    fence_ttl: Duration,
    /// After a Redis restart that loaded old data (`restarts.rs`).
    distrust: restarts::Distrust,
    breaker: Breaker,
    read_path: feed::ReadPath,
    shared: Mutex<HashMap<ThreadId, Conn>>,
    held: Mutex<HashMap<ThreadId, Held>>,
    reconnecting: tokio::sync::Mutex<()>,
    /// How long a request waits for another to fill the entry it needs.
    fill_wait: Duration,
    audit: Option<(f64, tokio::sync::mpsc::Sender<AuditSample>)>,
    metrics: Arc<Metrics>,
}

/// A served hit, for the freshness auditor to re-check.
#[derive(Debug, Clone)]
pub struct AuditSample {
    pub user: UserId,
    pub params: FeedParams,
    pub version: u64,
    /// `bucketed`: the bucket versions the entry carried.
    pub buckets: Vec<u64>,
    pub body: bytes::Bytes,
}

impl Cache {
    /// Builds the pool without connecting: Redis may be down at start.
    /// `db_deadline` bounds a request's PostgreSQL work (it bounds how long a
    /// fill can take, and so how long a write fence must last).
    pub fn new(
        redis: &RedisSettings,
        cache: &CacheSettings,
        db_deadline: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, CacheError> {
        let backend = match redis.mode {
            RedisMode::Single => {
                let mut cfg = deadpool_redis::Config::from_url(redis.url.expose_secret());
                let mut pool_cfg = deadpool_redis::PoolConfig::new(redis.pool_max_size);
                pool_cfg.timeouts.wait = Some(redis.timeout());
                pool_cfg.timeouts.create = Some(redis.timeout());
                pool_cfg.timeouts.recycle = Some(redis.timeout());
                cfg.pool = Some(pool_cfg);
                Backend::Single(cfg.create_pool(Some(Runtime::Tokio1))?)
            }
            RedisMode::Cluster => {
                let nodes: Vec<&str> = redis.cluster_nodes.iter().map(|n| n.expose_secret()).collect();
                // `build` only parses the seed list; connecting happens on
                // first use, so the cluster may be down at start.
                let client = redis::cluster::ClusterClientBuilder::new(nodes)
                    .connection_timeout(redis.timeout())
                    .response_timeout(redis.timeout())
                    .build()?;
                Backend::Cluster(Box::new(client))
            }
        };
        // How long an entry can outlive the version it was read under: its
        // TTL after a fill (lookup, lease wait, query, store).
        let entry_lifetime = fence_ttl(
            Duration::from_secs(cache.feed_ttl_secs.max(1)),
            redis.timeout() * 2 + Duration::from_millis(cache.fill_wait_ms) + db_deadline,
        );
        Ok(Self {
            backend,
            wait_replicas: match redis.mode {
                RedisMode::Single => 0,
                RedisMode::Cluster => redis.cluster_wait_replicas,
            },
            keys: match cache.strategy {
                CacheStrategy::Bucketed => Keys::new(redis.key_prefix.clone()).bucketed(cache.bucket_days),
                _ => Keys::new(redis.key_prefix.clone()),
            },
            timeout: redis.timeout(),
            strategy: cache.strategy,
            buckets: (cache.strategy == CacheStrategy::Bucketed).then(|| Buckets::new(cache.bucket_days)),
            feed_ttl_secs: cache.feed_ttl_secs.max(1),
            session_ttl_secs: cache.session_ttl_secs.max(1),
            fence_ttl: entry_lifetime,
            // What a restarted Redis may hold that is no longer true: entries
            // and cached session checks.
            distrust: restarts::Distrust::new(entry_lifetime.max(Duration::from_secs(cache.session_ttl_secs))),
            breaker: Breaker::new(redis.breaker_failures, Duration::from_millis(redis.breaker_cooldown_ms)),
            read_path: feed::ReadPath::default(),
            shared: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            reconnecting: tokio::sync::Mutex::new(()),
            fill_wait: Duration::from_millis(cache.fill_wait_ms),
            audit: None,
            metrics,
        })
    }

    /// Turns the freshness auditor's sampling on; returns the receiving end
    /// of the samples.
    pub fn enable_audit(&mut self, rate: f64) -> tokio::sync::mpsc::Receiver<AuditSample> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        self.audit = Some((rate.clamp(0.0, 1.0), tx));
        rx
    }

    pub(crate) fn maybe_audit(
        &self,
        user: UserId,
        params: &FeedParams,
        version: u64,
        buckets: &[u64],
        body: &bytes::Bytes,
    ) {
        if let Some((rate, tx)) = &self.audit
            && rand::random_bool(*rate)
        {
            // A full queue drops the sample: auditing must never slow a hit.
            let sample = AuditSample { user, params: *params, version, buckets: buckets.to_vec(), body: body.clone() };
            let _ = tx.try_send(sample);
        }
    }

    /// The versions a feed's entry depends on now, if Redis has them all:
    /// the user's version and (`bucketed`) the range's bucket versions. For
    /// the auditor, which compares them with a sample's.
    pub async fn peek_versions(
        &self,
        user: UserId,
        params: &FeedParams,
    ) -> Result<Option<(u64, Vec<u64>)>, CacheError> {
        let key = self.keys.version(user);
        let buckets = self.range_bucket_keys(user, params);
        self.run(async |c| {
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(&key);
            if !buckets.is_empty() {
                pipe.cmd("MGET").arg(&buckets);
            }
            let mut answers: Vec<Value> = pipe.query_async(c).await?;
            let bucket_values: Vec<Option<u64>> = if buckets.is_empty() {
                Vec::new()
            } else {
                redis::from_redis_value(answers.pop().unwrap_or(Value::Nil))?
            };
            let version: Option<u64> = redis::from_redis_value(answers.pop().unwrap_or(Value::Nil))?;
            Ok(version.zip(bucket_values.into_iter().collect::<Option<Vec<u64>>>()))
        })
        .await
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn strategy(&self) -> CacheStrategy {
        self.strategy
    }

    /// Runs `op` on a pooled connection under the breaker and the timeout.
    /// Every Redis call of calcache goes through here.
    async fn run<T>(&self, op: impl AsyncFnOnce(&mut Conn) -> Result<T, RedisError>) -> Result<T, CacheError> {
        let permit = self.breaker.permit();
        if permit == Permit::Deny {
            return Err(CacheError::CircuitOpen);
        }
        let attempt = async {
            let mut conn = self.shared_connection().await?;
            Ok::<T, CacheError>(op(&mut conn).await?)
        };
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(CacheError::Timeout),
        };
        let elapsed = started.elapsed().as_secs_f64();
        let calls = &self.metrics.redis_call_seconds;
        match &result {
            Ok(_) => calls.ok.observe(elapsed),
            Err(CacheError::Timeout) => calls.timeout.observe(elapsed),
            Err(_) => calls.error.observe(elapsed),
        }
        match &result {
            Ok(_) => {
                TIMEOUT_STREAK.with(|s| s.set(0));
                if self.breaker.success(permit) {
                    self.metrics.redis_circuit_open.set(0);
                    tracing::info!("redis answers again; circuit closed");
                }
            }
            Err(e) => {
                self.metrics.dependency_error("redis");
                // A broken connection is replaced by a fresh one from the
                // pool. A timeout alone says nothing about the connection
                // (it is often just load), and replacing it then would send
                // every waiting request to reconnect at once.
                if let CacheError::Redis(re) = e
                    && (re.is_io_error() || re.is_connection_dropped() || re.is_connection_refusal())
                {
                    self.forget_connection();
                }
                // But a connection that does nothing but time out is
                // half-dead (a peer gone without a FIN, a stalled socket):
                // after as many timeouts in a row as open the breaker, this
                // thread connects afresh instead of waiting on it for minutes.
                if matches!(e, CacheError::Timeout) {
                    let streak = TIMEOUT_STREAK.with(|s| {
                        s.set(s.get() + 1);
                        s.get()
                    });
                    if streak >= self.breaker.threshold() {
                        TIMEOUT_STREAK.with(|s| s.set(0));
                        tracing::warn!(timeouts = streak, "redis connection only times out; replacing it");
                        self.forget_connection();
                    }
                }
                if self.breaker.failure(permit) {
                    self.metrics.redis_circuit_open.set(1);
                    tracing::warn!(error = %e, cause = ?std::error::Error::source(e), "redis failing; circuit open");
                } else {
                    tracing::warn!(error = %e, cause = ?std::error::Error::source(e), "redis call failed");
                }
            }
        }
        result
    }

    /// This thread's multiplexed connection. One multiplexed connection
    /// carries any number of concurrent requests, so requests share it
    /// instead of each checking a connection out of the pool (which would
    /// cost a recycle PING round trip per request and make requests queue
    /// for pool slots under load). The pool stays the source of fresh,
    /// health-checked connections after a failure.
    ///
    /// One per thread, because a multiplexed connection is driven by a task
    /// on the runtime that created it, and every actix worker has its own
    /// single-threaded runtime: sharing one across workers would make all of
    /// them wait on one busy worker, and break them all when it stops.
    async fn shared_connection(&self) -> Result<Conn, CacheError> {
        let thread = std::thread::current().id();
        if let Some(conn) = self.shared.lock().ok().and_then(|m| m.get(&thread).cloned()) {
            return Ok(conn);
        }
        // Boxed: connecting is rare, and its state machine would otherwise
        // be part of (and moved with) every Redis call's future.
        Box::pin(self.connect_shared(thread)).await
    }

    async fn connect_shared(&self, thread: ThreadId) -> Result<Conn, CacheError> {
        // One request of this thread fetches it; the others wait for it.
        let _one_at_a_time = self.reconnecting.lock().await;
        if let Some(conn) = self.shared.lock().ok().and_then(|m| m.get(&thread).cloned()) {
            return Ok(conn);
        }
        let conn = match &self.backend {
            Backend::Single(pool) => {
                let pooled = pool.get().await?;
                let mut conn = Conn::single((*pooled).clone()).counted(self.metrics.redis_round_trips.clone());
                // Before first use: did this Redis come back with old data?
                let info: String = redis::cmd("INFO")
                    .arg("server")
                    .arg("persistence")
                    .arg("replication")
                    .query_async(&mut conn)
                    .await?;
                if let Some(left) = restarts::Start::parse(&info).and_then(|start| self.distrust.observe(start)) {
                    tracing::warn!(
                        for_secs = left.as_secs(),
                        "redis restarted with data loaded from disk; not trusting the cache until its old entries have expired"
                    );
                }
                // Keep the pooled object out of the pool for as long as we use
                // its connection, so the pool does not hand it to another thread.
                if let Ok(mut held) = self.held.lock() {
                    held.insert(thread, Held(pooled));
                }
                conn
            }
            Backend::Cluster(client) => {
                Conn::cluster(client.get_async_connection().await?).counted(self.metrics.redis_round_trips.clone())
            }
        };
        if let Ok(mut shared) = self.shared.lock() {
            shared.insert(thread, conn.clone());
        }
        Ok(conn)
    }

    fn forget_connection(&self) {
        let thread = std::thread::current().id();
        if let Ok(mut shared) = self.shared.lock() {
            shared.remove(&thread);
        }
        if let Ok(mut held) = self.held.lock() {
            // Dropped with a failure behind it: detach rather than return to
            // the pool, so the pool connects afresh.
            if let Some(Held(obj)) = held.remove(&thread) {
                let _ = deadpool_redis::Connection::take(obj);
            }
        }
    }

    /// One round trip, for /readyz. Ignores the breaker: readiness must
    /// report what Redis does now.
    pub async fn ping(&self) -> Result<(), CacheError> {
        let attempt = async {
            match &self.backend {
                Backend::Single(pool) => {
                    let mut conn = pool.get().await?;
                    redis::cmd("PING").query_async::<String>(&mut conn).await?;
                }
                // This thread's cluster connection: it already holds a
                // connection per node, and PING goes to one of them.
                Backend::Cluster(_) => {
                    let mut conn = self.shared_connection().await?;
                    redis::cmd("PING").query_async::<String>(&mut conn).await?;
                }
            }
            Ok::<(), CacheError>(())
        };
        tokio::time::timeout(self.timeout, attempt).await.map_err(|_| CacheError::Timeout)?
    }

    /// Applies invalidations: one pipeline per user (see `send_per_user`).
    /// A feed bump is `SET NX` + `INCR` of the version, then the `SREM` that
    /// lowers the write's fence, in one script (`version::push_bump`): a
    /// fence is never gone before its bump is in.
    #[tracing::instrument(name = "cache.invalidate", skip_all, fields(count = items.len()))]
    pub async fn invalidate(&self, items: &[Invalidation]) -> Result<(), CacheError> {
        if items.is_empty() {
            return Ok(());
        }
        let tombstone_secs = self.session_ttl_secs.max(60);
        let mut by_user: Vec<(UserId, Pipeline)> = Vec::new();
        for item in items {
            let user = item.user();
            let at = match by_user.iter().position(|(u, _)| *u == user) {
                Some(at) => at,
                None => {
                    by_user.push((user, redis::pipe()));
                    by_user.len() - 1
                }
            };
            let pipe = &mut by_user[at].1;
            match item {
                Invalidation::FeedVersion { user, fence, extents } => {
                    let fence_key = fence.map(|f| (self.keys.fence(*user), f.member()));
                    let fence_arg = fence_key.as_ref().map(|(k, m)| (k.as_str(), &m[..]));
                    let bucket_keys = self.bucket_keys_to_bump(*user, extents.as_deref());
                    let bump = match &bucket_keys {
                        Some(keys) => version::Bump::Buckets(keys),
                        None => version::Bump::User,
                    };
                    version::push_bump(pipe, &self.keys.version(*user), fence_arg, bump);
                }
                Invalidation::Session { user, token_hash } => {
                    sessions::push_revoke(pipe, &self.keys.session(*user, token_hash), tombstone_secs)
                }
            }
            // Live change streams: tell every process holding one (after the bump).
            changes::push_publish(pipe, &self.keys, item, self.sharded_pubsub());
        }
        self.send_per_user(by_user).await?;
        for item in items {
            if let Invalidation::FeedVersion { user, .. } = item {
                tracing::debug!(user_id = %user, "feed version bumped");
            }
        }
        Ok(())
    }

    /// Under `bucketed`, the bucket keys a write with these extents bumps;
    /// `None` means the user-wide version (another strategy, extents not
    /// known, or an item too long for buckets).
    fn bucket_keys_to_bump(&self, user: UserId, extents: Option<&[Extent]>) -> Option<Vec<String>> {
        let buckets = self.buckets?;
        let indexes = buckets.of_extents(extents?)?;
        Some(indexes.into_iter().map(|i| self.keys.bucket(user, buckets.days(), i)).collect())
    }

    /// Sends one pipeline per user, all at once on the multiplexed connection
    /// (one round trip however many users a mutation touched). Per user
    /// because a user's keys share one cluster slot and different users' keys
    /// do not. In cluster mode each pipeline ends with `WAIT`, and fewer
    /// acknowledging replicas than configured is an error: a write that only
    /// a master holds is lost if that master fails.
    async fn send_per_user(&self, mut by_user: Vec<(UserId, Pipeline)>) -> Result<(), CacheError> {
        let wanted = self.wait_replicas;
        // Half the operation timeout, so a missing replica is reported as
        // such instead of as a timeout.
        let wait_ms = u64::try_from(self.timeout.as_millis() / 2).unwrap_or(u64::MAX).max(1);
        if wanted > 0 {
            for (_, pipe) in &mut by_user {
                pipe.cmd("WAIT").arg(wanted).arg(wait_ms);
            }
        }
        let acked = self
            .run(async |conn| {
                let sends = by_user.iter().map(|(_, pipe)| {
                    let mut conn = conn.clone();
                    async move {
                        if wanted > 0 {
                            let (acked,): (u32,) = pipe.query_async(&mut conn).await?;
                            Ok::<u32, RedisError>(acked)
                        } else {
                            pipe.query_async::<()>(&mut conn).await?;
                            Ok(0)
                        }
                    }
                });
                let acks = futures_util::future::try_join_all(sends).await?;
                Ok(acks.into_iter().min().unwrap_or(0))
            })
            .await?;
        if acked < wanted {
            self.metrics.dependency_error("redis");
            tracing::warn!(acked, wanted, "write not yet replicated");
            return Err(CacheError::NotReplicated { acked, wanted });
        }
        Ok(())
    }

    /// True while the cache must not be read (see `restarts.rs`).
    pub(crate) fn distrusted(&self) -> bool {
        self.distrust.active()
    }

    pub fn circuit_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// True while the circuit is open and its cool-down is not over.
    pub fn circuit_denies(&self) -> bool {
        self.breaker.in_cooldown()
    }
}
