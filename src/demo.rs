//! Demo data, so that a first run shows a real calendar.

use chrono::{Datelike, Duration, NaiveTime, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::domain::{AssigneeIds, Password, Status, Timestamp, Title, Username, WorkType};
use crate::service::auth::{self, User};
use crate::service::work_items::{self, CreateWorkItem};
use crate::service::{AppState, ServiceError};

pub const DEMO_USER: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo-password";
pub const DEMO_USER_2: &str = "demo2";

const PROJECTS: &[&str] = &["Website relaunch", "Data migration", "Annual report", "Office move", "Mobile app beta"];
const ACTIVITIES: &[&str] = &["Team workshop", "Client visit", "Training day", "Community meeting", "Site inspection"];
const TASKS: &[&str] =
    &["Review budget", "Send invoices", "Update roadmap", "Call supplier", "Write minutes", "Fix login bug"];

#[derive(Debug)]
pub struct DemoSummary {
    pub created_items: usize,
    pub users: Vec<User>,
}

async fn ensure_user(state: &AppState, name: &str) -> Result<(User, bool), ServiceError> {
    let username = Username::parse(name.to_owned()).map_err(|e| ServiceError::internal("bad demo username", e))?;
    let password =
        Password::parse(DEMO_PASSWORD.to_owned()).map_err(|e| ServiceError::internal("bad demo password", e))?;
    match auth::create_user(state, username, password).await {
        Ok(u) => Ok((u, true)),
        // The name is taken: the demo user from an earlier run.
        Err(taken @ ServiceError::Conflict(_)) => {
            let row = crate::db::run(&state.pool, {
                let name = name.to_owned();
                move |c| crate::db::users::find_by_username(c, &name)
            })
            .await?
            // Deleted since sign-up said it exists: report the conflict.
            .ok_or(taken)?;
            Ok((User { id: row.id, username: row.username }, false))
        }
        Err(e) => Err(e),
    }
}

/// Creates the demo users and, the first time, `items` work items spread over
/// the three months before and after today.
pub async fn seed(state: &AppState, items: usize) -> Result<DemoSummary, ServiceError> {
    let (demo, created) = ensure_user(state, DEMO_USER).await?;
    let (demo2, _) = ensure_user(state, DEMO_USER_2).await?;
    if !created {
        return Ok(DemoSummary { created_items: 0, users: vec![demo, demo2] });
    }
    let mut rng = StdRng::seed_from_u64(20261006);
    let today = Utc::now().date_naive();
    let first = today - Duration::days(90);
    for i in 0..items {
        let day = first + Duration::days(rng.random_range(0..181));
        let (work_type, names) = match i % 3 {
            0 => (WorkType::Task, TASKS),
            1 => (WorkType::Activity, ACTIVITIES),
            _ => (WorkType::Project, PROJECTS),
        };
        let all_day = work_type == WorkType::Project || rng.random_bool(0.2);
        let (start, end) = if all_day {
            let start = Utc.from_utc_datetime(&day.and_time(NaiveTime::MIN));
            let days = if work_type == WorkType::Project { rng.random_range(1..10) } else { 1 };
            (start, start + Duration::days(days))
        } else {
            let hour = rng.random_range(8..17);
            let start =
                Utc.from_utc_datetime(&day.and_time(NaiveTime::from_hms_opt(hour, 0, 0).unwrap_or(NaiveTime::MIN)));
            (start, start + Duration::minutes(30 * rng.random_range(1..6)))
        };
        let status = if day < today {
            [Status::Completed, Status::Completed, Status::Cancelled, Status::InProgress][rng.random_range(0..4)]
        } else {
            [Status::NotStarted, Status::NotStarted, Status::InProgress][rng.random_range(0..3)]
        };
        let name = names[rng.random_range(0..names.len())];
        let title =
            Title::parse(format!("{name} #{}", i + 1)).map_err(|e| ServiceError::internal("bad demo title", e))?;
        let assignees: AssigneeIds =
            if rng.random_bool(0.25) { [demo2.id].into_iter().collect() } else { AssigneeIds::default() };
        let input = CreateWorkItem {
            title,
            description: None,
            work_type,
            status: Some(status),
            start: Timestamp::from_utc(start),
            end: Some(Timestamp::from_utc(end)),
            all_day: Some(all_day),
            assignee_ids: Some(assignees),
        };
        work_items::create(state, demo.id, input).await?;
        if i % 100 == 99 {
            tracing::info!(created = i + 1, month = day.month(), "demo items");
        }
    }
    Ok(DemoSummary { created_items: items, users: vec![demo, demo2] })
}
