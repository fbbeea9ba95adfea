//! Typed settings: `config/default.toml`, then `config/<CALCACHE_ENV>.toml`
//! (`local` unless set), then environment variables `CALCACHE__<SECTION>__<KEY>`
//! (double underscore between levels, e.g. `CALCACHE__SERVER__WORKERS=4`),
//! then `DATABASE_URL` and `REDIS_URL`, which always win. Unknown keys are an
//! error, so a typo in a config file fails at start instead of being ignored.
//!
//! Settings are parsed like user input: each key becomes the type its users
//! need (a `Duration` for `*_ms` / `*_secs` keys, a non-zero integer, a
//! checked newtype, `types.rs`), its rules are checked while it is read and
//! a refusal names the key; [`Settings::check`] adds the rules between keys.
//! The code that uses a setting relies on it and does not clamp it again.

mod types;

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use types::duration;
pub use types::{KeyPrefix, MacKey, PoolSize, SampleRate, SessionLifetime};

pub use crate::cache::Buckets;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub cache: CacheSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub stream: StreamSettings,
    pub limits: LimitsSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// actix workers per process; 0 means one per core.
    pub workers: usize,
    /// How long a client may take to send the request head and its body.
    #[serde(rename = "client_timeout_ms", deserialize_with = "duration::positive_millis")]
    pub client_timeout: Duration,
    /// On SIGTERM, how long in-flight requests get to finish.
    #[serde(rename = "shutdown_timeout_secs", deserialize_with = "duration::secs")]
    pub shutdown_timeout: Duration,
    /// Where the calendar page's files are (`index.html`, `assets/`).
    pub web_dir: std::path::PathBuf,
    /// After SIGTERM/SIGINT, how long `/readyz` answers 503 while every other
    /// request is still served, so a balancer that polls readiness stops
    /// sending new requests before the listener closes. 0: stop at once.
    #[serde(rename = "drain_secs", deserialize_with = "duration::secs")]
    pub drain: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub pool_max_size: NonZeroU32,
    /// At most `pool_max_size`.
    pub pool_min_idle: u32,
    /// How long a request waits for a pooled connection before it answers 503.
    #[serde(rename = "connect_timeout_ms", deserialize_with = "duration::positive_millis")]
    pub connect_timeout: Duration,
    /// `statement_timeout` set on every pooled connection (0: PostgreSQL's
    /// own default, no limit).
    #[serde(rename = "statement_timeout_ms", deserialize_with = "duration::millis")]
    pub statement_timeout: Duration,
    /// Upper bound on a request's PostgreSQL work (checkout, queries,
    /// commit), enforced by calcache itself: on a network that drops packets
    /// the server-side `statement_timeout` never fires. Past it the request
    /// answers 503 (`outcome_unknown` if COMMIT had been sent). At least
    /// `statement_timeout`.
    #[serde(rename = "request_timeout_ms", deserialize_with = "duration::positive_millis")]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `single`: one Redis at `url`. `cluster`: Redis Cluster, discovered
    /// from `cluster_nodes` (`url` is then unused).
    pub mode: RedisMode,
    pub url: SecretString,
    /// Seed nodes (`redis://host:port`) for `mode = "cluster"`; any reachable
    /// one is enough to discover the rest. From the environment as a comma
    /// separated list: `CALCACHE__REDIS__CLUSTER_NODES=redis://a:7000,redis://b:7001`.
    pub cluster_nodes: Vec<SecretString>,
    /// Cluster mode: replicas that must acknowledge a version bump (Redis
    /// `WAIT`) before the invalidation counts as applied. Replication is
    /// asynchronous: a bump acknowledged only by a master that then fails
    /// would be lost with it, and the promoted replica would serve the old
    /// version's entries again. Unacknowledged bumps stay in the outbox and
    /// are applied again. 0 turns this off (for clusters without replicas).
    pub cluster_wait_replicas: u32,
    /// Namespaces one deployment's keys (see [`KeyPrefix`]).
    pub key_prefix: KeyPrefix,
    /// Authenticates what calcache reads back from Redis (cached session
    /// validity, feed entries; `cache::mac`): a secret every replica shares,
    /// at least 32 characters. The development default is refused in
    /// production.
    pub mac_key: MacKey,
    /// Pooled connections (single mode). Every actix worker holds one for
    /// as long as it runs, and the process' own tasks (outbox drainer,
    /// auditor) and the readiness probe need more, so it must exceed the
    /// worker count; 0 sizes it from the worker count
    /// ([`Settings::redis_pool_size`]).
    pub pool_max_size: PoolSize,
    /// Upper bound on any one Redis operation (connect included). Past it
    /// the cache is bypassed, so a sick Redis costs at most this much.
    #[serde(rename = "timeout_ms", deserialize_with = "duration::positive_millis")]
    pub timeout: Duration,
    /// After a Redis failure, how long the circuit stays open (Redis not
    /// tried, cache bypassed) before one request probes it again.
    #[serde(rename = "breaker_cooldown_ms", deserialize_with = "duration::millis")]
    pub breaker_cooldown: Duration,
    /// Consecutive failed Redis calls that open the circuit. One slow call
    /// under load must not send every request to PostgreSQL.
    pub breaker_failures: NonZeroU32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisMode {
    Single,
    Cluster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStrategy {
    /// Per-user version in every key; mutations INCR the version.
    Versioned,
    /// No version: entries live until their TTL (the origin's "before").
    Ttl,
    /// No cache: every feed from PostgreSQL.
    None,
    /// `versioned`, plus a version per time bucket (`cache.bucket_days`,
    /// a UTC day by default): a write bumps only the buckets its item
    /// covers, so the views of other weeks stay cached (`cache/buckets.rs`).
    Bucketed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    pub strategy: CacheStrategy,
    /// How long a feed entry lives in Redis (whole seconds: Redis `EX`).
    #[serde(rename = "feed_ttl_secs", deserialize_with = "duration::positive_secs")]
    pub feed_ttl: Duration,
    /// How long Redis may vouch for a session before PostgreSQL is asked again.
    #[serde(rename = "session_ttl_secs", deserialize_with = "duration::positive_secs")]
    pub session_ttl: Duration,
    /// How often each process retries invalidations left in the outbox; at
    /// least [`CacheSettings::MIN_OUTBOX_INTERVAL`].
    #[serde(rename = "outbox_interval_ms", deserialize_with = "duration::millis")]
    pub outbox_interval: Duration,
    /// On a miss, how long a request waits for another request (of this or
    /// another process) that is already filling the same entry, before it
    /// queries PostgreSQL itself. Also the fill lease's lifetime in Redis.
    #[serde(rename = "fill_wait_ms", deserialize_with = "duration::positive_millis")]
    pub fill_wait: Duration,
    /// Share of cache hits (0.0..=1.0) the freshness auditor re-checks
    /// against PostgreSQL; 0 turns the auditor off.
    pub audit_sample_rate: SampleRate,
    /// `bucketed` strategy: the width of a time bucket in days (1 to 31),
    /// aligned to Mondays 00:00 UTC (1: UTC days, the default; 7: ISO
    /// weeks). Every process sharing a Redis must use the same width (it is
    /// part of the keys). BENCHMARKS.md compares 1, 7 and 28.
    pub bucket_days: Buckets,
    /// Bytes of feed entries each process keeps a copy of (`cache::near`),
    /// so a hit need not fetch them from Redis; 0 turns it off. Used by
    /// `versioned` and `bucketed` (every hit still reads the versions).
    pub near_bytes: u64,
}

impl CacheSettings {
    /// The shortest `outbox_interval`: every pass is a PostgreSQL query.
    pub const MIN_OUTBOX_INTERVAL: Duration = Duration::from_millis(10);
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub signup_enabled: bool,
    #[serde(rename = "session_lifetime_hours")]
    pub session_lifetime: SessionLifetime,
    pub cookie_secure: bool,
    /// Login attempts not (yet) proven right, allowed per (username, client
    /// address) within `login_window_secs`; past them that client gets 429
    /// for that username. Counted before the password is checked, so
    /// concurrent guesses cannot all be evaluated. Per client, not per
    /// username alone: a stranger cannot lock anybody else out.
    pub login_max_failures_per_user_and_client: u64,
    /// The same, per client address over all usernames (stops one client
    /// from trying one password against many names).
    pub login_max_failures_per_client: u64,
    pub login_window_secs: NonZeroU64,
    /// Sign-ups (successful or not) allowed per client address within
    /// `signup_window_secs` when sign-up is enabled; past them 429.
    pub signup_max_per_client: u64,
    pub signup_window_secs: NonZeroU64,
    /// Password hashes (argon2id, ~19 MiB and tens of milliseconds of CPU
    /// each, on the blocking pool the database calls share) running at once
    /// in this process; further logins and sign-ups wait for a slot.
    pub max_concurrent_hashes: NonZeroUsize,
    /// How long a login or sign-up waits for a hashing slot before it
    /// answers 503.
    #[serde(rename = "hash_wait_ms", deserialize_with = "duration::millis")]
    pub hash_wait: Duration,
    /// Take the client address from the rightmost `X-Forwarded-For` entry
    /// instead of the TCP peer, when the peer is one of `trusted_proxies`.
    /// Only safe behind a proxy that overwrites (or appends to) the header,
    /// as `deploy/nginx.conf` does. From any other peer the header is
    /// ignored, with a warning.
    pub trust_forwarded_for: bool,
    /// Addresses or networks (`10.0.0.5`, `10.0.0.0/8`, `fd00::/8`) of the
    /// proxies whose `X-Forwarded-For` is believed. Required when
    /// `trust_forwarded_for` is on.
    pub trusted_proxies: Vec<TrustedProxy>,
    /// How often each process deletes expired sessions; 0 turns the
    /// background pruning off (`calcache sessions prune` still works).
    #[serde(rename = "session_prune_interval_secs", deserialize_with = "duration::secs_or_off")]
    pub session_prune_interval: Option<Duration>,
}

/// A network whose peers may name the client in `X-Forwarded-For`: CIDR
/// notation, or a bare address (one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct TrustedProxy(pub ipnet::IpNet);

impl TryFrom<String> for TrustedProxy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let s = s.trim();
        s.parse::<ipnet::IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(Self)
            .map_err(|_| format!("{s:?} is neither an IP address nor a network in CIDR notation"))
    }
}

