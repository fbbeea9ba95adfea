//! The Redis client layer: where connections come from, and the one wrapper
//! every call goes through (timeout, breaker, round-trip and latency
//! metrics). The operations (`feed.rs`, `version.rs`, `sessions.rs`,
//! `ratelimit.rs`, invalidation in `mod.rs`) never see a pool or a socket.

use std::cell::RefCell;
use std::sync::{Arc, Weak};
use std::time::Duration;

use deadpool_redis::{Pool, Runtime};
use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use secrecy::ExposeSecret;

use super::breaker::{Breaker, Permit};
use super::restarts;
use crate::config::{RedisMode, RedisSettings};
use crate::metrics::Metrics;

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

/// Where connections come from. Single Redis: a deadpool pool (health-
/// checked by its recycling, fresh connections after a failure). Cluster:
/// the cluster client itself, without deadpool — a `ClusterConnection`
/// already multiplexes, keeps one connection per node, reconnects and
/// follows failovers, so a pool of them would add nothing but another layer
/// of retries.
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

/// One thread's connection of one client.
struct Slot {
    /// The client it belongs to (a process may hold several: tests do).
    owner: Weak<()>,
    conn: Conn,
    /// Single Redis: the pooled object behind `conn`, kept checked out while
    /// this thread uses it so the pool does not hand it to another thread.
    pooled: Option<deadpool_redis::Connection>,
    /// Calls on it that timed out in a row (see `Client::run`).
    timeouts: u32,
}

