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
    let mut rows = feed_page(conn, &f, None, None)?;
    rows.retain(|r| overlaps(&f, r));
    Ok(rows)
}

/// A feed's rows, or that there are more than a cap.
#[derive(Debug)]
pub enum Capped {
    Rows(Vec<FeedRow>),
    /// More than `max` rows overlap the range.
    Over,
}

/// [`feed`], reading at most `max + 1` matching rows: a range holding more
/// than `max` items is [`Capped::Over`] without loading them all. (The
/// query's all-day margin may bring rows the exact test drops; then the next
/// rows are read after the last one, so the count is exact.)
pub fn feed_capped(conn: &mut PgConnection, f: FeedFilter, max: usize) -> Result<Capped, DbError> {
    let mut rows: Vec<FeedRow> = Vec::new();
    let mut after: Option<(DateTime<Utc>, WorkItemId)> = None;
    loop {
        let want = max + 1 - rows.len();
        let page = feed_page(conn, &f, after, Some(want))?;
        let complete = page.len() < want;
        after = page.last().map(|r| (r.start_at, r.id));
        rows.extend(page.into_iter().filter(|r| overlaps(&f, r)));
        if rows.len() > max {
            return Ok(Capped::Over);
        }
        if complete {
            return Ok(Capped::Rows(rows));
        }
    }
}

/// The exact overlap test for an all-day row, which the query finds with a
/// day's margin (timed rows are exact already).
fn overlaps(f: &FeedFilter, r: &FeedRow) -> bool {
    if !r.all_day {
        return true;
    }
    let (first, after_last) = all_day_span(r.start_at, r.end_at);
    let midnight = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc();
    midnight(first) < f.end && midnight(after_last) > f.start
}

/// The candidate rows of a feed in (start, id) order: those after `after`,
/// at most `limit`.
fn feed_page(
    conn: &mut PgConnection,
    f: &FeedFilter,
    after: Option<(DateTime<Utc>, WorkItemId)>,
    limit: Option<usize>,
) -> Result<Vec<FeedRow>, DbError> {
    let mine = assignees::table.filter(assignees::user_id.eq(f.user)).select(assignees::work_item_id);
    // An all-day item covers whole UTC days, which may reach up to a day
    // beyond its stored instants (`domain::all_day_span`): the query takes a
    // day's margin for those, and `overlaps` drops the extras.
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
    if let Some((start, id)) = after {
        query =
            query.filter(work_items::start_at.gt(start).or(work_items::start_at.eq(start).and(work_items::id.gt(id))));
    }
    if let Some(limit) = limit {
        query = query.limit(i64::try_from(limit).unwrap_or(i64::MAX));
    }
    query.load(conn).map_err(DbError::from)
}

/// Locks the rows of `users` (in id order, so that two writes locking
/// overlapping sets cannot deadlock) until the transaction ends.
/// `FOR NO KEY UPDATE`: it serializes the writes that count a user's items,
/// but not the inserts that merely reference the user (sessions, items,
/// assignments take `FOR KEY SHARE`). Returns the ids that exist.
pub fn lock_users(conn: &mut PgConnection, users: &[UserId]) -> Result<Vec<UserId>, DbError> {
    use super::schema::users::dsl as u;
    u::users
        .filter(u::id.eq_any(users))
        .select(u::id)
        .order(u::id.asc())
        .for_no_key_update()
        .load(conn)
        .map_err(DbError::from)
}

/// How many work items `owner` owns.
pub fn owned_count(conn: &mut PgConnection, owner: UserId) -> Result<u64, DbError> {
    let n: i64 = work_items::table.filter(work_items::owner_id.eq(owner)).count().get_result(conn)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// For each of `users`, how many items owned by somebody else it is
/// assigned to (users with none are left out).
pub fn assignment_counts(conn: &mut PgConnection, users: &[UserId]) -> Result<Vec<(UserId, u64)>, DbError> {
    let counts: Vec<(UserId, i64)> = assignees::table
        .inner_join(work_items::table)
        .filter(assignees::user_id.eq_any(users))
        .filter(work_items::owner_id.ne(assignees::user_id))
        .group_by(assignees::user_id)
        .select((assignees::user_id, diesel::dsl::count_star()))
        .load(conn)?;
    Ok(counts.into_iter().map(|(u, n)| (u, u64::try_from(n).unwrap_or(0))).collect())
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
