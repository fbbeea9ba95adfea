//! Typed settings: `config/default.toml`, then `config/<CALCACHE_ENV>.toml`
//! (`local` unless set), then environment variables `CALCACHE__<SECTION>__<KEY>`
//! (double underscore between levels, e.g. `CALCACHE__SERVER__WORKERS=4`),
//! then `DATABASE_URL` and `REDIS_URL`, which always win. Unknown keys are an
//! error, so a typo in a config file fails at start instead of being ignored.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

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
    pub client_timeout_ms: u64,
    /// On SIGTERM, how long in-flight requests get to finish.
    pub shutdown_timeout_secs: u64,
    /// Where the calendar page's files are (`index.html`, `assets/`).
    pub web_dir: std::path::PathBuf,
    /// After SIGTERM/SIGINT, how long `/readyz` answers 503 while every other
    /// request is still served, so a balancer that polls readiness stops
    /// sending new requests before the listener closes. 0: stop at once.
    pub drain_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub pool_max_size: u32,
    pub pool_min_idle: u32,
    /// How long a request waits for a pooled connection before it answers 503.
    pub connect_timeout_ms: u64,
    /// `statement_timeout` set on every pooled connection.
    pub statement_timeout_ms: u64,
    /// Upper bound on a request's PostgreSQL work (checkout, queries,
    /// commit), enforced by calcache itself: on a network that drops packets
    /// the server-side `statement_timeout` never fires. Past it the request
    /// answers 503 (`outcome_unknown` if COMMIT had been sent).
    pub request_timeout_ms: u64,
}

impl DatabaseSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
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
    /// Namespaces one deployment's keys. Must not contain `{` or `}`: braces
    /// are the Redis Cluster hash tag, and only the user id may be tagged.
    pub key_prefix: String,
    /// Authenticates what calcache reads back from Redis (cached session
    /// validity, feed entries; `cache::mac`): a secret every replica shares,
    /// at least 32 characters. The development default is refused in
    /// production.
    pub mac_key: SecretString,
    /// Pooled connections. Every actix worker holds one for as long as it
    /// runs, and the process' own tasks (outbox drainer, auditor) and the
    /// readiness probe need more, so it must exceed the worker count; 0
    /// sizes it from the worker count (see [`RedisSettings::pool_headroom`]).
    pub pool_max_size: usize,
    /// The size [`Settings::finish`] derived from the workers for
    /// `pool_max_size = 0`: while `pool_max_size` still holds it, a later
    /// `finish` derives it again, so a changed worker count resizes it.
    #[serde(skip)]
    pub pool_sized_from_workers: Option<usize>,
    /// Upper bound on any one Redis operation (connect included). Past it
    /// the cache is bypassed, so a sick Redis costs at most this much.
    pub timeout_ms: u64,
    /// After a Redis failure, how long the circuit stays open (Redis not
    /// tried, cache bypassed) before one request probes it again.
    pub breaker_cooldown_ms: u64,
    /// Consecutive failed Redis calls that open the circuit. One slow call
    /// under load must not send every request to PostgreSQL.
    pub breaker_failures: u32,
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
    pub feed_ttl_secs: u64,
    /// How long Redis may vouch for a session before PostgreSQL is asked again.
    pub session_ttl_secs: u64,
    /// How often each process retries invalidations left in the outbox.
    pub outbox_interval_ms: u64,
    /// On a miss, how long a request waits for another request (of this or
    /// another process) that is already filling the same entry, before it
    /// queries PostgreSQL itself.
    pub fill_wait_ms: u64,
    /// Share of cache hits (0.0..=1.0) the freshness auditor re-checks
    /// against PostgreSQL; 0 turns the auditor off.
    pub audit_sample_rate: f64,
    /// `bucketed` strategy: the width of a time bucket in days (1 to 31),
    /// aligned to Mondays 00:00 UTC (1: UTC days, the default; 7: ISO
    /// weeks). Every process sharing a Redis must use the same width (it is
    /// part of the keys). BENCHMARKS.md compares 1, 7 and 28.
    #[serde(default = "CacheSettings::default_bucket_days")]
    pub bucket_days: u32,
    /// Bytes of feed entries each process keeps a copy of (`cache::near`),
    /// so a hit need not fetch them from Redis; 0 turns it off. Used by
    /// `versioned` and `bucketed` (every hit still reads the versions).
    #[serde(default = "CacheSettings::default_near_bytes")]
    pub near_bytes: u64,
}

impl CacheSettings {
    const fn default_bucket_days() -> u32 {
        1
    }

