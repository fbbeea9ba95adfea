use diesel::prelude::*;

use super::schema::users;
use super::{DbError, NewUser, UserRow};
use crate::domain::UserId;

pub fn insert(conn: &mut PgConnection, username: &str, password_hash: &str) -> Result<UserRow, DbError> {
    diesel::insert_into(users::table)
        .values(NewUser { username, password_hash })
        .returning(UserRow::as_returning())
        .get_result(conn)
        .map_err(DbError::from)
}

pub fn find_by_username(conn: &mut PgConnection, username: &str) -> Result<Option<UserRow>, DbError> {
    users::table
        .filter(users::username.eq(username))
        .select(UserRow::as_select())
        .first(conn)
        .optional()
        .map_err(DbError::from)
}

pub fn find(conn: &mut PgConnection, id: UserId) -> Result<Option<UserRow>, DbError> {
    users::table.find(id).select(UserRow::as_select()).first(conn).optional().map_err(DbError::from)
}

/// Usernames for display, e.g. the assignee picker.
pub fn list(conn: &mut PgConnection, limit: i64) -> Result<Vec<(UserId, String)>, DbError> {
    users::table
        .select((users::id, users::username))
        .order(users::username.asc())
        .limit(limit)
        .load(conn)
        .map_err(DbError::from)
}
