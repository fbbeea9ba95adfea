//! Domain types. Everything that comes from a client is parsed into one of
//! these at the edge, so the layers below never see an unchecked value.

mod error;
mod ids;
mod time;
mod user;
mod work_item;

pub use error::ValidationError;
pub use ids::{UserId, WorkItemId};
pub use time::{MAX_FEED_RANGE_DAYS, TimeRange, Timestamp};
pub use user::{Password, Username};
pub use work_item::{AssigneeIds, Description, Status, Title, WorkType};
