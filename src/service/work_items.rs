//! Creating, reading, changing and deleting work items. Every write follows
//! the same path: one transaction that changes the item and records an
//! outbox row for every affected user (owner, and assignees before and after
//! the change), then the invalidation (see `invalidation` for why after).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::invalidation::{self, Fenced};
use super::{AppState, ServiceError, limits};
use crate::cache::Extent;
use crate::db::work_items::{self as items, WorkItemRecord};
use crate::db::{self, DbError, NewWorkItem, WorkItemChanges, WorkItemRow, outbox};
use crate::domain::{
    AssigneeIds, Description, InvalidValue, Status, Timestamp, Title, UserId, ValidationError, WorkItemId, WorkType,
};
use crate::metrics::InvalidationCause;

/// A work item as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WorkItem {
    pub id: WorkItemId,
    #[schema(value_type = Title)]
    pub title: String,
    #[schema(value_type = Description)]
    pub description: String,
    pub work_type: WorkType,
    pub status: Status,
    #[schema(value_type = String, format = DateTime)]
    pub start: Timestamp,
    /// Never before `start`.
    #[schema(value_type = String, format = DateTime)]
    pub end: Timestamp,
    pub all_day: bool,
    pub owner_id: UserId,
    pub assignee_ids: Vec<UserId>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<WorkItemRecord> for WorkItem {
    fn from(rec: WorkItemRecord) -> Self {
        let r = rec.row;
        Self {
            id: r.id,
            title: r.title,
            description: r.description,
            work_type: r.work_type,
            status: r.status,
            start: Timestamp::from_utc(r.start_at),
            end: Timestamp::from_utc(r.end_at),
            all_day: r.all_day,
            owner_id: r.owner_id,
            assignee_ids: rec.assignee_ids,
            created_at: Timestamp::from_utc(r.created_at),
            updated_at: Timestamp::from_utc(r.updated_at),
        }
    }
}

/// `POST /api/work-items`. Parsing this is the validation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "Write the report", "work_type": "task", "start": "2026-10-06T09:00:00Z",
    "end": "2026-10-06T11:00:00Z", "status": "in_progress", "description": "", "all_day": false}))]
pub struct CreateWorkItem {
    pub title: Title,
    #[serde(default)]
    pub description: Option<Description>,
    pub work_type: WorkType,
    #[serde(default)]
    pub status: Option<Status>,
    pub start: Timestamp,
    #[serde(default)]
    pub end: Option<Timestamp>,
    #[serde(default)]
    pub all_day: Option<bool>,
    #[serde(default)]
    pub assignee_ids: Option<AssigneeIds>,
}

/// `PATCH /api/work-items/{id}`: any subset of the writable fields.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "completed", "end": "2026-10-06T12:00:00Z"}))]
pub struct PatchWorkItem {
    pub title: Option<Title>,
    pub description: Option<Description>,
    pub work_type: Option<WorkType>,
    pub status: Option<Status>,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub all_day: Option<bool>,
    pub assignee_ids: Option<AssigneeIds>,
}

fn check_order(start: DateTime<Utc>, end: DateTime<Utc>, field: &'static str) -> Result<(), ValidationError> {
    if end < start { Err(ValidationError::new(field, InvalidValue::EndBeforeStart)) } else { Ok(()) }
}

/// A foreign-key failure on a write can only come from an assignee id that
/// names no user (the owner is the caller).
fn unknown_assignee(e: ServiceError) -> ServiceError {
    match e {
        ServiceError::Db(DbError::ForeignKeyViolation(_)) => {
            ValidationError::new("assignee_ids", InvalidValue::UnknownUser).into()
        }
        other => other,
    }
}

/// What an item occupies in feeds, for the outbox (`cache/buckets.rs`).
fn extent(row: &WorkItemRow) -> Extent {
    Extent::of_item(row.start_at, row.end_at, row.all_day)
}

fn affected(owner: UserId, before: &[UserId], after: &[UserId]) -> Vec<UserId> {
    let set: BTreeSet<UserId> =
        std::iter::once(owner).chain(before.iter().copied()).chain(after.iter().copied()).collect();
    set.into_iter().collect()
}

