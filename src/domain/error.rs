use std::fmt;

/// Why a value cannot be accepted: what a domain type's parser returns. It
/// names no field (the parser does not know where the value came from); the
/// edge that does makes a [`ValidationError`] of it. `Display` is the
/// contract's `message` text after the field name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must be {min} to {max} characters")]
    Length { min: usize, max: usize },
    /// PostgreSQL `text` cannot store NUL.
    #[error("must not contain NUL characters")]
    Nul,
    #[error("may contain only letters, digits, '_', '.' and '-'")]
    UsernameCharacters,
    /// Not one of an enum's texts (all of which it lists).
    #[error("must be one of {}", .0.join(", "))]
    NotOneOf(&'static [&'static str]),
    #[error("at most {max} assignees")]
    TooManyAssignees { max: usize },
    #[error("user ids are positive integers")]
    NotAUserId,
    #[error("must be an RFC 3339 timestamp with an offset (2026-10-06T09:00:00Z) or a date (2026-10-06)")]
    NotATimestamp,
    #[error("must fall in the years 0001 to 9999 (in UTC)")]
    YearOutOfRange,
    #[error("must be an IANA time zone name (America/Los_Angeles) or UTC")]
    NotATimeZone,
    #[error("must be after start")]
    EndNotAfterStart,
    #[error("the range may span at most {max_days} days")]
    RangeTooLong { max_days: i64 },
    /// A work item's `end` before its `start` (one may be the stored value).
    #[error("end must not be before start")]
    EndBeforeStart,
    /// An assignee id no user has (the foreign key said so).
    #[error("names a user that does not exist")]
    UnknownUser,
}

/// Why the edge refuses a field: a domain type's [`InvalidValue`], a rule
/// of the request's shape, or the message of the parser that read it
/// (serde's or actix's, which know the expected type), kept as it said it.
/// `Display` is the contract's `message` text after the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error(transparent)]
    Value(#[from] InvalidValue),
    #[error("is required")]
    Required,
    /// A JSON `null` where the field is optional but not nullable.
    #[error("must not be null (leave the field out instead)")]
    Null,
    #[error("must be a JSON object")]
    NotAnObject,
    /// The body does not parse; serde's message says where.
    #[error("is not valid JSON: {0}")]
    NotJson(String),
    #[error("has trailing characters after the JSON value")]
    TrailingCharacters,
    /// The connection failed while the body was being read.
    #[error("could not be read completely")]
    Incomplete,
    #[error("must be a UUID")]
    NotAUuid,
    /// A change stream's `Last-Event-ID`.
    #[error("must be the id of an event this stream sent (a version: digits)")]
    NotAnEventId,
    /// What serde or actix said about a value of the wrong type or shape.
    #[error("{0}")]
    Parser(String),
}

/// A client-supplied value that cannot be accepted. `field` is the JSON field
/// or query parameter it came from, so the client knows what to fix; `reason`
/// is why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub field: String,
    pub reason: Reason,
}

impl ValidationError {
    /// `field` refused for `reason` (an [`InvalidValue`] converts).
    pub fn new(field: impl Into<String>, reason: impl Into<Reason>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Rejects strings PostgreSQL `text` cannot store (NUL) before they reach it.
pub(crate) fn reject_nul(s: &str) -> Result<(), InvalidValue> {
    if s.contains('\0') { Err(InvalidValue::Nul) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts are the contract's messages: clients may show them, tests
    /// and snapshots compare them. A change here is an API change.
    #[test]
    fn reasons_read_as_the_contract_has_them() {
        let cases = [
            (InvalidValue::Empty, "must not be empty"),
            (InvalidValue::TooLong { max: 200 }, "must be at most 200 characters"),
            (InvalidValue::Length { min: 3, max: 64 }, "must be 3 to 64 characters"),
            (InvalidValue::Nul, "must not contain NUL characters"),
            (InvalidValue::UsernameCharacters, "may contain only letters, digits, '_', '.' and '-'"),
            (InvalidValue::NotOneOf(&["project", "activity", "task"]), "must be one of project, activity, task"),
            (InvalidValue::TooManyAssignees { max: 100 }, "at most 100 assignees"),
            (InvalidValue::NotAUserId, "user ids are positive integers"),
            (
                InvalidValue::NotATimestamp,
                "must be an RFC 3339 timestamp with an offset (2026-10-06T09:00:00Z) or a date (2026-10-06)",
            ),
            (InvalidValue::YearOutOfRange, "must fall in the years 0001 to 9999 (in UTC)"),
            (InvalidValue::NotATimeZone, "must be an IANA time zone name (America/Los_Angeles) or UTC"),
            (InvalidValue::EndNotAfterStart, "must be after start"),
            (InvalidValue::RangeTooLong { max_days: 400 }, "the range may span at most 400 days"),
            (InvalidValue::EndBeforeStart, "end must not be before start"),
            (InvalidValue::UnknownUser, "names a user that does not exist"),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text, "{reason:?}");
        }
        assert_eq!(ValidationError::new("end", InvalidValue::EndNotAfterStart).to_string(), "end: must be after start");
        let edge = [
            (Reason::Required, "is required"),
            (Reason::Null, "must not be null (leave the field out instead)"),
            (Reason::NotAnObject, "must be a JSON object"),
            (Reason::NotJson("EOF at line 1 column 3".into()), "is not valid JSON: EOF at line 1 column 3"),
            (Reason::TrailingCharacters, "has trailing characters after the JSON value"),
            (Reason::Incomplete, "could not be read completely"),
            (Reason::NotAUuid, "must be a UUID"),
            (Reason::NotAnEventId, "must be the id of an event this stream sent (a version: digits)"),
            (Reason::Parser("invalid type: string".into()), "invalid type: string"),
            (Reason::Value(InvalidValue::Empty), "must not be empty"),
        ];
        for (reason, text) in edge {
            assert_eq!(reason.to_string(), text, "{reason:?}");
        }
    }
}
