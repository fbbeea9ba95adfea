//! Cached session validity. PostgreSQL holds the sessions; Redis remembers
//! "this token is valid" for `cache.session_ttl_secs` so an authenticated
//! request usually costs no database round trip.
//!
//! Revocation writes a tombstone instead of deleting the key, and fills use
//! `SET NX`: a request that read the session from PostgreSQL just before the
//! logout committed cannot re-validate it in Redis afterwards.

use redis::Pipeline;

use super::mac::TAG_LEN;
use super::{Cache, CacheError};
use crate::domain::UserId;

/// A valid session's cached value: this marker, then its tag (`mac.rs`).
const VALID: &[u8] = b"1";
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

pub(super) fn push_revoke(pipe: &mut Pipeline, key: &str, ttl_secs: u64) {
    pipe.cmd("SET").arg(key).arg(REVOKED).arg("EX").arg(ttl_secs).ignore();
}

impl Cache {
    /// What the value cached at `key` says. Only a valid session's value is
    /// authenticated (a forged tombstone could only lock its own token
    /// out); a value that is neither — forged, tampered with, or an older
    /// release's — is not believed, and PostgreSQL decides.
    pub(super) fn session_from(&self, key: &str, value: Option<&[u8]>) -> SessionState {
        match value {
            None => SessionState::Unknown,
            Some(v) if v == REVOKED.as_bytes() => SessionState::Revoked,
            Some(v)
                if v.len() == VALID.len() + TAG_LEN
                    && v.starts_with(VALID)
                    && self.mac.verify(key, &[VALID], &v[VALID.len()..]) =>
            {
                SessionState::Valid
            }
            Some(_) => SessionState::Unknown,
        }
    }

    #[tracing::instrument(name = "cache.session_lookup", level = "debug", skip_all, fields(user_id = %user))]
    pub async fn session_state(&self, user: UserId, token_hash: &[u8]) -> Result<SessionState, CacheError> {
        if self.distrusted() {
            return Ok(SessionState::Unknown);
        }
        let key = self.keys.session(user, token_hash);
        let value: Option<Vec<u8>> = self.run(async |c| redis::cmd("GET").arg(&key).query_async(c).await).await?;
        Ok(self.session_from(&key, value.as_deref()))
    }

    /// Remembers a session PostgreSQL vouched for, for at most `max_secs`.
    pub async fn remember_session(&self, user: UserId, token_hash: &[u8], max_secs: u64) -> Result<(), CacheError> {
        let key = self.keys.session(user, token_hash);
        let ttl = self.session_ttl_secs.min(max_secs).max(1);
        let mut value = VALID.to_vec();
        value.extend_from_slice(&self.mac.tag(&key, &[VALID]));
        self.run(async |c| {
            redis::cmd("SET").arg(&key).arg(&value).arg("NX").arg("EX").arg(ttl).query_async::<()>(c).await
        })
        .await
    }
}