#[tracing::instrument(skip_all, fields(user_id = %owner))]
pub async fn create(state: &AppState, owner: UserId, input: CreateWorkItem) -> Result<WorkItem, ServiceError> {
    let end = input.end.unwrap_or(input.start);
    check_order(input.start.as_utc(), end.as_utc(), "end")?;
    let assignees: Vec<UserId> = input.assignee_ids.unwrap_or_default().iter().collect();
    let users = affected(owner, &[], &assignees);
    let id = WorkItemId::new_random();
    let limits = state.limits.clone();
    let record =
        invalidation::fenced_write(state, users, InvalidationCause::Create, move |c, fence, fenced, head_start| {
            // Under row locks on the owner and the assignees: concurrent
            // creates are counted one after the other.
            limits::check_write_caps(c, &limits, owner, true, &assignees)?;
            let new = NewWorkItem {
                id,
                owner_id: owner,
                title: input.title.as_str(),
                description: input.description.as_ref().map_or("", Description::as_str),
                work_type: input.work_type,
                status: input.status.unwrap_or(Status::NotStarted),
                start_at: input.start.as_utc(),
                end_at: end.as_utc(),
                all_day: input.all_day.unwrap_or(false),
            };
            let record = items::insert(c, &new, &assignees)?;
            let covered = Extent::flatten(&[extent(&record.row)]);
            let rows = outbox::record_feed_bumps(c, fenced, &covered, fence.0, head_start)?;
            Ok(Fenced::Done(record, rows))
        })
        .await
        .map_err(unknown_assignee)?;
    tracing::info!(work_item_id = %record.row.id, "work item created");
    Ok(record.into())
}

#[tracing::instrument(skip_all, fields(user_id = %caller, work_item_id = %id))]
pub async fn get(state: &AppState, caller: UserId, id: WorkItemId) -> Result<WorkItem, ServiceError> {
    let record = db::run(&state.pool, move |c| items::find_visible(c, id, caller)).await?;
    record.map(WorkItem::from).ok_or(ServiceError::NotFound)
}

#[tracing::instrument(skip_all, fields(user_id = %caller, work_item_id = %id))]
pub async fn update(
    state: &AppState,
    caller: UserId,
    id: WorkItemId,
    patch: PatchWorkItem,
) -> Result<WorkItem, ServiceError> {
    // Who is affected is only known once the row is locked (its assignees
    // before the change): fence the caller and the new assignees, and widen
    // the fence if the row names others.
    let after: Option<Vec<UserId>> = patch.assignee_ids.as_ref().map(|ids| ids.iter().collect());
    let known = affected(caller, &[], after.as_deref().unwrap_or_default());
    let limits = state.limits.clone();
    let record =
        invalidation::fenced_write(state, known, InvalidationCause::Update, move |c, fence, fenced, head_start| {
            // Only the owner may change an item; to anyone else it does not exist.
            let current = items::find_owned_for_update(c, id, caller)?.ok_or(ServiceError::NotFound)?;
            let after = after.clone().unwrap_or_else(|| current.assignee_ids.clone());
            let users = affected(current.row.owner_id, &current.assignee_ids, &after);
            if users.iter().any(|u| !fenced.contains(u)) {
                return Ok(Fenced::Widen(users));
            }
            let start = patch.start.map_or(current.row.start_at, |t| t.as_utc());
            let end = patch.end.map_or(current.row.end_at, |t| t.as_utc());
            check_order(start, end, if patch.end.is_some() { "end" } else { "start" })?;
            if patch.assignee_ids.is_some() {
                let added: Vec<UserId> = after.iter().copied().filter(|u| !current.assignee_ids.contains(u)).collect();
                limits::check_write_caps(c, &limits, current.row.owner_id, false, &added)?;
            }
            let changes = WorkItemChanges {
                title: patch.title.as_ref().map(Title::as_str),
                description: patch.description.as_ref().map(Description::as_str),
                work_type: patch.work_type,
                status: patch.status,
                start_at: patch.start.map(|t| t.as_utc()),
                end_at: patch.end.map(|t| t.as_utc()),
                all_day: patch.all_day,
                updated_at: Some(Timestamp::now().as_utc()),
            };
            let row = items::update(c, id, &changes)?;
            if patch.assignee_ids.is_some() {
                items::set_assignees(c, id, &after)?;
            }
            // Where it was and where it is now: both views change.
            let covered = Extent::flatten(&[extent(&current.row), extent(&row)]);
            let rows = outbox::record_feed_bumps(c, &users, &covered, fence.0, head_start)?;
            Ok(Fenced::Done(WorkItemRecord { row, assignee_ids: after }, rows))
        })
        .await
        .map_err(unknown_assignee)?;
    Ok(record.into())
}

#[tracing::instrument(skip_all, fields(user_id = %caller, work_item_id = %id))]
pub async fn delete(state: &AppState, caller: UserId, id: WorkItemId) -> Result<(), ServiceError> {
    invalidation::fenced_write(state, vec![caller], InvalidationCause::Delete, move |c, fence, fenced, head_start| {
        let current = items::find_owned_for_update(c, id, caller)?.ok_or(ServiceError::NotFound)?;
        let users = affected(current.row.owner_id, &current.assignee_ids, &[]);
        if users.iter().any(|u| !fenced.contains(u)) {
            return Ok(Fenced::Widen(users));
        }
        items::delete(c, id)?;
        let covered = Extent::flatten(&[extent(&current.row)]);
        Ok(Fenced::Done((), outbox::record_feed_bumps(c, &users, &covered, fence.0, head_start)?))
    })
    .await?;
    tracing::info!("work item deleted");
    Ok(())
}