impl TrustedProxy {
    pub fn contains(&self, ip: &std::net::IpAddr) -> bool {
        self.0.contains(ip)
    }
}

impl std::fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Live change streams (`GET /api/calendar/changes`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// A comment line this often keeps idle proxies from closing the stream
    /// (and finds clients that went away).
    #[serde(rename = "heartbeat_secs", deserialize_with = "duration::positive_secs")]
    pub heartbeat: Duration,
    /// How often each stream re-reads its user's version and re-checks its
    /// session: the safety net under Pub/Sub, which may lose messages.
    #[serde(rename = "check_secs", deserialize_with = "duration::positive_secs")]
    pub check: Duration,
    /// Open streams per user per process (tabs and devices), then 429.
    pub max_per_user: NonZeroUsize,
    /// Open streams per process, then 503 (a balancer tries another replica).
    pub max_per_process: NonZeroUsize,
    /// The reconnect delay the stream asks browsers to use (`retry:`).
    #[serde(rename = "retry_ms", deserialize_with = "duration::positive_millis")]
    pub retry: Duration,
}

/// Per-user limits (`[limits]`): what one account may cost everybody else.
/// See docs/operations.md, "Per-user limits".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSettings {
    /// Feed *fills* (PostgreSQL loads on a cache miss or bypass) per user per
    /// `feed_fill_window_secs`, counted in Redis and shared by every process;
    /// past it `429 rate_limited`. Hits are free. 0 turns the budget off.
    pub feed_fills_per_user: u64,
    pub feed_fill_window_secs: NonZeroU64,
    /// Work items one user may own; a create past it answers
    /// `409 limit_exceeded` and writes nothing.
    pub max_items_per_owner: NonZeroU64,
    /// Items owned by *others* that one user may be assigned to (what a
    /// stranger can add to somebody's feed); a create or change that would
    /// assign a user past it answers `409 limit_exceeded` naming
    /// `assignee_ids`.
    pub max_assignments_per_user: NonZeroU64,
    /// Events in one feed answer; a range holding more answers
    /// `409 limit_exceeded` naming `end` (ask for a shorter range). At most
    /// [`LimitsSettings::MAX_ITEMS_PER_FEED`], so that the largest answer
    /// stays well inside what the cache will decompress.
    pub max_items_per_feed: NonZeroUsize,
}

