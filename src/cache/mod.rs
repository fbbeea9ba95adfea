//! The shared Redis cache. Nothing outside this module sees a Redis
//! connection: routes and services ask for a feed read-through, a session
//! check or an invalidation, and get an answer that is always correct — from
//! Redis when it can vouch for it, from PostgreSQL (`Bypass`) when it cannot.
//!
//! Two layers: `client.rs` is where connections come from and the wrapper
//! every call goes through (timeout, breaker, metrics); the other modules
//! are the operations — the feed read-through (`feed.rs`), versions and
//! bumps (`version.rs`, `buckets.rs`, `fence.rs`), sessions, throttles and
//! the change stream — and the `Plan` below is the strategy they follow.

mod body;
mod breaker;
pub mod buckets;
pub mod changes;
mod client;
mod feed;
mod fence;
pub mod keys;
mod mac;
mod near;
mod ratelimit;
mod restarts;
pub mod server;
mod sessions;
mod version;

use std::sync::Arc;
use std::time::Duration;

use redis::{Pipeline, RedisError};

use crate::config::{CacheSettings, CacheStrategy, Settings};
use crate::domain::UserId;
use crate::metrics::Metrics;
pub use body::{Encoding, FeedBody};
pub use breaker::Breaker;
pub use buckets::{Buckets, Extent};
pub use client::{CacheError, Conn};
pub use feed::{FeedOutcome, Served, Versions};
pub use fence::{Fence, fence_ttl};
pub use keys::{Entry as EntryKey, FeedParams, Keys};
pub use near::NearMetrics;
pub use ratelimit::{Admission, LoginLimits};
pub use sessions::SessionState;

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

/// The strategy (`cache.strategy`) as the read path, the fill and the
/// invalidation follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// No cache: every feed from PostgreSQL (sessions are still cached).
    Off,
    /// Entries without versions, until their TTL: may serve stale.
    Ttl,
    /// Entries under the user-wide version.
    Versioned,
    /// Entries under the user-wide version, stamped with the versions of
    /// the buckets their range covers (`buckets.rs`).
    Bucketed(Buckets),
}

impl Plan {
    fn new(cache: &CacheSettings) -> Self {
        match cache.strategy {
            CacheStrategy::None => Self::Off,
            CacheStrategy::Ttl => Self::Ttl,
            CacheStrategy::Versioned => Self::Versioned,
            CacheStrategy::Bucketed => Self::Bucketed(cache.bucket_days),
        }
    }

    pub fn strategy(self) -> CacheStrategy {
        match self {
            Self::Off => CacheStrategy::None,
            Self::Ttl => CacheStrategy::Ttl,
            Self::Versioned => CacheStrategy::Versioned,
            Self::Bucketed(_) => CacheStrategy::Bucketed,
        }
    }

    fn buckets(self) -> Option<Buckets> {
        match self {
            Self::Bucketed(b) => Some(b),
            _ => None,
        }
    }

    /// The entry this strategy keeps under `version` (its feed key's form).
    fn entry(self, version: Option<u64>) -> keys::Entry {
        match (self, version) {
            (Self::Bucketed(b), Some(version)) => keys::Entry::Bucketed { version, days: b.days() },
            (_, Some(v)) => keys::Entry::Versioned(v),
            (_, None) => keys::Entry::Unversioned,
        }
    }
}

#[derive(Debug)]
pub struct Cache {
    client: client::Client,
    keys: Keys,
    plan: Plan,
    /// `cache.feed_ttl_secs` and `cache.session_ttl_secs` (at least 1, as
    /// the settings guarantee), as Redis' `EX` takes them.
    feed_ttl_secs: u64,
    session_ttl_secs: u64,
    /// How long a write fence outlives its latest write (see `fence.rs`).
    fence_ttl: Duration,
    read_path: feed::ReadPath,
    /// How long a request waits for another to fill the entry it needs.
    fill_wait: Duration,
    /// This process's copies of entries (`near.rs`); `None` when off or
    /// when the strategy has no versions to check them against.
    near: Option<near::Near>,
    /// Authenticates cached session validity and entries (`mac.rs`).
    mac: mac::Mac,
    metrics: Arc<Metrics>,
}

