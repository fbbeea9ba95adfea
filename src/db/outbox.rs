//! The invalidation outbox (see the migration for why it exists).

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::DbError;
use super::schema::cache_invalidations as outbox;
use crate::domain::UserId;

/// Which rows a drainer may claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Now,
    Any,
}

#[derive(Debug, Clone, Queryable)]
pub struct OutboxRow {
    pub id: i64,
    pub user_id: UserId,
    pub session_hash: Option<Vec<u8>>,
    pub attempts: i32,
    /// The write fence the bump lowers once applied.
    pub fence: Option<uuid::Uuid>,
    /// What the changed item covered, `[start, end, …]` in unix seconds
    /// (see the migration); `None`: bump the user-wide version.
    pub extents: Option<Vec<i64>>,
}

type Columns = (outbox::id, outbox::user_id, outbox::session_hash, outbox::attempts, outbox::fence, outbox::extents);
const COLUMNS: Columns =
    (outbox::id, outbox::user_id, outbox::session_hash, outbox::attempts, outbox::fence, outbox::extents);

/// Records, inside the caller's transaction, that these users' feed versions
/// must be bumped once it commits, and `fence` lowered after the bump.
/// `extents` (flattened, see [`OutboxRow::extents`]) is what the changed item
/// covered. Drainers leave the rows alone until `head_start` so the request
/// can apply them itself.
pub fn record_feed_bumps(
    conn: &mut PgConnection,
    users: &[UserId],
    extents: &[i64],
    fence: uuid::Uuid,
    head_start: DateTime<Utc>,
) -> Result<Vec<OutboxRow>, DbError> {
    let rows: Vec<_> = users
        .iter()
        .map(|&u| {
            (
                outbox::user_id.eq(u),
                outbox::attempt_after.eq(head_start),
                outbox::fence.eq(Some(fence)),
                outbox::extents.eq(Some(extents)),
            )
        })
        .collect();
    diesel::insert_into(outbox::table).values(&rows).returning(COLUMNS).get_results(conn).map_err(DbError::from)
}

/// Records that a revoked session's cached validity must be dropped.
pub fn record_session_revocation(
    conn: &mut PgConnection,
    user: UserId,
    hash: &[u8],
    head_start: DateTime<Utc>,
) -> Result<OutboxRow, DbError> {
    diesel::insert_into(outbox::table)
        .values((outbox::user_id.eq(user), outbox::session_hash.eq(Some(hash)), outbox::attempt_after.eq(head_start)))
        .returning(COLUMNS)
        .get_result(conn)
        .map_err(DbError::from)
}

/// Claims up to `limit` due rows that no other drainer holds, and pushes
/// their `attempt_after` to `lease_until` so others leave them alone while
/// this drainer applies them. If it dies, they become due again then.
///
/// `Due::Any` ignores schedules: at shutdown, when no request of this
/// process is in flight any more, everything left is taken.
pub fn claim(
    conn: &mut PgConnection,
    due: Due,
    limit: i64,
    lease_until: DateTime<Utc>,
) -> Result<Vec<OutboxRow>, DbError> {
    // (A far-future cutoff rather than no filter: locking selects cannot be
    // boxed, and chrono's MAX is beyond PostgreSQL's timestamp range.)
    let not_after = match due {
        Due::Now => Utc::now(),
        Due::Any => Utc::now() + chrono::Duration::days(36_500),
    };
    conn.transaction(|conn| {
        let ids: Vec<i64> = outbox::table
            .filter(outbox::attempt_after.le(not_after))
            .order((outbox::attempt_after.asc(), outbox::id.asc()))
            .limit(limit)
            .select(outbox::id)
            .for_update()
            .skip_locked()
            .load(conn)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        diesel::update(outbox::table.filter(outbox::id.eq_any(&ids)))
            .set((outbox::attempt_after.eq(lease_until), outbox::attempts.eq(outbox::attempts + 1)))
            .returning(COLUMNS)
            .get_results(conn)
            .map_err(DbError::from)
    })
}

/// Deletes applied rows. Rows a drainer holds locked right now are skipped
/// (it deletes them itself), so a request never waits on a drainer.
pub fn delete_applied(conn: &mut PgConnection, ids: &[i64]) -> Result<usize, DbError> {
    conn.transaction(|conn| {
        let free: Vec<i64> =
            outbox::table.filter(outbox::id.eq_any(ids)).select(outbox::id).for_update().skip_locked().load(conn)?;
        diesel::delete(outbox::table.filter(outbox::id.eq_any(&free))).execute(conn).map_err(DbError::from)
    })
}

/// Sets when the rows may be tried next.
pub fn reschedule(conn: &mut PgConnection, ids: &[i64], at: DateTime<Utc>) -> Result<usize, DbError> {
    diesel::update(outbox::table.filter(outbox::id.eq_any(ids)))
        .set(outbox::attempt_after.eq(at))
        .execute(conn)
        .map_err(DbError::from)
}

/// Makes rows due at once (their request could not apply them).
pub fn make_due(conn: &mut PgConnection, ids: &[i64]) -> Result<usize, DbError> {
    diesel::update(outbox::table.filter(outbox::id.eq_any(ids)))
        .set(outbox::attempt_after.eq(diesel::dsl::now))
        .execute(conn)
        .map_err(DbError::from)
}

/// What the outbox holds, for metrics: rows waiting (counted up to
/// `DEPTH_CAP`, so a huge backlog costs a bounded scan, not a full count on
/// every drain pass) and when the oldest of them was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub rows: i64,
    pub oldest: Option<DateTime<Utc>>,
}

pub const DEPTH_CAP: i64 = 10_000;

pub fn backlog(conn: &mut PgConnection) -> Result<Backlog, DbError> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows = diesel::sql_query("SELECT count(*) AS n FROM (SELECT 1 FROM cache_invalidations LIMIT $1) AS capped")
        .bind::<diesel::sql_types::BigInt, _>(DEPTH_CAP)
        .get_result::<Count>(conn)?
        .n;
    // Ids grow with time: the smallest id is the oldest row (primary key).
    let oldest = outbox::table.order(outbox::id.asc()).select(outbox::created_at).first(conn).optional()?;
    Ok(Backlog { rows, oldest })
}
