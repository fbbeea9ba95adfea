//! Per-user feed versions.
//!
//! A version key never expires. When it is missing (never set, evicted,
//! flushed, Redis restarted empty) it is initialized to the current time in
//! nanoseconds, not to 0 or 1: every earlier generation of the key was also
//! initialized from the clock and incremented once per mutation, which never
//! outruns a nanosecond clock, so a re-initialized version is larger than any
//! version an old entry was stored under and no old entry becomes current
//! again. (Symfony's tag-aware cache had exactly this resurrection bug with
//! counters restarting at 0.) Clock steps backwards between processes are
//! the residual risk; entries expire after `cache.feed_ttl_secs` regardless.

use redis::aio::ConnectionLike;
use redis::{Pipeline, RedisResult};

fn fresh_version() -> u64 {
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX / 2);
    u64::try_from(nanos).unwrap_or(1)
}

/// `SET key <now> NX GET`: sets our value unless another process got there
/// first, in which case it returns theirs. One atomic step, no race.
pub(super) async fn init<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> RedisResult<u64> {
    let fresh = fresh_version();
    let previous: Option<u64> = redis::cmd("SET").arg(key).arg(fresh).arg("NX").arg("GET").query_async(conn).await?;
    Ok(previous.unwrap_or(fresh))
}

/// Adds a bump of `key` to `pipe`, and the lowering of a write fence
/// (`fence.rs`) when one is given as `(fence key, member)`.
///
/// One script, because the steps must not outlive a failure in between: in a
/// plain pipeline Redis runs every command whatever the one before it
/// answered, so an `INCR` refused (ACL, out of memory, a read-only replica)
/// would still let the `SREM` lower the fence with the bump missing — and
/// readers would serve the old entries again. A script stops at its first
/// error. A plain INCR of a missing key would start it at 1 — a value an
/// older generation may have had — so a missing key is first initialized
/// from the clock (`SET NX` is a no-op otherwise).
pub(super) fn push_bump(pipe: &mut Pipeline, key: &str, fence: Option<(&str, &[u8])>) {
    const BUMP: &str = "redis.call('SET', KEYS[1], ARGV[1], 'NX') \
        local v = redis.call('INCR', KEYS[1]) \
        if #KEYS > 1 then redis.call('SREM', KEYS[2], ARGV[2]) end \
        return v";
    match fence {
        Some((fence_key, member)) => {
            pipe.cmd("EVAL").arg(BUMP).arg(2).arg(key).arg(fence_key).arg(fresh_version()).arg(member).ignore();
        }
        None => {
            pipe.cmd("EVAL").arg(BUMP).arg(1).arg(key).arg(fresh_version()).ignore();
        }
    }
}
