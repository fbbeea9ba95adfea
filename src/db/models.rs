//! Row, insert and change structs. They mirror the tables; the API types are
//! built from them (`From`), never the rows themselves.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::schema::{sessions, users, work_items};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub password_hash: &'a str,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = sessions)]
pub struct NewSession<'a> {
    pub token_hash: &'a [u8],
    pub user_id: i64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = work_items, check_for_backend(diesel::pg::Pg))]
pub struct WorkItemRow {
    pub id: Uuid,
    pub owner_id: i64,
    pub title: String,
    pub description: String,
    pub work_type: String,
    pub status: String,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub all_day: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = work_items)]
pub struct NewWorkItem<'a> {
    pub id: Uuid,
    pub owner_id: i64,
    pub title: &'a str,
    pub description: &'a str,
    pub work_type: &'a str,
    pub status: &'a str,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub all_day: bool,
}

/// A PATCH: `None` leaves the column alone.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = work_items)]
pub struct WorkItemChanges<'a> {
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub work_type: Option<&'a str>,
    pub status: Option<&'a str>,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
    pub all_day: Option<bool>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// The feed's projection: only what the feed shows.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = work_items, check_for_backend(diesel::pg::Pg))]
pub struct FeedRow {
    pub id: Uuid,
    pub title: String,
    pub work_type: String,
    pub status: String,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub all_day: bool,
}
