use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::sessions;
use super::{DbError, NewSession};
use crate::domain::UserId;

pub fn insert(
    conn: &mut PgConnection,
    token_hash: &[u8],
    user_id: UserId,
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::insert_into(sessions::table)
        .values(NewSession { token_hash, user_id, expires_at })
        .execute(conn)
        .map(drop)
        .map_err(DbError::from)
}

/// The user and expiry of a live session, if the hash names one.
pub fn find_live(conn: &mut PgConnection, token_hash: &[u8]) -> Result<Option<(UserId, DateTime<Utc>)>, DbError> {
    sessions::table
        .filter(sessions::token_hash.eq(token_hash))
        .filter(sessions::expires_at.gt(diesel::dsl::now))
        .select((sessions::user_id, sessions::expires_at))
        .first(conn)
        .optional()
        .map_err(DbError::from)
}

/// Deletes the session; true if it existed.
pub fn delete(conn: &mut PgConnection, token_hash: &[u8]) -> Result<bool, DbError> {
    diesel::delete(sessions::table.filter(sessions::token_hash.eq(token_hash)))
        .execute(conn)
        .map(|n| n > 0)
        .map_err(DbError::from)
}

/// Housekeeping: deletes up to `limit` expired sessions (oldest expiry
/// first, by the `sessions_expires_at_idx` index); returns how many. Rows
/// another replica is deleting at the same moment are skipped, not waited
/// for, so replicas pruning at once do not queue behind each other, and a
/// bounded batch keeps each transaction (and its locks) short.
pub fn delete_expired(conn: &mut PgConnection, limit: i64) -> Result<usize, DbError> {
    // Diesel's DSL cannot put a locking subselect into a DELETE.
    diesel::sql_query(
        "DELETE FROM sessions WHERE token_hash IN (\
           SELECT token_hash FROM sessions WHERE expires_at <= now() \
           ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)",
    )
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .execute(conn)
    .map_err(DbError::from)
}
