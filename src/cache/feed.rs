//! The feed read-through.
//!
//! Versioned strategy, in this order:
//! 1. read the user's version (initializing it if missing);
//! 2. read the entry stored under that version: a hit is served as stored;
//! 3. on a miss, load from PostgreSQL and store the body (gzip, see
//!    `body.rs`) under the version read in step 1.
//!
//! Reading the version *before* querying PostgreSQL is what makes a racing
//! writer harmless: a writer commits and then bumps the version, so if our
//! query saw the old rows, the version we store under is already (or soon)
//! outdated and nobody will read that entry as current.
//!
//! The hit path costs one Redis round trip in the common case: the process
//! remembers the last version it saw per user and pipelines "GET session",
//! "GET version" and "GET entry under that version" (all three keys share the
//! user's hash slot, so this is one pipeline on Redis Cluster too). Only when
//! the version moved does a second trip fetch the right entry. The session's
//! cached validity rides along so that a feed request does not pay a separate
//! trip to authenticate; the caller decides what that validity means
//! (`authorize`), and nothing is served before it has said yes.
//!
//! A miss is filled once: requests of this process for the same entry wait
//! for the one that queries PostgreSQL (single-flight), and across processes
//! a short Redis lease lets one fill while the others poll for the entry
//! until `cache.fill_wait_ms`, then give up waiting and query themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::RedisError;
use tokio::sync::watch;

use super::body::Encoding;
use super::mac::{Mac, TAG_LEN};
use super::near::{Copy, Near};
use super::{Cache, FeedBody, FeedParams, Plan, SessionState};
use crate::domain::UserId;
use crate::metrics::StampedeWait;

/// Where a feed body came from (`X-Cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedOutcome {
    /// From the shared cache.
    Hit,
    /// From PostgreSQL (this request's query, or one it waited for), now
    /// stored in the cache.
    Miss,
    /// From PostgreSQL without the cache: Redis is unavailable, an
    /// invalidation for this user is still pending, or caching is off.
    Bypass,
}

impl FeedOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Bypass => "BYPASS",
        }
    }
}

/// Process-local state of the read path.
#[derive(Debug)]
pub(super) struct ReadPath {
    /// Last version seen per user: the guess that makes a hit one round
    /// trip. Bounded and concurrent (sharded, no process-wide lock); an
    /// evicted or wrong guess only costs a second round trip.
    last_seen: quick_cache::sync::Cache<UserId, u64>,
    /// Fills in progress in this process, by entry key (misses only).
    inflight: Mutex<HashMap<String, watch::Receiver<Option<FeedBody>>>>,
}

/// How many users' versions a process remembers (16 bytes each, plus the
/// cache's own bookkeeping: a few MiB at most).
const LAST_SEEN_MAX: usize = 100_000;

impl Default for ReadPath {
    fn default() -> Self {
        Self { last_seen: quick_cache::sync::Cache::new(LAST_SEEN_MAX), inflight: Mutex::default() }
    }
}

impl ReadPath {
    fn guess(&self, user: UserId) -> Option<u64> {
        self.last_seen.get(&user)
    }

    /// Remembers `version` unless it is what `guess` already was: a hit
    /// writes nothing.
    fn remember(&self, user: UserId, guess: Option<u64>, version: u64) {
        if guess != Some(version) {
            self.last_seen.insert(user, version);
        }
    }
}

/// What the first look into Redis found.
struct Lookup {
    session: SessionState,
    /// A write for this user is in flight (`fence.rs`): don't use the cache.
    fenced: bool,
    version: Option<u64>,
    /// The entry's key; `None` when the version is not set yet.
    key: Option<String>,
    /// What the entry must carry (`bucketed`: the range's bucket versions);
    /// `None` when some bucket version is not set yet.
    stamp: Option<Stamp>,
    /// The entry, already checked against the stamp.
    entry: Option<Entry>,
}

