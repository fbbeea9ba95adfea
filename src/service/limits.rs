//! Per-user limits (`[limits]`, `config::LimitsSettings`): what one account
//! may cost everybody else, and the errors that say which limit a request
//! ran into.
//!
//! - **Feed fills** (`limits.feed_fills_per_user` per
//!   `limits.feed_fill_window_secs`): every PostgreSQL load of a feed on a
//!   miss or bypass, counted in Redis (shared by every process) once the
//!   session is confirmed; hits are free. Past it, `429 rate_limited` with
//!   `Retry-After`. With Redis unavailable the budget is open.
//! - **Items per owner** and **assignments per user**: checked in the write's
//!   own transaction, under row locks on the users involved, so a burst of
//!   concurrent writes cannot pass them (`db::work_items::lock_users`).
//! - **Events per feed answer**: a range holding more is refused rather than
//!   truncated (a 200 promises every item of the range).

use super::{AppState, ServiceError};
use crate::cache::{Admission, CacheError};
use crate::db::work_items as items;
use crate::domain::UserId;
use crate::error::Chain;

/// A configured limit a request ran into, as the error body names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitHit {
    /// The setting (`limits.max_items_per_owner`).
    pub name: &'static str,
    /// Its value.
    pub max: u64,
    /// The request field or parameter that is the lever, if one is.
    pub field: Option<&'static str>,
    /// For people.
    pub message: String,
}

/// Counts a feed fill for `user`, whose session is confirmed. Refused past
/// the budget; open (logged) when Redis cannot count.
pub async fn charge_feed_fill(state: &AppState, user: UserId) -> Result<(), ServiceError> {
    let limits = &state.limits;
    let budget = limits.feed_fills_per_user;
    if budget == 0 {
        return Ok(());
    }
    let window = limits.feed_fill_window_secs;
    match state.cache.count_feed_fill(user, budget, window).await {
        Ok(Admission::Allowed) => Ok(()),
        Ok(Admission::Refused { retry_after_secs }) => {
            tracing::info!(user_id = %user, "feed fill budget used up");
            let message = format!(
                "too many feed ranges loaded from the database: at most {budget} per {} s \
                 (limits.feed_fills_per_user); cached ranges still answer, others again in {retry_after_secs} s",
                window.get()
            );
            let hit = LimitHit { name: "limits.feed_fills_per_user", max: budget, field: None, message };
            Err(ServiceError::RateLimited { retry_after_secs, limit: Some(Box::new(hit)) })
        }
        // Already logged when the circuit opened: one line per outage, not per request.
        Err(e @ CacheError::CircuitOpen) => {
            tracing::debug!(user_id = %user, error = %Chain(&e), "feed fill budget unavailable; not counting");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(user_id = %user, error = %Chain(&e), "feed fill budget unavailable; not counting");
            Ok(())
        }
    }
}

/// The caps a write must respect, checked in its transaction: the owner's
/// items (creates only) and the assignments of every user it newly assigns
/// (items owned by someone else). Locks those users' rows (in id order,
/// `FOR NO KEY UPDATE`) until the transaction ends, so that concurrent
/// writes are counted one after the other.
pub fn check_write_caps(
    conn: &mut diesel::PgConnection,
    limits: &crate::config::LimitsSettings,
    owner: UserId,
    creating: bool,
    newly_assigned: &[UserId],
) -> Result<(), ServiceError> {
    let others: Vec<UserId> = newly_assigned.iter().copied().filter(|&u| u != owner).collect();
    let mut lock: Vec<UserId> = others.clone();
    if creating {
        lock.push(owner);
    }
    if lock.is_empty() {
        return Ok(());
    }
    items::lock_users(conn, &lock)?;
    if creating {
        let max = limits.max_items_per_owner.get();
        let owned = items::owned_count(conn, owner)?;
        if owned >= max {
            return Err(ServiceError::LimitExceeded(Box::new(LimitHit {
                name: "limits.max_items_per_owner",
                max,
                field: None,
                message: format!(
                    "you own {owned} work items, the most one user may own (limits.max_items_per_owner = {max}); \
                     delete some first"
                ),
            })));
        }
    }
    if !others.is_empty() {
        let max = limits.max_assignments_per_user.get();
        if let Some((user, _)) = items::assignment_counts(conn, &others)?.into_iter().find(|&(_, count)| count >= max) {
            return Err(ServiceError::LimitExceeded(Box::new(LimitHit {
                name: "limits.max_assignments_per_user",
                max,
                field: Some("assignee_ids"),
                message: format!(
                    "user {user} is assigned to as many work items of other users as one user may be \
                     (limits.max_assignments_per_user = {max})"
                ),
            })));
        }
    }
    Ok(())
}

/// The feed answer's cap was passed: refused, naming the range's end (the
/// lever a client has).
pub fn feed_too_large(max: usize) -> ServiceError {
    ServiceError::LimitExceeded(Box::new(LimitHit {
        name: "limits.max_items_per_feed",
        max: u64::try_from(max).unwrap_or(u64::MAX),
        field: Some("end"),
        message: format!(
            "this range holds more than {max} work items, the most one feed answer carries \
             (limits.max_items_per_feed); ask for a shorter range"
        ),
    }))
}
