//! What calcache needs of the Redis server it talks to, checked at start.
//!
//! The cache uses commands that older servers reject or misread: `EXPIRE …
//! NX` (login and sign-up counters, Redis 7.0) and `SET … NX GET` (the fill
//! lease, Redis 7.0). On an older server every such call fails, the breaker
//! opens and every request bypasses the cache, silently; so a server that
//! answers with an older version is refused at start instead.

use redis::Value;

use super::{Cache, CacheError};

/// The oldest Redis calcache runs on.
pub const MIN_REDIS_VERSION: RedisVersion = RedisVersion(7, 0, 0);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RedisVersion(pub u32, pub u32, pub u32);

impl std::fmt::Display for RedisVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// `redis_version:7.0.15` in the text of `INFO server`. (Valkey reports a
/// Redis-compatible `redis_version` too.)
pub fn parse_redis_version(info: &str) -> Option<RedisVersion> {
    let line = info.lines().find_map(|l| l.trim().strip_prefix("redis_version:"))?;
    let mut parts = line.trim().split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some(RedisVersion(major, minor, patch))
}

/// The oldest version in an `INFO` answer: one text from one server, or
/// (Redis Cluster) a map of node to text.
fn oldest_version(answer: &Value) -> Option<RedisVersion> {
    match answer {
        Value::BulkString(bytes) => parse_redis_version(&String::from_utf8_lossy(bytes)),
        Value::SimpleString(s) => parse_redis_version(s),
        Value::VerbatimString { text, .. } => parse_redis_version(text),
        Value::Map(entries) => entries.iter().filter_map(|(_, v)| oldest_version(v)).min(),
        Value::Array(items) => items.iter().filter_map(oldest_version).min(),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerCheckError {
    #[error("redis {found} is too old: calcache needs {MIN_REDIS_VERSION} or newer (EXPIRE NX, SET NX GET)")]
    TooOld { found: RedisVersion },
    #[error("redis answered INFO without a redis_version")]
    NoVersion,
    #[error("redis did not answer")]
    Unreachable(#[source] CacheError),
}

/// Refuses a version older than [`MIN_REDIS_VERSION`].
pub fn check_version(found: RedisVersion) -> Result<RedisVersion, ServerCheckError> {
    if found < MIN_REDIS_VERSION { Err(ServerCheckError::TooOld { found }) } else { Ok(found) }
}

impl Cache {
    /// Asks the server (every master, on a cluster) for its version and
    /// refuses one that is too old. `Unreachable` is for the caller to
    /// judge: a Redis that is down at start is an outage the cache already
    /// degrades through, not a misconfiguration.
    pub async fn check_server(&self) -> Result<RedisVersion, ServerCheckError> {
        // Like `ping`: outside the breaker and the error metrics, so a check
        // at start cannot open the circuit or count as a request's failure.
        let answer: Value = self
            .client
            .unguarded(async |c| redis::cmd("INFO").arg("server").query_async(c).await)
            .await
            .map_err(ServerCheckError::Unreachable)?;
        check_version(oldest_version(&answer).ok_or(ServerCheckError::NoVersion)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO_7: &str = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\n";
    const INFO_6: &str = "# Server\r\nredis_version:6.2.14\r\nredis_mode:standalone\r\n";

    #[test]
    fn versions_parse_from_info_server() {
        assert_eq!(parse_redis_version(INFO_7), Some(RedisVersion(7, 0, 15)));
        assert_eq!(parse_redis_version(INFO_6), Some(RedisVersion(6, 2, 14)));
        assert_eq!(parse_redis_version("redis_version:8.2\n"), Some(RedisVersion(8, 2, 0)));
        assert_eq!(parse_redis_version("# Server\r\nredis_mode:standalone\r\n"), None);
        assert_eq!(parse_redis_version("redis_version:garbage\n"), None);
    }

    #[test]
    fn older_than_seven_is_refused() {
        assert!(check_version(RedisVersion(7, 0, 0)).is_ok());
        assert!(check_version(RedisVersion(7, 4, 1)).is_ok());
        let err = check_version(RedisVersion(6, 2, 14)).map(drop).unwrap_err();
        assert!(err.to_string().contains("6.2.14") && err.to_string().contains("7.0.0"), "{err}");
    }

    #[test]
    fn a_cluster_answer_is_judged_by_its_oldest_node() {
        let node = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let cluster = Value::Map(vec![(node("a:7000"), node(INFO_7)), (node("b:7001"), node(INFO_6))]);
        assert_eq!(oldest_version(&cluster), Some(RedisVersion(6, 2, 14)));
        assert_eq!(oldest_version(&node(INFO_7)), Some(RedisVersion(7, 0, 15)));
        assert_eq!(
            oldest_version(&Value::VerbatimString { format: redis::VerbatimFormat::Text, text: INFO_6.into() }),
            Some(RedisVersion(6, 2, 14))
        );
    }
}
