//! Row, insert and change structs. They mirror the tables with domain types
//! for ids and enums (`types.rs`); the API types are built from them
//! (`From`), never the rows themselves.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::{sessions, users, work_items};
use crate::domain::{Status, UserId, WorkItemId, WorkType};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserRow {
    pub id: UserId,
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
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = work_items, check_for_backend(diesel::pg::Pg))]
pub struct WorkItemRow {
    pub id: WorkItemId,
    pub owner_id: UserId,
    pub title: String,
    pub description: String,
    pub work_type: WorkType,
    pub status: Status,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub all_day: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = work_items)]
pub struct NewWorkItem<'a> {
    pub id: WorkItemId,
    pub owner_id: UserId,
    pub title: &'a str,
    pub description: &'a str,
    pub work_type: WorkType,
    pub status: Status,
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
    pub work_type: Option<WorkType>,
    pub status: Option<Status>,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
    pub all_day: Option<bool>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// The feed's projection: only what the feed shows.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = work_items, check_for_backend(diesel::pg::Pg))]
pub struct FeedRow {
    pub id: WorkItemId,
    pub title: String,
    pub work_type: WorkType,
    pub status: Status,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub all_day: bool,
}
