//! Domain types. Everything that comes from a client is parsed into one of
//! these at the edge, so the layers below never see an unchecked value.

/// The shared plumbing of a string newtype whose only constructor is
/// `parse(String) -> Result<Self, InvalidValue>`: serde goes through `parse`
/// (`#[serde(try_from = "String")]`), and the text can be borrowed or taken.
macro_rules! string_newtype {
    ($t:ident) => {
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $t {
            type Error = $crate::domain::InvalidValue;
            fn try_from(s: String) -> Result<Self, $crate::domain::InvalidValue> {
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
pub use error::{InvalidValue, Reason, ValidationError};
pub use ids::{UserId, WorkItemId};
pub use time::{MAX_FEED_RANGE_DAYS, TimeRange, Timestamp, Zone, all_day_span, date_time_or_date_schema};
pub use user::{Password, Username};
pub use work_item::{AssigneeIds, Description, Status, Title, WorkType};

/// Lower-case hex of `bytes` (token hashes in Redis messages and keys).
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod hex_tests {
    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(super::hex(&[]), "");
    }
}
