use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::{work_item_assignees as assignees, work_items};
use super::{DbError, FeedRow, NewWorkItem, WorkItemChanges, WorkItemRow};
use crate::domain::{Status, UserId, WorkItemId, WorkType, all_day_span};

/// A work item with its assignees (sorted ids).
#[derive(Debug, Clone)]
pub struct WorkItemRecord {
    pub row: WorkItemRow,
    pub assignee_ids: Vec<UserId>,
}

pub fn insert(
    conn: &mut PgConnection,
    item: &NewWorkItem<'_>,
    assignee_ids: &[UserId],
) -> Result<WorkItemRecord, DbError> {
    let row =
        diesel::insert_into(work_items::table).values(item).returning(WorkItemRow::as_returning()).get_result(conn)?;
    set_assignees(conn, row.id, assignee_ids)?;
    Ok(WorkItemRecord { row, assignee_ids: assignee_ids.to_vec() })
}

/// Replaces the item's assignees with `ids`.
pub fn set_assignees(conn: &mut PgConnection, id: WorkItemId, ids: &[UserId]) -> Result<(), DbError> {
    diesel::delete(assignees::table.filter(assignees::work_item_id.eq(id))).execute(conn)?;
    if !ids.is_empty() {
        let rows: Vec<_> = ids.iter().map(|&u| (assignees::work_item_id.eq(id), assignees::user_id.eq(u))).collect();
        diesel::insert_into(assignees::table).values(&rows).execute(conn)?;
    }
    Ok(())
}

fn assignees_of(conn: &mut PgConnection, id: WorkItemId) -> Result<Vec<UserId>, DbError> {
    assignees::table
        .filter(assignees::work_item_id.eq(id))
        .select(assignees::user_id)
        .order(assignees::user_id.asc())
        .load(conn)
        .map_err(DbError::from)
}

/// The item if `user` owns it or is assigned to it. Nothing otherwise, so a
/// stranger cannot tell "not yours" from "does not exist".
pub fn find_visible(conn: &mut PgConnection, id: WorkItemId, user: UserId) -> Result<Option<WorkItemRecord>, DbError> {
    let row = work_items::table
        .find(id)
        .filter(work_items::owner_id.eq(user).or(diesel::dsl::exists(
            assignees::table.filter(assignees::work_item_id.eq(id)).filter(assignees::user_id.eq(user)),
        )))
        .select(WorkItemRow::as_select())
        .first(conn)
        .optional()?;
    match row {
        Some(row) => Ok(Some(WorkItemRecord { assignee_ids: assignees_of(conn, row.id)?, row })),
        None => Ok(None),
    }
}

/// The item if `owner` owns it, locked until the transaction ends so that
/// concurrent writers of the same item are serialized.
pub fn find_owned_for_update(
    conn: &mut PgConnection,
    id: WorkItemId,
    owner: UserId,
) -> Result<Option<WorkItemRecord>, DbError> {
    let row = work_items::table
        .find(id)
        .filter(work_items::owner_id.eq(owner))
        .select(WorkItemRow::as_select())
        .for_update()
        .first(conn)
        .optional()?;
    match row {
        Some(row) => Ok(Some(WorkItemRecord { assignee_ids: assignees_of(conn, row.id)?, row })),
        None => Ok(None),
    }
}

pub fn update(conn: &mut PgConnection, id: WorkItemId, changes: &WorkItemChanges<'_>) -> Result<WorkItemRow, DbError> {
    diesel::update(work_items::table.find(id))
        .set(changes)
        .returning(WorkItemRow::as_returning())
        .get_result(conn)
        .map_err(DbError::from)
}

pub fn delete(conn: &mut PgConnection, id: WorkItemId) -> Result<(), DbError> {
    diesel::delete(work_items::table.find(id)).execute(conn).map(drop).map_err(DbError::from)
}

/// What the feed asks PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct FeedFilter {
    pub user: UserId,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub work_type: Option<WorkType>,
    pub status: Option<Status>,
}

/// Every item `user` owns or is assigned to that overlaps `[start, end)`,
/// ordered by start then id. An item overlaps when it starts before `end`
/// and either ends after `start` or (a zero-length item) starts at or after
/// `start`.
pub fn feed(conn: &mut PgConnection, f: FeedFilter) -> Result<Vec<FeedRow>, DbError> {
    let mine = assignees::table.filter(assignees::user_id.eq(f.user)).select(assignees::work_item_id);
    // An all-day item covers whole UTC days, which may reach up to a day
    // beyond its stored instants (`domain::all_day_span`): the query takes a
    // day's margin for those, and the exact test below drops the extras.
    let day = chrono::Duration::days(1);
    let timed_overlap =
        work_items::start_at.lt(f.end).and(work_items::end_at.gt(f.start).or(work_items::start_at.ge(f.start)));
    let mut query = work_items::table
        .filter(work_items::owner_id.eq(f.user).or(work_items::id.eq_any(mine)))
        .filter(work_items::start_at.lt(f.end + day))
        .filter(timed_overlap.or(work_items::all_day.and(work_items::end_at.gt(f.start - day))))
        .select(FeedRow::as_select())
        .order((work_items::start_at.asc(), work_items::id.asc()))
        .into_boxed();
    if let Some(t) = f.work_type {
        query = query.filter(work_items::work_type.eq(t));
    }
    if let Some(s) = f.status {
        query = query.filter(work_items::status.eq(s));
    }
    let mut rows: Vec<FeedRow> = query.load(conn)?;
    rows.retain(|r| {
        if !r.all_day {
            return true;
        }
        let (first, after_last) = all_day_span(r.start_at, r.end_at);
        let midnight = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc();
        midnight(first) < f.end && midnight(after_last) > f.start
    });
    Ok(rows)
}

/// Assignees of many items at once (for listing).
pub fn assignees_of_many(
    conn: &mut PgConnection,
    ids: &[WorkItemId],
) -> Result<HashMap<WorkItemId, Vec<UserId>>, DbError> {
    let pairs: Vec<(WorkItemId, UserId)> = assignees::table
        .filter(assignees::work_item_id.eq_any(ids))
        .select((assignees::work_item_id, assignees::user_id))
        .order((assignees::work_item_id, assignees::user_id))
        .load(conn)?;
    let mut map: HashMap<WorkItemId, Vec<UserId>> = HashMap::new();
    for (item, user) in pairs {
        map.entry(item).or_default().push(user);
    }
    Ok(map)
}
