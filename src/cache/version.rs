//! Per-user feed versions.
//!
//! A version key never expires. When it is missing (never set, evicted,
//! flushed, Redis restarted empty) it is initialized to Redis' own clock
//! (`TIME`) in microseconds, not to 0 or 1: every earlier generation of the
//! key was also initialized from that clock and incremented once per
//! mutation, which never outruns a microsecond clock, so a re-initialized
//! version is larger than any version an old entry was stored under and no
//! old entry becomes current again. (Symfony's tag-aware cache had exactly
//! this resurrection bug with counters restarting at 0.) The clock is the
//! Redis server's, read inside a script, so processes whose clocks disagree
//! cannot re-create a value another one already used; a Redis host whose
//! clock steps back (or, on Cluster, a failover to a host whose clock is
//! behind) is the residual risk, and entries expire after
//! `cache.feed_ttl_secs` regardless. (Releases before this one initialized
//! from the process clock in nanoseconds: those values are a thousand times
//! larger, so the two generations cannot collide.)

use redis::aio::ConnectionLike;
use redis::{Pipeline, RedisResult};

/// `SET key <TIME in µs> NX GET`: sets a fresh value unless another process
/// got there first, in which case it returns theirs. One atomic step, no race.
const INIT: &str = "local t = redis.call('TIME') \
    local fresh = string.format('%d', t[1] * 1000000 + t[2]) \
    local previous = redis.call('SET', KEYS[1], fresh, 'NX', 'GET') \
    if previous then return previous end \
    return fresh";

pub(super) async fn init<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> RedisResult<u64> {
    let value: String = redis::cmd("EVAL").arg(INIT).arg(1).arg(key).query_async(conn).await?;
    value.parse().map_err(|_| {
        redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "feed version is not a number", value))
    })
}

/// Initializes the bucket versions at `keys` that are missing, from Redis'
/// clock as in `init`, with an expiry of `ttl_secs` (`buckets.rs`), and
/// returns all of them: one consistent snapshot of the range's buckets.
pub(super) async fn init_buckets<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &[String],
    ttl_secs: u64,
) -> RedisResult<Vec<u64>> {
    const INIT_BUCKETS: &str = "local t = redis.call('TIME') \
        local fresh = string.format('%d', t[1] * 1000000 + t[2]) \
        local out = {} \
        for i, k in ipairs(KEYS) do \
            local previous = redis.call('SET', k, fresh, 'NX', 'GET', 'EX', ARGV[1]) \
            if previous then out[i] = previous else out[i] = fresh end \
        end \
        return out";
    let values: Vec<String> =
        redis::cmd("EVAL").arg(INIT_BUCKETS).arg(keys.len()).arg(keys).arg(ttl_secs).query_async(conn).await?;
    values
        .into_iter()
        .map(|v| {
            v.parse().map_err(|_| {
                redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "bucket version is not a number", v))
            })
        })
        .collect()
}

/// What a feed bump increments.
#[derive(Debug, Clone, Copy)]
pub(super) enum Bump<'a> {
    /// The user-wide version (`versioned`, and long items under `bucketed`).
    User,
    /// These bucket versions, where they exist (a missing one is re-created
    /// larger than any value it had, see `buckets.rs`, so it needs no bump).
    Buckets(&'a [String]),
}

/// Adds a bump of the version at `key` (or of the given buckets) to `pipe`,
/// and the lowering of a write fence (`fence.rs`) when one is given as
/// `(fence key, member)`.
///
/// One script, because the steps must not outlive a failure in between: in a
/// plain pipeline Redis runs every command whatever the one before it
/// answered, so an `INCR` refused (ACL, out of memory, a read-only replica)
/// would still let the `SREM` lower the fence with the bump missing — and
/// readers would serve the old entries again. A script stops at its first
/// error, and the `SREM` comes last. A plain INCR of a missing user-wide key
/// would start it at 1 — a value an older generation may have had — so a
/// missing key is first initialized from Redis' clock, as in `init` (`SET
/// NX` is a no-op otherwise).
pub(super) fn push_bump(pipe: &mut Pipeline, key: &str, fence: Option<(&str, &[u8])>, bump: Bump<'_>) {
    // KEYS[1] the user-wide version, KEYS[2] the fence, KEYS[3..] buckets;
    // ARGV[1] the fence member ('' for none), ARGV[2] what to bump.
    const BUMP: &str = "local v = 0 \
        if ARGV[2] == 'user' then \
            local t = redis.call('TIME') \
            redis.call('SET', KEYS[1], string.format('%d', t[1] * 1000000 + t[2]), 'NX') \
            v = redis.call('INCR', KEYS[1]) \
        else \
            for i = 3, #KEYS do \
                if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCR', KEYS[i]) end \
            end \
        end \
        if ARGV[1] ~= '' then redis.call('SREM', KEYS[2], ARGV[1]) end \
        return v";
    let (fence_key, member) = fence.unwrap_or((key, &[]));
    let buckets: &[String] = match bump {
        Bump::User => &[],
        Bump::Buckets(keys) => keys,
    };
    pipe.cmd("EVAL")
        .arg(BUMP)
        .arg(2 + buckets.len())
        .arg(key)
        .arg(fence_key)
        .arg(buckets)
        .arg(member)
        .arg(match bump {
            Bump::User => "user",
            Bump::Buckets(_) => "buckets",
        })
        .ignore();
}
