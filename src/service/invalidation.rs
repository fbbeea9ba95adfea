//! Applying invalidations after commit, and draining the ones that could not
//! be applied.
//!
//! Order matters. A mutation (1) writes its change and its outbox rows in one
//! PostgreSQL transaction, (2) commits, (3) bumps the versions in Redis,
//! (4) answers. Bumping *before* the commit would let a concurrent feed read
//! the new version, query PostgreSQL before the commit became visible, and
//! store the old rows under the new version — a stale entry that looks
//! current until the next mutation. Bumping after the commit means any entry
//! filled from pre-commit rows is stored under an outdated version.
//!
//! Before step 1 the mutation raises a write fence for the affected users in
//! Redis (`cache/fence.rs`), and the bump lowers it. If step 3 fails (this
//! process cut from Redis, Redis refusing writes, a timeout), the rows stay
//! in the outbox and a drainer in every process applies them once Redis
//! answers; meanwhile the fence keeps every process's reads of these users
//! off the cache, so the answer to the write can be 2xx and still true.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::RngExt;
use tokio::sync::Notify;

use super::{AppState, ServiceError};
use crate::cache::{Extent, Fence, Invalidation};
use crate::db::outbox::{self, Due, OutboxRow};
use crate::db::{self, DbError};
use crate::domain::UserId;
use crate::error::Chain;
use crate::metrics::{InvalidationCause, InvalidationResult};

/// Wakes this process's drainer early (after a failed apply).
#[derive(Debug, Clone, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    pub fn wake(&self) {
        self.0.notify_one();
    }

    async fn woken(&self) {
        self.0.notified().await;
    }
}

fn to_invalidation(row: &OutboxRow) -> Invalidation {
    match &row.session_hash {
        None => Invalidation::FeedVersion {
            user: row.user_id,
            fence: row.fence.map(Fence),
            // A malformed list (never written by calcache) bumps user-wide.
            extents: row.extents.as_deref().and_then(Extent::unflatten),
        },
        Some(hash) => Invalidation::Session { user: row.user_id, token_hash: hash.clone() },
    }
}

/// How long a request has to apply its own outbox rows before drainers may
/// take them: as long as the Redis call it makes may take. (A drainer that
/// takes one early only causes a second bump: one extra miss.)
pub fn head_start(state: &AppState) -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(state.cache_timeout()).unwrap_or(chrono::Duration::seconds(1))
}

/// What a fenced transaction (see [`fenced_write`]) did.
#[derive(Debug)]
pub enum Fenced<T> {
    /// Written: the value, and the outbox rows to apply after commit.
    Done(T, Vec<OutboxRow>),
    /// The change affects users the fence does not cover yet (assignees
    /// the caller could not know of); nothing was written.
    Widen(Vec<UserId>),
}

/// How often a write widens its fence before it gives up with 409 (only a
/// racing change of the same item's assignees can make it widen twice).
const WIDEN_ATTEMPTS: usize = 3;

/// Runs a mutation the one safe way: raise a write fence in Redis for every
/// user it affects (503 and nothing changed if that fails), run `txn` in a
/// transaction that records the outbox rows, then apply them. `users` is who
/// the caller knows to be affected; `txn` is given the fenced users and
/// answers [`Fenced::Widen`] (before writing anything) when the rows it
/// locked name others, and is run again under a wider fence.
pub async fn fenced_write<T, F>(
    state: &AppState,
    users: Vec<UserId>,
    cause: InvalidationCause,
    txn: F,
) -> Result<T, ServiceError>
where
    F: Fn(&mut diesel::PgConnection, Fence, &[UserId], chrono::DateTime<Utc>) -> Result<Fenced<T>, ServiceError>
        + Send
        + Sync
        + 'static,
    T: Send + 'static,
{
    let fence = Fence::new_random();
    let txn = Arc::new(txn);
    let mut fenced: Vec<UserId> = Vec::new();
    let mut wanted = users;
    for _ in 0..WIDEN_ATTEMPTS {
        let new: Vec<UserId> = wanted.iter().filter(|u| !fenced.contains(u)).copied().collect();
        if let Err(e) = state.cache.raise_fence(&new, fence).await {
            state.metrics.writes_refused.inc();
            tracing::warn!(error = %Chain(&e), "write refused: its fence cannot be raised in Redis, so other processes could serve what it changes");
            lower(state, &fenced, fence).await;
            return Err(e.into());
        }
        fenced.extend(&new);
        let head_start = head_start(state);
        let (txn, covered) = (txn.clone(), fenced.clone());
        let ran = db::run(&state.pool, move |c| {
            db::transaction::<_, ServiceError, _>(c, |c| txn(c, fence, &covered, head_start))
        })
        .await;
        match ran {
            Ok(Fenced::Done(value, rows)) => {
                apply_committed(state, rows, cause).await;
                return Ok(value);
            }
            Ok(Fenced::Widen(users)) => wanted = users,
            // The commit may have happened: its outbox rows, if any, lower
            // the fence once applied; otherwise it expires.
            Err(e @ ServiceError::Db(DbError::OutcomeUnknown(_))) => return Err(e),
            Err(e) => {
                lower(state, &fenced, fence).await;
                return Err(e);
            }
        }
    }
    lower(state, &fenced, fence).await;
    Err(ServiceError::Conflict("the item's assignees keep changing; try again"))
}

