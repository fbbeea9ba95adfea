//! Every Redis key calcache uses is built here.
//!
//! All keys of one user carry the hash tag `{u<id>}`, so on Redis Cluster they
//! live in one slot: the version and the entries can be read in one pipeline,
//! and a user's data moves between nodes as a unit. The deployment prefix
//! comes first and never contains braces (checked at config load), so the
//! user tag is the only tag in a key.

use sha2::{Digest, Sha256};

use crate::domain::{ClientAddr, Status, TimeRange, UserId, WorkType};

/// The parts of a feed request that decide its answer. Anything else in the
/// query string (FullCalendar's `_` cache-buster, `timeZone`) is not part of
/// the key, so it cannot split one answer into many entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeedParams {
    pub range: TimeRange,
    pub work_type: Option<WorkType>,
    pub status: Option<Status>,
}

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// Which entry of a view a feed key names: each strategy's entries have
/// keys of their own (`cache::Plan::entry`), so entries of processes on
/// different strategies, or on different bucket widths, are never read as
/// each other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `ttl`: no version.
    Unversioned,
    /// `versioned`: under the user's version.
    Versioned(u64),
    /// `bucketed`: under the user's version, carrying the versions of
    /// buckets `days` wide (`:b<days>`).
    Bucketed { version: u64, days: u32 },
}

