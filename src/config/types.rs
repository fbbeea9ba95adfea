//! The checked types settings are parsed into, and the unit conversions of
//! the `*_ms` / `*_secs` / `*_hours` keys.
//!
//! Every rule a single key has lives here, in its type's `Deserialize`: a
//! value that breaks it fails the load, and `config` names the key in the
//! error (`… for key `cache.fill_wait_ms``). The code that uses a setting
//! can then rely on it instead of clamping it again. Rules between keys are
//! in [`super::Settings::check`].

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde::de::{Deserializer, Error as _, Unexpected};

/// Durations written as whole units in the configuration: the key names its
/// unit (`timeout_ms`, `feed_ttl_secs`), the field holds a `Duration`.
/// `positive_*` refuse 0 where 0 would mean "never" or "at once" by
/// accident; `*_or_off` read 0 as `None`.
pub mod duration {
    use super::*;

    fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        u64::deserialize(d)
    }

    fn positive<'de, D: Deserializer<'de>>(d: D, unit: &'static str) -> Result<u64, D::Error> {
        match whole(d)? {
            0 => Err(D::Error::invalid_value(Unexpected::Unsigned(0), &unit)),
            n => Ok(n),
        }
    }

    pub fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        whole(d).map(Duration::from_millis)
    }

    pub fn positive_millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        positive(d, "a positive number of milliseconds").map(Duration::from_millis)
    }

    pub fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        whole(d).map(Duration::from_secs)
    }

    pub fn positive_secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        positive(d, "a positive number of seconds").map(Duration::from_secs)
    }

    /// Seconds, 0 meaning "off".
    pub fn secs_or_off<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        whole(d).map(|n| (n > 0).then(|| Duration::from_secs(n)))
    }
}

/// A session's lifetime (`auth.session_lifetime_hours`): 1 hour to 10
/// years, so that it is a valid `chrono` and cookie duration and an expiry
/// PostgreSQL can store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetime(chrono::TimeDelta);

impl SessionLifetime {
    const MAX_HOURS: u32 = 10 * 366 * 24;

    pub fn hours(hours: u32) -> Option<Self> {
        (1..=Self::MAX_HOURS).contains(&hours).then(|| Self(chrono::TimeDelta::hours(i64::from(hours))))
    }

    pub fn get(self) -> chrono::TimeDelta {
        self.0
    }
}

// The bound as the refusal spells it.
const _: () = assert!(SessionLifetime::MAX_HOURS == 87_840);

impl<'de> Deserialize<'de> for SessionLifetime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hours = u32::deserialize(d)?;
        Self::hours(hours)
            .ok_or_else(|| D::Error::invalid_value(Unexpected::Unsigned(hours.into()), &"1 to 87840 hours (10 years)"))
    }
}

/// `redis.key_prefix`: namespaces one deployment's keys. Non-empty, and
/// without `{` or `}`: braces are the Redis Cluster hash tag, and only the
/// user id may be tagged.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct KeyPrefix(String);

impl KeyPrefix {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyPrefix {
    type Error = &'static str;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.is_empty() || s.contains(['{', '}']) {
            Err("must be non-empty and contain no braces (they are the cluster hash tag)")
        } else {
            Ok(Self(s))
        }
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `redis.mac_key`: the secret that authenticates what calcache reads back
/// from Redis (`cache::mac`); at least [`MacKey::MIN_LEN`] characters.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct MacKey(SecretString);

impl MacKey {
    pub const MIN_LEN: usize = 32;

    /// The value in config/default.toml: for development and tests only.
    pub const DEVELOPMENT: &str = "calcache-development-mac-key-not-a-secret";

    pub fn secret(&self) -> &SecretString {
        &self.0
    }

    pub fn is_development_default(&self) -> bool {
        self.0.expose_secret() == Self::DEVELOPMENT
    }
}

impl TryFrom<String> for MacKey {
    type Error = &'static str;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.chars().count() < Self::MIN_LEN {
            Err("must be at least 32 characters")
        } else {
            Ok(Self(SecretString::from(s)))
        }
    }
}

/// `cache.audit_sample_rate`: the share of hits the freshness auditor
/// re-checks, 0.0 (off) to 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct SampleRate(f64);

impl SampleRate {
    pub const OFF: Self = Self(0.0);

    /// The rate, unless it is 0 (the auditor is off).
    pub fn active(self) -> Option<f64> {
        (self.0 > 0.0).then_some(self.0)
    }
}

impl TryFrom<f64> for SampleRate {
    type Error = &'static str;
    fn try_from(rate: f64) -> Result<Self, Self::Error> {
        if (0.0..=1.0).contains(&rate) { Ok(Self(rate)) } else { Err("must be 0.0 to 1.0") }
    }
}

/// `redis.pool_max_size`: an explicit size, or 0 for one derived from the
/// worker count ([`PoolSize::for_workers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(from = "usize")]
pub enum PoolSize {
    FromWorkers,
    Fixed(NonZeroUsize),
}

impl From<usize> for PoolSize {
    fn from(n: usize) -> Self {
        NonZeroUsize::new(n).map_or(Self::FromWorkers, Self::Fixed)
    }
}

impl PoolSize {
    /// Connections beyond one per worker that a process needs: the main
    /// thread's (outbox drainer, auditor) and the readiness probe's.
    pub const MIN_SPARE: usize = 2;

    /// What `FromWorkers` adds to the worker count: the spare connections,
    /// plus room for a reconnect while an old one winds down.
    pub const HEADROOM: usize = Self::MIN_SPARE + 2;

    pub fn for_workers(self, workers: usize) -> usize {
        match self {
            Self::FromWorkers => workers + Self::HEADROOM,
            Self::Fixed(n) => n.get(),
        }
    }
}
