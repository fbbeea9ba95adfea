//! Login throttling, shared by every process through Redis: failed logins
//! are counted per username and per client address in a fixed window.
//!
//! Usernames are hashed into the key (login accepts any string, and keys
//! must stay bounded). When Redis is unavailable the throttle is open —
//! logins still work, argon2id still makes guessing slow — and that is
//! logged.

use sha2::{Digest, Sha256};

use super::{Cache, CacheError};

#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    pub per_user: u64,
    pub per_client: u64,
    pub window_secs: u64,
}

fn user_key(cache: &Cache, username: &str) -> String {
    let digest = Sha256::digest(username.as_bytes());
    let mut key = format!("{}:login_failures:user:", cache.keys.prefix());
    for b in &digest[..16] {
        key.push_str(&format!("{b:02x}"));
    }
    key
}

fn client_key(cache: &Cache, client: &str) -> String {
    format!("{}:login_failures:client:{client}", cache.keys.prefix())
}

impl Cache {
    /// False when either counter has reached its limit.
    #[tracing::instrument(name = "cache.login_allowed", skip_all)]
    pub async fn login_allowed(&self, username: &str, client: &str, limits: LoginLimits) -> Result<bool, CacheError> {
        let (u, c) = (user_key(self, username), client_key(self, client));
        // Two commands sent together, not one pipeline: the keys live in
        // different cluster slots.
        let (by_user, by_client): (Option<u64>, Option<u64>) = self
            .run(async |conn| {
                let mut other = conn.clone();
                futures_util::future::try_join(
                    redis::cmd("GET").arg(&u).query_async(conn),
                    redis::cmd("GET").arg(&c).query_async(&mut other),
                )
                .await
            })
            .await?;
        Ok(by_user.unwrap_or(0) < limits.per_user && by_client.unwrap_or(0) < limits.per_client)
    }

    /// Counts a failed login; the window starts at the first failure.
    pub async fn login_failed(&self, username: &str, client: &str, limits: LoginLimits) -> Result<(), CacheError> {
        let (u, c) = (user_key(self, username), client_key(self, client));
        // One pipeline per key (different cluster slots), sent together.
        self.run(async |conn| {
            let count = |key: &String| {
                let mut conn = conn.clone();
                let mut pipe = redis::pipe();
                pipe.cmd("INCR").arg(key).ignore();
                pipe.cmd("EXPIRE").arg(key).arg(limits.window_secs).arg("NX").ignore();
                async move { pipe.query_async::<()>(&mut conn).await }
            };
            futures_util::future::try_join(count(&u), count(&c)).await.map(|_| ())
        })
        .await
    }

    /// A successful login clears the username's count (not the client's).
    pub async fn login_succeeded(&self, username: &str) -> Result<(), CacheError> {
        let u = user_key(self, username);
        self.run(async |conn| redis::cmd("DEL").arg(&u).query_async::<()>(conn).await).await
    }
}