impl Keys {
    /// `prefix` must contain no braces (see `config::Settings::check`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn user_tag(out: &mut String, user: UserId) {
        out.push_str("{u");
        out.push_str(itoa::Buffer::new().format(user.0));
        out.push('}');
    }

    /// `<prefix>:calendar_version:{u<id>}` — never expires.
    pub fn version(&self, user: UserId) -> String {
        let mut k = String::with_capacity(self.prefix.len() + 40);
        k.push_str(&self.prefix);
        k.push_str(":calendar_version:");
        Self::user_tag(&mut k, user);
        k
    }

    /// `<prefix>:calendar_bucket:{u<id>}:d<days>:<index>` — the version of one
    /// time bucket (`buckets.rs`). Expires (`Buckets::ttl`).
    pub fn bucket(&self, user: UserId, days: u32, index: i64) -> String {
        let mut k = String::with_capacity(self.prefix.len() + 48);
        k.push_str(&self.prefix);
        k.push_str(":calendar_bucket:");
        Self::user_tag(&mut k, user);
        k.push_str(":d");
        k.push_str(itoa::Buffer::new().format(days));
        k.push(':');
        k.push_str(itoa::Buffer::new().format(index));
        k
    }

    /// `<prefix>:calendar_feed:{u<id>}:v<version>[:b<days>]:gz3:<type|*>:<status|*>:<start>:<end>`
    /// with start and end in UTC, so equal ranges share one entry whatever
    /// offset (or `timeZone`) the client wrote them in: the body does not
    /// depend on the zone. `entry` says which strategy's entry (the `ttl`
    /// strategy's have no version). `gz3` names the stored body (gzip-compressed JSON
    /// with all-day events as dates, behind a tag, `mac.rs`; `gz2` had no
    /// tag, `gz` held all-day events as instants), so
    /// a release that stores bodies differently uses other keys and replicas
    /// of both can share one Redis mid-rollout.
    pub fn feed(&self, user: UserId, entry: Entry, p: &FeedParams) -> String {
        let mut k = String::with_capacity(self.prefix.len() + 120);
        k.push_str(&self.prefix);
        k.push_str(":calendar_feed:");
        Self::user_tag(&mut k, user);
        // Built on every request: pushes and itoa rather than `write!`.
        match entry {
            Entry::Versioned(v) | Entry::Bucketed { version: v, .. } => {
                k.push_str(":v");
                k.push_str(itoa::Buffer::new().format(v));
                if let Entry::Bucketed { days, .. } = entry {
                    k.push_str(":b");
                    k.push_str(itoa::Buffer::new().format(days));
                }
                k.push_str(":gz3:");
            }
            Entry::Unversioned => k.push_str(":ttl:gz3:"),
        }
        k.push_str(p.work_type.map_or("*", WorkType::as_str));
        k.push(':');
        k.push_str(p.status.map_or("*", Status::as_str));
        k.push(':');
        p.range.start().write_rfc3339(&mut k);
        k.push(':');
        p.range.end().write_rfc3339(&mut k);
        k
    }

    /// `<prefix>:session:{u<id>}:<hex sha-256 of the token>`
    pub fn session(&self, user: UserId, token_hash: &[u8]) -> String {
        let mut k = String::with_capacity(self.prefix.len() + 100);
        k.push_str(&self.prefix);
        k.push_str(":session:");
        Self::user_tag(&mut k, user);
        k.push(':');
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in token_hash {
            k.push(char::from(HEX[usize::from(b >> 4)]));
            k.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        k
    }

    /// `<prefix>:write_fence:{u<id>}` — the set of writes in flight for the
    /// user (see `fence.rs`). Expires `cache::fence_ttl` after the latest write.
    pub fn fence(&self, user: UserId) -> String {
        let mut k = String::with_capacity(self.prefix.len() + 40);
        k.push_str(&self.prefix);
        k.push_str(":write_fence:");
        Self::user_tag(&mut k, user);
        k
    }

    /// `<prefix>:changes:{u<id>}` — the user's change-notification channel
    /// (Pub/Sub; sharded Pub/Sub on Redis Cluster, in the user's slot).
    pub fn changes(&self, user: UserId) -> String {
        let mut k = String::with_capacity(self.prefix.len() + 30);
        k.push_str(&self.prefix);
        k.push_str(":changes:");
        Self::user_tag(&mut k, user);
        k
    }

    /// `<feed key>:lease` — held by the one request that fills a missing entry.
    pub fn lease(&self, feed_key: &str) -> String {
        format!("{feed_key}:lease")
    }

    /// `<prefix>:login_attempts:user_client:<32 hex>` — a (username, client)
    /// pair's login attempts. Hashed: a login may name any string, and keys
    /// must stay bounded. No hash tag: throttle counters belong to no user.
    pub fn login_attempts_user_client(&self, username: &str, client: &ClientAddr) -> String {
        let mut h = Sha256::new();
        h.update(username.as_bytes());
        h.update([0]);
        h.update(client.as_str().as_bytes());
        let digest = h.finalize();
        let mut k = format!("{}:login_attempts:user_client:", self.prefix);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in &digest[..16] {
            k.push(char::from(HEX[usize::from(b >> 4)]));
            k.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        k
    }

    /// `<prefix>:login_attempts:client:<address or /64>`
    pub fn login_attempts_client(&self, client: &ClientAddr) -> String {
        format!("{}:login_attempts:client:{client}", self.prefix)
    }

    /// `<prefix>:signups:client:<address or /64>`
    pub fn signups_client(&self, client: &ClientAddr) -> String {
        format!("{}:signups:client:{client}", self.prefix)
    }

    /// `<prefix>:feed_fills:{u<id>}` — the user's feed fills in the current
    /// window (`limits.feed_fills_per_user`). Expires with the window.
    pub fn feed_fills(&self, user: UserId) -> String {
        let mut k = String::with_capacity(self.prefix.len() + 40);
        k.push_str(&self.prefix);
        k.push_str(":feed_fills:");
        Self::user_tag(&mut k, user);
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;

    fn params(start: &str, end: &str) -> FeedParams {
        let ts = |s: &str| Timestamp::parse(s).unwrap_or_else(|e| panic!("{e}"));
        let range = TimeRange::new(ts(start), ts(end)).unwrap_or_else(|e| panic!("{e}"));
        FeedParams { range, work_type: None, status: None }
    }

    #[test]
    fn feed_key_spells_out_every_part() {
        let keys = Keys::new("calcache");
        let mut p = params("2026-09-28", "2026-11-09");
        assert_eq!(
            keys.feed(UserId(42), Entry::Versioned(7), &p),
            "calcache:calendar_feed:{u42}:v7:gz3:*:*:2026-09-28T00:00:00Z:2026-11-09T00:00:00Z"
        );
        assert_eq!(
            keys.feed(UserId(42), Entry::Bucketed { version: 7, days: 7 }, &p),
            "calcache:calendar_feed:{u42}:v7:b7:gz3:*:*:2026-09-28T00:00:00Z:2026-11-09T00:00:00Z"
        );
        assert_eq!(keys.bucket(UserId(42), 7, -3), "calcache:calendar_bucket:{u42}:d7:-3");
        p.work_type = Some(WorkType::Task);
        p.status = Some(Status::InProgress);
        assert_eq!(
            keys.feed(UserId(42), Entry::Unversioned, &p),
            "calcache:calendar_feed:{u42}:ttl:gz3:task:in_progress:2026-09-28T00:00:00Z:2026-11-09T00:00:00Z"
        );
    }

    #[test]
    fn equal_ranges_in_other_offsets_share_a_key() {
        let keys = Keys::new("p");
        let a = params("2026-10-01T00:00:00Z", "2026-10-08T00:00:00Z");
        let b = params("2026-10-01T02:00:00+02:00", "2026-10-07T19:00:00-05:00");
        assert_eq!(keys.feed(UserId(1), Entry::Versioned(1), &a), keys.feed(UserId(1), Entry::Versioned(1), &b));
    }

    #[test]
    fn one_user_one_hash_tag() {
        let keys = Keys::new("prod-eu");
        let tag = |k: &str| {
            let open = k.find('{').unwrap_or_else(|| panic!("no tag in {k}"));
            let close = k[open..].find('}').unwrap_or_else(|| panic!("no tag end in {k}"));
            k[open..=open + close].to_string()
        };
        let p = params("2026-10-01", "2026-10-02");
        let all = [
            keys.version(UserId(9)),
            keys.feed(UserId(9), Entry::Versioned(3), &p),
            keys.session(UserId(9), &[0xab, 0x01]),
            keys.lease(&keys.feed(UserId(9), Entry::Versioned(3), &p)),
            keys.fence(UserId(9)),
            keys.changes(UserId(9)),
            keys.bucket(UserId(9), 7, 2900),
            keys.feed(UserId(9), Entry::Bucketed { version: 3, days: 7 }, &p),
        ];
        for k in &all {
            assert_eq!(tag(k), "{u9}", "{k}");
            assert!(k.starts_with("prod-eu:"), "{k}");
        }
        assert_ne!(tag(&keys.version(UserId(9))), tag(&keys.version(UserId(90))));
        assert!(keys.session(UserId(9), &[0xab, 0x01]).ends_with(":ab01"));
    }

    #[test]
    fn throttle_keys_are_bounded_and_tag_free() {
        let keys = Keys::new("p");
        let client = ClientAddr::from_ip("2001:db8::1".parse().unwrap_or_else(|e| panic!("{e}")));
        let long = "x".repeat(10_000);
        let a = keys.login_attempts_user_client(&long, &client);
        assert!(a.len() < 80 && !a.contains(['{', '}']), "{a}");
        assert_ne!(a, keys.login_attempts_user_client("x", &client));
        // The separator keeps ("ab", "c…") and ("a", "bc…") apart.
        let other = ClientAddr::unknown();
        assert_ne!(keys.login_attempts_user_client("ab", &other), keys.login_attempts_user_client("a", &other));
        assert_eq!(keys.login_attempts_client(&client), "p:login_attempts:client:2001:db8::/64");
        assert_eq!(keys.signups_client(&client), "p:signups:client:2001:db8::/64");
    }
}
