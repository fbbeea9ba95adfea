//! The feed read-through.
//!
//! Versioned strategy, in this order:
//! 1. read the user's version (initializing it if missing);
//! 2. read the entry stored under that version: a hit is served as stored;
//! 3. on a miss, load from PostgreSQL and store the body under the version
//!    read in step 1.
//!
//! Reading the version *before* querying PostgreSQL is what makes a racing
//! writer harmless: a writer commits and then bumps the version, so if our
//! query saw the old rows, the version we store under is already (or soon)
//! outdated and nobody will read that entry as current.

use bytes::Bytes;

use super::{Cache, FeedParams};
use crate::config::CacheStrategy;
use crate::domain::UserId;
use crate::metrics::CacheOutcome;

/// Where a feed body came from (`X-Cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedOutcome {
    /// From the shared cache.
    Hit,
    /// From PostgreSQL, now stored in the cache.
    Miss,
    /// From PostgreSQL without the cache: Redis is unavailable, an
    /// invalidation for this user is still pending, or caching is off.
    Bypass,
}

impl FeedOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Bypass => "BYPASS",
        }
    }

    pub fn metric(self) -> CacheOutcome {
        match self {
            Self::Hit => CacheOutcome::Hit,
            Self::Miss => CacheOutcome::Miss,
            Self::Bypass => CacheOutcome::Bypass,
        }
    }
}

impl Cache {
    /// Answers a feed from the cache, or from `load` (PostgreSQL) when the
    /// cache cannot vouch for it. A Redis failure never fails the request.
    #[tracing::instrument(
        name = "cache.feed",
        skip_all,
        fields(user_id = %user, cache.outcome = tracing::field::Empty, cache.version = tracing::field::Empty)
    )]
    pub async fn feed_read_through<E>(
        &self,
        user: UserId,
        params: &FeedParams,
        load: impl AsyncFnOnce() -> Result<Bytes, E>,
    ) -> Result<(FeedOutcome, Bytes), E> {
        let span = tracing::Span::current();
        let versioned = match self.strategy {
            CacheStrategy::None => {
                span.record("cache.outcome", "BYPASS");
                return load().await.map(|b| (FeedOutcome::Bypass, b));
            }
            CacheStrategy::Versioned => true,
            CacheStrategy::Ttl => false,
        };
        if versioned && self.is_pending(user) {
            span.record("cache.outcome", "BYPASS");
            tracing::debug!(user_id = %user, "invalidation pending; bypassing the cache");
            return load().await.map(|b| (FeedOutcome::Bypass, b));
        }

        let looked_up = self
            .run(async |conn| {
                let version = if versioned {
                    Some(super::version::current(conn, &self.keys.version(user)).await?)
                } else {
                    None
                };
                let key = self.keys.feed(user, version, params);
                let entry: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query_async(conn).await?;
                Ok((version, key, entry))
            })
            .await;

        match looked_up {
            Ok((version, _, Some(entry))) => {
                if let Some(v) = version {
                    span.record("cache.version", v);
                }
                span.record("cache.outcome", "HIT");
                tracing::debug!(user_id = %user, version, "feed cache hit");
                Ok((FeedOutcome::Hit, Bytes::from(entry)))
            }
            Ok((version, key, None)) => {
                if let Some(v) = version {
                    span.record("cache.version", v);
                }
                span.record("cache.outcome", "MISS");
                tracing::debug!(user_id = %user, version, "feed cache miss");
                let body = load().await?;
                let ttl = self.feed_ttl_secs;
                let stored = self
                    .run(async |conn| {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(body.as_ref())
                            .arg("EX")
                            .arg(ttl)
                            .query_async::<()>(conn)
                            .await
                    })
                    .await;
                if let Err(e) = stored {
                    // The body is still correct; the next request misses again.
                    tracing::warn!(user_id = %user, error = %e, "could not store feed entry");
                }
                Ok((FeedOutcome::Miss, body))
            }
            Err(e) => {
                span.record("cache.outcome", "BYPASS");
                tracing::warn!(user_id = %user, error = %e, "feed cache unavailable; answering from PostgreSQL");
                load().await.map(|b| (FeedOutcome::Bypass, b))
            }
        }
    }
}