thread_local! {
    /// This thread's connections, one per client: a handful at most, so a
    /// scan beats a map. Thread-local, so taking one is not a process-wide
    /// lock on every Redis call.
    static SLOTS: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// The Redis client of one `Cache`.
#[derive(Debug)]
pub(super) struct Client {
    backend: Backend,
    /// Names this client's slots in every thread's `SLOTS`.
    id: Arc<()>,
    timeout: Duration,
    breaker: Breaker,
    /// Cluster mode: replicas that must acknowledge a write (`WAIT`).
    wait_replicas: u32,
    /// After a Redis restart that loaded old data (`restarts.rs`).
    distrust: restarts::Distrust,
    /// One connect at a time: the others wait for it, then use its result.
    connecting: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
}

impl Client {
    /// Builds the pool without connecting: Redis may be down at start.
    /// `pool_size`: connections in single mode ([`crate::config::Settings::redis_pool_size`]).
    /// `distrust_for`: how long a restarted Redis' old data can live.
    pub fn new(
        redis: &RedisSettings,
        pool_size: usize,
        distrust_for: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, CacheError> {
        let backend = match redis.mode {
            RedisMode::Single => {
                let mut cfg = deadpool_redis::Config::from_url(redis.url.expose_secret());
                let mut pool_cfg = deadpool_redis::PoolConfig::new(pool_size);
                pool_cfg.timeouts.wait = Some(redis.timeout);
                pool_cfg.timeouts.create = Some(redis.timeout);
                pool_cfg.timeouts.recycle = Some(redis.timeout);
                cfg.pool = Some(pool_cfg);
                Backend::Single(cfg.create_pool(Some(Runtime::Tokio1))?)
            }
            RedisMode::Cluster => {
                let nodes: Vec<&str> = redis.cluster_nodes.iter().map(|n| n.expose_secret()).collect();
                // `build` only parses the seed list; connecting happens on
                // first use, so the cluster may be down at start.
                let client = redis::cluster::ClusterClientBuilder::new(nodes)
                    .connection_timeout(redis.timeout)
                    .response_timeout(redis.timeout)
                    .build()?;
                Backend::Cluster(Box::new(client))
            }
        };
        Ok(Self {
            backend,
            id: Arc::new(()),
            timeout: redis.timeout,
            breaker: Breaker::new(redis.breaker_failures, redis.breaker_cooldown),
            wait_replicas: match redis.mode {
                RedisMode::Single => 0,
                RedisMode::Cluster => redis.cluster_wait_replicas,
            },
            distrust: restarts::Distrust::new(distrust_for),
            connecting: tokio::sync::Mutex::new(()),
            metrics,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    pub fn distrust(&self) -> &restarts::Distrust {
        &self.distrust
    }

    /// Runs `op` on this thread's connection under the breaker and the
    /// timeout. Every Redis call of calcache goes through here.
    pub async fn run<T>(&self, op: impl AsyncFnOnce(&mut Conn) -> Result<T, RedisError>) -> Result<T, CacheError> {
        let permit = self.breaker.permit();
        if permit == Permit::Deny {
            return Err(CacheError::CircuitOpen);
        }
        let attempt = async {
            let mut conn = self.connection().await?;
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
                self.with_slot(|s| s.timeouts = 0);
                if self.breaker.success(permit) {
                    self.metrics.redis_circuit_open.set(0);
                    tracing::info!("redis answers again; circuit closed");
                }
            }
            Err(e) => self.failed(e, permit),
        }
        result
    }

    /// A call failed: count it, and replace the connection when it is broken.
    fn failed(&self, e: &CacheError, permit: Permit) {
        self.metrics.dependency_error("redis");
        // A broken connection is replaced by a fresh one from the pool. A
        // timeout alone says nothing about the connection (it is often just
        // load), and replacing it then would send every waiting request to
        // reconnect at once.
        if let CacheError::Redis(re) = e
            && (re.is_io_error() || re.is_connection_dropped() || re.is_connection_refusal())
        {
            self.forget_connection();
        }
        // But a connection that does nothing but time out is half-dead (a
        // peer gone without a FIN, a stalled socket): after as many timeouts
        // in a row as open the breaker, this thread connects afresh instead
        // of waiting on it for minutes.
        if matches!(e, CacheError::Timeout) {
            let threshold = self.breaker.threshold();
            let streak = self
                .with_slot(|s| {
                    s.timeouts += 1;
                    s.timeouts
                })
                .unwrap_or(0);
            if streak >= threshold {
                tracing::warn!(timeouts = streak, "redis connection only times out; replacing it");
                self.forget_connection();
            }
        }
        if self.breaker.failure(permit) {
            self.metrics.redis_circuit_open.set(1);
            tracing::warn!(error = %crate::error::Chain(e), "redis failing; circuit open");
        } else {
            tracing::warn!(error = %crate::error::Chain(e), "redis call failed");
        }
    }

    fn with_slot<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        let me = Arc::as_ptr(&self.id);
        SLOTS.with_borrow_mut(|slots| slots.iter_mut().find(|s| Weak::as_ptr(&s.owner) == me).map(f))
    }

    /// This thread's multiplexed connection. One multiplexed connection
    /// carries any number of concurrent requests, so requests share it
    /// instead of each checking a connection out of the pool (which would
    /// cost the pool's recycle PING round trip per request and make requests
    /// queue for pool slots under load). The pool stays the source of fresh,
    /// health-checked connections after a failure.
    ///
    /// One per thread, because a multiplexed connection is driven by a task
    /// on the runtime that created it, and every actix worker has its own
    /// single-threaded runtime: sharing one across workers would make all of
    /// them wait on one busy worker, and break them all when it stops.
    pub async fn connection(&self) -> Result<Conn, CacheError> {
        if let Some(conn) = self.with_slot(|s| s.conn.clone()) {
            return Ok(conn);
        }
        // Boxed: connecting is rare, and its state machine would otherwise
        // be part of (and moved with) every Redis call's future.
        Box::pin(self.connect()).await
    }

    async fn connect(&self) -> Result<Conn, CacheError> {
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(conn) = self.with_slot(|s| s.conn.clone()) {
            return Ok(conn);
        }
        let (conn, pooled) = match &self.backend {
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
                (conn, Some(pooled))
            }
            Backend::Cluster(client) => {
                let conn = client.get_async_connection().await?;
                (Conn::cluster(conn).counted(self.metrics.redis_round_trips.clone()), None)
            }
        };
        SLOTS.with_borrow_mut(|slots| {
            // Slots of clients gone since (a test's earlier app) go too.
            slots.retain(|s| s.owner.strong_count() > 0);
            slots.push(Slot { owner: Arc::downgrade(&self.id), conn: conn.clone(), pooled, timeouts: 0 });
        });
        Ok(conn)
    }

    fn forget_connection(&self) {
        let me = Arc::as_ptr(&self.id);
        let gone = SLOTS.with_borrow_mut(|slots| {
            let at = slots.iter().position(|s| Weak::as_ptr(&s.owner) == me)?;
            Some(slots.swap_remove(at))
        });
        // Dropped with a failure behind it: detach rather than return to the
        // pool, so the pool connects afresh.
        if let Some(pooled) = gone.and_then(|s| s.pooled) {
            let _ = deadpool_redis::Connection::take(pooled);
        }
    }

    /// Runs `op` outside the breaker and the error metrics, under the
    /// timeout: for readiness and start-up checks, which must report what
    /// Redis does now and must not count as a request's failure. Single
    /// Redis: on a pooled connection (recycled, that is pinged, by the
    /// pool); cluster: on this thread's cluster connection, which already
    /// holds a connection per node.
    pub async fn unguarded<T>(
        &self,
        op: impl AsyncFnOnce(&mut Conn) -> Result<T, RedisError>,
    ) -> Result<T, CacheError> {
        let attempt = async {
            let mut conn = match &self.backend {
                Backend::Single(pool) => Conn::single((*pool.get().await?).clone()),
                Backend::Cluster(_) => self.connection().await?,
            };
            Ok::<T, CacheError>(op(&mut conn).await?)
        };
        tokio::time::timeout(self.timeout, attempt).await.map_err(|_| CacheError::Timeout)?
    }

    /// One round trip, for /readyz.
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.unguarded(async |c| redis::cmd("PING").query_async::<String>(c).await).await.map(drop)
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_))
    }

    /// Sends one pipeline per user, all at once on the multiplexed
    /// connection (one round trip however many users a mutation touched).
    /// Per user because a user's keys share one cluster slot and different
    /// users' keys do not. In cluster mode each pipeline ends with `WAIT`,
    /// and fewer acknowledging replicas than configured is an error: a write
    /// that only a master holds is lost if that master fails.
    pub async fn send_per_slot(&self, mut pipes: Vec<Pipeline>) -> Result<(), CacheError> {
        let wanted = self.wait_replicas;
        // Half the operation timeout, so a missing replica is reported as
        // such instead of as a timeout; never 0, which would make WAIT
        // block for good.
        let wait_ms = u64::try_from(self.timeout.as_millis() / 2).unwrap_or(u64::MAX).max(1);
        if wanted > 0 {
            for pipe in &mut pipes {
                pipe.cmd("WAIT").arg(wanted).arg(wait_ms);
            }
        }
        let acked = self
            .run(async |conn| {
                let sends = pipes.iter().map(|pipe| {
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
}
