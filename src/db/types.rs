//! How the domain types are stored: ids and enums are Diesel types
//! (`AsExpression`/`FromSqlRow` on the types themselves, the conversions
//! here), so rows carry `UserId`, `WorkItemId`, `WorkType` and `Status`, and
//! no layer above turns an integer or a string from PostgreSQL into one.
//!
//! The columns are what they always were (`BIGINT`, `UUID`, `TEXT` with a
//! CHECK constraint). A text no variant has — written by hand, or by a
//! newer version of calcache — fails the read with [`UnknownValue`], which
//! surfaces as `DbError::Unreadable` (a 500 whose logged cause names the
//! column and the value), never as a panic or a guess.

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};

use crate::domain::{Status, UserId, WorkItemId, WorkType};

impl ToSql<BigInt, Pg> for UserId {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <i64 as ToSql<BigInt, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<BigInt, Pg> for UserId {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        i64::from_sql(value).map(UserId)
    }
}

impl ToSql<SqlUuid, Pg> for WorkItemId {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <uuid::Uuid as ToSql<SqlUuid, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<SqlUuid, Pg> for WorkItemId {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        uuid::Uuid::from_sql(value).map(WorkItemId)
    }
}

/// A text in an enum's column that none of its variants has.
#[derive(Debug, thiserror::Error)]
#[error("unknown {column} {value:?} in PostgreSQL: {reason}")]
pub struct UnknownValue {
    /// The enum's column (`work_type`, `status`).
    pub column: &'static str,
    pub value: String,
    pub reason: String,
}

/// The longest part of an unknown value an error repeats.
const SHOWN_CHARS: usize = 64;

macro_rules! text_column {
    ($t:ty, $column:literal) => {
        impl ToSql<Text, Pg> for $t {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
            }
        }

        impl FromSql<Text, Pg> for $t {
            fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
                let text = std::str::from_utf8(value.as_bytes())?;
                text.parse::<$t>().map_err(|reason| {
                    UnknownValue {
                        column: $column,
                        value: text.chars().take(SHOWN_CHARS).collect(),
                        reason: reason.to_string(),
                    }
                    .into()
                })
            }
        }
    };
}

text_column!(WorkType, "work_type");
text_column!(Status, "status");
