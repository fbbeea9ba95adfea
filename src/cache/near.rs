//! The near cache: a bounded copy, in this process, of feed entries it
//! served recently, so that a hit need not pull the entry's bytes out of
//! Redis (4–50 KB) when this process already has them.
//!
//! It never decides freshness on its own. A hit still makes its one round
//! trip — the session's validity, the fence, the user's version and (under
//! `bucketed`) the range's bucket versions — and a local copy is served
//! only when the key computed from the versions just read is the key it was
//! stored under, its bucket versions are the ones just read, and it has not
//! outlived its Redis copy. So a bump made by any process is seen by the
//! next request exactly as without it, a revoked session is refused before
//! anything is served, and a write fence sends the request to PostgreSQL.
//!
//! "Not outlived its Redis copy" matters: a write whose bump could not reach
//! Redis is covered by its fence only until the fence expires, which is
//! after every entry stored under the old version has expired from Redis
//! (`fence.rs`). A local copy therefore expires no later than the Redis
//! entry it copies: the Redis TTL (`PTTL`) is read with the entry, and a
//! copy of this process's own fill expires `feed_ttl` after the moment
//! before its `SET`. The same bound makes a Redis restart harmless: its old
//! data is distrusted for longer than any copy lives (`restarts.rs`).
//!
//! Bounded by bytes (`cache.near_bytes`): the key, the stored gzip and, once
//! a client without gzip asked for it, the decompressed JSON, so that such
//! a client's hit is neither a Redis fetch nor a decompression. A
//! `quick_cache` (sharded, S3-FIFO-like eviction, no process-wide lock):
//! reads take one shard's read lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One local copy.
#[derive(Debug)]
pub(super) struct Copy {
    /// Not served from this instant on (no later than its Redis copy).
    expires: Instant,
    /// The bucket versions it carries (`bucketed`); empty otherwise.
    stamp: Box<[u64]>,
    pub gzip: Bytes,
    /// The JSON, once an identity client needed it.
    pub json: Option<Bytes>,
}

impl Copy {
    pub fn new(expires: Instant, stamp: &[u64], gzip: Bytes, json: Option<Bytes>) -> Self {
        Self { expires, stamp: stamp.into(), gzip, json }
    }

    /// The same copy with its JSON.
    pub fn with_json(&self, json: Bytes) -> Self {
        Self { expires: self.expires, stamp: self.stamp.clone(), gzip: self.gzip.clone(), json: Some(json) }
    }

    /// Whether it carries these bucket versions.
    pub fn carries(&self, stamp: &[u64]) -> bool {
        *self.stamp == *stamp
    }
}

/// Bytes a copy holds, with its key and a fixed allowance for the map's
/// and the allocations' own bookkeeping.
#[derive(Debug, Clone, Copy)]
struct Weight;

const OVERHEAD: u64 = 160;

impl quick_cache::Weighter<String, Arc<Copy>> for Weight {
    fn weight(&self, key: &String, copy: &Arc<Copy>) -> u64 {
        let bytes = key.len() + copy.stamp.len() * 8 + copy.gzip.len() + copy.json.as_ref().map_or(0, Bytes::len);
        u64::try_from(bytes).unwrap_or(u64::MAX).saturating_add(OVERHEAD)
    }
}

/// Counts evictions (and copies too big to be admitted at all).
#[derive(Debug, Clone)]
struct Evictions(Counter);

impl quick_cache::Lifecycle<String, Arc<Copy>> for Evictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: String, _: Arc<Copy>) {
        self.0.inc();
    }
}

/// `calcache_near_cache_*`.
#[derive(Debug, Clone, Default)]
pub struct NearMetrics {
    pub hits: Counter,
    pub misses: Counter,
    pub evictions: Counter,
    pub bytes: Gauge,
    pub entries: Gauge,
}

impl NearMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "near_cache_hits",
            "Feed hits answered from this process's copy of the entry (the versions still read from Redis)",
            m.hits.clone(),
        );
        registry.register(
            "near_cache_misses",
            "Feed lookups whose entry this process had no usable copy of (fetched from Redis, or a miss)",
            m.misses.clone(),
        );
        registry.register(
            "near_cache_evictions",
            "Copies evicted to stay under cache.near_bytes (or too big to keep)",
            m.evictions.clone(),
        );
        registry.register("near_cache_bytes", "Bytes the near cache holds (keys, gzip, JSON)", m.bytes.clone());
        registry.register("near_cache_entries", "Copies the near cache holds", m.entries.clone());
        m
    }
}

type Map = quick_cache::sync::Cache<String, Arc<Copy>, Weight, quick_cache::DefaultHashBuilder, Evictions>;

#[derive(Debug)]
pub(super) struct Near {
    map: Map,
    metrics: NearMetrics,
}

/// A guess at an entry's size, to size the map's tables.
const TYPICAL_COPY: u64 = 8 * 1024;

