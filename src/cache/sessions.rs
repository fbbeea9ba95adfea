//! Cached session validity. PostgreSQL holds the sessions; Redis remembers
//! "this token is valid" for `cache.session_ttl_secs` so an authenticated
//! request usually costs no database round trip.
//!
//! Revocation writes a tombstone instead of deleting the key, and fills use
//! `SET NX`: a request that read the session from PostgreSQL just before the
//! logout committed cannot re-validate it in Redis afterwards.

use redis::Pipeline;

use super::{Cache, CacheError};
use crate::domain::UserId;

const VALID: &str = "1";
const REVOKED: &str = "revoked";

/// What Redis remembers of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// PostgreSQL vouched for it within `cache.session_ttl_secs`.
    Valid,
    /// Logged out: a tombstone that no racing re-validation can overwrite.
    Revoked,
    /// Nothing cached (or Redis unavailable): ask PostgreSQL.
    Unknown,
}

impl SessionState {
    pub(super) fn from_cached(value: Option<&str>) -> Self {
        match value {
            Some(VALID) => Self::Valid,
            Some(_) => Self::Revoked,
            None => Self::Unknown,
        }
    }
}

pub(super) fn push_revoke(pipe: &mut Pipeline, key: &str, ttl_secs: u64) {
    pipe.cmd("SET").arg(key).arg(REVOKED).arg("EX").arg(ttl_secs).ignore();
}

impl Cache {
    #[tracing::instrument(name = "cache.session_lookup", level = "debug", skip_all, fields(user_id = %user))]
    pub async fn session_state(&self, user: UserId, token_hash: &[u8]) -> Result<SessionState, CacheError> {
        if self.distrusted() {
            return Ok(SessionState::Unknown);
        }
        let key = self.keys.session(user, token_hash);
        let value: Option<String> = self.run(async |c| redis::cmd("GET").arg(&key).query_async(c).await).await?;
        Ok(SessionState::from_cached(value.as_deref()))
    }

    /// Remembers a session PostgreSQL vouched for, for at most `max_secs`.
    pub async fn remember_session(&self, user: UserId, token_hash: &[u8], max_secs: u64) -> Result<(), CacheError> {
        let key = self.keys.session(user, token_hash);
        let ttl = self.session_ttl_secs.min(max_secs).max(1);
        self.run(async |c| {
            redis::cmd("SET").arg(&key).arg(VALID).arg("NX").arg("EX").arg(ttl).query_async::<()>(c).await
        })
        .await
    }
}