impl LimitsSettings {
    /// The upper bound of `max_items_per_feed`: that many of the largest
    /// events ([`crate::service::feed::MAX_EVENT_JSON_BYTES`]) still fit
    /// twice into the decompression bound ([`crate::cache::FeedBody::MAX_JSON_BYTES`]).
    pub const MAX_ITEMS_PER_FEED: usize =
        crate::cache::FeedBody::MAX_JSON_BYTES / 2 / crate::service::feed::MAX_EVENT_JSON_BYTES;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// `tracing_subscriber::EnvFilter` directives; `RUST_LOG` wins if set.
    pub filter: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load configuration")]
    Load(#[from] config::ConfigError),
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The environment `CALCACHE_ENV` names (`local` when unset).
pub fn environment() -> String {
    std::env::var("CALCACHE_ENV").unwrap_or_else(|_| "local".into())
}

impl Settings {
    /// Loads the environment named by `CALCACHE_ENV` from `CALCACHE_CONFIG_DIR`
    /// (default `./config`), with environment overrides.
    pub fn load() -> Result<Self, ConfigError> {
        let env = environment();
        let dir = std::env::var_os("CALCACHE_CONFIG_DIR").map_or_else(|| PathBuf::from("config"), PathBuf::from);
        Self::load_from(&dir, &env)
    }

    pub fn load_from(dir: &Path, env: &str) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from(dir.join("default.toml")))
            .add_source(config::File::from(dir.join(format!("{env}.toml"))))
            .add_source(
                config::Environment::with_prefix("CALCACHE")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("redis.cluster_nodes")
                    .with_list_parse_key("auth.trusted_proxies"),
            );
        // The conventional variables always win over the files.
        if let Ok(url) = std::env::var("DATABASE_URL") {
            builder = builder.set_override("database.url", url)?;
        }
        if let Ok(url) = std::env::var("REDIS_URL") {
            builder = builder.set_override("redis.url", url)?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.check()?;
        if env == "production" && settings.redis.mac_key.is_development_default() {
            return Err(ConfigError::Invalid {
                key: "redis.mac_key",
                reason: "is the development default; set CALCACHE__REDIS__MAC_KEY to a secret of your own \
                    (the same on every replica, e.g. `openssl rand -hex 32`)"
                    .into(),
            });
        }
        Ok(settings)
    }

    /// Checks the rules between keys (a single key's rules are in its type,
    /// `types.rs`). `load` calls it, and `Application::build` again: tests
    /// change settings after loading.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        if self.redis.mode == RedisMode::Cluster && self.redis.cluster_nodes.is_empty() {
            return invalid("redis.cluster_nodes", "cluster mode needs at least one seed node".into());
        }
        if self.database.request_timeout < self.database.statement_timeout {
            return invalid("database.request_timeout_ms", "must be at least database.statement_timeout_ms".into());
        }
        if self.database.pool_min_idle > self.database.pool_max_size.get() {
            return invalid("database.pool_min_idle", "must be at most database.pool_max_size".into());
        }
        let workers = self.server.worker_count();
        let needed = workers + PoolSize::MIN_SPARE;
        let pool = self.redis_pool_size();
        if self.redis.mode == RedisMode::Single && pool < needed {
            return invalid(
                "redis.pool_max_size",
                format!(
                    "{pool} is too small for {workers} workers: each worker holds one connection and the process \
                     needs {} more, so at least {needed} (or 0 to size it from the worker count)",
                    PoolSize::MIN_SPARE
                ),
            );
        }
        if self.cache.outbox_interval < CacheSettings::MIN_OUTBOX_INTERVAL {
            return invalid(
                "cache.outbox_interval_ms",
                format!("must be at least {} ms", CacheSettings::MIN_OUTBOX_INTERVAL.as_millis()),
            );
        }
        if self.auth.trust_forwarded_for && self.auth.trusted_proxies.is_empty() {
            return invalid(
                "auth.trusted_proxies",
                "trust_forwarded_for needs the addresses of the proxies that set X-Forwarded-For".into(),
            );
        }
        if self.limits.max_items_per_feed.get() > LimitsSettings::MAX_ITEMS_PER_FEED {
            return invalid(
                "limits.max_items_per_feed",
                format!(
                    "must be at most {}: larger answers would not fit the bound on decompressed cache entries",
                    LimitsSettings::MAX_ITEMS_PER_FEED
                ),
            );
        }
        Ok(())
    }

    /// The Redis pool's size for this process's worker count.
    pub fn redis_pool_size(&self) -> usize {
        self.redis.pool_max_size.for_workers(self.server.worker_count())
    }
}