async fn lower(state: &AppState, users: &[UserId], fence: Fence) {
    if !users.is_empty() {
        state.cache.lower_fence(users, fence).await;
    }
}

/// Step 3 of a mutation: apply the committed outbox rows to Redis, then
/// delete them. Never fails the request: what cannot be applied now stays
/// in the outbox.
#[tracing::instrument(name = "invalidate", skip_all, fields(cause = ?cause, rows = rows.len()))]
pub async fn apply_committed(state: &AppState, rows: Vec<OutboxRow>, cause: InvalidationCause) {
    if rows.is_empty() {
        return;
    }
    let items: Vec<Invalidation> = rows.iter().map(to_invalidation).collect();
    match state.cache.invalidate(&items).await {
        Ok(()) => {
            state.metrics.invalidated(cause, InvalidationResult::Applied, items.len());
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            if let Err(e) = db::run(&state.pool, move |c| outbox::delete_applied(c, &ids)).await {
                // Harmless: a drainer re-applies them later (a second bump
                // only costs one extra miss).
                tracing::warn!(error = %Chain(&e), "applied invalidations could not be deleted from the outbox");
            }
        }
        Err(e) => {
            state.metrics.invalidated(cause, InvalidationResult::Deferred, items.len());
            let users: Vec<UserId> = items.iter().map(Invalidation::user).collect();
            tracing::warn!(
                error = %Chain(&e),
                users = ?users,
                "invalidation deferred to the outbox; the write fence keeps these users' feeds off the cache until it is applied"
            );
            // Due now, for every process's drainer: no reason to wait out
            // the head start this request did not use.
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            if let Err(e) = db::run(&state.pool, move |c| outbox::make_due(c, &ids)).await {
                tracing::warn!(error = %Chain(&e), "deferred invalidations keep their schedule");
            }
            state.outbox.wake();
        }
    }
}

const BATCH: i64 = 500;

/// One drain pass: claims due rows, applies them, deletes them. Returns how
/// many rows were applied.
pub async fn drain_once(state: &AppState, due: Due) -> Result<usize, DbError> {
    // While this process's circuit is open, claiming rows would only hide
    // them from processes that can reach Redis.
    let rows = if state.cache.circuit_denies() {
        Vec::new()
    } else {
        let lease = to_chrono(state.cache_timeout() + Duration::from_millis(500));
        db::run(&state.pool, move |c| outbox::claim(c, due, BATCH, Utc::now() + lease)).await?
    };
    let mut applied = 0;
    if !rows.is_empty() {
        let items: Vec<Invalidation> = rows.iter().map(to_invalidation).collect();
        match state.cache.invalidate(&items).await {
            Ok(()) => {
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                db::run(&state.pool, move |c| outbox::delete_applied(c, &ids)).await?;
                state.metrics.invalidated(InvalidationCause::Outbox, InvalidationResult::Applied, items.len());
                tracing::info!(count = items.len(), "outbox invalidations applied");
                applied = items.len();
            }
            Err(e) => {
                tracing::debug!(error = %Chain(&e), count = items.len(), "outbox drain: redis still unavailable");
                // Release the claim soon, with backoff and jitter, so a
                // process that can reach Redis picks the rows up.
                let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(1);
                let retry = Utc::now() + to_chrono(backoff(state, attempts));
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                db::run(&state.pool, move |c| outbox::reschedule(c, &ids, retry)).await?;
            }
        }
    }
    let backlog = db::run(&state.pool, outbox::backlog).await?;
    state.metrics.outbox_depth.set(backlog.rows);
    let age = backlog.oldest.map_or(0, |at| (Utc::now() - at).num_seconds().max(0));
    state.metrics.outbox_oldest_seconds.set(age);
    let pool = state.pool.state();
    state.metrics.db_pool_connections.set(i64::from(pool.connections));
    state.metrics.db_pool_idle.set(i64::from(pool.idle_connections));
    Ok(applied)
}

/// Exponential backoff from the drain interval (capped at 5 s), with jitter
/// so that drainers of several processes spread out.
fn backoff(state: &AppState, attempts: i32) -> Duration {
    // `cache.outbox_interval_ms` is at least 10 ms (checked at load).
    let exp = state.outbox_interval.saturating_mul(1 << attempts.clamp(0, 6)).min(Duration::from_secs(5));
    exp / 2 + rand::rng().random_range(Duration::ZERO..=exp / 2)
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(1))
}

/// The drainer: runs until `shutdown` fires, then drains one last time.
pub async fn run_drainer(state: Arc<AppState>, interval: Duration, shutdown: Arc<Notify>) {
    loop {
        let jitter = rand::rng().random_range(Duration::ZERO..=interval / 2);
        tokio::select! {
            () = shutdown.notified() => break,
            () = state.outbox.woken() => {}
            () = tokio::time::sleep(interval + jitter) => {}
        }
        loop {
            match drain_once(&state, Due::Now).await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "outbox drain failed");
                    break;
                }
            }
        }
    }
    if let Err(e) = drain_once(&state, Due::Any).await {
        tracing::warn!(error = %Chain(&e), "final outbox drain failed");
    }
}
