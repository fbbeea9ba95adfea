use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::sessions;
use super::{DbError, NewSession};

pub fn insert(
    conn: &mut PgConnection,
    token_hash: &[u8],
    user_id: i64,
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::insert_into(sessions::table)
        .values(NewSession { token_hash, user_id, expires_at })
        .execute(conn)
        .map(drop)
        .map_err(DbError::from)
}

/// The user and expiry of a live session, if the hash names one.
pub fn find_live(conn: &mut PgConnection, token_hash: &[u8]) -> Result<Option<(i64, DateTime<Utc>)>, DbError> {
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

/// Housekeeping: expired sessions are useless rows.
pub fn delete_expired(conn: &mut PgConnection) -> Result<usize, DbError> {
    diesel::delete(sessions::table.filter(sessions::expires_at.le(diesel::dsl::now)))
        .execute(conn)
        .map_err(DbError::from)
}
