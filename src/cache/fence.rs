//! Write fences: how a mutation keeps every process off the cache for the
//! users it affects until its invalidation has reached Redis.
//!
//! Bumping a version after the commit is what makes the cache fresh, but a
//! bump can fail after the commit (this process cannot reach Redis, Redis
//! refuses writes, the call times out). Until some process applies it from
//! the outbox, the old entries still look current. So before its transaction
//! a mutation adds its id to a per-user set, `write_fence:{u<id>}`, and the
//! bump pipeline removes it again after the `INCR`. A feed lookup reads the
//! set in the same pipeline as the version (same hash slot) and bypasses the
//! cache while it is not empty. Hence, for a read that starts after the
//! write answered:
//! - the fence is gone only once the bump is in (the `SREM` follows the
//!   `INCR` in one script, see `version::push_bump`), so the read sees the
//!   new version; or
//! - the fence is still there, and the read goes to PostgreSQL.
//!
//! A mutation that cannot raise its fence changes nothing and answers 503:
//! this process cannot reach Redis, so it could not stop the others from
//! serving what it would change.
//!
//! A fence whose mutation never lowers it (the process died between fence
//! and commit, a rolled-back transaction whose clean-up failed) expires after
//! [`fence_ttl`]: longer than any entry written before the fence can live, so
//! by then nothing it guarded against is left in Redis. Until then the
//! user's feeds bypass the cache: fewer hits, never a stale one.

use std::time::Duration;

use redis::Pipeline;

use super::{Cache, CacheError};
use crate::domain::UserId;

/// The id a mutation puts in its users' fence sets (and in its outbox rows,
/// so that whoever applies the bump lowers the right fence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fence(pub uuid::Uuid);

impl Fence {
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    pub(super) fn member(self) -> [u8; 16] {
        self.0.into_bytes()
    }
}

/// How long a fence set outlives its latest write: an entry stored by a fill
/// that looked the version up just before the fence went up lives at most
/// `feed_ttl` after a store that comes at most `fill_bound` after the lookup.
pub fn fence_ttl(feed_ttl: Duration, fill_bound: Duration) -> Duration {
    feed_ttl + fill_bound + Duration::from_secs(5)
}

pub(super) fn push_raise(pipe: &mut Pipeline, key: &str, fence: Fence, ttl: Duration) {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    pipe.cmd("SADD").arg(key).arg(&fence.member()[..]).ignore();
    pipe.cmd("PEXPIRE").arg(key).arg(ttl_ms).ignore();
}

pub(super) fn push_lower(pipe: &mut Pipeline, key: &str, fence: Fence) {
    pipe.cmd("SREM").arg(key).arg(&fence.member()[..]).ignore();
}

impl Cache {
    /// Raises `fence` for every user in `users`: must succeed before the
    /// mutation's transaction starts. In cluster mode replicas acknowledge it
    /// like a bump, so a failover cannot lose it.
    #[tracing::instrument(name = "cache.raise_fence", level = "debug", skip_all, fields(users = users.len()))]
    pub async fn raise_fence(&self, users: &[UserId], fence: Fence) -> Result<(), CacheError> {
        let ttl = self.fence_ttl;
        let pipes = users
            .iter()
            .map(|&u| {
                let mut pipe = redis::pipe();
                push_raise(&mut pipe, &self.keys.fence(u), fence, ttl);
                pipe
            })
            .collect();
        self.client.send_per_slot(pipes).await
    }

    /// Lowers `fence` for a mutation that did not commit. Best effort: a fence
    /// left up only costs the users their hits until it expires.
    pub async fn lower_fence(&self, users: &[UserId], fence: Fence) {
        let pipes = users
            .iter()
            .map(|&u| {
                let mut pipe = redis::pipe();
                push_lower(&mut pipe, &self.keys.fence(u), fence);
                pipe
            })
            .collect();
        if let Err(e) = self.client.send_per_slot(pipes).await {
            tracing::warn!(error = %crate::error::Chain(&e), "fence of a rolled-back write left up; it expires by itself");
        }
    }
}
