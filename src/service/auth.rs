//! Sign-up, login, sessions.
//!
//! A session token is `<user id>.<43 chars of base64url randomness>` (256
//! bits from the OS). The user id in front lets the session's cache key carry
//! the user's hash tag; it grants nothing by itself. PostgreSQL stores only
//! the SHA-256 of the token.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use sha2::{Digest, Sha256};

use super::{AppState, ServiceError, invalidation};
use crate::cache::{Admission, Invalidation, LoginLimits, SessionState};
use crate::db::{self, DbError, outbox, sessions, users};
use crate::domain::{ClientAddr, Password, UserId, Username};
use crate::error::Chain;
use crate::metrics::{AuthRefusal, InvalidationCause};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: String,
}

/// SHA-256 of a session token: what PostgreSQL stores and Redis keys name.
pub type TokenHash = [u8; 32];

/// A caller whose session checked out.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: UserId,
    pub token_hash: TokenHash,
}

/// What a well-formed token claims: a user, and the hash to look the
/// session up by. It proves nothing until [`confirm`] says so.
#[derive(Debug, Clone)]
pub struct Claim {
    pub user_id: UserId,
    pub token_hash: TokenHash,
}

impl Claim {
    /// `None` for anything that is not a token of ours.
    pub fn parse(token: &str) -> Option<Self> {
        let user_id = parse_token(token)?;
        Some(Self { user_id, token_hash: hash_token(token) })
    }
}

/// A freshly issued token. Shown to the client once, never logged.
pub struct IssuedToken(pub String);

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuedToken(<redacted>)")
    }
}

fn hash_token(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Splits `<id>.<secret>`; anything else is not a token of ours.
fn parse_token(token: &str) -> Option<UserId> {
    let (id, secret) = token.split_once('.')?;
    if secret.len() != 43 || !secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return None;
    }
    id.parse::<i64>().ok().filter(|&id| id > 0).map(UserId)
}

fn hash_password(password: &str) -> Result<String, ServiceError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::internal("password hashing failed", e))
}

/// A real argon2id hash of a random password, verified against when the
/// username does not exist, so a wrong name costs the same time as a wrong
/// password and the answer does not reveal which names exist. Made on first
/// use, inside the blocking task that verifies against it.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut random = [0u8; 16];
        let _ = getrandom::fill(&mut random);
        hash_password(&URL_SAFE_NO_PAD.encode(random)).unwrap_or_default()
    })
}

/// Bounds the password hashes running at once in this process. Each
/// argon2id hash or verification holds ~19 MiB and a thread of the blocking
/// pool that database calls share; without a bound, a burst of logins would
/// take the pool from the database and the memory from the process. Past
/// the bound requests queue, for at most `wait`, then answer 503.
#[derive(Debug)]
pub struct HashLimiter {
    permits: tokio::sync::Semaphore,
    wait: std::time::Duration,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl HashLimiter {
    pub fn new(settings: &crate::config::AuthSettings, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        Self {
            permits: tokio::sync::Semaphore::new(settings.max_concurrent_hashes.get()),
            wait: settings.hash_wait,
            metrics,
        }
    }

    /// The slots themselves (tests hold them to fill the bound).
    pub fn permits(&self) -> &tokio::sync::Semaphore {
        &self.permits
    }

    /// Runs `f` on the blocking pool once a slot is free.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, ServiceError> {
        let _slot = match tokio::time::timeout(self.wait, self.permits.acquire()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(e)) => return Err(ServiceError::internal("hash limiter closed", e)),
            Err(_) => {
                // Counted; the 503 itself is logged with the request.
                tracing::debug!("every password hashing slot is busy; answering 503");
                self.metrics.auth_refused(AuthRefusal::HashingBusy);
                return Err(ServiceError::Overloaded("password hashing"));
            }
        };
        blocking(f).await
    }
}

/// Hashing runs on the blocking pool: argon2id takes tens of milliseconds
/// of CPU on purpose.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ServiceError> {
    actix_web::web::block(f).await.map_err(|e| ServiceError::internal("blocking task cancelled", e))
}