impl Near {
    /// `None` when `capacity` is 0 (turned off).
    pub fn new(capacity: u64, metrics: NearMetrics) -> Option<Self> {
        if capacity == 0 {
            return None;
        }
        let items = usize::try_from(capacity / TYPICAL_COPY).unwrap_or(usize::MAX).max(64);
        let options =
            quick_cache::OptionsBuilder::new().estimated_items_capacity(items).weight_capacity(capacity).build();
        let options = match options {
            Ok(options) => options,
            // Only a zero capacity is refused, and that is handled above.
            Err(e) => {
                tracing::warn!(error = %crate::error::Chain(&e), "near cache options refused; running without it");
                return None;
            }
        };
        let map = Map::with_options(options, Weight, Default::default(), Evictions(metrics.evictions.clone()));
        Some(Self { map, metrics })
    }

    /// The copy stored under `key`, unless it has expired. Whether it may
    /// be served is for the caller to say (`Copy::carries`), once it has
    /// read the versions.
    pub fn get(&self, key: &str) -> Option<Arc<Copy>> {
        self.map.get(key).filter(|c| Instant::now() < c.expires)
    }

    /// Counts a lookup: answered from a copy, or not.
    pub fn count(&self, local: bool) {
        let counter = if local { &self.metrics.hits } else { &self.metrics.misses };
        counter.inc();
    }

    pub fn insert(&self, key: String, copy: Copy) {
        if copy.expires <= Instant::now() {
            return;
        }
        self.map.insert(key, Arc::new(copy));
        self.metrics.bytes.set(i64::try_from(self.map.weight()).unwrap_or(i64::MAX));
        self.metrics.entries.set(i64::try_from(self.map.len()).unwrap_or(i64::MAX));
    }

    /// A copy of an entry read from Redis with `pttl_ms` left (`PTTL`:
    /// negative when it has no expiry or is gone).
    pub fn expiry(read_at: Instant, pttl_ms: i64) -> Option<Instant> {
        let ms = u64::try_from(pttl_ms).ok().filter(|&ms| ms > 0)?;
        Some(read_at + Duration::from_millis(ms))
    }

    #[cfg(test)]
    fn weight(&self) -> u64 {
        self.map.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(capacity: u64) -> Near {
        Near::new(capacity, NearMetrics::default()).unwrap_or_else(|| panic!("near cache off"))
    }

    fn copy(expires_in: Duration, stamp: &[u64], size: usize) -> Copy {
        Copy::new(Instant::now() + expires_in, stamp, Bytes::from(vec![0x1f; size]), None)
    }

    #[test]
    fn a_copy_is_kept_until_its_expiry_with_the_stamp_it_carries() {
        let n = near(1 << 20);
        n.insert("k".into(), copy(Duration::from_secs(60), &[1, 2], 100));
        let found = n.get("k").unwrap_or_else(|| panic!("not kept"));
        assert!(found.carries(&[1, 2]));
        assert!(!found.carries(&[1, 3]), "another bucket version");
        assert!(!found.carries(&[1]), "another range's buckets");
        assert!(n.get("other").is_none());
        n.insert("gone".into(), copy(Duration::ZERO, &[], 100));
        assert!(n.get("gone").is_none(), "expired copies are not even stored");
        let soon = Copy::new(Instant::now() + Duration::from_millis(30), &[], Bytes::from_static(b"x"), None);
        n.insert("soon".into(), soon);
        let deadline = Instant::now() + Duration::from_secs(5);
        while n.get("soon").is_some() {
            assert!(Instant::now() < deadline, "never expired");
            std::thread::yield_now();
        }
    }

    #[test]
    fn thousands_of_copies_stay_under_the_byte_bound() {
        let capacity = 256 * 1024;
        let n = near(capacity);
        for i in 0..5_000 {
            n.insert(format!("entry-{i}"), copy(Duration::from_secs(60), &[i], 1_000 + (i as usize % 7) * 300));
            assert!(n.weight() <= capacity, "{} bytes held after {i} inserts", n.weight());
        }
        assert!(n.metrics.evictions.get() > 4_000, "{} evictions", n.metrics.evictions.get());
        assert!(n.weight() > capacity / 2, "the bound is used: {}", n.weight());
        let big = copy(Duration::from_secs(60), &[], usize::try_from(capacity).unwrap_or(0) * 2);
        n.insert("too-big".into(), big);
        assert!(n.get("too-big").is_none() && n.weight() <= capacity);
    }

    #[test]
    fn expiry_follows_the_redis_ttl() {
        let now = Instant::now();
        assert_eq!(Near::expiry(now, 1500), Some(now + Duration::from_millis(1500)));
        assert_eq!(Near::expiry(now, -1), None, "no expiry: never copied");
        assert_eq!(Near::expiry(now, -2), None, "gone");
        assert_eq!(Near::expiry(now, 0), None);
    }

    #[test]
    fn zero_turns_it_off() {
        assert!(Near::new(0, NearMetrics::default()).is_none());
    }
}