/// A usable entry, and where it came from.
enum Entry {
    /// This process's copy (`near.rs`): no bytes came from Redis.
    Local(Arc<Copy>),
    /// From Redis: its gzip (without the stamp) and when it expires there
    /// (`None`: no expiry known, so never copied).
    Remote { gzip: Bytes, expires: Option<Instant> },
}

/// What an entry must carry to be served: under `bucketed`, the version of
/// every bucket its range covers, as they were read before its rows were
/// queried (`buckets.rs`); nothing under the other strategies. Stored in
/// front of the gzip, 8 bytes per bucket, and compared value by value — no
/// hash, so no collision can make an old entry match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Stamp(Vec<u64>);

impl Stamp {
    fn header_len(&self) -> usize {
        self.0.len() * 8
    }

    /// The stored entry's body if it carries exactly this stamp and a tag
    /// that verifies for `key` (`mac.rs`), and is a body calcache stored
    /// (`looks_stored`). Stored as: tag, stamp (8 bytes per bucket), gzip.
    fn accept(&self, mac: &Mac, key: &str, entry: Vec<u8>) -> Option<Bytes> {
        let header = TAG_LEN + self.header_len();
        if entry.len() <= header || !looks_stored(&entry[header..]) {
            return None;
        }
        let (tag, stamped) = entry.split_at(TAG_LEN);
        let matches =
            stamped[..self.header_len()].chunks_exact(8).zip(&self.0).all(|(stored, v)| stored == v.to_le_bytes());
        (matches && mac.verify(key, &[stamped], tag)).then(|| Bytes::from(entry).slice(header..))
    }

    /// The entry to store under `key` for `gzip`.
    fn encode(&self, mac: &Mac, key: &str, gzip: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(TAG_LEN + self.header_len() + gzip.len());
        out.extend_from_slice(&[0; TAG_LEN]);
        for v in &self.0 {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(gzip);
        let tag = mac.tag(key, &[&out[TAG_LEN..]]);
        out[..TAG_LEN].copy_from_slice(&tag);
        out
    }

    /// The single-flight key: requests share a fill only when they would
    /// store the same entry under the same stamp (one that read newer bucket
    /// versions must not take an older fill's rows).
    fn flight(&self, key: &str) -> String {
        let mut k = String::with_capacity(key.len() + self.0.len() * 17);
        k.push_str(key);
        for v in &self.0 {
            k.push('#');
            k.push_str(itoa::Buffer::new().format(*v));
        }
        k
    }
}

/// Releases the fill lease at `key` if `holder` still holds it (compare and
/// delete in one step; Redis 7 has no such command, hence the script).
fn push_release<'a>(pipe: &'a mut redis::Pipeline, key: &str, holder: &[u8]) -> &'a mut redis::Pipeline {
    const RELEASE: &str =
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
    pipe.cmd("EVAL").arg(RELEASE).arg(1).arg(key).arg(holder).ignore()
}

/// What a stored entry starts with (gzip's magic number). Anything else in an
/// entry's place is not ours, and is answered as a miss and overwritten.
fn looks_stored(entry: &[u8]) -> bool {
    entry.starts_with(&[0x1f, 0x8b])
}

/// Removes the in-flight marker when the filling request ends, however it ends.
struct InflightGuard<'a> {
    path: &'a ReadPath,
    key: String,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.path.inflight.lock() {
            m.remove(&self.key);
        }
    }
}

enum Role {
    Leader(watch::Sender<Option<FeedBody>>),
    Follower(watch::Receiver<Option<FeedBody>>),
}

/// A feed answer, and (for a hit) the versions it was served under.
#[derive(Debug)]
pub struct Served {
    pub outcome: FeedOutcome,
    pub body: FeedBody,
    /// A hit's versions, for the freshness auditor (`service::audit`).
    pub versions: Option<Versions>,
}

/// The versions an entry was valid for: the user's, and under `bucketed`
/// those of the buckets its range covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    pub version: u64,
    pub buckets: Vec<u64>,
}

