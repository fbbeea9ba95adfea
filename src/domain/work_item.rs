use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::InvalidValue;
use super::UserId;
use super::error::reject_nul;

/// An enum with one text per variant: what serde, `FromStr`, `Display` and
/// PostgreSQL (a `TEXT` column, see `db/types.rs`) all use.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
            diesel::AsExpression, diesel::FromSqlRow,
        )]
        #[serde(rename_all = "snake_case")]
        #[diesel(sql_type = diesel::sql_types::Text)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, InvalidValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(InvalidValue::NotOneOf(&[$($text),+])),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// What kind of work an item is.
    WorkType { Project => "project", Activity => "activity", Task => "task" }
);

text_enum!(
    /// Where an item stands.
    Status {
        NotStarted => "not_started",
        InProgress => "in_progress",
        Completed => "completed",
        Cancelled => "cancelled",
    }
);

/// 1..200 characters, not blank, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Title(String);

impl Title {
    /// The longest title, in characters (Unicode scalar values).
    pub const MAX_CHARS: usize = 200;

    pub fn parse(s: String) -> Result<Self, InvalidValue> {
        if s.trim().is_empty() {
            return Err(InvalidValue::Empty);
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(InvalidValue::TooLong { max: Self::MAX_CHARS });
        }
        reject_nul(&s)?;
        Ok(Self(s))
    }
}

string_newtype!(Title);

/// 0..10 000 characters, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Description(String);

impl Description {
    /// The longest description, in characters (Unicode scalar values).
    pub const MAX_CHARS: usize = 10_000;

    pub fn parse(s: String) -> Result<Self, InvalidValue> {
        if s.chars().count() > Self::MAX_CHARS {
            return Err(InvalidValue::TooLong { max: Self::MAX_CHARS });
        }
        reject_nul(&s)?;
        Ok(Self(s))
    }
}

string_newtype!(Description);

/// At most [`AssigneeIds::MAX`] distinct, positive user ids, sorted.
/// Whether they exist is checked by the database (foreign key).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "Vec<i64>")]
pub struct AssigneeIds(BTreeSet<UserId>);

impl AssigneeIds {
    pub const MAX: usize = 100;

    pub fn iter(&self) -> impl Iterator<Item = UserId> + '_ {
        self.0.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Vec<i64>> for AssigneeIds {
    type Error = InvalidValue;
    fn try_from(ids: Vec<i64>) -> Result<Self, InvalidValue> {
        if ids.len() > Self::MAX {
            return Err(InvalidValue::TooManyAssignees { max: Self::MAX });
        }
        if ids.iter().any(|&id| id <= 0) {
            return Err(InvalidValue::NotAUserId);
        }
        Ok(Self(ids.into_iter().map(UserId).collect()))
    }
}

impl FromIterator<UserId> for AssigneeIds {
    fn from_iter<I: IntoIterator<Item = UserId>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

// OpenAPI schemas: the limits `parse` enforces, stated in the contract
// (`src/openapi.rs` collects them).

fn text_schema(description: &str, min: usize, max: usize) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .description(Some(description))
        .into()
}

impl PartialSchema for Title {
    fn schema() -> RefOr<Schema> {
        text_schema("1 to 200 characters, not blank, no NUL.", 1, Self::MAX_CHARS)
    }
}
impl ToSchema for Title {}

impl PartialSchema for Description {
    fn schema() -> RefOr<Schema> {
        text_schema("At most 10 000 characters, no NUL.", 0, Self::MAX_CHARS)
    }
}
impl ToSchema for Description {}

impl PartialSchema for AssigneeIds {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(UserId::schema())
            .max_items(Some(Self::MAX))
            .description(Some("User ids (duplicates are ignored); every one must name an existing user."))
            .into()
    }
}
impl ToSchema for AssigneeIds {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_and_reject_unknowns() {
        for t in WorkType::ALL {
            assert_eq!(t.as_str().parse::<WorkType>().ok(), Some(*t));
        }
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().ok(), Some(*s));
        }
        assert!("Project".parse::<WorkType>().is_err());
        assert!("done".parse::<Status>().is_err());
    }

    #[test]
    fn titles() {
        assert!(Title::parse(String::new()).is_err());
        assert!(Title::parse("   ".into()).is_err());
        assert!(Title::parse("é".repeat(200)).is_ok());
        assert!(Title::parse("é".repeat(201)).is_err());
        assert!(Title::parse("a\0b".into()).is_err());
    }

    #[test]
    fn assignees_are_deduplicated_and_bounded() {
        let a = AssigneeIds::try_from(vec![3, 1, 3]).unwrap_or_default();
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![UserId(1), UserId(3)]);
        assert!(AssigneeIds::try_from(vec![0]).is_err());
        assert!(AssigneeIds::try_from((1..=101).collect::<Vec<_>>()).is_err());
    }
}