    const fn default_near_bytes() -> u64 {
        32 * 1024 * 1024
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub signup_enabled: bool,
    pub session_lifetime_hours: u64,
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
    pub hash_wait_ms: u64,
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
    pub session_prune_interval_secs: u64,
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
    pub heartbeat_secs: std::num::NonZeroU64,
    /// How often each stream re-reads its user's version and re-checks its
    /// session: the safety net under Pub/Sub, which may lose messages.
    pub check_secs: std::num::NonZeroU64,
    /// Open streams per user per process (tabs and devices), then 429.
    pub max_per_user: std::num::NonZeroUsize,
    /// Open streams per process, then 503 (a balancer tries another replica).
    pub max_per_process: std::num::NonZeroUsize,
    /// The reconnect delay the stream asks browsers to use (`retry:`).
    pub retry_ms: std::num::NonZeroU64,
}

impl StreamSettings {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs.get())
    }

    pub fn check(&self) -> Duration {
        Duration::from_secs(self.check_secs.get())
    }
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
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.finish()?;
        if env == "production" && settings.redis.mac_key.expose_secret() == RedisSettings::DEVELOPMENT_MAC_KEY {
            return Err(ConfigError::Invalid {
                key: "redis.mac_key",
                reason: "is the development default; set CALCACHE__REDIS__MAC_KEY to a secret of your own \
                    (the same on every replica, e.g. `openssl rand -hex 32`)"
                    .into(),
            });
        }
        Ok(settings)
    }

    /// Derives what is left to derive (`redis.pool_max_size = 0`), then
    /// checks what no single key can say on its own. `load` calls it, and
    /// `Application::build` again (tests change settings after loading).
    pub fn finish(&mut self) -> Result<(), ConfigError> {
        let workers = self.server.worker_count();
        if self.redis.pool_max_size == 0 || self.redis.pool_sized_from_workers == Some(self.redis.pool_max_size) {
            self.redis.pool_max_size = workers + RedisSettings::pool_headroom();
            self.redis.pool_sized_from_workers = Some(self.redis.pool_max_size);
        }
        self.check()
    }

    fn check(&self) -> Result<(), ConfigError> {
        let prefix = &self.redis.key_prefix;
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(ConfigError::Invalid {
                key: "redis.key_prefix",
                reason: "must be non-empty and contain no braces (they are the cluster hash tag)".into(),
            });
        }
        if self.redis.mac_key.expose_secret().len() < 32 {
            return Err(ConfigError::Invalid { key: "redis.mac_key", reason: "must be at least 32 characters".into() });
        }
        if self.redis.mode == RedisMode::Cluster && self.redis.cluster_nodes.is_empty() {
            return Err(ConfigError::Invalid {
                key: "redis.cluster_nodes",
                reason: "cluster mode needs at least one seed node".into(),
            });
        }
        if self.database.request_timeout_ms == 0
            || self.database.request_timeout_ms < self.database.statement_timeout_ms
        {
            return Err(ConfigError::Invalid {
                key: "database.request_timeout_ms",
                reason: "must be positive and at least database.statement_timeout_ms".into(),
            });
        }
        if self.database.pool_max_size == 0 {
            return Err(ConfigError::Invalid { key: "database.pool_max_size", reason: "must be at least 1".into() });
        }
        let workers = self.server.worker_count();
        let needed = workers + RedisSettings::MIN_SPARE_CONNECTIONS;
        if self.redis.mode == RedisMode::Single && self.redis.pool_max_size < needed {
            return Err(ConfigError::Invalid {
                key: "redis.pool_max_size",
                reason: format!(
                    "{} is too small for {workers} workers: each worker holds one connection and the process \
                     needs {} more, so at least {needed} (or 0 to size it from the worker count)",
                    self.redis.pool_max_size,
                    RedisSettings::MIN_SPARE_CONNECTIONS
                ),
            });
        }
        if !(1..=31).contains(&self.cache.bucket_days) {
            return Err(ConfigError::Invalid { key: "cache.bucket_days", reason: "must be 1 to 31".into() });
        }
        if !(0.0..=1.0).contains(&self.cache.audit_sample_rate) {
            return Err(ConfigError::Invalid { key: "cache.audit_sample_rate", reason: "must be 0.0 to 1.0".into() });
        }
        if self.auth.trust_forwarded_for && self.auth.trusted_proxies.is_empty() {
            return Err(ConfigError::Invalid {
                key: "auth.trusted_proxies",
                reason: "trust_forwarded_for needs the addresses of the proxies that set X-Forwarded-For".into(),
            });
        }
        if self.limits.max_items_per_feed.get() > LimitsSettings::MAX_ITEMS_PER_FEED {
            return Err(ConfigError::Invalid {
                key: "limits.max_items_per_feed",
                reason: format!(
                    "must be at most {}: larger answers would not fit the bound on decompressed cache entries",
                    LimitsSettings::MAX_ITEMS_PER_FEED
                ),
            });
        }
        Ok(())
    }
}

impl ServerSettings {
    pub fn worker_count(&self) -> usize {
        if self.workers == 0 { std::thread::available_parallelism().map_or(1, usize::from) } else { self.workers }
    }
}