/// Sign-up: throttled per client address (counted before the password is
/// hashed, whatever the outcome, so it cannot be used to probe names
/// either).
#[tracing::instrument(skip_all, fields(username = %username))]
pub async fn signup(
    state: &AppState,
    username: Username,
    password: Password,
    client: &ClientAddr,
) -> Result<User, ServiceError> {
    if !state.auth.signup_enabled {
        return Err(ServiceError::NotFound);
    }
    match state.cache.count_signup(client, state.auth.signup_max_per_client, state.auth.signup_window_secs).await {
        Ok(Admission::Allowed) => {}
        Ok(Admission::Refused { retry_after_secs }) => {
            tracing::info!(%client, "sign-up throttled");
            state.metrics.auth_refused(AuthRefusal::SignupThrottled);
            return Err(ServiceError::RateLimited { retry_after_secs, limit: None });
        }
        Err(e) => tracing::warn!(error = %Chain(&e), "sign-up throttle unavailable; not throttling"),
    }
    let user = create_user(state, username, password).await?;
    tracing::info!(user_id = %user.id, "user signed up");
    Ok(user)
}

/// Creates a user outside HTTP (CLI, demo data). Same hashing as sign-up.
pub async fn create_user(state: &AppState, username: Username, password: Password) -> Result<User, ServiceError> {
    let pw = password.expose().to_owned();
    let hash = state.hashing.run(move || hash_password(&pw)).await??;
    let name = username.as_str().to_owned();
    let row = db::run(&state.pool, move |c| users::insert(c, &name, &hash)).await.map_err(|e| match e {
        DbError::UniqueViolation(_) => ServiceError::Conflict("username is taken"),
        other => ServiceError::Db(other),
    })?;
    Ok(User { id: row.id, username: row.username })
}

fn limits(state: &AppState) -> LoginLimits {
    LoginLimits {
        per_user_and_client: state.auth.login_max_failures_per_user_and_client,
        per_client: state.auth.login_max_failures_per_client,
        window_secs: state.auth.login_window_secs,
    }
}

/// Checks the credentials and opens a session. The attempt is counted
/// (per username and client, and per client) before the password is
/// verified, so concurrent guesses past the limit are refused without being
/// evaluated; a right password undoes its own count.
#[tracing::instrument(skip_all)]
pub async fn login(
    state: &AppState,
    username: &str,
    password: &str,
    client: &ClientAddr,
) -> Result<(IssuedToken, User), ServiceError> {
    match state.cache.count_login_attempt(username, client, limits(state)).await {
        Ok(Admission::Allowed) => {}
        Ok(Admission::Refused { retry_after_secs }) => {
            state.metrics.auth_refused(AuthRefusal::LoginThrottled);
            return Err(ServiceError::RateLimited { retry_after_secs, limit: None });
        }
        Err(e) => tracing::warn!(error = %Chain(&e), "login throttle unavailable; not throttling"),
    }
    let user = check_credentials(state, username, password).await?;
    if let Err(e) = state.cache.login_succeeded(username, client).await {
        tracing::debug!(error = %Chain(&e), "login attempts not cleared");
    }
    open_session(state, user).await
}

async fn check_credentials(state: &AppState, username: &str, password: &str) -> Result<User, ServiceError> {
    let name = username.to_owned();
    let found = db::run(&state.pool, move |c| users::find_by_username(c, &name)).await?;
    let (stored_hash, user) = match found {
        Some(row) => (Some(row.password_hash), Some(User { id: row.id, username: row.username })),
        None => (None, None),
    };
    let pw = password.to_owned();
    let verified = state
        .hashing
        .run(move || {
            let hash = match &stored_hash {
                Some(h) => h.as_str(),
                None => dummy_hash(),
            };
            Argon2::default().verify_password(pw.as_bytes(), hash).is_ok()
        })
        .await?;
    match (verified, user) {
        (true, Some(user)) => Ok(user),
        _ => Err(ServiceError::InvalidCredentials),
    }
}

async fn open_session(state: &AppState, user: User) -> Result<(IssuedToken, User), ServiceError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| ServiceError::internal("no randomness", e))?;
    let token = format!("{}.{}", user.id, URL_SAFE_NO_PAD.encode(secret));
    let token_hash = hash_token(&token);
    let expires_at = Utc::now() + state.auth.session_lifetime.get();
    let uid = user.id;
    db::run(&state.pool, move |c| sessions::insert(c, &token_hash, uid, expires_at)).await?;
    tracing::info!(user_id = %user.id, "logged in");
    Ok((IssuedToken(token), user))
}

/// Resolves a token to its session: Redis when it remembers the session,
/// PostgreSQL otherwise (and then Redis is told, for next time).
#[tracing::instrument(name = "authenticate", level = "debug", skip_all, fields(user_id = tracing::field::Empty))]
pub async fn authenticate(state: &AppState, token: &str) -> Result<Session, ServiceError> {
    let claim = Claim::parse(token).ok_or(ServiceError::Unauthenticated)?;
    tracing::Span::current().record("user_id", claim.user_id.0);
    confirm_uncached(state, claim).await
}

