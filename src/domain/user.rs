use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::InvalidValue;
use super::error::reject_nul;

/// 3..64 characters of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Username(String);

impl Username {
    pub const MIN_CHARS: usize = 3;
    pub const MAX_CHARS: usize = 64;
    /// The characters a username may use, as the OpenAPI pattern states them.
    pub const PATTERN: &str = r"^[A-Za-z0-9_.-]+$";

    pub fn parse(s: String) -> Result<Self, InvalidValue> {
        let n = s.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&n) {
            return Err(InvalidValue::Length { min: Self::MIN_CHARS, max: Self::MAX_CHARS });
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return Err(InvalidValue::UsernameCharacters);
        }
        Ok(Self(s))
    }
}

string_newtype!(Username);

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 8..128 characters. Kept in a `SecretString` so it never reaches a log line
/// through `Debug`.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(s: String) -> Result<Self, InvalidValue> {
        let n = s.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&n) {
            return Err(InvalidValue::Length { min: Self::MIN_CHARS, max: Self::MAX_CHARS });
        }
        reject_nul(&s)?;
        Ok(Self(SecretString::from(s)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl TryFrom<String> for Password {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, InvalidValue> {
        Self::parse(s)
    }
}

impl PartialSchema for Username {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(Self::MIN_CHARS))
            .max_length(Some(Self::MAX_CHARS))
            .pattern(Some(Self::PATTERN))
            .into()
    }
}
impl ToSchema for Username {}

impl PartialSchema for Password {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Password)))
            .min_length(Some(Self::MIN_CHARS))
            .max_length(Some(Self::MAX_CHARS))
            .description(Some("8 to 128 characters, no NUL."))
            .into()
    }
}
impl ToSchema for Password {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(Username::parse("ab".into()).is_err());
        assert!(Username::parse("a".repeat(65)).is_err());
        assert!(Username::parse("al ice".into()).is_err());
        assert!(Username::parse("ålice".into()).is_err());
        assert!(Username::parse("al.ice_-9".into()).is_ok());
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("p".repeat(129)).is_err());
        assert!(Password::parse("nul\0nul\0nul".into()).is_err());
        let p = Password::parse("long enough".into()).map_err(|e| e.to_string());
        assert!(!format!("{p:?}").contains("long enough"), "Debug leaks the password");
    }
}
