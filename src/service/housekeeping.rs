//! Housekeeping that no request does: deleting expired sessions.
//!
//! An expired session is already refused (`sessions::find_live` filters on
//! `expires_at`), so pruning is about the table's size, not about access.
//! Every replica prunes on its own schedule (`auth.session_prune_interval_secs`);
//! batches skip rows another replica is deleting, so replicas never wait on
//! each other. `calcache sessions prune` does the same once, from the CLI.

use std::sync::Arc;
use std::time::Duration;

use super::{AppState, ServiceError};
use crate::db::{self, sessions};
use crate::error::Chain;

/// Rows per DELETE: short transactions, short locks.
const BATCH: i64 = 1000;

/// Deletes every session expired now; returns how many were deleted.
pub async fn prune_expired_sessions(state: &AppState) -> Result<usize, ServiceError> {
    let mut total = 0;
    loop {
        let n = db::run(&state.pool, |c| sessions::delete_expired(c, BATCH)).await?;
        state.metrics.sessions_pruned.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
        total += n;
        if i64::try_from(n).unwrap_or(i64::MAX) < BATCH {
            return Ok(total);
        }
    }
}

/// Prunes every `interval` (first right at start) until the task is
/// aborted. A failed pass (PostgreSQL down) is logged and retried at the
/// next tick.
pub async fn run_session_pruner(state: Arc<AppState>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match prune_expired_sessions(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "expired sessions pruned"),
            Err(e) => tracing::warn!(error = %Chain(&e), "session pruning failed; retrying at the next interval"),
        }
    }
}
