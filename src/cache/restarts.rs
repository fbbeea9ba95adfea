//! A Redis that comes back with old data.
//!
//! Redis with persistence (RDB snapshots, AOF) that restarts — or is
//! restored from a backup — loads the keys it had when it last saved: old
//! versions *together with* the entries stored under them. The bumps made
//! since are lost, so those entries look current again. They stay
//! dangerous only while they live: an entry lives at most
//! `cache.feed_ttl_secs` (plus a fill's duration) after it was stored, and
//! a cached session check at most `cache.session_ttl_secs`; Redis keeps
//! expiry times as absolute instants, so a snapshot's entries that should
//! have expired are gone on load.
//!
//! The same holds for a replica promoted to master that had not received
//! the latest bumps (a failover to a lagging replica).
//!
//! So whenever this process opens a connection to a Redis that loaded keys
//! from disk at start (`rdb_last_load_keys_loaded` > 0, or AOF on) and has
//! been up for less than that lifetime, it stops trusting the cache until
//! the lifetime has passed since the start; and when a connection reaches a
//! different Redis than the one before (another `run_id`) that was promoted
//! from a replica (`second_repl_offset` set), for a whole lifetime from then.
//! Meanwhile feeds come from PostgreSQL and are not stored, sessions are
//! checked in PostgreSQL. Every process decides this alone, from what Redis
//! says of itself; versions that survived stay usable afterwards (entries
//! filled later are filled from PostgreSQL after the event, and versions
//! only grow from there). On Redis Cluster, `redis.cluster_wait_replicas`
//! does this job: a bump or fence counts only once a replica has it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What `INFO` says about how this Redis started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Start<'a> {
    pub run_id: &'a str,
    pub uptime: Duration,
    /// Keys were loaded from disk at start (or may have been: AOF is on).
    pub loaded_data: bool,
    /// This master was a replica once (it keeps its old master's history).
    pub promoted: bool,
}

impl<'a> Start<'a> {
    /// Parses `INFO server` + `INFO persistence` + `INFO replication` output.
    pub fn parse(info: &'a str) -> Option<Self> {
        let field = |name: &str| {
            info.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':'))).map(str::trim)
        };
        let uptime = Duration::from_secs(field("uptime_in_seconds")?.parse().ok()?);
        let keys_loaded: u64 = field("rdb_last_load_keys_loaded").and_then(|v| v.parse().ok()).unwrap_or(0);
        let aof = field("aof_enabled") == Some("1");
        let promoted = field("role") == Some("master")
            && field("second_repl_offset").and_then(|v| v.parse::<i64>().ok()).is_some_and(|o| o >= 0);
        Some(Self { run_id: field("run_id")?, uptime, loaded_data: keys_loaded > 0 || aof, promoted })
    }
}

/// Until when this process does not trust what Redis holds.
#[derive(Debug)]
pub(super) struct Distrust {
    /// Fast path: nothing to check on a hit while false.
    active: AtomicBool,
    /// Milliseconds after `epoch`.
    until_ms: AtomicU64,
    epoch: Instant,
    /// How long old entries and session checks can live.
    lifetime: Duration,
    /// The Redis this process's connections reached last.
    last_run_id: std::sync::Mutex<Option<String>>,
}

impl Distrust {
    pub fn new(lifetime: Duration) -> Self {
        Self {
            active: AtomicBool::new(false),
            until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            lifetime,
            last_run_id: std::sync::Mutex::new(None),
        }
    }

    /// A new connection reached a Redis that started as `start` says.
    /// Returns how long the cache will now be distrusted, if at all.
    pub fn observe(&self, start: Start<'_>) -> Option<Duration> {
        let switched = match self.last_run_id.lock() {
            Ok(mut last) => {
                let switched = last.as_deref().is_some_and(|id| id != start.run_id);
                *last = Some(start.run_id.to_owned());
                switched
            }
            // A poisoned lock: assume the worst.
            Err(_) => true,
        };
        let left = if switched && start.promoted {
            self.lifetime
        } else if start.loaded_data && start.uptime < self.lifetime {
            self.lifetime - start.uptime
        } else {
            return None;
        };
        if left.is_zero() {
            return None;
        }
        let until = u64::try_from((self.epoch.elapsed() + left).as_millis()).unwrap_or(u64::MAX);
        self.until_ms.fetch_max(until, Ordering::AcqRel);
        self.active.store(true, Ordering::Release);
        Some(left)
    }

    /// True while the cache must not be used.
    pub fn active(&self) -> bool {
        if !self.active.load(Ordering::Acquire) {
            return false;
        }
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        if now < self.until_ms.load(Ordering::Acquire) {
            return true;
        }
        self.active.store(false, Ordering::Release);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESH_FROM_DISK: &str = "# Server\r\nredis_version:7.0.15\r\nrun_id:aaa\r\nuptime_in_seconds:3\r\n\
        # Persistence\r\nloading:0\r\nrdb_last_load_keys_expired:2\r\nrdb_last_load_keys_loaded:120\r\naof_enabled:0\r\n\
        # Replication\r\nrole:master\r\nsecond_repl_offset:-1\r\n";

    fn start(run_id: &str, uptime: u64, loaded_data: bool, promoted: bool) -> Start<'_> {
        Start { run_id, uptime: Duration::from_secs(uptime), loaded_data, promoted }
    }

    #[test]
    fn parses_what_redis_says_of_its_start() {
        assert_eq!(Start::parse(FRESH_FROM_DISK), Some(start("aaa", 3, true, false)));
        let empty = FRESH_FROM_DISK.replace("keys_loaded:120", "keys_loaded:0");
        assert_eq!(Start::parse(&empty).map(|s| s.loaded_data), Some(false));
        let aof = empty.replace("aof_enabled:0", "aof_enabled:1");
        assert_eq!(Start::parse(&aof).map(|s| s.loaded_data), Some(true));
        let promoted = empty.replace("second_repl_offset:-1", "second_repl_offset:4711");
        assert_eq!(Start::parse(&promoted).map(|s| s.promoted), Some(true));
        let replica = promoted.replace("role:master", "role:slave");
        assert_eq!(Start::parse(&replica).map(|s| s.promoted), Some(false));
        assert_eq!(Start::parse("no such fields"), None);
    }

    #[test]
    fn distrusts_a_young_redis_that_loaded_data_until_its_old_entries_are_gone() {
        let d = Distrust::new(Duration::from_secs(300));
        assert!(!d.active());
        assert_eq!(d.observe(start("a", 500, true, false)), None);
        assert_eq!(d.observe(start("a", 3, false, false)), None);
        assert!(!d.active());
        assert_eq!(d.observe(start("a", 100, true, false)), Some(Duration::from_secs(200)));
        assert!(d.active());
        let short = Distrust::new(Duration::ZERO);
        assert_eq!(short.observe(start("a", 0, true, false)), None);
        assert!(!short.active());
    }

    #[test]
    fn distrusts_a_switch_to_a_promoted_replica_for_a_whole_lifetime() {
        let d = Distrust::new(Duration::from_secs(300));
        // The first Redis a process meets is trusted, promoted or not: the
        // process cannot know what came before it.
        assert_eq!(d.observe(start("a", 9000, false, true)), None);
        assert_eq!(d.observe(start("a", 9001, false, true)), None);
        assert_eq!(d.observe(start("b", 9000, false, false)), None, "a switch to a master that was never a replica");
        assert_eq!(d.observe(start("c", 9000, false, true)), Some(Duration::from_secs(300)));
        assert!(d.active());
    }
}