impl Served {
    fn new(outcome: FeedOutcome, body: FeedBody) -> Self {
        Self { outcome, body, versions: None }
    }
}

impl Cache {
    /// Answers a feed from the cache, or from `load` (PostgreSQL) when the
    /// cache cannot vouch for it. A Redis failure never fails the request.
    ///
    /// `authorize` is told what Redis knows of the caller's session
    /// (`token_hash`) and must succeed before anything is served; with Redis
    /// unavailable it is told `Unknown`.
    #[tracing::instrument(
        name = "cache.feed",
        level = "debug",
        skip_all,
        fields(user_id = %user, cache.outcome = tracing::field::Empty, cache.version = tracing::field::Empty)
    )]
    pub async fn feed_read_through<E>(
        &self,
        user: UserId,
        token_hash: &[u8],
        params: &FeedParams,
        want: Encoding,
        authorize: impl AsyncFnOnce(SessionState) -> Result<(), E>,
        load: impl AsyncFnOnce() -> Result<Bytes, E>,
    ) -> Result<Served, E> {
        let span = tracing::Span::current();
        // A Redis that came back with old data: neither its entries nor its
        // session checks are to be believed yet.
        if self.distrusted() {
            return Box::pin(Self::bypass(&span, SessionState::Unknown, authorize, load)).await;
        }
        if self.plan == Plan::Off {
            let cached = self.session_state(user, token_hash).await.unwrap_or(SessionState::Unknown);
            return Box::pin(Self::bypass(&span, cached, authorize, load)).await;
        }
        let plan = self.plan;
        let guess = if plan == Plan::Ttl { None } else { self.read_path.guess(user) };
        let looked_up = self.run(async |conn| self.lookup(conn, user, token_hash, params, plan, guess).await).await;
        let found = match looked_up {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(user_id = %user, error = %crate::error::Chain(&e), "feed cache unavailable; answering from PostgreSQL");
                return Box::pin(Self::bypass(&span, SessionState::Unknown, authorize, load)).await;
            }
        };
        // Nothing is served, and nothing is written to Redis, before the
        // session checks out.
        authorize(found.session).await?;
        if found.fenced {
            tracing::debug!(user_id = %user, "a write for this user is in flight; bypassing the cache");
            return Box::pin(Self::from_db(&span, load)).await;
        }
        if let Some(v) = found.version {
            span.record("cache.version", v);
            self.read_path.remember(user, guess, v);
        }
        let Lookup { version, mut key, stamp, entry, .. } = found;
        if let Some(near) = &self.near
            && version.is_some()
        {
            near.count(matches!(entry, Some(Entry::Local(_))));
        }
        let body = match (entry, &stamp) {
            (Some(entry), Some(stamp)) => self.hit_body(&mut key, stamp, entry, want).await,
            _ => None,
        };
        if let Some(body) = body {
            span.record("cache.outcome", "HIT");
            tracing::debug!(user_id = %user, version, "feed cache hit");
            let versions = version.map(|version| Versions { version, buckets: stamp.map(|s| s.0).unwrap_or_default() });
            return Ok(Served { outcome: FeedOutcome::Hit, body, versions });
        }
        // Boxed, like every path that is not a hit (see `bypass`).
        Box::pin(self.miss(&span, user, params, plan, key, stamp, load)).await
    }

    /// `Stamp::accept` for an entry read from Redis at `key` (`expires`:
    /// there).
    fn accept_remote(
        &self,
        stamp: &Stamp,
        key: &str,
        entry: Option<Vec<u8>>,
        expires: Option<Instant>,
    ) -> Option<Entry> {
        entry.and_then(|e| stamp.accept(&self.mac, key, e)).map(|gzip| Entry::Remote { gzip, expires })
    }

    /// A hit's body in the form the client takes, keeping a copy in the
    /// near cache: of an entry fetched from Redis, or of the JSON an
    /// identity client needed. `None` if the entry does not decompress (not
    /// what calcache stored): then it is a miss, and its fill overwrites it.
    async fn hit_body(
        &self,
        key: &mut Option<String>,
        stamp: &Stamp,
        entry: Entry,
        want: Encoding,
    ) -> Option<FeedBody> {
        match entry {
            Entry::Local(copy) => match (want, &copy.json) {
                (Encoding::Gzip, _) => Some(FeedBody::Gzip(copy.gzip.clone())),
                (Encoding::Identity, Some(json)) => Some(FeedBody::Json(json.clone())),
                (Encoding::Identity, None) => {
                    let json = FeedBody::Gzip(copy.gzip.clone()).inflate().await.ok()?;
                    if let (Some(near), Some(key)) = (&self.near, key.take()) {
                        near.insert(key, copy.with_json(json.clone()));
                    }
                    Some(FeedBody::Json(json))
                }
            },
            Entry::Remote { gzip, expires } => {
                let json = match want {
                    Encoding::Gzip => None,
                    Encoding::Identity => Some(FeedBody::Gzip(gzip.clone()).inflate().await.ok()?),
                };
                if let (Some(near), Some(expires)) = (&self.near, expires)
                    && let Some(key) = key.take()
                {
                    near.insert(key, Copy::new(expires, &stamp.0, gzip.clone(), json.clone()));
                }
                Some(json.map_or(FeedBody::Gzip(gzip), FeedBody::Json))
            }
        }
    }

    /// A lookup that found no entry (or a version not yet set): set the
    /// version if need be, then fill.
    #[expect(clippy::too_many_arguments, reason = "the lookup's findings, passed on as they are")]
    async fn miss<E>(
        &self,
        span: &tracing::Span,
        user: UserId,
        params: &FeedParams,
        plan: Plan,
        key: Option<String>,
        stamp: Option<Stamp>,
        load: impl AsyncFnOnce() -> Result<Bytes, E>,
    ) -> Result<Served, E> {
        let key = match key {
            Some(key) => key,
            None => {
                // The version is missing (first use, evicted, Redis restarted
                // empty): initialize it, now that the session is confirmed.
                let version_key = self.keys.version(user);
                match self.run(async |c| super::version::init(c, &version_key).await).await {
                    Ok(v) => {
                        span.record("cache.version", v);
                        self.read_path.remember(user, None, v);
                        self.keys.feed(user, self.plan.entry(Some(v)), params)
                    }
                    Err(e) => {
                        tracing::warn!(user_id = %user, error = %crate::error::Chain(&e), "feed version unavailable; answering from PostgreSQL");
                        return Self::from_db(span, load).await;
                    }
                }
            }
        };
        let stamp = match stamp {
            Some(stamp) => stamp,
            None if !matches!(plan, Plan::Bucketed(_)) => Stamp::default(),
            // Bucket versions missing (first look at these weeks, expired,
            // evicted): set them, now that the session is confirmed, and
            // take all of the range's as one snapshot.
            None => {
                let keys = self.range_bucket_keys(user, params);
                let ttl = super::Buckets::ttl(self.feed_ttl_secs);
                match self.run(async |c| super::version::init_buckets(c, &keys, ttl).await).await {
                    Ok(values) => Stamp(values),
                    Err(e) => {
                        tracing::warn!(user_id = %user, error = %crate::error::Chain(&e), "bucket versions unavailable; answering from PostgreSQL");
                        return Self::from_db(span, load).await;
                    }
                }
            }
        };
        tracing::debug!(user_id = %user, ?plan, "feed cache miss");
        let (outcome, body) = self.fill(key, &stamp, load).await?;
        span.record("cache.outcome", outcome.as_str());
        Ok(Served::new(outcome, body))
    }

    /// Straight from PostgreSQL, once the session checks out. (Called boxed:
    /// an async fn's state machine holds all of its branches, and a hit's
    /// future is moved several times on its way through actix and the
    /// timeout.)
    async fn bypass<E>(
        span: &tracing::Span,
        cached: SessionState,
        authorize: impl AsyncFnOnce(SessionState) -> Result<(), E>,
        load: impl AsyncFnOnce() -> Result<Bytes, E>,
    ) -> Result<Served, E> {
        authorize(cached).await?;
        Self::from_db(span, load).await
    }

    /// Straight from PostgreSQL, for a caller already authorized.
    async fn from_db<E>(span: &tracing::Span, load: impl AsyncFnOnce() -> Result<Bytes, E>) -> Result<Served, E> {
        span.record("cache.outcome", "BYPASS");
        load().await.map(|json| Served::new(FeedOutcome::Bypass, FeedBody::Json(json)))
    }

    /// The bucket version keys of a feed range (`bucketed`); empty otherwise.
    pub(super) fn range_bucket_keys(&self, user: UserId, params: &FeedParams) -> Vec<String> {
        match self.plan.buckets() {
            Some(b) => b.of_range(&params.range).map(|i| self.keys.bucket(user, b.days(), i)).collect(),
            None => Vec::new(),
        }
    }

    /// One round trip when `guess` is the current version, two otherwise.
    /// Reads only: a missing version is left for `miss` to set, after the
    /// session is confirmed (a forged token must not create keys).
    ///
    /// The pipeline: the session, the fence, the user-wide version, under
    /// `bucketed` the range's bucket versions (`MGET`), and the entry under
    /// the guessed version with its TTL — all keys in the user's hash slot.
    /// The entry is not fetched when this process holds a copy of it
    /// (`near.rs`): that copy is served if the versions just read are the
    /// ones it was stored under.
    async fn lookup(
        &self,
        conn: &mut super::Conn,
        user: UserId,
        token_hash: &[u8],
        params: &FeedParams,
        plan: Plan,
        guess: Option<u64>,
    ) -> Result<Lookup, RedisError> {
        let session_key = self.keys.session(user, token_hash);
        if plan == Plan::Ttl {
            let key = self.keys.feed(user, self.plan.entry(None), params);
            let (session, entry): (Option<Vec<u8>>, Option<Vec<u8>>) =
                redis::pipe().cmd("GET").arg(&session_key).cmd("GET").arg(&key).query_async(conn).await?;
            let entry = entry.and_then(|e| Stamp::default().accept(&self.mac, &key, e));
            return Ok(Lookup {
                session: self.session_from(&session_key, session.as_deref()),
                fenced: false,
                version: None,
                key: Some(key),
                stamp: Some(Stamp::default()),
                entry: entry.map(|gzip| Entry::Remote { gzip, expires: None }),
            });
        }
        let mut pipe = redis::pipe();
        pipe.cmd("GET")
            .arg(&session_key)
            .cmd("EXISTS")
            .arg(self.keys.fence(user))
            .cmd("GET")
            .arg(self.keys.version(user));
        let bucket_keys = self.range_bucket_keys(user, params);
        if matches!(plan, Plan::Bucketed(_)) {
            pipe.cmd("MGET").arg(&bucket_keys);
        }
        let guessed = guess.map(|g| (g, self.keys.feed(user, plan.entry(Some(g)), params)));
        // This process's copy of the guessed entry, if it has one.
        let local = guessed.as_ref().and_then(|(_, k)| self.near.as_ref()?.get(k));
        let fetch_guess = guessed.is_some() && local.is_none();
        // The entry's TTL only matters for a copy (`near.rs`).
        let with_ttl = self.near.is_some();
        if let Some((_, guess_key)) = guessed.as_ref().filter(|_| fetch_guess) {
            pipe.cmd("GET").arg(guess_key);
            if with_ttl {
                pipe.cmd("PTTL").arg(guess_key);
            }
        }
        let sent = with_ttl.then(Instant::now);
        let mut answers: Vec<redis::Value> = pipe.query_async(conn).await?;
        answers.reverse();
        let mut next = || answers.pop().unwrap_or(redis::Value::Nil);
        let session: Option<Vec<u8>> = redis::from_redis_value(next())?;
        let fenced: bool = redis::from_redis_value(next())?;
        let version: Option<u64> = redis::from_redis_value(next())?;
        let stamp = if matches!(plan, Plan::Bucketed(_)) {
            let values: Vec<Option<u64>> = redis::from_redis_value(next())?;
            values.into_iter().collect::<Option<Vec<u64>>>().map(Stamp)
        } else {
            Some(Stamp::default())
        };
        let guessed_entry: Option<(Option<Vec<u8>>, i64)> = match (fetch_guess, with_ttl) {
            (false, _) => None,
            (true, false) => Some((redis::from_redis_value(next())?, -1)),
            (true, true) => Some((redis::from_redis_value(next())?, redis::from_redis_value(next())?)),
        };
        let session = self.session_from(&session_key, session.as_deref());
        let Some(version) = version.filter(|_| !fenced) else {
            return Ok(Lookup { session, fenced, version: None, key: None, stamp: None, entry: None });
        };
        // With a bucket version missing nothing can match: no need to look.
        let Some(stamp) = stamp else {
            let key = self.keys.feed(user, plan.entry(Some(version)), params);
            return Ok(Lookup { session, fenced, version: Some(version), key: Some(key), stamp: None, entry: None });
        };
        let (key, fetched, local) = match guessed {
            // The common case: the guess was right, and so was its key.
            Some((g, guess_key)) if g == version => (guess_key, guessed_entry, local),
            _ => {
                let key = self.keys.feed(user, plan.entry(Some(version)), params);
                let local = self.near.as_ref().and_then(|n| n.get(&key));
                (key, None, local)
            }
        };
        let entry = match fetched {
            Some((entry, pttl)) => self.accept_remote(&stamp, &key, entry, sent.and_then(|at| Near::expiry(at, pttl))),
            None => match local.filter(|copy| copy.carries(&stamp.0)) {
                Some(copy) => Some(Entry::Local(copy)),
                // Not fetched yet (the guess was wrong, or the copy we
                // counted on is gone or carries other bucket versions).
                None if with_ttl => {
                    let sent = Instant::now();
                    let (entry, pttl): (Option<Vec<u8>>, i64) =
                        redis::pipe().cmd("GET").arg(&key).cmd("PTTL").arg(&key).query_async(conn).await?;
                    self.accept_remote(&stamp, &key, entry, Near::expiry(sent, pttl))
                }
                None => self.accept_remote(&stamp, &key, redis::cmd("GET").arg(&key).query_async(conn).await?, None),
            },
        };
        Ok(Lookup { session, fenced, version: Some(version), key: Some(key), stamp: Some(stamp), entry })
    }

    /// Fills a missing entry, at most once per process at a time and, through
    /// the lease, about once across processes.
    async fn fill<E>(
        &self,
        key: String,
        stamp: &Stamp,
        load: impl AsyncFnOnce() -> Result<Bytes, E>,
    ) -> Result<(FeedOutcome, FeedBody), E> {
        let flight = stamp.flight(&key);
        let role = match self.read_path.inflight.lock() {
            Ok(mut inflight) => match inflight.get(&flight) {
                Some(rx) => Role::Follower(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(flight.clone(), rx);
                    Role::Leader(tx)
                }
            },
            // A poisoned map: fill alone rather than not at all.
            Err(_) => Role::Leader(watch::channel(None).0),
        };
        match role {
            Role::Follower(mut rx) => {
                self.metrics.stampede_wait(StampedeWait::Process);
                let waited = tokio::time::timeout(self.fill_wait, rx.wait_for(Option::is_some)).await;
                if let Ok(Ok(body)) = waited
                    && let Some(body) = body.clone()
                {
                    return Ok((FeedOutcome::Miss, body));
                }
                // The filler failed or is too slow: query ourselves.
                let json = load().await?;
                Ok((FeedOutcome::Miss, FeedBody::Json(json)))
            }
            Role::Leader(tx) => {
                let _guard = InflightGuard { path: &self.read_path, key: flight };
                let result = self.fill_across_processes(&key, stamp, load).await;
                if let Ok((_, body)) = &result {
                    tx.send_replace(Some(body.clone()));
                }
                result
            }
        }
    }

    async fn fill_across_processes<E>(
        &self,
        key: &str,
        stamp: &Stamp,
        load: impl AsyncFnOnce() -> Result<Bytes, E>,
    ) -> Result<(FeedOutcome, FeedBody), E> {
        let lease_key = self.keys.lease(key);
        // Our own mark in the lease, so that releasing it can never release
        // another filler's lease (ours may have expired meanwhile).
        let holder = uuid::Uuid::new_v4().into_bytes();
        // `fill_wait` is positive (`cache.fill_wait_ms`), so the lease is too.
        let lease_ms = u64::try_from(self.fill_wait.as_millis()).unwrap_or(u64::MAX);
        // Take the lease and look again in one trip: a fill may have landed
        // since our lookup (its lease already released), and then there is
        // nothing left to do.
        let leased: Result<(Option<String>, Option<Vec<u8>>), _> = self
            .run(async |c| {
                redis::pipe()
                    .cmd("SET")
                    .arg(&lease_key)
                    .arg(&holder[..])
                    .arg("NX")
                    .arg("PX")
                    .arg(lease_ms)
                    .cmd("GET")
                    .arg(key)
                    .query_async(c)
                    .await
            })
            .await;
        let leased = leased.map(|(got, entry)| (got, entry.and_then(|e| stamp.accept(&self.mac, key, e))));
        if let Ok((got_lease, Some(entry))) = leased {
            if got_lease.is_some() {
                let _ = self
                    .run(async |c| push_release(&mut redis::pipe(), &lease_key, &holder).query_async::<()>(c).await)
                    .await;
            }
            return Ok((FeedOutcome::Hit, FeedBody::Gzip(entry)));
        }
        if let Ok((None, None)) = leased {
            // Another process is filling: poll for its entry until the deadline.
            self.metrics.stampede_wait(StampedeWait::Lease);
            let deadline = Instant::now() + self.fill_wait;
            let mut poll = tokio::time::interval(Duration::from_millis(10));
            while Instant::now() < deadline {
                poll.tick().await;
                match self.run(async |c| redis::cmd("GET").arg(key).query_async::<Option<Vec<u8>>>(c).await).await {
                    Ok(Some(entry)) => {
                        if let Some(gzip) = stamp.accept(&self.mac, key, entry) {
                            return Ok((FeedOutcome::Hit, FeedBody::Gzip(gzip)));
                        }
                    }
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        }
        let json = load().await?;
        let Ok(gzip) = FeedBody::deflate(&json).await else {
            // Compressing into memory does not fail in practice; if it did,
            // the JSON is still the right answer, only not stored.
            tracing::warn!("could not compress feed entry");
            return Ok((FeedOutcome::Miss, FeedBody::Json(json)));
        };
        let ttl = self.feed_ttl_secs;
        // Before the SET: the Redis copy expires no earlier than this.
        let expires = Instant::now() + Duration::from_secs(ttl);
        let stored = self
            .run(async |conn| {
                let mut pipe = redis::pipe();
                pipe.cmd("SET").arg(key).arg(stamp.encode(&self.mac, key, &gzip)).arg("EX").arg(ttl).ignore();
                push_release(&mut pipe, &lease_key, &holder).query_async::<()>(conn).await
            })
            .await;
        match stored {
            Ok(()) => {
                if let Some(near) = self.near.as_ref().filter(|_| self.plan != Plan::Ttl) {
                    near.insert(key.to_owned(), Copy::new(expires, &stamp.0, gzip.clone(), None));
                }
            }
            // The body is still correct; the next request misses again.
            Err(e) => tracing::warn!(error = %crate::error::Chain(&e), "could not store feed entry"),
        }
        Ok((FeedOutcome::Miss, FeedBody::Gzip(gzip)))
    }
}