impl RedisSettings {
    /// `redis.mac_key` in config/default.toml: for development and tests only.
    pub const DEVELOPMENT_MAC_KEY: &str = "calcache-development-mac-key-not-a-secret";

    /// Connections beyond one per worker that a process needs: the main
    /// thread's (outbox drainer, auditor) and the readiness probe's.
    pub const MIN_SPARE_CONNECTIONS: usize = 2;

    /// What `pool_max_size = 0` adds to the worker count: the spare
    /// connections, plus room for a reconnect while an old one winds down.
    pub const fn pool_headroom() -> usize {
        Self::MIN_SPARE_CONNECTIONS + 2
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
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
    fn cluster_mode_needs_seed_nodes() {
        let tmp = std::env::temp_dir().join(format!("calcache-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(dir().join("default.toml"), tmp.join("default.toml")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(tmp.join("bare.toml"), "[redis]\nmode = \"cluster\"\n").unwrap_or_else(|e| panic!("{e}"));
        let err = Settings::load_from(&tmp, "bare").map(|_| ()).unwrap_err();
        assert!(format!("{err}").contains("redis.cluster_nodes"), "{err}");
        std::fs::write(
            tmp.join("seeded.toml"),
            "[redis]\nmode = \"cluster\"\ncluster_nodes = [\"redis://127.0.0.1:7000\"]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let settings = Settings::load_from(&tmp, "seeded").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(settings.redis.mode, RedisMode::Cluster);
        assert_eq!(settings.redis.cluster_nodes.len(), 1);
        std::fs::remove_dir_all(&tmp).ok();
    }

    #[test]
    fn out_of_range_cache_settings_name_their_key() {
        let tmp = std::env::temp_dir().join(format!("calcache-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(dir().join("default.toml"), tmp.join("default.toml")).unwrap_or_else(|e| panic!("{e}"));
        for (file, key) in [
            ("[cache]\naudit_sample_rate = 1.5\n", "cache.audit_sample_rate"),
            ("[cache]\naudit_sample_rate = -0.1\n", "cache.audit_sample_rate"),
            ("[cache]\nbucket_days = 0\n", "cache.bucket_days"),
        ] {
            std::fs::write(tmp.join("bad.toml"), file).unwrap_or_else(|e| panic!("{e}"));
            let err = Settings::load_from(&tmp, "bad").map(|_| ()).unwrap_err();
            assert!(format!("{err}").contains(key), "{file}: {err}");
        }
        std::fs::remove_dir_all(&tmp).ok();
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
        let tmp = std::env::temp_dir().join(format!("calcache-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(dir().join("default.toml"), tmp.join("default.toml")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(tmp.join("typo.toml"), "[server]\nworkerz = 4\n").unwrap_or_else(|e| panic!("{e}"));
        let err = Settings::load_from(&tmp, "typo").map(|_| ()).unwrap_err();
        assert!(format!("{err:?}").contains("workerz"), "{err:?}");
        std::fs::remove_dir_all(&tmp).ok();
    }

    #[test]
    fn out_of_range_limits_name_their_key() {
        let tmp = std::env::temp_dir().join(format!("calcache-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(dir().join("default.toml"), tmp.join("default.toml")).unwrap_or_else(|e| panic!("{e}"));
        let too_many = LimitsSettings::MAX_ITEMS_PER_FEED + 1;
        for (file, key) in [
            (format!("[limits]\nmax_items_per_feed = {too_many}\n"), "limits.max_items_per_feed"),
            ("[limits]\nmax_items_per_feed = 0\n".to_owned(), "max_items_per_feed"),
            ("[limits]\nmax_items_per_owner = 0\n".to_owned(), "max_items_per_owner"),
            ("[limits]\nmax_assignments_per_user = 0\n".to_owned(), "max_assignments_per_user"),
            ("[limits]\nfeed_fill_window_secs = 0\n".to_owned(), "feed_fill_window_secs"),
            ("[limits]\nfeed_fills_per_user = -1\n".to_owned(), "feed_fills_per_user"),
        ] {
            std::fs::write(tmp.join("bad.toml"), &file).unwrap_or_else(|e| panic!("{e}"));
            let err = Settings::load_from(&tmp, "bad").map(|_| ()).unwrap_err();
            let shown = format!("{err}: {:?}", std::error::Error::source(&err).map(ToString::to_string));
            assert!(shown.contains(key), "{file}: {shown}");
        }
        std::fs::write(tmp.join("off.toml"), "[limits]\nfeed_fills_per_user = 0\n").unwrap_or_else(|e| panic!("{e}"));
        let off = Settings::load_from(&tmp, "off").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(off.limits.feed_fills_per_user, 0);
        std::fs::remove_dir_all(&tmp).ok();
    }
}