impl ServerSettings {
    pub fn worker_count(&self) -> usize {
        if self.workers == 0 { std::thread::available_parallelism().map_or(1, usize::from) } else { self.workers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    /// Loads config/default.toml overridden by `toml`, from a directory of
    /// its own.
    fn load_with(toml: &str) -> Result<Settings, ConfigError> {
        let tmp = std::env::temp_dir().join(format!("calcache-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(dir().join("default.toml"), tmp.join("default.toml")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(tmp.join("case.toml"), toml).unwrap_or_else(|e| panic!("{e}"));
        let loaded = Settings::load_from(&tmp, "case");
        std::fs::remove_dir_all(&tmp).ok();
        loaded
    }

    /// The error `toml` fails to load with, as an operator reads it.
    fn refusal(toml: &str) -> String {
        match load_with(toml) {
            Ok(_) => panic!("{toml:?} loaded"),
            Err(e) => format!("{}", crate::error::Chain(&e)),
        }
    }

    #[test]
    fn every_config_file_loads() {
        for env in ["local", "test"] {
            if let Err(e) = Settings::load_from(&dir(), env) {
                panic!("config/{env}.toml: {e:?}");
            }
        }
        // Production loads too, but not with the development MAC key.
        match Settings::load_from(&dir(), "production") {
            Err(ConfigError::Invalid { key: "redis.mac_key", .. }) => {}
            other => panic!("config/production.toml with the development MAC key: {other:?}"),
        }
    }

    #[test]
    fn durations_are_read_in_the_unit_their_key_names() {
        let s = load_with(
            "[server]\nclient_timeout_ms = 1500\ndrain_secs = 7\n[redis]\ntimeout_ms = 40\n\
             [cache]\nfeed_ttl_secs = 90\n[auth]\nsession_lifetime_hours = 2\nsession_prune_interval_secs = 0\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(s.server.client_timeout, Duration::from_millis(1500));
        assert_eq!(s.server.drain, Duration::from_secs(7));
        assert_eq!(s.redis.timeout, Duration::from_millis(40));
        assert_eq!(s.cache.feed_ttl, Duration::from_secs(90));
        assert_eq!(s.auth.session_lifetime.get(), chrono::TimeDelta::hours(2));
        assert_eq!(s.auth.session_prune_interval, None);
        assert_eq!(s.stream.retry, Duration::from_secs(1));
    }

    #[test]
    fn cluster_mode_needs_seed_nodes() {
        assert!(refusal("[redis]\nmode = \"cluster\"\n").contains("redis.cluster_nodes"));
        let settings = load_with("[redis]\nmode = \"cluster\"\ncluster_nodes = [\"redis://127.0.0.1:7000\"]\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(settings.redis.mode, RedisMode::Cluster);
        assert_eq!(settings.redis.cluster_nodes.len(), 1);
    }

    /// Every rule is checked at load, and the refusal names the key (the
    /// code that uses a setting does not clamp it again).
    #[test]
    fn values_out_of_range_are_refused_naming_their_key() {
        let too_many = LimitsSettings::MAX_ITEMS_PER_FEED + 1;
        let cases = [
            ("[server]\nclient_timeout_ms = 0\n".to_owned(), "server.client_timeout_ms"),
            ("[database]\npool_max_size = 0\n".to_owned(), "database.pool_max_size"),
            ("[database]\npool_max_size = 2\npool_min_idle = 3\n".to_owned(), "database.pool_min_idle"),
            ("[database]\nconnect_timeout_ms = 0\n".to_owned(), "database.connect_timeout_ms"),
            ("[database]\nrequest_timeout_ms = 0\n".to_owned(), "database.request_timeout_ms"),
            (
                "[database]\nrequest_timeout_ms = 100\nstatement_timeout_ms = 200\n".to_owned(),
                "database.request_timeout_ms",
            ),
            ("[redis]\ntimeout_ms = 0\n".to_owned(), "redis.timeout_ms"),
            ("[redis]\nbreaker_failures = 0\n".to_owned(), "redis.breaker_failures"),
            ("[redis]\nkey_prefix = \"\"\n".to_owned(), "redis.key_prefix"),
            ("[redis]\nkey_prefix = \"a{b}\"\n".to_owned(), "redis.key_prefix"),
            ("[redis]\nmac_key = \"short\"\n".to_owned(), "redis.mac_key"),
            ("[redis]\npool_max_size = -1\n".to_owned(), "redis.pool_max_size"),
            ("[cache]\nfeed_ttl_secs = 0\n".to_owned(), "cache.feed_ttl_secs"),
            ("[cache]\nsession_ttl_secs = 0\n".to_owned(), "cache.session_ttl_secs"),
            ("[cache]\nfill_wait_ms = 0\n".to_owned(), "cache.fill_wait_ms"),
            ("[cache]\noutbox_interval_ms = 9\n".to_owned(), "cache.outbox_interval_ms"),
            ("[cache]\naudit_sample_rate = 1.5\n".to_owned(), "cache.audit_sample_rate"),
            ("[cache]\naudit_sample_rate = -0.1\n".to_owned(), "cache.audit_sample_rate"),
            ("[cache]\nbucket_days = 0\n".to_owned(), "cache.bucket_days"),
            ("[cache]\nbucket_days = 32\n".to_owned(), "cache.bucket_days"),
            ("[cache]\nfeed_ttl_secs = -5\n".to_owned(), "cache.feed_ttl_secs"),
            ("[auth]\nsession_lifetime_hours = 0\n".to_owned(), "auth.session_lifetime_hours"),
            ("[auth]\nsession_lifetime_hours = 100000\n".to_owned(), "auth.session_lifetime_hours"),
            ("[auth]\ntrust_forwarded_for = true\n".to_owned(), "auth.trusted_proxies"),
            ("[stream]\nheartbeat_secs = 0\n".to_owned(), "stream.heartbeat_secs"),
            ("[stream]\nretry_ms = 0\n".to_owned(), "stream.retry_ms"),
            (format!("[limits]\nmax_items_per_feed = {too_many}\n"), "limits.max_items_per_feed"),
            ("[limits]\nmax_items_per_feed = 0\n".to_owned(), "limits.max_items_per_feed"),
            ("[limits]\nmax_items_per_owner = 0\n".to_owned(), "limits.max_items_per_owner"),
            ("[limits]\nmax_assignments_per_user = 0\n".to_owned(), "limits.max_assignments_per_user"),
            ("[limits]\nfeed_fill_window_secs = 0\n".to_owned(), "limits.feed_fill_window_secs"),
            ("[limits]\nfeed_fills_per_user = -1\n".to_owned(), "limits.feed_fills_per_user"),
        ];
        for (toml, key) in cases {
            let shown = refusal(&toml);
            assert!(shown.contains(key), "{toml:?}: {shown}");
        }
    }

    #[test]
    fn zero_means_off_or_derived_where_documented() {
        let s = load_with("[limits]\nfeed_fills_per_user = 0\n[redis]\npool_max_size = 0\n[server]\nworkers = 3\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(s.limits.feed_fills_per_user, 0);
        assert_eq!(s.redis.pool_max_size, PoolSize::FromWorkers);
        assert_eq!(s.redis_pool_size(), 3 + PoolSize::HEADROOM);
        assert_eq!(s.cache.audit_sample_rate.active(), None);
        let s = load_with("[database]\nstatement_timeout_ms = 0\n[server]\ndrain_secs = 0\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(s.database.statement_timeout.is_zero() && s.server.drain.is_zero());
    }

    #[test]
    fn trusted_proxies_are_networks_or_single_addresses() {
        let parse = |s: &str| TrustedProxy::try_from(s.to_owned());
        let host = parse("10.0.0.5").unwrap_or_else(|e| panic!("{e}"));
        assert!(host.contains(&"10.0.0.5".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(!host.contains(&"10.0.0.6".parse().unwrap_or_else(|e| panic!("{e}"))));
        let net = parse("fd00::/8").unwrap_or_else(|e| panic!("{e}"));
        assert!(net.contains(&"fd12::1".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(parse("10.0.0.0/99").is_err());
        assert!(parse("nginx").is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(refusal("[server]\nworkerz = 4\n").contains("workerz"));
    }
}