/// [`confirm`] with whatever Redis says of the session now.
pub async fn confirm_uncached(state: &AppState, claim: Claim) -> Result<Session, ServiceError> {
    let cached = state.cache.session_state(claim.user_id, &claim.token_hash).await.unwrap_or(SessionState::Unknown);
    confirm(state, claim, cached).await
}

/// Turns a claim into a session, given what Redis said about it (`cached`):
/// valid and revoked are believed, unknown is settled by PostgreSQL (and
/// Redis is told, for next time). The feed passes what its own pipeline
/// read, so a cached feed costs no separate trip to authenticate.
pub async fn confirm(state: &AppState, claim: Claim, cached: SessionState) -> Result<Session, ServiceError> {
    let Claim { user_id, token_hash } = claim;
    match cached {
        SessionState::Valid => Ok(Session { user_id, token_hash }),
        SessionState::Revoked => Err(ServiceError::Unauthenticated),
        // Boxed: the feed's hit path awaits `confirm` on every request, and
        // the database branch's state machine is large.
        SessionState::Unknown => Box::pin(confirm_in_db(state, user_id, token_hash)).await,
    }
}

async fn confirm_in_db(state: &AppState, user_id: UserId, token_hash: TokenHash) -> Result<Session, ServiceError> {
    let live = db::run(&state.pool, move |c| sessions::find_live(c, &token_hash)).await?;
    match live {
        Some((user, expires_at)) if user == user_id => {
            let remaining = (expires_at - Utc::now()).num_seconds().max(1);
            if let Err(e) = state.cache.remember_session(user_id, &token_hash, remaining.unsigned_abs()).await {
                tracing::debug!(error = %Chain(&e), "session not cached");
            }
            Ok(Session { user_id, token_hash })
        }
        _ => Err(ServiceError::Unauthenticated),
    }
}

/// Revokes the session everywhere: tombstoned in Redis first, then deleted
/// in PostgreSQL (and tombstoned again through the outbox).
///
/// The tombstone comes first because other processes believe Redis' cached
/// "valid" for up to `cache.session_ttl_secs`: if this process cannot write
/// the tombstone, it cannot stop them, so the logout answers 503 with
/// nothing revoked and the client tries again — rather than 204 while the
/// token still works elsewhere.
#[tracing::instrument(skip_all, fields(user_id = %session.user_id))]
pub async fn logout(state: &AppState, session: &Session) -> Result<(), ServiceError> {
    let hash = session.token_hash;
    let uid = session.user_id;
    let tombstone = Invalidation::Session { user: session.user_id, token_hash: hash.to_vec() };
    if let Err(e) = state.cache.invalidate(&[tombstone]).await {
        state.metrics.writes_refused.inc();
        tracing::warn!(error = %Chain(&e), "logout refused: the session's tombstone cannot be written to Redis");
        return Err(e.into());
    }
    let head_start = invalidation::head_start(state);
    let row = db::run(&state.pool, move |c| {
        db::transaction(c, |c| {
            sessions::delete(c, &hash)?;
            outbox::record_session_revocation(c, uid, &hash, head_start)
        })
    })
    .await?;
    invalidation::apply_committed(state, vec![row], InvalidationCause::Logout).await;
    Ok(())
}

pub async fn find_user(state: &AppState, id: UserId) -> Result<Option<User>, ServiceError> {
    let row = db::run(&state.pool, move |c| users::find(c, id)).await?;
    Ok(row.map(|r| User { id: r.id, username: r.username }))
}

/// Everybody, for the assignee picker (id and name only).
pub async fn list_users(state: &AppState) -> Result<Vec<User>, ServiceError> {
    let rows = db::run(&state.pool, |c| users::list(c, 1000)).await?;
    Ok(rows.into_iter().map(|(id, username)| User { id, username }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_only_in_our_shape() {
        let secret = "A".repeat(43);
        assert_eq!(parse_token(&format!("42.{secret}")), Some(UserId(42)));
        assert_eq!(parse_token(&format!("0.{secret}")), None);
        assert_eq!(parse_token(&format!("-1.{secret}")), None);
        assert_eq!(parse_token(&format!("42.{}", "A".repeat(42))), None);
        assert_eq!(parse_token(&format!("42.{}!", "A".repeat(42))), None);
        assert_eq!(parse_token("garbage"), None);
        assert_eq!(parse_token(""), None);
    }

    #[test]
    fn issued_tokens_do_not_debug_print() {
        assert_eq!(format!("{:?}", IssuedToken("secret".into())), "IssuedToken(<redacted>)");
    }
}
