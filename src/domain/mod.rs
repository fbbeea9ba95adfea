//! Domain types. Everything that comes from a client is parsed into one of
//! these at the edge, so the layers below never see an unchecked value.

/// The shared plumbing of a string newtype whose only constructor is
/// `parse(String) -> Result<Self, String>`: serde goes through `parse`
/// (`#[serde(try_from = "String")]`), and the text can be borrowed or taken.
macro_rules! string_newtype {
    ($t:ident) => {
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                Self::parse(s)
            }
        }

        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
    };
}

mod client;
mod error;
mod ids;
mod time;
mod user;
mod work_item;

pub use client::ClientAddr;
pub use error::ValidationError;
pub use ids::{UserId, WorkItemId};
pub use time::{MAX_FEED_RANGE_DAYS, TimeRange, Timestamp, Zone, all_day_span, date_time_or_date_schema};
pub use user::{Password, Username};
pub use work_item::{AssigneeIds, Description, Status, Title, WorkType};