impl Cache {
    /// Builds the client without connecting: Redis may be down at start.
    /// Besides `[redis]` and `[cache]`, it reads `database.request_timeout_ms`,
    /// which bounds how long a fill can take, and so how long a write fence
    /// must last.
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Result<Self, CacheError> {
        let (redis, cache) = (&settings.redis, &settings.cache);
        let db_deadline = settings.database.request_timeout;
        // How long an entry can outlive the version it was read under: its
        // TTL after a fill (lookup, lease wait, query, store).
        let entry_lifetime = fence_ttl(cache.feed_ttl, redis.timeout * 2 + cache.fill_wait + db_deadline);
        // What a restarted Redis may hold that is no longer true: entries
        // and cached session checks.
        let distrust_for = entry_lifetime.max(cache.session_ttl);
        let plan = Plan::new(cache);
        Ok(Self {
            client: client::Client::new(redis, settings.redis_pool_size(), distrust_for, metrics.clone())?,
            keys: Keys::new(redis.key_prefix.as_str()),
            plan,
            feed_ttl_secs: cache.feed_ttl.as_secs(),
            session_ttl_secs: cache.session_ttl.as_secs(),
            fence_ttl: entry_lifetime,
            read_path: feed::ReadPath::default(),
            fill_wait: cache.fill_wait,
            near: match plan {
                Plan::Versioned | Plan::Bucketed(_) => near::Near::new(cache.near_bytes, metrics.near.clone()),
                Plan::Off | Plan::Ttl => None,
            },
            mac: mac::Mac::new(redis.mac_key.secret()),
            metrics,
        })
    }

    /// The versions a feed's entry depends on now, if Redis has them all:
    /// the user's version and (`bucketed`) the range's bucket versions. For
    /// the freshness auditor, which compares them with a sample's.
    pub async fn peek_versions(&self, user: UserId, params: &FeedParams) -> Result<Option<Versions>, CacheError> {
        let key = self.keys.version(user);
        let buckets = self.range_bucket_keys(user, params);
        self.run(async |c| {
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(&key);
            if !buckets.is_empty() {
                pipe.cmd("MGET").arg(&buckets);
            }
            let mut answers: Vec<redis::Value> = pipe.query_async(c).await?;
            let bucket_values: Vec<Option<u64>> = if buckets.is_empty() {
                Vec::new()
            } else {
                redis::from_redis_value(answers.pop().unwrap_or(redis::Value::Nil))?
            };
            let version: Option<u64> = redis::from_redis_value(answers.pop().unwrap_or(redis::Value::Nil))?;
            let buckets = bucket_values.into_iter().collect::<Option<Vec<u64>>>();
            Ok(version.zip(buckets).map(|(version, buckets)| Versions { version, buckets }))
        })
        .await
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn timeout(&self) -> Duration {
        self.client.timeout()
    }

    pub fn strategy(&self) -> CacheStrategy {
        self.plan.strategy()
    }

    /// Every Redis call of the operations goes through the client's wrapper.
    async fn run<T>(&self, op: impl AsyncFnOnce(&mut Conn) -> Result<T, RedisError>) -> Result<T, CacheError> {
        self.client.run(op).await
    }

    /// One round trip, for /readyz. Ignores the breaker: readiness must
    /// report what Redis does now.
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.client.ping().await
    }

    /// Applies invalidations: one pipeline per user (see
    /// `Client::send_per_slot`). A feed bump is `SET NX` + `INCR` of the
    /// version (or of the buckets the write touched), then the `SREM` that
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
        self.client.send_per_slot(by_user.into_iter().map(|(_, pipe)| pipe).collect()).await?;
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
        let buckets = self.plan.buckets()?;
        let indexes = buckets.of_extents(extents?)?;
        Some(indexes.into_iter().map(|i| self.keys.bucket(user, buckets.days(), i)).collect())
    }

    /// True while the cache must not be read (see `restarts.rs`).
    pub(crate) fn distrusted(&self) -> bool {
        self.client.distrust().active()
    }

    pub fn circuit_open(&self) -> bool {
        self.client.breaker().is_open()
    }

    /// True while the circuit is open and its cool-down is not over.
    pub fn circuit_denies(&self) -> bool {
        self.client.breaker().in_cooldown()
    }
}
