//! Login and sign-up throttling, shared by every process through Redis:
//! fixed-window counters, each taken in one atomic step (`MULTI` / `INCR` /
//! `EXPIRE NX` / `TTL` / `EXEC`) *before* the password is hashed, so any
//! number of concurrent guesses is cut off at the limit, and no counter can
//! be left without its expiry by a failure between two commands.
//!
//! Logins count per (username, client) and per client, never per username
//! alone: a per-username lockout lets anyone who knows a name (and
//! `/api/users` lists them) lock its owner out. A right password undoes its
//! own attempt, so successful logins from a shared address do not use up the
//! address' budget.
//!
//! Feed fills count per user (`count_feed_fill`): every PostgreSQL load of
//! a feed on a miss or bypass, so that distinct ranges are not free.
//!
//! When Redis is unavailable the throttle is open — logins still work, and
//! the bound on concurrent hashes still caps what guessing costs — and that
//! is logged by the caller.

use std::num::NonZeroU64;

use super::{Cache, CacheError};
use crate::domain::{ClientAddr, UserId};

#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    pub per_user_and_client: u64,
    pub per_client: u64,
    pub window_secs: NonZeroU64,
}

/// What a throttle said of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Over a limit; the window that counts it ends in this many seconds.
    Refused {
        retry_after_secs: u64,
    },
}

/// Undoes one counted attempt, if its window still runs (a `DECR` of an
/// expired key would create a key without expiry).
const UNDO: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('GET', KEYS[1])) > 0 then
  return redis.call('DECR', KEYS[1])
end
return 0
";

/// Counts one hit on `key` in its window; returns the count including this
/// hit and the seconds left in the window.
async fn hit(conn: &mut super::Conn, key: &str, window_secs: NonZeroU64) -> Result<(u64, u64), redis::RedisError> {
    let (count, ttl): (u64, i64) = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg(key)
        .cmd("EXPIRE")
        .arg(key)
        .arg(window_secs.get())
        .arg("NX")
        .ignore()
        .cmd("TTL")
        .arg(key)
        .query_async(conn)
        .await?;
    Ok((count, u64::try_from(ttl).unwrap_or(window_secs.get()).max(1)))
}

fn admission(counts: &[(u64, u64, u64)]) -> Admission {
    // (count, limit, ttl): refused by the counter that is over, with the
    // longest wait among those over.
    counts
        .iter()
        .filter(|(count, limit, _)| count > limit)
        .map(|&(_, _, ttl)| ttl)
        .max()
        .map_or(Admission::Allowed, |retry_after_secs| Admission::Refused { retry_after_secs })
}

impl Cache {
    /// Counts a login attempt for (username, client) and for the client, in
    /// one round trip (two atomic blocks sent together: the keys live in
    /// different cluster slots). Call it before the password is checked.
    #[tracing::instrument(name = "cache.login_attempt", skip_all)]
    pub async fn count_login_attempt(
        &self,
        username: &str,
        client: &ClientAddr,
        limits: LoginLimits,
    ) -> Result<Admission, CacheError> {
        let pair = self.keys.login_attempts_user_client(username, client);
        let by_client = self.keys.login_attempts_client(client);
        let window = limits.window_secs;
        let ((pair_count, pair_ttl), (client_count, client_ttl)) = self
            .run(async |conn| {
                let mut other = conn.clone();
                futures_util::future::try_join(hit(conn, &pair, window), hit(&mut other, &by_client, window)).await
            })
            .await?;
        Ok(admission(&[
            (pair_count, limits.per_user_and_client, pair_ttl),
            (client_count, limits.per_client, client_ttl),
        ]))
    }

    /// A right password: the pair's attempts are forgotten, and this
    /// attempt no longer counts against the client.
    pub async fn login_succeeded(&self, username: &str, client: &ClientAddr) -> Result<(), CacheError> {
        let pair = self.keys.login_attempts_user_client(username, client);
        let by_client = self.keys.login_attempts_client(client);
        let undo = redis::Script::new(UNDO);
        self.run(async |conn| {
            let mut other = conn.clone();
            let forget = async { redis::cmd("DEL").arg(&pair).query_async::<()>(conn).await };
            let undo = async { undo.key(&by_client).invoke_async::<i64>(&mut other).await.map(drop) };
            futures_util::future::try_join(forget, undo).await.map(drop)
        })
        .await
    }

    /// Counts a sign-up from `client`; call it before the password is hashed.
    pub async fn count_signup(
        &self,
        client: &ClientAddr,
        limit: u64,
        window_secs: NonZeroU64,
    ) -> Result<Admission, CacheError> {
        let key = self.keys.signups_client(client);
        let (count, ttl) = self.run(async |conn| hit(conn, &key, window_secs).await).await?;
        Ok(admission(&[(count, limit, ttl)]))
    }
}

impl Cache {
    /// Counts one feed fill (a PostgreSQL load on a miss or bypass) for
    /// `user` in the current window of `window_secs`: one atomic round trip.
    /// Call it only for a confirmed session: a forged token must not create
    /// keys.
    #[tracing::instrument(name = "cache.feed_fill", level = "debug", skip_all, fields(user_id = %user))]
    pub async fn count_feed_fill(
        &self,
        user: UserId,
        limit: u64,
        window_secs: NonZeroU64,
    ) -> Result<Admission, CacheError> {
        let key = self.keys.feed_fills(user);
        let (count, ttl) = self.run(async |conn| hit(conn, &key, window_secs).await).await?;
        Ok(admission(&[(count, limit, ttl)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_only_past_a_limit_and_for_the_longest_window() {
        assert_eq!(admission(&[(5, 5, 10), (50, 50, 20)]), Admission::Allowed);
        assert_eq!(admission(&[(6, 5, 10), (1, 50, 20)]), Admission::Refused { retry_after_secs: 10 });
        assert_eq!(admission(&[(6, 5, 10), (51, 50, 20)]), Admission::Refused { retry_after_secs: 20 });
        assert_eq!(admission(&[]), Admission::Allowed);
    }
}
